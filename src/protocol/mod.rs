//! The ZEO wire protocol without sockets or storage: sized-message framing, the
//! `Value` tree both encodings share, the restricted pickle codec and the msgpack
//! codec, typed messages, and ZODB exceptions in wire form.
//!
//! Invariant: every decoder is a pure function over a byte buffer that returns an
//! error (never panics) on any input, so each can be fuzzed.

use std::fmt;

/// Errors decoding or encoding protocol data; each names what was wrong and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtocolError {
    /// A frame's length prefix exceeds the configured maximum.
    FrameTooLarge { size: u64, max: u64 },
    /// Bytes that do not decode; `offset` is within the message.
    Malformed { what: String, offset: usize },
    /// A decoded message has the wrong shape (arity, types).
    BadMessage(String),
    /// A pickle named a global outside the allowed set.
    ForbiddenGlobal { module: String, name: String },
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
