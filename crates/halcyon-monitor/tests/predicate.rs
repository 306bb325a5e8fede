//! The predicate language: grouping, values, parse errors and evaluation errors, as tables.

use halcyon_monitor::predicate::{NESTING_DEPTH_MAX, PREDICATE_LENGTH_MAX, Predicate};
use halcyon_monitor::{Sample, check_predicate};

/// Evaluates `text` against `fields` (and `previous` as X@P); panics with the text on error.
fn value(text: &str, fields: &[f64], previous: Option<f64>) -> f64 {
    let predicate = Predicate::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
    let previous = previous.map(Sample::number);
    predicate
        .evaluate(&Sample::record(fields), previous.as_ref())
        .unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// The parse error of `text`, rendered.
fn parse_error(text: &str) -> String {
    match Predicate::parse(text) {
        Ok(p) => panic!("{text:?} parsed as {}", p.expr()),
        Err(e) => e.to_string(),
    }
}

/// The evaluation error of `text` against `fields`, rendered.
fn eval_error(text: &str, fields: &[f64]) -> String {
    let predicate = Predicate::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
    match predicate.evaluate(&Sample::record(fields), None) {
        Ok(v) => panic!("{text} evaluated to {v}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn precedence_and_associativity() {
    // (expression, its value with X = 5)
    let cases: &[(&str, f64)] = &[
        ("1+2*3==7", 1.0),
        ("(1+2)*3", 9.0),
        ("!0&&1", 1.0),
        ("!1||0", 0.0),
        ("!(0&&1)", 1.0),
        ("-(2-3)", 1.0),
        ("--2", 2.0),
        ("-2*-3", 6.0),
        ("10%4", 2.0),
        ("-7%3", -1.0),
        ("7.5%2", 1.5),
        ("2<3==1", 1.0),
        ("3>2 == 1", 1.0),
        ("(3>2)>=0", 1.0),
        ("1-2-3", -4.0),
        ("24/4/2", 3.0),
        ("2*3%4", 2.0),
        ("1+2<4", 1.0),
        ("0||1&&0", 0.0),
        ("1||0&&0", 1.0),
        ("1==1&&2!=2", 0.0),
        ("!X", 0.0),
        ("!!X", 1.0),
        ("-X+10", 5.0),
        ("X*2>9", 1.0),
        ("X<=5", 1.0),
        ("X>=5.5", 0.0),
        ("X != 5", 0.0),
        ("0.5 + .5 + 5.", 6.0),
        ("  X\t>  4 ", 1.0),
        ("(((X)))", 5.0),
        ("7/2", 3.5),
    ];
    let mut failures = Vec::new();
    for (text, expected) in cases {
        let got = value(text, &[5.0], None);
        if got != *expected {
            failures.push(format!("{text}: expected {expected}, got {got}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn grouping_is_shown_fully_parenthesised() {
    let cases = [
        ("1+2*3==7", "((1 + (2 * 3)) == 7)"),
        ("1-2-3", "((1 - 2) - 3)"),
        ("!0&&1", "(!0 && 1)"),
        ("-(2-3)", "-(2 - 3)"),
        ("2<3==1", "((2 < 3) == 1)"),
    ];
    for (text, expected) in cases {
        assert_eq!(
            Predicate::parse(text).unwrap().expr().to_string(),
            expected,
            "{text}"
        );
    }
    assert_eq!(
        Predicate::parse("X@0==0&&X@1!=0")
            .unwrap()
            .expr()
            .to_string(),
        "((X@0 == 0) && (X@1 != 0))"
    );
    assert_eq!(
        Predicate::parse("X - X@P > 10").unwrap().expr().to_string(),
        "((X@0 - X@P) > 10)"
    );
}

#[test]
fn fields_and_previous_value() {
    assert_eq!(value("X", &[3.0, 7.0], None), 3.0);
    assert_eq!(value("X@0", &[3.0, 7.0], None), 3.0);
    assert_eq!(value("X@1", &[3.0, 7.0], None), 7.0);
    assert_eq!(value("X@0==0&&X@1!=0", &[0.0, 1.0], None), 1.0);
    assert_eq!(value("X@0==0&&X@1!=0", &[0.0, 0.0], None), 0.0);
    assert_eq!(value("X - X@P", &[30.0], Some(12.0)), 18.0);
    assert_eq!(value("X@P", &[30.0, 1.0], Some(12.0)), 12.0);
    // Short-circuit: the right side is not evaluated, so it cannot fail.
    assert_eq!(value("X@1 != 0 && X@0 / X@1 > 2", &[6.0, 0.0], None), 0.0);
    assert_eq!(value("X@0 == 6 || X@9 > 0", &[6.0], None), 1.0);

    let p = Predicate::parse("X - X@P > 10").unwrap();
    assert!(p.uses_previous());
    // No previous sample: the predicate does not hold, and is not evaluated.
    assert_eq!(p.holds(&Sample::number(100.0), None), Ok(false));
    assert_eq!(
        p.evaluate(&Sample::number(100.0), None)
            .unwrap_err()
            .to_string(),
        "column 5: X@P: there is no previous sample yet"
    );
    assert!(!Predicate::parse("X > 1").unwrap().uses_previous());
}

#[test]
fn evaluation_errors() {
    let cases: &[(&str, &[f64], &str)] = &[
        (
            "X@2 > 0",
            &[1.0, 2.0],
            "column 1: X@2 is out of range: the sample has 2 fields (X@0 to X@1)",
        ),
        (
            "X > 0 && X@1 == 0",
            &[1.0],
            "column 10: X@1 is out of range: the sample has 1 field (X@0)",
        ),
        (
            "X > 0",
            &[],
            "column 1: X@0 is out of range: the sample has no field",
        ),
        (
            "X / (X - 5) > 1",
            &[5.0],
            "column 3: division by zero (\"/\")",
        ),
        ("10 % X", &[0.0], "column 4: division by zero (\"%\")"),
    ];
    for (text, fields, expected) in cases {
        assert_eq!(eval_error(text, fields), *expected, "{text}");
    }
}

#[test]
fn parse_errors() {
    let operand = "expected a number, X, \"(\", \"!\" or \"-\"";
    let cases: Vec<(&str, String)> = vec![
        ("X>(90))", "column 7: unexpected \")\"; expected an operator or the end of the expression; hint: this \")\" has no \"(\" to close".into()),
        ("X > )", format!("column 5: unexpected \")\"; {operand}")),
        ("X >", format!("column 4: unexpected end of expression; {operand}")),
        ("", "column 1: the predicate is empty; expected an expression such as X > 90".into()),
        ("   ", "column 1: the predicate is empty; expected an expression such as X > 90".into()),
        ("(X > 90", "column 8: unexpected end of expression; expected an operator or \")\"; hint: the \"(\" at column 1 is not closed".into()),
        ("(X > ", format!("column 6: unexpected end of expression; {operand}; hint: the \"(\" at column 1 is not closed")),
        ("X 90", "column 3: unexpected \"90\"; expected an operator or the end of the expression".into()),
        ("x > 90", "column 1: unknown identifier \"x\"; expected X, X@0, X@1, ... (fields of the sample) or X@P (the previous value); hint: did you mean X? (names are case-sensitive)".into()),
        ("X > 90 and X < 95", "column 8: unknown identifier \"and\"; expected X, X@0, X@1, ... (fields of the sample) or X@P (the previous value); hint: did you mean \"&&\"?".into()),
        ("Y > 1", "column 1: unknown identifier \"Y\"; expected X, X@0, X@1, ... (fields of the sample) or X@P (the previous value)".into()),
        ("X1 == 0", "column 1: unknown identifier \"X1\"; expected X, X@0, X@1, ... (fields of the sample) or X@P (the previous value); hint: did you mean X@1?".into()),
        // The OCR'd seed writes the letter O.
        ("X@O==0&&X@1!=0", "column 3: unknown field \"O\"; expected a field number or P after \"X@\"; hint: did you mean X@0? (the letter O is not a zero)".into()),
        ("X@p > 1", "column 3: unknown field \"p\"; expected a field number or P after \"X@\"; hint: did you mean X@P? (the previous value)".into()),
        ("X@ > 1", "column 3: unexpected blank; expected a field number or P after \"X@\"".into()),
        ("X@", "column 3: unexpected end of expression; expected a field number or P after \"X@\"".into()),
        ("X @0 > 1", format!("column 3: unexpected \"@\"; {operand}; hint: write X@0 or X@P with no blank around \"@\"")),
        ("X@64 > 1", "column 3: field number 64 is too large; expected at most 63 (a record has at most 64 fields)".into()),
        ("X@99999999999999999999999 > 1", "column 3: field number 99999999999999999999999 is too large; expected at most 63 (a record has at most 64 fields)".into()),
        ("X@P@1 > 1", "column 4: X@P@...: the previous value of a field is not supported; expected an operator after X@P; hint: X@P is the previous value of X (field 0); to compare other fields with their previous values, have the sampler print the previous value as a field of its own, as the seeds' process count record does (X@0 now, X@1 before)".into()),
        ("X = 90", "column 3: unexpected \"=\"; expected an operator of the predicate language; hint: did you mean \"==\"? (\"=\" alone is an assignment in C, not part of predicates)".into()),
        ("X>1 & X<5", "column 5: unexpected \"&\"; expected an operator of the predicate language; hint: did you mean \"&&\"? (\"&\" alone is a bitwise operator in C, not part of predicates)".into()),
        ("X>1 | X<5", "column 5: unexpected \"|\"; expected an operator of the predicate language; hint: did you mean \"||\"? (\"|\" alone is a bitwise operator in C, not part of predicates)".into()),
        ("X <> 5", "column 3: unexpected \"<>\"; expected an operator of C; hint: did you mean \"!=\"?".into()),
        ("X > 1.2.3", "column 5: invalid number \"1.2.3\"; expected digits with an optional decimal point, such as 90 or 0.5".into()),
        ("X > 1e5", "column 5: invalid number \"1e5\"; expected digits with an optional decimal point, such as 90 or 0.5".into()),
        ("X > 90%%", format!("column 8: unexpected \"%\"; {operand}")),
        ("X > $1", format!("column 5: unexpected \"$\"; {operand}, or an operator")),
        ("X > 90 # comment", format!("column 8: unexpected \"#\"; {operand}, or an operator")),
        ("1 < X < 5", "column 7: \"<\" after \"<\": comparisons do not chain; expected \"&&\" or \"||\" between two comparisons; hint: a < b < c compares (a < b), which is 0 or 1, with c; write a < b && b < c, or add parentheses".into()),
        ("X == 1 != 0", "column 8: \"!=\" after \"==\": comparisons do not chain; expected \"&&\" or \"||\" between two comparisons; hint: a == b != c compares (a == b), which is 0 or 1, with c; write a == b && b != c, or add parentheses".into()),
        ("X > * 2", format!("column 5: unexpected \"*\"; {operand}")),
        ("()", format!("column 2: unexpected \")\"; {operand}")),
        // Columns count characters, not bytes.
        ("é > 1", format!("column 1: unexpected \"é\"; {operand}, or an operator")),
        ("X > 1 && é", format!("column 10: unexpected \"é\"; {operand}, or an operator")),
    ];
    let mut failures = Vec::new();
    for (text, expected) in &cases {
        let got = parse_error(text);
        if got != *expected {
            failures.push(format!(
                "{text:?}\n  expected: {expected}\n  got:      {got}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(cases.len() >= 12);
}

#[test]
fn parentheses_after_a_chain_are_allowed() {
    assert_eq!(value("(1 < X) < 5", &[3.0], None), 1.0);
    assert_eq!(value("1 < X && X < 5", &[3.0], None), 1.0);
    assert_eq!(value("1 < X && X < 5", &[5.0], None), 0.0);
}

#[test]
fn limits() {
    let deep_ok = format!(
        "{}X{}",
        "(".repeat(NESTING_DEPTH_MAX),
        ")".repeat(NESTING_DEPTH_MAX)
    );
    assert_eq!(check_predicate(&deep_ok), Ok(()));
    let too_deep = format!(
        "{}X{}",
        "(".repeat(NESTING_DEPTH_MAX + 1),
        ")".repeat(NESTING_DEPTH_MAX + 1)
    );
    assert_eq!(
        parse_error(&too_deep),
        format!(
            "column {}: the expression is nested too deeply; expected at most {NESTING_DEPTH_MAX} levels of parentheses and unary operators",
            NESTING_DEPTH_MAX + 1
        )
    );
    let nots = format!("{}X", "!".repeat(NESTING_DEPTH_MAX + 1));
    assert!(parse_error(&nots).contains("nested too deeply"));

    // A long flat expression is fine up to the length limit.
    let mut long = "X".to_owned();
    while long.len() + 2 <= PREDICATE_LENGTH_MAX {
        long.push_str("+1");
    }
    assert_eq!(value(&long, &[0.0], None), ((long.len() - 1) / 2) as f64);
    long.push_str("+1");
    assert_eq!(
        parse_error(&long),
        format!(
            "column {}: the predicate is {} characters long; expected at most {PREDICATE_LENGTH_MAX}",
            PREDICATE_LENGTH_MAX + 1,
            long.len()
        )
    );
}
