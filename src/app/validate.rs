//! Field rules of PROTOCOL §3, shared by the controllers.

use crate::framework::validate::{charset, length, printable};
use crate::protocol::ApiError;

/// Default `blacklist.search` limit.
pub const DEFAULT_LIMIT: u32 = 50;
/// Largest `blacklist.search` limit.
pub const MAX_LIMIT: u32 = 500;

/// A user name: 1–32 of `[A-Za-z0-9_.-]`.
pub fn user_name(name: &str) -> Result<(), ApiError> {
    length("name", name, 1, 32)?;
    charset("name", name, "letters, digits, '_', '.' and '-'", |c| {
        c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')
    })
}

/// A password: 8–128 characters.
pub fn password(password: &str) -> Result<(), ApiError> {
    length("password", password, 8, 128)
}

/// An id_card: 1–64 printable characters.
pub fn id_card(id_card: &str) -> Result<(), ApiError> {
    length("id_card", id_card, 1, 64)?;
    printable("id_card", id_card)
}

/// A listed person's name: 1–64 printable characters.
pub fn person_name(name: &str) -> Result<(), ApiError> {
    length("name", name, 1, 64)?;
    printable("name", name)
}

/// A report's source: 1–128 printable characters.
pub fn source(source: &str) -> Result<(), ApiError> {
    length("source", source, 1, 128)?;
    printable("source", source)
}

/// A search limit: 1–500, default 50.
pub fn limit(limit: Option<u32>) -> Result<u32, ApiError> {
    match limit {
        None => Ok(DEFAULT_LIMIT),
        Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::bad_request(format!(
            "`limit` must be 1 to {MAX_LIMIT} (got {n})"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_bounds() {
        assert!(user_name("alice.b-c_1").is_ok());
        assert!(user_name("").is_err() && user_name("a b").is_err());
        assert!(user_name(&"a".repeat(33)).is_err());
        assert!(password("1234567").is_err() && password("12345678").is_ok());
        assert!(password(&"p".repeat(129)).is_err());
        assert!(id_card(&"x".repeat(64)).is_ok() && id_card(&"x".repeat(65)).is_err());
        assert!(id_card("'; DROP TABLE blacklist; --").is_ok());
        assert!(person_name("a\u{0}b").is_err());
        assert_eq!(limit(None).unwrap(), 50);
        assert!(limit(Some(0)).is_err() && limit(Some(501)).is_err());
        assert_eq!(limit(Some(500)).unwrap(), 500);
    }
}
