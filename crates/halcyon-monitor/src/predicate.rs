//! The predicate language: a C-like subset evaluated against a sample (SPEC 9.5).
//!
//! The seeds (HACMP ES over PSSP Event Management) write predicates such as `X>90` with the
//! rearm predicate `X<80` (the `/tmp` file system filling up), and `X@0==0&&X@1!=0` with the
//! rearm predicate `X@0>0` (a process count dropping to 0, where the record's field 1 is the
//! previous count). This module parses and evaluates exactly that kind of expression.
//!
//! # Grammar
//!
//! ```text
//! predicate  = or
//! or         = and { "||" and }
//! and        = equality { "&&" equality }
//! equality   = relational [ ("==" | "!=") relational ]      -- does not chain
//! relational = additive [ ("<" | "<=" | ">" | ">=") additive ] -- does not chain
//! additive   = term { ("+" | "-") term }
//! term       = unary { ("*" | "/" | "%") unary }
//! unary      = ("!" | "-") unary | primary
//! primary    = number | "X" | "X@" digits | "X@P" | "(" or ")"
//! number     = digits [ "." [ digits ] ] | "." digits      -- e.g. 90, 0.5, 5., .5
//! ```
//!
//! Precedence and associativity are C's: binary operators are left-associative, from the
//! tightest: unary `!` and `-`; `* / %`; `+ -`; `< <= > >=`; `== !=`; `&&`; `||`. Blanks
//! (spaces, tabs) are ignored between tokens, but `X@0` and `X@P` are single tokens.
//!
//! One deliberate departure from C: comparisons do not chain. `1 < X < 5` is valid C that
//! compares `(1 < X)`, which is 0 or 1, with 5 — always true, and never what was meant; here
//! it is a parse error with a hint (`1 < X && X < 5`). Parenthesised, `(1 < X) < 5` is allowed.
//!
//! # Values
//!
//! - `X` is the sampled value: the number a sampler printed, or field 0 of a record; `X@0`,
//!   `X@1`, ... are the fields of a record (`X` and `X@0` are the same value).
//! - `X@P` is the previous sample's value (its field 0). The seeds show no syntax for earlier
//!   values of other fields; their process-count record carries the previous count as a field of
//!   its own (`X@1`), and a command sampler can do the same. So `X@P@1` is not supported (a parse
//!   error says so). A predicate that uses `X@P` is false until a previous sample exists (see
//!   [`crate::arm`]).
//! - Numbers are `f64`. Comparisons and `!`, `&&`, `||` yield 1 or 0; any non-zero value is
//!   true. `&&` and `||` short-circuit as in C, so `X@1 != 0 && X@0 / X@1 > 2` never divides by
//!   zero. `%` is the floating-point remainder (C's `fmod`: the sign of the dividend).
//!
//! # Errors
//!
//! Parse errors ([`PredicateError`]) give the 1-based column (in characters), what was found and
//! what was expected, and a hint where one helps (`x` → `X`, `X@O` → `X@0`, `=` → `==`, `and` →
//! `&&`). Evaluation errors ([`EvalError`]) are a field missing from the sample and division by
//! zero; they are values, never panics.
//!
//! # Limits
//!
//! At most [`PREDICATE_LENGTH_MAX`] characters, [`NESTING_DEPTH_MAX`] levels of parentheses and
//! unary operators, and field numbers below [`crate::sample::FIELDS_MAX`].

use std::fmt;

use crate::sample::{FIELDS_MAX, Sample};

/// Most characters in a predicate.
pub const PREDICATE_LENGTH_MAX: usize = 1024;
/// Most levels of parentheses and unary operators, nested.
pub const NESTING_DEPTH_MAX: usize = 32;

const EXPECTED_OPERAND: &str = "a number, X, \"(\", \"!\" or \"-\"";
const EXPECTED_AFTER_AT: &str = "a field number or P after \"X@\"";

/// A predicate that could not be parsed: `column N: problem; expected ...; hint: ...`, the
/// same shape as a configuration diagnostic so the validator can place it in its file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PredicateError {
    /// 1-based column, in characters, of the offending text.
    pub column: usize,
    pub problem: String,
    pub expected: Option<String>,
    pub hint: Option<String>,
}

impl PredicateError {
    fn new(column: usize, problem: impl Into<String>) -> Self {
        PredicateError {
            column,
            problem: problem.into(),
            expected: None,
            hint: None,
        }
    }

