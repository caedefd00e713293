//! Huddle's wire format: IRC message syntax (RFC 1459/2812 framing with IRCv3 message tags).
//!
//! Everything here is sans-I/O: bytes and strings in, values out. The server and the client
//! share it, so both sides agree on framing, escaping and limits.

pub mod account;
pub mod caps;
pub mod framing;
pub mod message;
pub mod numeric;
pub mod sasl;
pub mod userhost;

pub use framing::{FrameError, LineReader, MAX_CLIENT_TAG_DATA, MAX_LINE_LEN};
pub use message::{Message, ParseError, Tag};
