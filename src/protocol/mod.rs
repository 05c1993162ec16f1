//! The ZEO wire protocol without sockets or storage: sized-message framing, the
//! `Value` tree both encodings share, the restricted pickle codec and the msgpack
//! codec, typed messages, and ZODB exceptions in wire form.
//!
//! Invariant: every decoder is a pure function over a byte buffer that returns an
//! error (never panics) on any input, so each can be fuzzed.

pub mod errors;
pub mod frame;
pub mod handshake;
pub mod message;
pub mod metadata;
pub mod msgpack;
pub mod pickle;
pub mod reply;
pub mod request;
pub mod value;

pub use errors::WireError;
pub use frame::{encode_frame, FrameDecoder, DEFAULT_MAX_MESSAGE_SIZE};
pub use handshake::{parse_client_handshake, ClientHandshake, Encoding};
pub use message::{
    decode_message, decode_request, encode_message, parse_incoming, Call, Envelope, Incoming,
    Request,
};
pub use pickle::GlobalPolicy;
pub use reply::{
    decode_server_message, encode_reply, encode_server_call, parse_server_message, Reply,
    ReplyValue, ServerCall, ServerMessage, StorageInfo, VoteItem,
};
pub use value::Value;

use std::fmt;

/// Errors decoding or encoding protocol data; each names what was wrong and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtocolError {
    /// A frame's length prefix exceeds the configured maximum.
    FrameTooLarge { size: u64, max: u64 },
    /// A message with a zero length prefix (undecodable; Python closes the connection).
    EmptyMessage { stream_offset: u64 },
    /// Bytes that do not decode; `offset` is within the message.
    Malformed { what: String, offset: usize },
    /// A decoded message has the wrong shape (arity, types).
    BadMessage(String),
    /// A pickle named a global outside the allowed set.
    ForbiddenGlobal { module: String, name: String },
    /// A call naming a method the server does not offer (Python closes the connection).
    UnknownMethod(String),
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::FrameTooLarge { size, max } => {
                write!(
                    f,
                    "message of {size} bytes exceeds the maximum message size of {max} bytes"
                )
            }
            ProtocolError::EmptyMessage { stream_offset } => write!(
                f,
                "zero-length message at stream offset {stream_offset} (a message must not be empty)"
            ),
            ProtocolError::UnknownMethod(m) => write!(f, "unknown method {m:?}"),
            ProtocolError::Malformed { what, offset } => {
                write!(f, "malformed message at byte {offset}: {what}")
            }
            ProtocolError::BadMessage(m) => write!(f, "bad message: {m}"),
            ProtocolError::ForbiddenGlobal { module, name } => {
                write!(f, "refusing to unpickle global {module}.{name}")
            }
        }
    }
}

impl std::error::Error for ProtocolError {}

impl ProtocolError {
    /// A decoding error at `offset` within the message.
    pub fn malformed(what: impl Into<String>, offset: usize) -> Self {
        ProtocolError::Malformed {
            what: what.into(),
            offset,
        }
    }
    /// A well-formed message of the wrong shape.
    pub fn bad(msg: impl Into<String>) -> Self {
        ProtocolError::BadMessage(msg.into())
    }
}