    fn expected(mut self, expected: impl Into<String>) -> Self {
        self.expected = Some(expected.into());
        self
    }

    fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for PredicateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "column {}: {}", self.column, self.problem)?;
        if let Some(expected) = &self.expected {
            write!(f, "; expected {expected}")?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "; hint: {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PredicateError {}

/// A predicate that parsed but cannot be evaluated against this sample.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    #[error("column {column}: X@{index} is out of range: the sample has {}", describe_fields(*.fields))]
    FieldOutOfRange {
        column: usize,
        index: usize,
        fields: usize,
    },
    #[error("column {column}: X@P: there is no previous sample yet")]
    NoPrevious { column: usize },
    #[error("column {column}: division by zero (\"{operator}\")")]
    DivisionByZero { column: usize, operator: BinaryOp },
}

fn describe_fields(fields: usize) -> String {
    match fields {
        0 => "no field".to_owned(),
        1 => "1 field (X@0)".to_owned(),
        n => format!("{n} fields (X@0 to X@{})", n - 1),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryOp {
    Or,
    And,
    Equal,
    NotEqual,
    Less,
    LessEqual,
    Greater,
    GreaterEqual,
    Add,
    Subtract,
    Multiply,
    Divide,
    Remainder,
}

impl BinaryOp {
    /// Binding strength; higher binds tighter (C's order).
    fn precedence(self) -> u8 {
        match self {
            BinaryOp::Or => 1,
            BinaryOp::And => 2,
            BinaryOp::Equal | BinaryOp::NotEqual => 3,
            BinaryOp::Less | BinaryOp::LessEqual | BinaryOp::Greater | BinaryOp::GreaterEqual => 4,
            BinaryOp::Add | BinaryOp::Subtract => 5,
            BinaryOp::Multiply | BinaryOp::Divide | BinaryOp::Remainder => 6,
        }
    }

    fn is_comparison(self) -> bool {
        matches!(self.precedence(), 3 | 4)
    }

    pub fn symbol(self) -> &'static str {
        match self {
            BinaryOp::Or => "||",
            BinaryOp::And => "&&",
            BinaryOp::Equal => "==",
            BinaryOp::NotEqual => "!=",
            BinaryOp::Less => "<",
            BinaryOp::LessEqual => "<=",
            BinaryOp::Greater => ">",
            BinaryOp::GreaterEqual => ">=",
            BinaryOp::Add => "+",
            BinaryOp::Subtract => "-",
            BinaryOp::Multiply => "*",
            BinaryOp::Divide => "/",
            BinaryOp::Remainder => "%",
        }
    }
}

impl fmt::Display for BinaryOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.symbol())
    }
}

/// The syntax tree. Columns are kept where evaluation can fail, for its error messages.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    Number(f64),
    /// `X` (field 0) or `X@n`.
    Field {
        index: usize,
        column: usize,
    },
    /// `X@P`: the previous sample's field 0.
    Previous {
        column: usize,
    },
    Not(Box<Expr>),
    Negate(Box<Expr>),
    Binary {
        op: BinaryOp,
        column: usize,
        left: Box<Expr>,
        right: Box<Expr>,
    },
}

/// Fully parenthesised, to show how an expression was grouped: `1+2*3` is `(1 + (2 * 3))`.
impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Number(n) => write!(f, "{n}"),
            Expr::Field { index, .. } => write!(f, "X@{index}"),
            Expr::Previous { .. } => f.write_str("X@P"),
            Expr::Not(e) => write!(f, "!{e}"),
            Expr::Negate(e) => write!(f, "-{e}"),
            Expr::Binary {
                op, left, right, ..
            } => write!(f, "({left} {op} {right})"),
        }
    }
}

impl Expr {
    fn uses_previous(&self) -> bool {
        match self {
            Expr::Number(_) | Expr::Field { .. } => false,
            Expr::Previous { .. } => true,
            Expr::Not(e) | Expr::Negate(e) => e.uses_previous(),
            Expr::Binary { left, right, .. } => left.uses_previous() || right.uses_previous(),
        }
    }

