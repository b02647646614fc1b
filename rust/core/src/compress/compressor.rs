//! `Compressor`: a codec with a threshold, an envelope and counters.

use super::envelope::{self, Kind};
use super::stats::{CompressorStats, StatsSnapshot};
use super::{Codec, Dictionary};
use crate::error::{Error, Result};

/// Level, threshold, optional dictionary and output cap, fixed at creation.
pub struct Compressor {
    codec: Codec,
    /// The same level without the dictionary, for dictionary-less frames.
    plain: Codec,
    threshold: usize,
    max_output_size: usize,
    stats: CompressorStats,
}

/// What `unpack` found in an envelope.
pub enum Unpacked<'a> {
    /// The payload is the original bytes.
    Raw(&'a [u8]),
    /// The payload is one zstd frame to decode with this codec.
    Frame(&'a Codec, &'a [u8]),
}

impl Compressor {
    /// Validate the settings and build the contexts' template.
    pub fn new(
        level: i32,
        threshold: usize,
        dictionary: Option<&[u8]>,
        max_output_size: usize,
    ) -> Result<Self> {
        if max_output_size == 0 {
            return Err(Error::invalid(
                "max_output_size",
                0,
                "the cap must be at least 1 byte",
            ));
        }
        let dict = dictionary.map(Dictionary::new).transpose()?;
        Ok(Compressor {
            codec: Codec::new(level, dict)?,
            plain: Codec::plain(level)?,
            threshold,
            max_output_size,
            stats: CompressorStats::default(),
        })
    }

    /// The codec (level and dictionary) behind this compressor.
    pub fn codec(&self) -> &Codec {
        &self.codec
    }

    /// Inputs shorter than this are packed raw.
    pub fn threshold(&self) -> usize {
        self.threshold
    }

    /// The cap on decompressed output.
    pub fn max_output_size(&self) -> usize {
        self.max_output_size
    }

    /// The counters.
    pub fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }

    /// Count calls made through the codec directly (compress/decompress).
    pub fn counters(&self) -> &CompressorStats {
        &self.stats
    }

    /// Wrap `src` in an envelope: raw below the threshold or when zstd would
    /// not make it smaller, otherwise one zstd frame.
    pub fn pack_into(&self, src: &[u8], out: &mut Vec<u8>) -> Result<()> {
        out.clear();
        if src.len() >= self.threshold {
            let kind = match self.codec.dictionary() {
                Some(d) => Kind::ZstdDict(d.id()),
                None => Kind::Zstd,
            };
            let mut frame = Vec::new();
            if let Err(e) = self.codec.compress_into(src, &mut frame) {
                self.stats.failed();
                return Err(e);
            }
            if frame.len() + kind.header_len() < src.len() + 1 {
                out.reserve(kind.header_len() + frame.len());
                kind.write_header(out);
                out.extend_from_slice(&frame);
                self.stats.compressed(1, src.len(), out.len());
                return Ok(());
            }
        }
        out.reserve(1 + src.len());
        Kind::Raw.write_header(out);
        out.extend_from_slice(src);
        self.stats.compressed(1, src.len(), out.len());
        self.stats.packed_raw();
        Ok(())
    }

    /// Read an envelope's header and say how to get the original back.
    pub fn unpack_plan<'a>(&'a self, blob: &'a [u8]) -> Result<Unpacked<'a>> {
        let plan = self.plan(blob);
        match &plan {
            Ok(_) => self.stats.decompressed(1),
            Err(_) => self.stats.failed(),
        }
        plan
    }

    fn plan<'a>(&'a self, blob: &'a [u8]) -> Result<Unpacked<'a>> {
        let (kind, payload) = envelope::parse(blob)?;
        match kind {
            Kind::Raw => Ok(Unpacked::Raw(payload)),
            Kind::Zstd => {
                // A dictionary-less frame never needs this compressor's dictionary.
                let codec = match self.codec.dictionary() {
                    Some(_) => &self.plain,
                    None => &self.codec,
                };
                Ok(Unpacked::Frame(codec, payload))
            }
            Kind::ZstdDict(id) => match self.codec.dictionary() {
                Some(d) if d.id() == id => Ok(Unpacked::Frame(&self.codec, payload)),
                Some(d) => Err(Error::Decompression(format!(
                    "wrong dictionary: the blob was packed with dictionary id {id}, this Compressor has id {}",
                    d.id()
                ))),
                None => Err(Error::Decompression(format!(
                    "the blob was packed with dictionary id {id}, but this Compressor has no dictionary"
                ))),
            },
        }
    }

    /// Unpack into a new vector (the pure-Rust path; the binding decodes
    /// straight into a Python `bytes`).
    pub fn unpack(&self, blob: &[u8]) -> Result<Vec<u8>> {
        match self.unpack_plan(blob)? {
            Unpacked::Raw(p) => Ok(p.to_vec()),
            Unpacked::Frame(codec, p) => codec.decompress(p, self.max_output_size),
        }
    }
}
