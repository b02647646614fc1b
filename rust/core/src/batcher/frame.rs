//! The message-batch frame made by `MessageBatcher` and read by `decode_batch`.
//!
//! Layout (all integers little-endian):
//!
//! ```text
//! offset size  field
//!      0    4  magic b"ODMB"
//!      4    1  version (1)
//!      5    1  flags: bit 0 set = the body is one zstd frame
//!      6    2  reserved, 0
//!      8    4  count: number of messages
//!     12    4  body_len: length of the (uncompressed) body
//!     16    -  body, raw or zstd-compressed; uncompressed it is `count` records
//!              of [u32 length][length bytes]
//! ```
//!
//! The body is compressed (one zstd call per batch) when it is longer than
//! the encoder's threshold and compression actually shrinks it.

use std::borrow::Cow;

use crate::compress::Codec;
use crate::error::{Error, Result};

/// The first four bytes of every frame.
pub const FRAME_MAGIC: [u8; 4] = *b"ODMB";
/// The layout version written by this library.
pub const FRAME_VERSION: u8 = 1;
const HEADER: usize = 16;
const FLAG_ZSTD: u8 = 1;

/// Builds frames with a fixed codec and compression threshold.
pub struct FrameEncoder {
    codec: Codec,
    threshold: usize,
}

impl FrameEncoder {
    /// Compress bodies longer than `threshold` bytes at zstd `level`.
    pub fn new(level: i32, threshold: usize) -> Result<Self> {
        Ok(FrameEncoder {
            codec: Codec::plain(level)?,
            threshold,
        })
    }

    /// The compression threshold in bytes.
    pub fn threshold(&self) -> usize {
        self.threshold
    }

    /// One frame holding `messages` in order.
    pub fn encode<M: AsRef<[u8]>>(&self, messages: &[M]) -> Result<Vec<u8>> {
        encode_frame(messages, &self.codec, self.threshold)
    }

    /// One frame around `body`, `count` records already in the body layout
    /// (`[u32 length][bytes]` each), as [`Body`](super::Body) holds them.
    pub fn encode_body(&self, body: &[u8], count: usize) -> Result<Vec<u8>> {
        let count = u32::try_from(count).map_err(|_| too_big("count", count))?;
        frame_around(body, count, &self.codec, self.threshold)
    }
}

fn too_big(what: &str, n: usize) -> Error {
    Error::Frame(format!(
        "{what} of {n} exceeds the frame format's 4 GiB limit"
    ))
}

/// One frame of `messages`; the body is compressed with `codec` when longer
/// than `threshold` bytes and compression shrinks it.
pub fn encode_frame<M: AsRef<[u8]>>(
    messages: &[M],
    codec: &Codec,
    threshold: usize,
) -> Result<Vec<u8>> {
    let body_len: usize = messages.iter().map(|m| 4 + m.as_ref().len()).sum();
    let count = u32::try_from(messages.len()).map_err(|_| too_big("count", messages.len()))?;
    let mut body = Vec::with_capacity(body_len);
    for m in messages {
        let m = m.as_ref();
        let n = u32::try_from(m.len()).map_err(|_| too_big("message", m.len()))?;
        body.extend_from_slice(&n.to_le_bytes());
        body.extend_from_slice(m);
    }
    frame_around(&body, count, codec, threshold)
}

/// The header and the (compressed, when longer than `threshold` and it
/// shrinks) `body` of `count` records.
fn frame_around(body: &[u8], count: u32, codec: &Codec, threshold: usize) -> Result<Vec<u8>> {
    let body_len32 = u32::try_from(body.len()).map_err(|_| too_big("body", body.len()))?;
    let header = |flags: u8, out: &mut Vec<u8>| {
        out.extend_from_slice(&FRAME_MAGIC);
        out.push(FRAME_VERSION);
        out.push(flags);
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&count.to_le_bytes());
        out.extend_from_slice(&body_len32.to_le_bytes());
    };
    if body.len() > threshold {
        let mut z = Vec::new();
        codec.compress_into(body, &mut z)?;
        if z.len() < body.len() {
            let mut out = Vec::with_capacity(HEADER + z.len());
            header(FLAG_ZSTD, &mut out);
            out.extend_from_slice(&z);
            return Ok(out);
        }
    }
    let mut out = Vec::with_capacity(HEADER + body.len());
    header(0, &mut out);
    out.extend_from_slice(body);
    Ok(out)
}