    fn evaluate(&self, sample: &Sample, previous: Option<&Sample>) -> Result<f64, EvalError> {
        let truth = |b: bool| if b { 1.0 } else { 0.0 };
        Ok(match self {
            Expr::Number(n) => *n,
            Expr::Field { index, column } => field(sample, *index, *column)?,
            Expr::Previous { column } => match previous {
                Some(p) => field(p, 0, *column)?,
                None => return Err(EvalError::NoPrevious { column: *column }),
            },
            Expr::Not(e) => truth(e.evaluate(sample, previous)? == 0.0),
            Expr::Negate(e) => -e.evaluate(sample, previous)?,
            Expr::Binary {
                op,
                column,
                left,
                right,
            } => {
                let l = left.evaluate(sample, previous)?;
                // Short-circuit as C does: the right side is not evaluated (and cannot fail).
                match op {
                    BinaryOp::And if l == 0.0 => return Ok(0.0),
                    BinaryOp::Or if l != 0.0 => return Ok(1.0),
                    _ => {}
                }
                let r = right.evaluate(sample, previous)?;
                match op {
                    BinaryOp::Or | BinaryOp::And => truth(r != 0.0),
                    BinaryOp::Equal => truth(l == r),
                    BinaryOp::NotEqual => truth(l != r),
                    BinaryOp::Less => truth(l < r),
                    BinaryOp::LessEqual => truth(l <= r),
                    BinaryOp::Greater => truth(l > r),
                    BinaryOp::GreaterEqual => truth(l >= r),
                    BinaryOp::Add => l + r,
                    BinaryOp::Subtract => l - r,
                    BinaryOp::Multiply => l * r,
                    BinaryOp::Divide | BinaryOp::Remainder if r == 0.0 => {
                        return Err(EvalError::DivisionByZero {
                            column: *column,
                            operator: *op,
                        });
                    }
                    BinaryOp::Divide => l / r,
                    BinaryOp::Remainder => l % r,
                }
            }
        })
    }
}

fn field(sample: &Sample, index: usize, column: usize) -> Result<f64, EvalError> {
    sample
        .fields
        .get(index)
        .copied()
        .ok_or(EvalError::FieldOutOfRange {
            column,
            index,
            fields: sample.fields.len(),
        })
}

/// A parsed predicate, with its text.
#[derive(Clone, Debug, PartialEq)]
pub struct Predicate {
    text: String,
    expr: Expr,
    uses_previous: bool,
}

