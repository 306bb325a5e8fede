//! Property tests of the predicate language and the sampler parsers (issue 17): random text,
//! and sequences of the language's own tokens (which reach far past the lexer). No input
//! panics; a parse error names a column inside the text (or one past its end); a predicate that
//! parses evaluates to a number or an error value against any sample, NaN and infinities
//! included.
//!
//! Cases per property: `HALCYON_FUZZ_CASES` (the long run), else a CI-sized default.

use halcyon_monitor::predicate::PREDICATE_LENGTH_MAX;
use halcyon_monitor::sample::parse_output;
use halcyon_monitor::{Predicate, Sample, Sampler};
use proptest::prelude::*;
use proptest::test_runner::Config;

fn config(default_cases: u32) -> Config {
    let cases = std::env::var("HALCYON_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_cases);
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

const TOKENS: &[&str] = &[
    "X",
    "X@0",
    "X@1",
    "X@7",
    "X@P",
    "X@",
    "X@P@1",
    "X@99999999999999999999",
    "(",
    ")",
    "!",
    "-",
    "+",
    "*",
    "/",
    "%",
    "<",
    "<=",
    ">",
    ">=",
    "==",
    "!=",
    "=",
    "&&",
    "||",
    "and",
    "0",
    "1",
    "90",
    "0.5",
    "5.",
    ".5",
    ".",
    "1e308",
    "1e309",
    "99999999999999999999999",
    " ",
    "\t",
    "x",
    "é",
    "\u{0}",
];

fn value() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>(),
        Just(0.0),
        Just(-0.0),
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(f64::MAX),
        Just(f64::MIN_POSITIVE),
    ]
}

fn sample() -> impl Strategy<Value = Sample> {
    prop::collection::vec(value(), 0..10).prop_map(|fields| Sample { fields })
}

fn check(text: &str, sample: &Sample, previous: Option<&Sample>) -> Result<(), TestCaseError> {
    match Predicate::parse(text) {
        Ok(predicate) => {
            // Evaluation is a value or an error value; never a panic.
            let _ = predicate.evaluate(sample, previous);
            prop_assert_eq!(predicate.to_string(), text);
        }
        Err(e) => {
            let length = text.chars().count();
            prop_assert!(
                e.column >= 1 && e.column <= length.max(PREDICATE_LENGTH_MAX) + 1,
                "column {} in a text of {} characters",
                e.column,
                length
            );
            prop_assert!(!e.to_string().is_empty());
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(2_000))]

    #[test]
    fn random_text(text in "\\PC{0,64}", s in sample(), p in prop::option::of(sample())) {
        check(&text, &s, p.as_ref())?;
    }

    #[test]
    fn token_sequences(
        tokens in prop::collection::vec(0..TOKENS.len(), 0..40),
        s in sample(),
        p in prop::option::of(sample()),
    ) {
        let text: String = tokens.iter().map(|&t| TOKENS[t]).collect();
        check(&text, &s, p.as_ref())?;
    }

    #[test]
    fn deep_nesting(depth in 0..200usize, unary in any::<bool>()) {
        let text = if unary {
            format!("{}X", "!-".repeat(depth))
        } else {
            format!("{}X{}", "(".repeat(depth), ")".repeat(depth))
        };
        check(&text, &Sample::number(1.0), None)?;
    }

    #[test]
    fn sampler_outputs_and_specs(text in "\\PC{0,200}") {
        let _ = parse_output(&text);
        let _ = Sampler::parse(&text);
    }
}

#[test]
fn overlong_predicates_are_refused_by_length() {
    let text = "X+".repeat(PREDICATE_LENGTH_MAX) + "X";
    let e = Predicate::parse(&text).unwrap_err();
    assert_eq!(e.column, PREDICATE_LENGTH_MAX + 1);
}
