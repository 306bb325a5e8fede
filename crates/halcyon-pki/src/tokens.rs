//! API tokens: named, with a role, stored as the SHA-256 of the token.
//!
//! A token is `hct_` and 64 hex digits ([`crate::TOKEN_SECRET_BYTES`] random bytes). SHA-256
//! without salt or stretching is enough here because the tokens are random and 256 bits long:
//! nothing shorter than the token itself can be guessed from its hash, unlike a password, for
//! which a slow hash (argon2) would be required.
//!
//! The file (`tokens.toml`):
//!
//! ```toml
//! [[token]]
//! name = "admin"
//! role = "admin"
//! sha256 = "9f86d0..."
//! ```

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{TOKENS_MAX, hex, unhex};

/// The prefix of every token (so a leaked token is recognisable).
pub const TOKEN_PREFIX: &str = "hct_";

/// What a token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Everything, state changes included.
    Admin,
    /// Status, events, explain, emulate and metrics only.
    ReadOnly,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::ReadOnly => "read-only",
        }
    }
}

/// One token as the nodes know it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    pub name: String,
    pub role: Role,
    pub sha256: [u8; 32],
}

/// Every token of the cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tokens {
    pub tokens: Vec<Token>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokensError {
    #[error("not valid TOML tokens: {0}")]
    Syntax(String),
    #[error("token {index}: sha256 must be 64 hex digits")]
    BadHash { index: usize },
    #[error("token \"{name}\" is listed twice")]
    Duplicate { name: String },
    #[error("token {index}: the name is empty")]
    EmptyName { index: usize },
    #[error("{count} tokens, at most {TOKENS_MAX}")]
    TooMany { count: usize },
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    token: Vec<Entry>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: String,
    role: Role,
    sha256: String,
}

/// SHA-256 of a presented token.
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A new token from `secret` random bytes.
pub(crate) fn token_text(secret: &[u8]) -> String {
    format!("{TOKEN_PREFIX}{}", hex(secret))
}

impl Tokens {
    /// Parse a tokens file.
    pub fn parse(text: &str) -> Result<Tokens, TokensError> {
        let file: File = toml::from_str(text).map_err(|e| TokensError::Syntax(e.to_string()))?;
        if file.token.len() > TOKENS_MAX {
            return Err(TokensError::TooMany {
                count: file.token.len(),
            });
        }
        let mut tokens: Vec<Token> = Vec::with_capacity(file.token.len());
        for (i, entry) in file.token.into_iter().enumerate() {
            let index = i + 1;
            if entry.name.is_empty() {
                return Err(TokensError::EmptyName { index });
            }
            if tokens.iter().any(|t| t.name == entry.name) {
                return Err(TokensError::Duplicate { name: entry.name });
            }
            let sha256: [u8; 32] = unhex(&entry.sha256)
                .and_then(|b| b.try_into().ok())
                .ok_or(TokensError::BadHash { index })?;
            tokens.push(Token {
                name: entry.name,
                role: entry.role,
                sha256,
            });
        }
        Ok(Tokens { tokens })
    }

    /// The file text for these tokens.
    pub fn render(&self, header: &str) -> String {
        let file = File {
            token: self
                .tokens
                .iter()
                .map(|t| Entry {
                    name: t.name.clone(),
                    role: t.role,
                    sha256: hex(&t.sha256),
                })
                .collect(),
        };
        let body = toml::to_string(&file).expect("tokens serialise: plain strings only");
        let comments: String = header.lines().map(|l| format!("# {l}\n")).collect();
        format!("{comments}\n{body}")
    }

    /// The token `presented` is, if any. Every stored hash is compared, in constant time.
    pub fn verify(&self, presented: &str) -> Option<&Token> {
        let hash = token_hash(presented);
        let mut found = None;
        for token in &self.tokens {
            let difference = token
                .sha256
                .iter()
                .zip(hash.iter())
                .fold(0u8, |d, (a, b)| d | (a ^ b));
            if difference == 0 {
                found = Some(token);
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two() -> Tokens {
        Tokens {
            tokens: vec![
                Token {
                    name: "admin".into(),
                    role: Role::Admin,
                    sha256: token_hash("hct_a"),
                },
                Token {
                    name: "read-only".into(),
                    role: Role::ReadOnly,
                    sha256: token_hash("hct_r"),
                },
            ],
        }
    }

    #[test]
    fn render_parse_round_trip_and_verify() {
        let text = two().render("tokens of cluster x");
        assert!(text.starts_with("# tokens of cluster x\n"));
        let parsed = Tokens::parse(&text).unwrap();
        assert_eq!(parsed, two());
        assert_eq!(parsed.verify("hct_a").map(|t| t.role), Some(Role::Admin));
        assert_eq!(
            parsed.verify("hct_r").map(|t| t.name.as_str()),
            Some("read-only")
        );
        assert_eq!(parsed.verify("hct_b"), None);
        assert_eq!(parsed.verify(""), None);
    }

    #[test]
    fn refusals() {
        let h = hex(&token_hash("x"));
        let entry = |name: &str, sha: &str| {
            format!("[[token]]\nname = \"{name}\"\nrole = \"admin\"\nsha256 = \"{sha}\"\n")
        };
        assert_eq!(
            Tokens::parse(&entry("a", "00")),
            Err(TokensError::BadHash { index: 1 })
        );
        assert_eq!(
            Tokens::parse(&format!("{}{}", entry("a", &h), entry("a", &h))),
            Err(TokensError::Duplicate { name: "a".into() })
        );
        assert_eq!(
            Tokens::parse(&entry("", &h)),
            Err(TokensError::EmptyName { index: 1 })
        );
        assert!(matches!(
            Tokens::parse("[[token]]\nname = \"a\"\nrole = \"root\"\nsha256 = \"\"\n"),
            Err(TokensError::Syntax(_))
        ));
        let many: String = (0..=TOKENS_MAX)
            .map(|i| entry(&format!("t{i}"), &h))
            .collect();
        assert_eq!(
            Tokens::parse(&many),
            Err(TokensError::TooMany {
                count: TOKENS_MAX + 1
            })
        );
    }
}