impl Predicate {
    pub fn parse(text: &str) -> Result<Predicate, PredicateError> {
        let expr = parse(text)?;
        Ok(Predicate {
            text: text.to_owned(),
            uses_previous: expr.uses_previous(),
            expr,
        })
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn expr(&self) -> &Expr {
        &self.expr
    }

    /// True when the predicate refers to `X@P`.
    pub fn uses_previous(&self) -> bool {
        self.uses_previous
    }

    /// The expression's value for `sample`, with `previous` as `X@P`.
    pub fn evaluate(&self, sample: &Sample, previous: Option<&Sample>) -> Result<f64, EvalError> {
        self.expr.evaluate(sample, previous)
    }

    /// Whether the predicate holds. One that uses `X@P` does not hold while there is no
    /// previous sample (it is not evaluated at all then).
    pub fn holds(&self, sample: &Sample, previous: Option<&Sample>) -> Result<bool, EvalError> {
        if self.uses_previous && previous.is_none() {
            return Ok(false);
        }
        Ok(self.evaluate(sample, previous)? != 0.0)
    }
}

impl fmt::Display for Predicate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Parses a predicate into its syntax tree.
pub fn parse(text: &str) -> Result<Expr, PredicateError> {
    let length = text.chars().count();
    if length > PREDICATE_LENGTH_MAX {
        return Err(PredicateError::new(
            PREDICATE_LENGTH_MAX + 1,
            format!("the predicate is {length} characters long"),
        )
        .expected(format!("at most {PREDICATE_LENGTH_MAX}")));
    }
    let tokens = lex(text)?;
    if tokens.len() == 1 {
        return Err(PredicateError::new(1, "the predicate is empty")
            .expected("an expression such as X > 90"));
    }
    let mut parser = Parser {
        tokens,
        position: 0,
        open: Vec::new(),
    };
    let expr = parser.expression(0, 0)?;
    let token = parser.peek();
    if token.kind != TokenKind::End {
        let mut error = PredicateError::new(token.column, format!("unexpected {}", token.found()))
            .expected("an operator or the end of the expression");
        if token.kind == TokenKind::RightParen {
            error = error.hint("this \")\" has no \"(\" to close");
        }
        return Err(error);
    }
    Ok(expr)
}

#[derive(Clone, Debug, PartialEq)]
enum TokenKind {
    Number(f64),
    Field(usize),
    Previous,
    Binary(BinaryOp),
    Not,
    LeftParen,
    RightParen,
    End,
}

#[derive(Clone, Debug)]
struct Token {
    kind: TokenKind,
    column: usize,
    text: String,
}

impl Token {
    /// How the token is named in "unexpected ..." messages.
    fn found(&self) -> String {
        match self.kind {
            TokenKind::End => "end of expression".to_owned(),
            _ => format!("\"{}\"", self.text),
        }
    }
}

fn lex(text: &str) -> Result<Vec<Token>, PredicateError> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let column = i + 1;
        let next = chars.get(i + 1).copied();
        if c == ' ' || c == '\t' {
            i += 1;
            continue;
        }
        let (kind, length) =
            if c.is_ascii_digit() || (c == '.' && next.is_some_and(|n| n.is_ascii_digit())) {
                let length = chars[i..]
                    .iter()
                    .take_while(|c| c.is_ascii_alphanumeric() || **c == '.' || **c == '_')
                    .count();
                let word: String = chars[i..i + length].iter().collect();
                (number(&word, column)?, length)
            } else if c.is_ascii_alphabetic() || c == '_' {
                let length = chars[i..]
                    .iter()
                    .take_while(|c| c.is_ascii_alphanumeric() || **c == '_')
                    .count();
                let word: String = chars[i..i + length].iter().collect();
                if word == "X" && chars.get(i + 1) == Some(&'@') {
                    let (kind, suffix) = field_reference(&chars, i + 2)?;
                    (kind, length + 1 + suffix)
                } else if word == "X" {
                    (TokenKind::Field(0), length)
                } else {
                    return Err(unknown_identifier(&word, column));
                }
            } else {
                let (kind, length) = match (c, next) {
                    ('|', Some('|')) => (TokenKind::Binary(BinaryOp::Or), 2),
                    ('&', Some('&')) => (TokenKind::Binary(BinaryOp::And), 2),
                    ('=', Some('=')) => (TokenKind::Binary(BinaryOp::Equal), 2),
                    ('!', Some('=')) => (TokenKind::Binary(BinaryOp::NotEqual), 2),
                    ('<', Some('=')) => (TokenKind::Binary(BinaryOp::LessEqual), 2),
                    ('>', Some('=')) => (TokenKind::Binary(BinaryOp::GreaterEqual), 2),
                    ('<', Some('>')) => {
                        return Err(PredicateError::new(column, "unexpected \"<>\"")
                            .expected("an operator of C")
                            .hint("did you mean \"!=\"?"));
                    }
                    ('<', _) => (TokenKind::Binary(BinaryOp::Less), 1),
                    ('>', _) => (TokenKind::Binary(BinaryOp::Greater), 1),
                    ('+', _) => (TokenKind::Binary(BinaryOp::Add), 1),
                    ('-', _) => (TokenKind::Binary(BinaryOp::Subtract), 1),
                    ('*', _) => (TokenKind::Binary(BinaryOp::Multiply), 1),
                    ('/', _) => (TokenKind::Binary(BinaryOp::Divide), 1),
                    ('%', _) => (TokenKind::Binary(BinaryOp::Remainder), 1),
                    ('!', _) => (TokenKind::Not, 1),
                    ('(', _) => (TokenKind::LeftParen, 1),
                    (')', _) => (TokenKind::RightParen, 1),
                    ('=', _) => return Err(single(column, '=', "==", "an assignment")),
                    ('&', _) => return Err(single(column, '&', "&&", "a bitwise operator")),
                    ('|', _) => return Err(single(column, '|', "||", "a bitwise operator")),
                    ('@', _) => {
                        return Err(PredicateError::new(column, "unexpected \"@\"")
                            .expected(EXPECTED_OPERAND)
                            .hint("write X@0 or X@P with no blank around \"@\""));
                    }
                    _ => {
                        return Err(PredicateError::new(
                            column,
                            format!("unexpected {}", describe_char(c)),
                        )
                        .expected(EXPECTED_OPERAND.to_owned() + ", or an operator"));
                    }
                };
                (kind, length)
            };
        tokens.push(Token {
            kind,
            column,
            text: chars[i..i + length].iter().collect(),
        });
        i += length;
    }
    tokens.push(Token {
        kind: TokenKind::End,
        column: chars.len() + 1,
        text: String::new(),
    });
    Ok(tokens)
}

