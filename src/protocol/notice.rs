//! Server notices (PROTOCOL §7): frames with a `notice` field and no `id`.
//!
//! One is defined, `goaway`: the connection is going away; the server answers what it
//! has read and what arrives within `grace_ms`, then closes. A client sends nothing
//! more on it and opens a new connection for its next request. Unknown notices are
//! ignored, so servers may add more without breaking older clients.

use serde_json::Value;
use std::time::Duration;

/// A notice a server sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// The connection is going away; requests arriving within the grace are answered.
    GoAway {
        /// How long the server still answers requests on this connection.
        grace: Duration,
    },
    /// A notice this version does not know; to be ignored.
    Unknown(String),
}

impl Notice {
    /// The notice in `payload`, if it is one: an object with a string `notice` field
    /// and no non-null `id`. Anything else (a response, bad JSON) is `None`.
    pub fn parse(payload: &[u8]) -> Option<Notice> {
        let v: Value = serde_json::from_slice(payload).ok()?;
        let name = v.get("notice")?.as_str()?;
        if v.get("id").is_some_and(|id| !id.is_null()) {
            return None;
        }
        Some(match name {
            "goaway" => Notice::GoAway {
                grace: Duration::from_millis(
                    v.pointer("/body/grace_ms")
                        .and_then(Value::as_u64)
                        .unwrap_or(0),
                ),
            },
            other => Notice::Unknown(other.to_owned()),
        })
    }

    /// Whether this is `goaway`.
    pub fn is_goaway(&self) -> bool {
        matches!(self, Notice::GoAway { .. })
    }
}

/// Appends one `goaway` frame announcing `grace`.
pub fn encode_goaway(out: &mut Vec<u8>, grace: Duration) {
    let payload = format!(
        r#"{{"notice":"goaway","body":{{"grace_ms":{}}}}}"#,
        grace.as_millis()
    );
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goaway_round_trips() {
        let mut out = Vec::new();
        encode_goaway(&mut out, Duration::from_millis(1500));
        let len = u32::from_be_bytes(out[..4].try_into().unwrap()) as usize;
        assert_eq!(len, out.len() - 4);
        assert_eq!(
            Notice::parse(&out[4..]),
            Some(Notice::GoAway {
                grace: Duration::from_millis(1500)
            })
        );
    }

    #[test]
    fn responses_and_unknown_notices() {
        assert_eq!(Notice::parse(br#"{"id":1,"ok":true,"body":{}}"#), None);
        assert_eq!(Notice::parse(br#"{"id":1,"notice":"goaway"}"#), None);
        assert_eq!(Notice::parse(b"not json"), None);
        assert_eq!(
            Notice::parse(br#"{"notice":"weather","body":{}}"#),
            Some(Notice::Unknown("weather".into()))
        );
        assert!(Notice::parse(br#"{"id":null,"notice":"goaway"}"#)
            .unwrap()
            .is_goaway());
    }
}
