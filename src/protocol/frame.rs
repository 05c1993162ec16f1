//! Sized-message framing (spec zeo-protocol.md §1): every message is a 4-byte
//! big-endian length N followed by exactly N payload bytes.
//!
//! [`FrameDecoder`] is incremental: feed it whatever the socket produced (several
//! messages, or a message split across reads) and pull complete payloads out.
//! Invariants: a length prefix above the configured maximum is rejected as soon as
//! its 4 bytes are seen, before anything is allocated for it; a zero-length message
//! is an error (Python cannot decode one and closes the connection); memory grows
//! only with bytes actually received, never with an announced length.

use super::ProtocolError;

/// Size of the length prefix.
pub const HEADER_LEN: usize = 4;

/// Default maximum payload size: generous (ZODB records can be large) but bounded.
pub const DEFAULT_MAX_MESSAGE_SIZE: u32 = 256 * 1024 * 1024;

/// Incremental decoder of sized messages.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    /// Start of unconsumed data in `buf`.
    pos: usize,
    max: u32,
    /// Total bytes consumed so far (for error offsets).
    consumed: u64,
}

impl FrameDecoder {
    /// A decoder refusing payloads longer than `max_message_size` bytes.
    pub fn new(max_message_size: u32) -> Self {
        FrameDecoder {
            buf: Vec::new(),
            pos: 0,
            max: max_message_size,
            consumed: 0,
        }
    }

    pub fn max_message_size(&self) -> u32 {
        self.max
    }

    /// Append bytes read from the connection.
    pub fn feed(&mut self, data: &[u8]) {
        if self.pos > 0 && self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > 64 * 1024 && self.pos * 2 > self.buf.len() {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// Bytes fed but not yet returned as messages.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The next complete payload, `Ok(None)` if more bytes are needed.
    ///
    /// After an error the stream is unusable (message boundaries are lost); the
    /// caller should close the connection.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, ProtocolError> {
        let avail = &self.buf[self.pos..];
        let Some(header) = avail.get(..HEADER_LEN) else {
            return Ok(None);
        };
        let n = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
        if n == 0 {
            return Err(ProtocolError::EmptyMessage {
                stream_offset: self.consumed,
            });
        }
        if n > self.max {
            return Err(ProtocolError::FrameTooLarge {
                size: n as u64,
                max: self.max as u64,
            });
        }
        let total = HEADER_LEN + n as usize;
        let Some(frame) = avail.get(HEADER_LEN..total) else {
            // Nothing is reserved for the announced length: memory grows only with
            // bytes actually received (a peer announcing a large message and
            // sending nothing costs nothing).
            return Ok(None);
        };
        let payload = frame.to_vec();
        self.pos += total;
        self.consumed += total as u64;
        Ok(Some(payload))
    }
}

impl Default for FrameDecoder {
    fn default() -> Self {
        FrameDecoder::new(DEFAULT_MAX_MESSAGE_SIZE)
    }
}

/// The 4-byte length prefix for a payload of `len` bytes.
pub fn frame_header(len: usize) -> Result<[u8; 4], ProtocolError> {
    let n = u32::try_from(len).map_err(|_| ProtocolError::FrameTooLarge {
        size: len as u64,
        max: u32::MAX as u64,
    })?;
    Ok(n.to_be_bytes())
}

/// Prefix + payload, ready to write.
pub fn encode_frame(payload: &[u8]) -> Result<Vec<u8>, ProtocolError> {
    let header = frame_header(payload.len())?;
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&header);
    out.extend_from_slice(payload);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_and_joins() {
        let mut wire = encode_frame(b"Z5").unwrap();
        wire.extend(encode_frame(b"hello world").unwrap());
        for chunk in 1..wire.len() {
            let mut d = FrameDecoder::new(100);
            let mut got = Vec::new();
            for piece in wire.chunks(chunk) {
                d.feed(piece);
                while let Some(f) = d.next_frame().unwrap() {
                    got.push(f);
                }
            }
            assert_eq!(got, vec![b"Z5".to_vec(), b"hello world".to_vec()]);
            assert_eq!(d.buffered(), 0);
        }
    }

    #[test]
    fn huge_prefix_rejected_without_allocating() {
        let mut d = FrameDecoder::new(1 << 20);
        d.feed(&[0xff, 0xff, 0xff, 0xff, 1, 2]);
        assert_eq!(
            d.next_frame(),
            Err(ProtocolError::FrameTooLarge {
                size: 0xffff_ffff,
                max: 1 << 20
            })
        );
        assert!(d.buf.capacity() < 1024);
    }

    #[test]
    fn announced_length_allocates_nothing() {
        let mut d = FrameDecoder::new(u32::MAX);
        d.feed(&[0xff, 0xff, 0xff, 0xf0, 1]);
        assert_eq!(d.next_frame(), Ok(None));
        assert!(d.buf.capacity() < 1024);
    }

    #[test]
    fn zero_length_is_an_error() {
        let mut d = FrameDecoder::default();
        d.feed(&encode_frame(b"ab").unwrap());
        d.feed(&[0, 0, 0, 0]);
        assert_eq!(d.next_frame().unwrap(), Some(b"ab".to_vec()));
        assert_eq!(
            d.next_frame(),
            Err(ProtocolError::EmptyMessage { stream_offset: 6 })
        );
    }
}