/// A character as "unexpected ..." messages name it.
fn describe_char(c: char) -> String {
    match c {
        ' ' | '\t' => "blank".to_owned(),
        _ => format!("\"{c}\""),
    }
}

fn single(column: usize, c: char, double: &str, what: &str) -> PredicateError {
    PredicateError::new(column, format!("unexpected \"{c}\""))
        .expected("an operator of the predicate language")
        .hint(format!(
            "did you mean \"{double}\"? (\"{c}\" alone is {what} in C, not part of predicates)"
        ))
}

fn number(word: &str, column: usize) -> Result<TokenKind, PredicateError> {
    let valid = word.chars().all(|c| c.is_ascii_digit() || c == '.')
        && word.chars().filter(|c| *c == '.').count() <= 1;
    let value = word.parse::<f64>().ok().filter(|_| valid);
    match value {
        Some(v) if v.is_finite() => Ok(TokenKind::Number(v)),
        Some(_) => Err(
            PredicateError::new(column, format!("number \"{word}\" is too large"))
                .expected(format!("at most {:e}", f64::MAX)),
        ),
        None => Err(
            PredicateError::new(column, format!("invalid number \"{word}\""))
                .expected("digits with an optional decimal point, such as 90 or 0.5"),
        ),
    }
}

/// Lexes what follows `X@` (starting at `start`): a field number or `P`. Returns the token
/// and the number of characters after the `@`.
fn field_reference(chars: &[char], start: usize) -> Result<(TokenKind, usize), PredicateError> {
    let column = start + 1;
    let length = chars[start..]
        .iter()
        .take_while(|c| c.is_ascii_alphanumeric() || **c == '_')
        .count();
    let suffix: String = chars[start..start + length].iter().collect();
    if suffix.is_empty() {
        let found = match chars.get(start) {
            None => "end of expression".to_owned(),
            Some(c) => describe_char(*c),
        };
        return Err(
            PredicateError::new(column, format!("unexpected {found}")).expected(EXPECTED_AFTER_AT)
        );
    }
    if suffix == "P" {
        if chars.get(start + 1) == Some(&'@') {
            return Err(PredicateError::new(
                column + 1,
                "X@P@...: the previous value of a field is not supported",
            )
            .expected("an operator after X@P")
            .hint(
                "X@P is the previous value of X (field 0); to compare other fields with their \
                 previous values, have the sampler print the previous value as a field of its \
                 own, as the seeds' process count record does (X@0 now, X@1 before)",
            ));
        }
        return Ok((TokenKind::Previous, 1));
    }
    if suffix.chars().all(|c| c.is_ascii_digit()) {
        return match suffix.parse::<usize>() {
            Ok(index) if index < FIELDS_MAX => Ok((TokenKind::Field(index), length)),
            _ => Err(
                PredicateError::new(column, format!("field number {suffix} is too large"))
                    .expected(format!(
                        "at most {} (a record has at most {FIELDS_MAX} fields)",
                        FIELDS_MAX - 1
                    )),
            ),
        };
    }
    let mut error = PredicateError::new(column, format!("unknown field \"{suffix}\""))
        .expected(EXPECTED_AFTER_AT);
    let zeroes: String = suffix
        .chars()
        .map(|c| if c == 'O' || c == 'o' { '0' } else { c })
        .collect();
    if suffix == "p" {
        error = error.hint("did you mean X@P? (the previous value)");
    } else if zeroes.chars().all(|c| c.is_ascii_digit()) {
        error = error.hint(format!(
            "did you mean X@{zeroes}? (the letter O is not a zero)"
        ));
    }
    Err(error)
}

fn unknown_identifier(word: &str, column: usize) -> PredicateError {
    let error = PredicateError::new(column, format!("unknown identifier \"{word}\""))
        .expected("X, X@0, X@1, ... (fields of the sample) or X@P (the previous value)");
    let lower = word.to_ascii_lowercase();
    let hint = match lower.as_str() {
        "x" => Some("did you mean X? (names are case-sensitive)".to_owned()),
        "and" => Some("did you mean \"&&\"?".to_owned()),
        "or" => Some("did you mean \"||\"?".to_owned()),
        "not" => Some("did you mean \"!\"?".to_owned()),
        "xp" => Some("did you mean X@P?".to_owned()),
        _ if word.starts_with('X') && word[1..].chars().all(|c| c.is_ascii_digit()) => {
            Some(format!("did you mean X@{}?", &word[1..]))
        }
        _ => None,
    };
    match hint {
        Some(h) => error.hint(h),
        None => error,
    }
}

