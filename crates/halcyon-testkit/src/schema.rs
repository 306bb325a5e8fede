//! Checks a JSON value against a JSON Schema, for the subset `schemars` writes: `$ref` to
//! `#/$defs/...`, `type` (one or a list), `properties`, `required`,
//! `additionalProperties`, `items`, `prefixItems`, `uniqueItems`, `enum`, `const`, `oneOf`,
//! `anyOf`, `allOf`, `minimum`, `maximum` (`format` is not checked). Used to hold the API's
//! published schema to what the daemon really answers; a keyword it does not know is a
//! failure, rather than a pass unchecked.

use serde_json::Value;

/// Every way `value` (at `path`) breaks `schema` (resolving `$ref`s in `root`).
pub fn check(root: &Value, schema: &Value, value: &Value, path: &str) -> Vec<String> {
    let mut problems = Vec::new();
    walk(root, schema, value, path, &mut problems);
    problems
}

fn type_matches(name: &str, value: &Value) -> bool {
    match name {
        "null" => value.is_null(),
        "boolean" => value.is_boolean(),
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "number" => value.is_number(),
        "integer" => value.is_i64() || value.is_u64(),
        _ => false,
    }
}

const KNOWN: [&str; 22] = [
    "$ref",
    "type",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "prefixItems",
    "enum",
    "const",
    "oneOf",
    "anyOf",
    "allOf",
    "minimum",
    "maximum",
    "format",
    "description",
    "title",
    "default",
    "$schema",
    "$defs",
    "x-schema-version",
    "uniqueItems",
];

fn walk(root: &Value, schema: &Value, value: &Value, path: &str, problems: &mut Vec<String>) {
    let Some(schema) = schema.as_object() else {
        if schema == &Value::Bool(false) {
            problems.push(format!("{path}: not allowed"));
        }
        return;
    };
    for key in schema.keys() {
        if !KNOWN.contains(&key.as_str()) {
            problems.push(format!("{path}: schema keyword {key} is not checked here"));
        }
    }
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        let name = reference.trim_start_matches("#/$defs/");
        match root["$defs"].get(name) {
            Some(target) => walk(root, target, value, path, problems),
            None => problems.push(format!("{path}: unresolved {reference}")),
        }
    }
    match schema.get("type") {
        Some(Value::String(t)) if !type_matches(t, value) => {
            problems.push(format!("{path}: {value} is not of type {t}"));
            return;
        }
        Some(Value::Array(ts))
            if !ts
                .iter()
                .any(|t| t.as_str().is_some_and(|t| type_matches(t, value))) =>
        {
            problems.push(format!("{path}: {value} is of none of the types {ts:?}"));
            return;
        }
        _ => {}
    }
    if let Some(options) = schema.get("enum").and_then(Value::as_array)
        && !options.contains(value)
    {
        problems.push(format!("{path}: {value} is not one of {options:?}"));
    }
    if let Some(c) = schema.get("const")
        && c != value
    {
        problems.push(format!("{path}: {value} is not {c}"));
    }
    if let (Some(min), Some(v)) = (
        schema.get("minimum").and_then(Value::as_f64),
        value.as_f64(),
    ) && v < min
    {
        problems.push(format!("{path}: {v} is below {min}"));
    }
    if let (Some(max), Some(v)) = (
        schema.get("maximum").and_then(Value::as_f64),
        value.as_f64(),
    ) && v > max
    {
        problems.push(format!("{path}: {v} is above {max}"));
    }
    for (keyword, need) in [("oneOf", Some(1)), ("anyOf", None)] {
        if let Some(options) = schema.get(keyword).and_then(Value::as_array) {
            let fitting = options
                .iter()
                .filter(|o| check(root, o, value, path).is_empty())
                .count();
            let ok = match need {
                Some(n) => fitting == n,
                None => fitting > 0,
            };
            if !ok {
                let why: Vec<String> = options
                    .iter()
                    .flat_map(|o| check(root, o, value, path))
                    .collect();
                problems.push(format!(
                    "{path}: {fitting} of the {keyword} options fit {value}: {why:?}"
                ));
            }
        }
    }
    if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
        for s in all {
            walk(root, s, value, path, problems);
        }
    }
    if let Some(object) = value.as_object() {
        let properties = schema.get("properties").and_then(Value::as_object);
        for name in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if !object.contains_key(name) {
                problems.push(format!("{path}: required {name} is missing"));
            }
        }
        for (key, v) in object {
            let at = format!("{path}.{key}");
            match properties.and_then(|p| p.get(key)) {
                Some(s) => walk(root, s, v, &at, problems),
                None => match schema.get("additionalProperties") {
                    Some(s @ Value::Object(_)) => walk(root, s, v, &at, problems),
                    Some(Value::Bool(false)) => problems.push(format!("{at}: not in the schema")),
                    // JSON Schema allows other keys by default, but every object the API
                    // answers is described: a key the schema does not name is drift.
                    _ if properties.is_some() => problems.push(format!("{at}: not in the schema")),
                    _ => {}
                },
            }
        }
    }
    if let Some(items) = value.as_array() {
        if schema.get("uniqueItems") == Some(&Value::Bool(true))
            && items
                .iter()
                .enumerate()
                .any(|(i, a)| items[..i].contains(a))
        {
            problems.push(format!("{path}: items are not unique"));
        }
        let prefix = schema.get("prefixItems").and_then(Value::as_array);
        for (i, v) in items.iter().enumerate() {
            let at = format!("{path}[{i}]");
            match prefix.and_then(|p| p.get(i)) {
                Some(s) => walk(root, s, v, &at, problems),
                None => {
                    if let Some(s) = schema.get("items") {
                        walk(root, s, v, &at, problems);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn drift_and_wrong_types_are_found_and_refs_followed() {
        let root = json!({"$defs": {"P": {"type": "object", "properties": {
            "a": {"type": "integer", "minimum": 0}, "b": {"type": ["string", "null"]}},
            "required": ["a"]}}});
        let schema = json!({"$ref": "#/$defs/P"});
        assert!(check(&root, &schema, &json!({"a": 1, "b": null}), "$").is_empty());
        let problems = check(&root, &schema, &json!({"a": -1, "c": 2}), "$");
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(check(&root, &schema, &json!({"b": 3}), "$").len() == 2);
    }
}
