//! The DSF wire protocol: length-prefixed JSON frames, requests, responses, error codes.
//!
//! `frame` turns bytes into payloads and back (PROTOCOL §1), `message` turns payloads
//! into [`Request`]s and [`Response`]s (§2), `legacy` maps DSF v1 integer codes (§4),
//! `scan` reads the few fields a proxy needs without building a tree, and `notice`
//! holds the server notices (§7).

pub mod error;
pub mod frame;
pub mod legacy;
pub mod message;
pub mod notice;
pub mod scan;

pub use error::{ApiError, ErrorCode};
pub use frame::{FrameDecoder, FrameError, DEFAULT_MAX_FRAME};
pub use message::{Request, RequestError, Response};
pub use notice::Notice;