/// One level deeper, or an error at `column` past [`NESTING_DEPTH_MAX`].
fn nest(depth: usize, column: usize) -> Result<usize, PredicateError> {
    if depth >= NESTING_DEPTH_MAX {
        return Err(
            PredicateError::new(column, "the expression is nested too deeply").expected(format!(
                "at most {NESTING_DEPTH_MAX} levels of parentheses and unary operators"
            )),
        );
    }
    Ok(depth + 1)
}

struct Parser {
    tokens: Vec<Token>,
    position: usize,
    /// Columns of the "(" not yet closed, innermost last.
    open: Vec<usize>,
}

impl Parser {
    fn peek(&self) -> &Token {
        &self.tokens[self.position]
    }

    fn advance(&mut self) -> Token {
        let token = self.tokens[self.position].clone();
        if token.kind != TokenKind::End {
            self.position += 1;
        }
        token
    }

    /// Precedence climbing: parses operators binding at least as tightly as `min_precedence`.
    fn expression(&mut self, min_precedence: u8, depth: usize) -> Result<Expr, PredicateError> {
        let mut left = self.unary(depth)?;
        let mut comparison: Option<BinaryOp> = None;
        loop {
            let token = self.peek();
            let TokenKind::Binary(op) = token.kind else {
                break;
            };
            if op.precedence() < min_precedence {
                break;
            }
            let column = token.column;
            if let Some(first) = comparison.filter(|first| first.precedence() == op.precedence()) {
                return Err(PredicateError::new(
                    column,
                    format!("\"{op}\" after \"{first}\": comparisons do not chain"),
                )
                .expected("\"&&\" or \"||\" between two comparisons")
                .hint(format!(
                    "a {first} b {op} c compares (a {first} b), which is 0 or 1, with c; \
                     write a {first} b && b {op} c, or add parentheses"
                )));
            }
            if op.is_comparison() {
                comparison = Some(op);
            }
            self.advance();
            let right = self.expression(op.precedence() + 1, depth)?;
            left = Expr::Binary {
                op,
                column,
                left: Box::new(left),
                right: Box::new(right),
            };
        }
        Ok(left)
    }

    fn unary(&mut self, depth: usize) -> Result<Expr, PredicateError> {
        let token = self.advance();
        match token.kind {
            TokenKind::Number(n) => Ok(Expr::Number(n)),
            TokenKind::Field(index) => Ok(Expr::Field {
                index,
                column: token.column,
            }),
            TokenKind::Previous => Ok(Expr::Previous {
                column: token.column,
            }),
            TokenKind::Not => {
                let depth = nest(depth, token.column)?;
                Ok(Expr::Not(Box::new(self.unary(depth)?)))
            }
            TokenKind::Binary(BinaryOp::Subtract) => {
                let depth = nest(depth, token.column)?;
                Ok(Expr::Negate(Box::new(self.unary(depth)?)))
            }
            TokenKind::LeftParen => {
                let depth = nest(depth, token.column)?;
                self.open.push(token.column);
                let inner = self.expression(0, depth)?;
                let close = self.advance();
                if close.kind != TokenKind::RightParen {
                    let mut error =
                        PredicateError::new(close.column, format!("unexpected {}", close.found()))
                            .expected("an operator or \")\"");
                    if close.kind == TokenKind::End {
                        error = error.hint(format!(
                            "the \"(\" at column {} is not closed",
                            token.column
                        ));
                    }
                    return Err(error);
                }
                self.open.pop();
                Ok(inner)
            }
            _ => {
                let mut error =
                    PredicateError::new(token.column, format!("unexpected {}", token.found()))
                        .expected(EXPECTED_OPERAND);
                if token.kind == TokenKind::End
                    && let Some(open) = self.open.last()
                {
                    error = error.hint(format!("the \"(\" at column {open} is not closed"));
                }
                Err(error)
            }
        }
    }
}
