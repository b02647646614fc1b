//! The `pack`/`unpack` envelope.
//!
//! ```text
//! byte 0        : (ENVELOPE_VERSION << 4) | kind
//!                 kind 0 = raw, 1 = zstd frame, 2 = zstd frame made with a dictionary
//! bytes 1..5    : kind 2 only: the dictionary id, u32 little endian
//! rest          : the payload (raw bytes, or one zstd frame)
//! ```
//!
//! Version 1 is the only version; a blob with any other version, an unknown
//! kind or a header cut short is rejected with a clear error.

use crate::error::{Error, Result};

/// The envelope format version written by this build.
pub const ENVELOPE_VERSION: u8 = 1;

/// What the payload of an envelope holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Stored as is (below the threshold, or incompressible).
    Raw,
    /// One zstd frame, no dictionary.
    Zstd,
    /// One zstd frame made with the dictionary of this id.
    ZstdDict(u32),
}

impl Kind {
    /// Length of the header for this kind.
    pub fn header_len(self) -> usize {
        match self {
            Kind::Raw | Kind::Zstd => 1,
            Kind::ZstdDict(_) => 5,
        }
    }

    /// Append the header for this kind to `out`.
    pub fn write_header(self, out: &mut Vec<u8>) {
        let tag = |k: u8| (ENVELOPE_VERSION << 4) | k;
        match self {
            Kind::Raw => out.push(tag(0)),
            Kind::Zstd => out.push(tag(1)),
            Kind::ZstdDict(id) => {
                out.push(tag(2));
                out.extend_from_slice(&id.to_le_bytes());
            }
        }
    }
}

/// Split a blob into its kind and payload. Never panics, whatever the bytes.
pub fn parse(blob: &[u8]) -> Result<(Kind, &[u8])> {
    let Some((&first, rest)) = blob.split_first() else {
        return Err(Error::Decompression(
            "truncated envelope: the blob is empty (expected at least a 1-byte header)".into(),
        ));
    };
    let version = first >> 4;
    if version != ENVELOPE_VERSION {
        return Err(Error::Decompression(format!(
            "unknown envelope version {version} (header byte 0x{first:02x}); this build reads version {ENVELOPE_VERSION}"
        )));
    }
    match first & 0x0f {
        0 => Ok((Kind::Raw, rest)),
        1 => Ok((Kind::Zstd, rest)),
        2 => match rest.split_first_chunk::<4>() {
            Some((id, payload)) => Ok((Kind::ZstdDict(u32::from_le_bytes(*id)), payload)),
            None => Err(Error::Decompression(format!(
                "truncated envelope: a dictionary header needs 5 bytes, the blob has {}",
                blob.len()
            ))),
        },
        k => Err(Error::Decompression(format!(
            "unknown envelope kind {k} (header byte 0x{first:02x}); expected 0 (raw), 1 (zstd) or 2 (zstd+dictionary)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn header_round_trip() {
        for kind in [Kind::Raw, Kind::Zstd, Kind::ZstdDict(0xdead_beef)] {
            let mut out = Vec::new();
            kind.write_header(&mut out);
            assert_eq!(out.len(), kind.header_len());
            out.extend_from_slice(b"payload");
            let (k, payload) = parse(&out)
                .map_err(|e| e.to_string())
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(k, kind);
            assert_eq!(payload, b"payload");
        }
    }

    #[test]
    fn rejects_bad_headers() {
        assert!(parse(b"").is_err());
        assert!(parse(&[0x21]).is_err()); // version 2
        assert!(parse(&[0x1f]).is_err()); // kind 15
        assert!(parse(&[0x12, 1, 2]).is_err()); // dict id cut short
    }

    proptest! {
        #[test]
        fn parse_never_panics(blob in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = parse(&blob);
        }
    }
}
