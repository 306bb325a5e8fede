//! The JSON Schema of the status and event records in the repository
//! (`docs/api/halcyon-api.schema.json`) is the one this build generates. After a change of the
//! types: `HALCYON_BLESS=1 cargo test -p halcyon-api --test schema`, and read the diff.

use std::path::PathBuf;

#[test]
fn the_committed_schema_is_the_generated_one() {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/api/halcyon-api.schema.json");
    let generated = serde_json::to_string_pretty(&halcyon_api::schema::generate()).unwrap() + "\n";
    if std::env::var_os("HALCYON_BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed != generated {
        let diff = similar::TextDiff::from_lines(&committed, &generated)
            .unified_diff()
            .header("committed", "generated")
            .to_string();
        panic!(
            "{} is not the schema of this build; HALCYON_BLESS=1 cargo test -p halcyon-api --test schema writes it:\n{diff}",
            path.display()
        );
    }
    let schema: serde_json::Value = serde_json::from_str(&committed).unwrap();
    for name in [
        "StatusResponse",
        "EventsResponse",
        "EventRecord",
        "EventSummary",
        "StreamNotice",
        "LaunchRecord",
    ] {
        assert!(schema["$defs"][name].is_object(), "{name} is defined");
    }
    assert_eq!(schema["x-schema-version"], halcyon_api::SCHEMA_VERSION);
}
