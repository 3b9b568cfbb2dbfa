//! Small validation helpers for controllers; each failure is a `bad_request` naming the field.

use crate::protocol::ApiError;

/// Checks that `value` has `min..=max` characters (Unicode scalar values).
pub fn length(field: &str, value: &str, min: usize, max: usize) -> Result<(), ApiError> {
    let n = value.chars().count();
    if n < min || n > max {
        return Err(ApiError::bad_request(format!(
            "`{field}` must be {min} to {max} characters (got {n})"
        )));
    }
    Ok(())
}

/// Checks that every character of `value` satisfies `allowed`; `what` describes the set.
pub fn charset(
    field: &str,
    value: &str,
    what: &str,
    allowed: impl Fn(char) -> bool,
) -> Result<(), ApiError> {
    if let Some(c) = value.chars().find(|c| !allowed(*c)) {
        return Err(ApiError::bad_request(format!(
            "`{field}` may contain only {what} (found {c:?})"
        )));
    }
    Ok(())
}

/// Checks that no control characters (including NUL) are present.
pub fn printable(field: &str, value: &str) -> Result<(), ApiError> {
    charset(field, value, "printable characters", |c| !c.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_count_characters_not_bytes() {
        assert!(length("name", "héllo", 1, 5).is_ok());
        assert!(length("name", "", 1, 5).is_err());
        let e = length("name", "abcdef", 1, 5).unwrap_err();
        assert!(e.message.contains("`name`"));
    }

    #[test]
    fn charset_names_the_offender() {
        let e = charset("name", "a b", "letters", char::is_alphanumeric).unwrap_err();
        assert!(e.message.contains("' '"), "{}", e.message);
        assert!(printable("x", "ok\u{0}").is_err());
    }
}