fn read_u32(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4)
        .and_then(|s| <[u8; 4]>::try_from(s).ok())
        .map(u32::from_le_bytes)
}

/// The body size a frame's header declares (uncompressed), if it has a header.
pub fn declared_body_len(frame: &[u8]) -> Option<usize> {
    (frame.len() >= HEADER).then(|| read_u32(frame, 12).unwrap_or(0) as usize)
}

/// A decoded frame: the uncompressed body and each message's (offset, length).
pub type Decoded<'a> = (Cow<'a, [u8]>, Vec<(usize, usize)>);

/// The uncompressed body of `frame` and each message's (offset, length) in
/// it. `cap` bounds the body size (decompression bomb guard).
pub fn decode_frame(frame: &[u8], cap: usize) -> Result<Decoded<'_>> {
    let bad = |why: String| Error::Frame(format!("not a valid message batch frame: {why}"));
    if frame.len() < HEADER {
        return Err(bad(format!(
            "{} bytes is shorter than the {HEADER}-byte header",
            frame.len()
        )));
    }
    if frame[..4] != FRAME_MAGIC {
        return Err(bad(format!("magic {:02x?} is not b\"ODMB\"", &frame[..4])));
    }
    if frame[4] != FRAME_VERSION {
        return Err(bad(format!(
            "version {} (this library reads {FRAME_VERSION})",
            frame[4]
        )));
    }
    let flags = frame[5];
    if flags & !FLAG_ZSTD != 0 {
        return Err(bad(format!("unknown flags {flags:#04x}")));
    }
    let count = read_u32(frame, 8).unwrap_or(0) as usize;
    let body_len = read_u32(frame, 12).unwrap_or(0) as usize;
    if body_len > cap {
        return Err(Error::OutputTooLarge {
            size: crate::error::SizeHint::Exact(body_len as u64),
            limit: cap,
        });
    }
    let payload = &frame[HEADER..];
    let body: Cow<'_, [u8]> = if flags & FLAG_ZSTD != 0 {
        // The body is allocated at the header's length only once the zstd
        // payload agrees with it (a payload's own declared size is checked
        // against what its bytes can hold), and fallibly: a crafted header
        // can neither abort the process nor reserve more than the input
        // can expand to.
        match Codec::declared_size(payload, cap)? {
            Some(n) if n == body_len => {}
            declared => {
                return Err(bad(format!(
                    "the header declares a {body_len}-byte body but its zstd payload declares {}",
                    declared.map_or_else(|| "no size".to_string(), |n| format!("{n} bytes"))
                )))
            }
        }
        let codec = Codec::plain(crate::compress::DEFAULT_LEVEL)?;
        let mut out = Vec::new();
        out.try_reserve_exact(body_len)
            .map_err(|_| crate::compress::output_alloc_error(body_len))?;
        out.resize(body_len, 0);
        codec.decompress_exact(payload, &mut out)?;
        Cow::Owned(out)
    } else {
        if payload.len() != body_len {
            return Err(bad(format!(
                "the header declares a {body_len}-byte body but {} bytes follow",
                payload.len()
            )));
        }
        Cow::Borrowed(payload)
    };
    if count > body_len / 4 {
        return Err(bad(format!(
            "count {count} cannot fit in a {body_len}-byte body"
        )));
    }
    let mut spans = Vec::with_capacity(count);
    let mut at = 0usize;
    for i in 0..count {
        let n = read_u32(&body, at)
            .ok_or_else(|| bad(format!("message {i} length runs past the body")))?
            as usize;
        let start = at + 4;
        let end = start
            .checked_add(n)
            .filter(|&e| e <= body.len())
            .ok_or_else(|| bad(format!("message {i} ({n} bytes) runs past the body")))?;
        spans.push((start, n));
        at = end;
    }
    if at != body.len() {
        return Err(bad(format!(
            "{} bytes left over after {count} messages",
            body.len() - at
        )));
    }
    Ok((body, spans))
}
