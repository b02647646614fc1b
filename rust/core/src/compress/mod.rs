//! zstd compression with reused contexts, a decompression bomb guard, a
//! framed envelope and a parallel batch API.
//!
//! Everything writes and reads standard zstd frames (content size in the
//! header, no checksum, dictionary id when a dictionary is used), so the
//! `zstd` command-line tool and python-zstandard interoperate both ways.

mod compressor;
mod envelope;
mod stats;

pub use compressor::{Compressor, Unpacked};
pub use envelope::{parse as parse_envelope, Kind, ENVELOPE_VERSION};
pub use stats::{CompressorStats, StatsSnapshot};

use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

use zstd::zstd_safe::{self, CCtx, CDict, DCtx, DDict, InBuffer, OutBuffer, ResetDirective};

use crate::error::{Error, Result, SizeHint};

/// Default level, as zstd's own.
pub const DEFAULT_LEVEL: i32 = 3;
/// Default cap on decompressed output: 256 MiB.
pub const DEFAULT_MAX_OUTPUT_SIZE: usize = 256 * 1024 * 1024;
/// The most output one input byte of a zstd frame can stand for: a block
/// decodes to at most 128 KiB and takes at least its 3-byte header (so this
/// overstates the bound threefold, on purpose).
const MAX_BLOCK_OUTPUT: u64 = 128 << 10;
/// Batches with at least this many input bytes are spread over threads.
pub const PARALLEL_MIN_BYTES: usize = 128 * 1024;
/// A parallel batch is cut into this many blocks per thread.
const BLOCKS_PER_THREAD: usize = 8;

/// The valid compression levels, as zstd reports them.
pub fn level_range() -> (i32, i32) {
    (MIN_LEVEL, MAX_LEVEL)
}

/// zstd's lowest level (`ZSTD_minCLevel()`, checked by a test): a constant so
/// the per-call level check costs no FFI call.
const MIN_LEVEL: i32 = -(1 << 17);
/// zstd's highest level (`ZSTD_maxCLevel()`, checked by a test).
const MAX_LEVEL: i32 = 22;

/// `ZSTD_COMPRESSBOUND(n)`: the largest frame `n` input bytes can become
/// (the C macro, inlined; a test checks it against `ZSTD_compressBound`).
fn compress_bound(n: usize) -> usize {
    const LIMIT: usize = 128 << 10;
    n + (n >> 8) + if n < LIMIT { (LIMIT - n) >> 11 } else { 0 }
}

/// The linked zstd library's version, e.g. "1.5.7".
pub fn zstd_version() -> String {
    zstd_safe::version_string().to_string()
}

/// Check a level against zstd's range.
pub fn check_level(level: i32) -> Result<i32> {
    let (lo, hi) = level_range();
    if (lo..=hi).contains(&level) {
        Ok(level)
    } else {
        Err(Error::invalid("level", level, level_expected()))
    }
}

/// What a valid level is, for error messages.
pub fn level_expected() -> String {
    let (lo, hi) = level_range();
    format!("zstd levels run from {lo} to {hi}")
}

fn zstd_err(code: usize) -> String {
    zstd_safe::get_error_name(code).to_string()
}

/// A trained or raw-content dictionary and the id that names it.
#[derive(Debug, Clone)]
pub struct Dictionary {
    bytes: Arc<[u8]>,
    id: u32,
}

impl Dictionary {
    /// Wrap dictionary bytes. A zstd-format dictionary keeps its own id; a
    /// raw-content dictionary gets a stable 32-bit FNV-1a id of its bytes.
    pub fn new(bytes: &[u8]) -> Result<Self> {
        if bytes.is_empty() {
            return Err(Error::invalid(
                "dictionary",
                "b''",
                "a dictionary must not be empty",
            ));
        }
        let id =
            zstd_safe::get_dict_id_from_dict(bytes).map_or_else(|| fnv1a(bytes), |id| id.get());
        Ok(Dictionary {
            bytes: bytes.into(),
            id,
        })
    }

    /// The id written into envelopes.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The dictionary bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5_u32, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

thread_local! {
    /// One compression and one decompression context per thread: creating a
    /// zstd context costs ~10 µs, reusing one is what makes small calls cheap.
    /// Levels and dictionaries are passed per call, so any codec can use them.
    static CCTX: RefCell<Option<Enc>> = const { RefCell::new(None) };
    static DCTX: RefCell<Option<DCtx<'static>>> = const { RefCell::new(None) };
}

/// Run `f` with this thread's context from `key`, made on first use. A
/// context that saw an error is dropped (zstd may have left it mid-frame).
/// Re-entrant or late (thread teardown) calls get a temporary context.
fn with_ctx<T, R>(
    key: &'static std::thread::LocalKey<RefCell<Option<T>>>,
    make: fn() -> Option<T>,
    f: impl FnOnce(&mut T) -> Result<R>,
) -> Result<R> {
    let oom = || Error::Compression("out of memory creating a zstd context".into());
    let mut f = Some(f);
    let mut run = |ctx: &mut T| match f.take() {
        Some(f) => f(ctx),
        None => Err(Error::Compression("context callback ran twice".into())),
    };
    let cached = key.try_with(|cell| {
        let Ok(mut slot) = cell.try_borrow_mut() else {
            return None;
        };
        if slot.is_none() {
            *slot = make();
        }
        let ctx = slot.as_mut()?;
        let r = run(ctx);
        if r.is_err() {
            *slot = None;
        }
        Some(r)
    });
    match cached {
        Ok(Some(r)) => r,
        _ => run(&mut make().ok_or_else(oom)?),
    }
}

/// Contexts parked between parallel batches, so the short-lived scoped
/// worker threads of `compress_many` reuse warm contexts instead of paying
/// ~10 µs plus fresh page faults for new ones on every call.
type ContextPair = (Option<Enc>, Option<DCtx<'static>>);
static SPARE: parking_lot::Mutex<Vec<ContextPair>> = parking_lot::Mutex::new(Vec::new());

/// Give this (worker) thread a parked pair of contexts, if there is one.
fn adopt_spare_contexts() {
    let Some((c, d)) = SPARE.lock().pop() else {
        return;
    };
    let _ = CCTX.try_with(|cell| cell.try_borrow_mut().map(|mut slot| *slot = c));
    let _ = DCTX.try_with(|cell| cell.try_borrow_mut().map(|mut slot| *slot = d));
}

/// Park this (worker) thread's contexts before it exits.
fn park_contexts() {
    let c = CCTX
        .try_with(|cell| cell.try_borrow_mut().ok().and_then(|mut s| s.take()))
        .ok()
        .flatten();
    let d = DCTX
        .try_with(|cell| cell.try_borrow_mut().ok().and_then(|mut s| s.take()))
        .ok()
        .flatten();
    let mut spare = SPARE.lock();
    if spare.len() < 64 && (c.is_some() || d.is_some()) {
        spare.push((c, d));
    }
}

fn with_cctx<R>(f: impl FnOnce(&mut CCtx<'static>) -> Result<R>) -> Result<R> {
    with_enc(|enc| f(&mut enc.cctx))
}

/// A thread's compression context and the scratch buffer small frames are
/// written to (one thread-local access serves both).
struct Enc {
    cctx: CCtx<'static>,
    scratch: Vec<u8>,
}

fn new_enc() -> Option<Enc> {
    CCtx::try_create().map(|cctx| Enc {
        cctx,
        scratch: Vec::new(),
    })
}

fn with_enc<R>(f: impl FnOnce(&mut Enc) -> Result<R>) -> Result<R> {
    with_ctx(&CCTX, new_enc, f)
}

fn with_dctx<R>(f: impl FnOnce(&mut DCtx<'static>) -> Result<R>) -> Result<R> {
    with_ctx(&DCTX, DCtx::try_create, f)
}

/// A dictionary digested for both directions.
struct Digested {
    dict: Dictionary,
    cdict: CDict<'static>,
    ddict: DDict<'static>,
}

/// A compression level and an optional dictionary.
///
/// `Codec` is `Send + Sync` and cheap: contexts are per thread, a dictionary
/// is digested once (into a zstd CDict and DDict) when the codec is made.
pub struct Codec {
    level: i32,
    dict: Option<Digested>,
}

impl Codec {
    /// A codec at `level`, optionally with a dictionary.
    pub fn new(level: i32, dict: Option<Dictionary>) -> Result<Self> {
        check_level(level)?;
        let dict = match dict {
            None => None,
            Some(dict) => {
                let bad = || {
                    Error::invalid(
                        "dictionary",
                        format!("<{} bytes>", dict.bytes().len()),
                        "zstd could not load it as a dictionary",
                    )
                };
                let cdict = CDict::try_create(dict.bytes(), level).ok_or_else(bad)?;
                let ddict = DDict::try_create(dict.bytes()).ok_or_else(bad)?;
                Some(Digested { dict, cdict, ddict })
            }
        };
        Ok(Codec { level, dict })
    }

    /// A dictionary-less codec (no allocation).
    pub fn plain(level: i32) -> Result<Self> {
        check_level(level)?;
        Ok(Codec { level, dict: None })
    }

    /// The compression level.
    pub fn level(&self) -> i32 {
        self.level
    }

    /// The dictionary, if any.
    pub fn dictionary(&self) -> Option<&Dictionary> {
        self.dict.as_ref().map(|d| &d.dict)
    }

    /// Compress `src` into `dst` (cleared first): one standard zstd frame.
    pub fn compress_into(&self, src: &[u8], dst: &mut Vec<u8>) -> Result<()> {
        dst.clear();
        dst.reserve(compress_bound(src.len()));
        with_cctx(|cctx| {
            let r = match &self.dict {
                None => cctx.compress(dst, src, self.level),
                Some(d) => cctx.compress_using_cdict(dst, src, &d.cdict),
            };
            r.map(drop)
                .map_err(|code| Error::Compression(zstd_err(code)))
        })
    }

    /// Compress `src` into this thread's scratch buffer and hand the frame to
    /// `f` (one thread-local access, no allocation): for callers that copy the
    /// frame out anyway, like the binding building a Python `bytes`. Meant for
    /// small inputs: the scratch buffer keeps its largest size.
    pub fn compress_with<R>(&self, src: &[u8], f: impl FnOnce(&[u8]) -> R) -> Result<R> {
        with_enc(|enc| {
            enc.scratch.clear();
            enc.scratch.reserve(compress_bound(src.len()));
            let r = match &self.dict {
                None => enc.cctx.compress(&mut enc.scratch, src, self.level),
                Some(d) => enc
                    .cctx
                    .compress_using_cdict(&mut enc.scratch, src, &d.cdict),
            };
            r.map_err(|code| Error::Compression(zstd_err(code)))?;
            Ok(f(&enc.scratch))
        })
    }

    /// Compress `src` into a new vector.
    pub fn compress(&self, src: &[u8]) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.compress_into(src, &mut out)?;
        Ok(out)
    }

    /// The exact decompressed size of `src` when every frame declares it.
    ///
    /// `Ok(None)` means at least one frame has no content size (decode by
    /// streaming). A declared size over `cap` fails here, before anything is
    /// allocated.
    pub fn declared_size(src: &[u8], cap: usize) -> Result<Option<usize>> {
        if src.is_empty() {
            return Err(diagnose(src));
        }
        match zstd_safe::find_decompressed_size(src) {
            Ok(Some(n)) => match usize::try_from(n) {
                Ok(size) if size <= cap => {
                    // The header's claim is what gets allocated: a claim the
                    // frames cannot hold is refused before any allocation.
                    let most = (src.len() as u64).saturating_mul(MAX_BLOCK_OUTPUT);
                    if n > most {
                        return Err(Error::Decompression(format!(
                            "corrupt zstd input: the header declares {n} bytes, more than {} input bytes can hold (at most {most})",
                            src.len()
                        )));
                    }
                    Ok(Some(size))
                }
                _ => Err(Error::OutputTooLarge {
                    size: SizeHint::Exact(n),
                    limit: cap,
                }),
            },
            Ok(None) => Ok(None),
            Err(_) => Err(diagnose(src)),
        }
    }

    /// Decompress `src` into `out`, which must be exactly the declared size.
    pub fn decompress_exact(&self, src: &[u8], out: &mut [u8]) -> Result<()> {
        let expected = out.len();
        with_dctx(|dctx| {
            let r = match &self.dict {
                None => dctx.decompress(out, src),
                Some(d) => dctx.decompress_using_ddict(out, src, &d.ddict),
            };
            match r {
                Ok(n) if n == expected => Ok(()),
                Ok(n) => Err(Error::Decompression(format!(
                    "corrupt zstd input: the header declares {expected} bytes but the frames hold {n}"
                ))),
                Err(code) => Err(decode_error(src, code)),
            }
        })
    }

    /// Decompress `src` into a new vector, never producing more than `cap`
    /// bytes (frames without a declared size are streamed under the cap).
    pub fn decompress(&self, src: &[u8], cap: usize) -> Result<Vec<u8>> {
        match Self::declared_size(src, cap)? {
            Some(n) => {
                let mut out = Vec::new();
                out.try_reserve_exact(n)
                    .map_err(|_| output_alloc_error(n))?;
                out.resize(n, 0);
                self.decompress_exact(src, &mut out)?;
                Ok(out)
            }
            None => self.decompress_streaming(src, cap),
        }
    }

    /// Streaming decode for frames whose header has no content size.
    pub fn decompress_streaming(&self, src: &[u8], cap: usize) -> Result<Vec<u8>> {
        Ok(self.decompress_streaming_chunks(src, cap)?.concat())
    }

    /// Streaming decode into chunks, so the caller can copy them once into
    /// its own buffer (the binding builds a Python `bytes` from them).
    pub fn decompress_streaming_chunks(&self, src: &[u8], cap: usize) -> Result<Vec<Vec<u8>>> {
        if src.is_empty() {
            return Err(diagnose(src));
        }
        match &self.dict {
            None => with_dctx(|dctx| {
                dctx.reset(ResetDirective::SessionAndParameters)
                    .map_err(|code| Error::Decompression(zstd_err(code)))?;
                stream_decode(dctx, src, cap)
            }),
            // Rare (our own frames declare their size): a temporary context
            // that borrows the digested dictionary.
            Some(d) => {
                let mut dctx = DCtx::try_create().ok_or_else(|| {
                    Error::Decompression("out of memory creating a zstd context".into())
                })?;
                dctx.ref_ddict(&d.ddict)
                    .map_err(|code| Error::Decompression(zstd_err(code)))?;
                stream_decode(&mut dctx, src, cap)
            }
        }
    }

    /// Compress every input; spread over `threads` when the batch is large.
    pub fn compress_many(&self, srcs: &[&[u8]], threads: usize) -> Result<Vec<Vec<u8>>> {
        self.map_parallel(srcs, threads, |codec, src| codec.compress(src))
    }

    /// Decompress every input under `cap`; spread over `threads` when large.
    pub fn decompress_many(
        &self,
        srcs: &[&[u8]],
        cap: usize,
        threads: usize,
    ) -> Result<Vec<Vec<u8>>> {
        self.map_parallel(srcs, threads, |codec, src| codec.decompress(src, cap))
    }

    fn map_parallel<F>(&self, srcs: &[&[u8]], threads: usize, f: F) -> Result<Vec<Vec<u8>>>
    where
        F: Fn(&Codec, &[u8]) -> Result<Vec<u8>> + Sync,
    {
        let total: usize = srcs.iter().map(|s| s.len()).sum();
        let threads = threads.clamp(1, srcs.len().max(1));
        // Errors name the item: "item 3: truncated zstd input ...".
        let run = |base: usize, chunk: &[&[u8]]| -> Result<Vec<Vec<u8>>> {
            chunk
                .iter()
                .enumerate()
                .map(|(i, s)| f(self, s).map_err(|e| e.at_item(base + i)))
                .collect()
        };
        if threads == 1 || total < PARALLEL_MIN_BYTES {
            return run(0, srcs);
        }
        // Blocks of similar byte counts, claimed one at a time by whichever
        // thread is free: a slower (or preempted) core does less of the work
        // instead of holding up the whole batch.
        let blocks = split_by_bytes(srcs, total, threads * BLOCKS_PER_THREAD);
        let bases: Vec<usize> = blocks
            .iter()
            .scan(0, |at, c| {
                let base = *at;
                *at += c.len();
                Some(base)
            })
            .collect();
        let next = AtomicUsize::new(0);
        let work = || {
            let mut done = Vec::new();
            loop {
                let b = next.fetch_add(1, Relaxed);
                let (Some(block), Some(&base)) = (blocks.get(b), bases.get(b)) else {
                    break;
                };
                done.push((b, run(base, block)));
            }
            done
        };
        let work = &work;
        let mut parts = crossbeam_utils::thread::scope(|scope| {
            let handles: Vec<_> = (1..threads)
                .map(|_| {
                    scope.spawn(move |_| {
                        adopt_spare_contexts();
                        let r = work();
                        park_contexts();
                        r
                    })
                })
                .collect();
            // The calling thread claims blocks too.
            let mut parts = work();
            for h in handles {
                match h.join() {
                    Ok(p) => parts.extend(p),
                    Err(_) => parts.push((
                        usize::MAX,
                        Err(Error::Compression("a worker thread panicked".into())),
                    )),
                }
            }
            parts
        })
        .map_err(|_| Error::Compression("a worker thread panicked".into()))?;
        // Block order is input order; the first failing item is reported.
        parts.sort_unstable_by_key(|(b, _)| *b);
        let mut out = Vec::with_capacity(srcs.len());
        for (_, part) in parts {
            out.extend(part?);
        }
        Ok(out)
    }
}

/// Largest chunk the streaming decoder fills at once.
const STREAM_CHUNK_MAX: usize = 8 << 20;

/// Decode by streaming into a list of chunks (never one growing buffer, so
/// no reallocation copies: peak memory stays at the output plus one chunk).
fn stream_decode(dctx: &mut DCtx<'_>, src: &[u8], cap: usize) -> Result<Vec<Vec<u8>>> {
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    let mut total = 0usize;
    let mut next = src
        .len()
        .saturating_mul(4)
        .clamp(64 << 10, STREAM_CHUNK_MAX);
    let mut input = InBuffer::around(src);
    let mut frame_open = false;
    loop {
        // One byte over the cap proves the overflow, so never ask for more.
        let room = cap.saturating_add(1).saturating_sub(total);
        let mut chunk: Vec<u8> = Vec::with_capacity(next.min(room).max(1));
        next = next.saturating_mul(2).min(STREAM_CHUNK_MAX);
        let mut output = OutBuffer::around(&mut chunk);
        while output.pos() < output.capacity() {
            let before = (input.pos(), output.pos());
            let hint = dctx
                .decompress_stream(&mut output, &mut input)
                .map_err(|code| decode_error(src, code))?;
            frame_open = hint != 0;
            if input.pos() == src.len() && output.pos() < output.capacity() {
                break;
            }
            if before == (input.pos(), output.pos()) {
                break; // no progress possible (input exhausted inside a frame)
            }
        }
        let filled = output.pos();
        total += filled;
        let full = filled == chunk.capacity();
        if filled > 0 {
            chunks.push(chunk);
        }
        if total > cap {
            return Err(Error::OutputTooLarge {
                size: SizeHint::AtLeast(cap as u64),
                limit: cap,
            });
        }
        if !full || (input.pos() == src.len() && !frame_open) {
            break;
        }
    }
    if frame_open {
        return Err(Error::Decompression(format!(
            "truncated zstd input: the data ends inside a frame after {} input bytes",
            src.len()
        )));
    }
    Ok(chunks)
}

/// Split `srcs` into at most `parts` contiguous runs of roughly equal bytes.
fn split_by_bytes<'a, 'b>(srcs: &'a [&'b [u8]], total: usize, parts: usize) -> Vec<&'a [&'b [u8]]> {
    let target = total.div_ceil(parts).max(1);
    let mut out = Vec::with_capacity(parts);
    let mut start = 0;
    let mut acc = 0;
    for (i, s) in srcs.iter().enumerate() {
        acc += s.len();
        if acc >= target && out.len() + 1 < parts {
            out.push(&srcs[start..=i]);
            start = i + 1;
            acc = 0;
        }
    }
    if start < srcs.len() {
        out.push(&srcs[start..]);
    }
    out
}

/// The error for an output buffer of the declared `size` that could not be
/// allocated (the cap allowed it, the memory did not).
pub fn output_alloc_error(size: usize) -> Error {
    Error::Decompression(format!(
        "cannot allocate the {size} bytes the input declares (lower max_output_size to refuse such input at once)"
    ))
}

/// Explain why `src` is not a sequence of complete zstd frames.
fn diagnose(src: &[u8]) -> Error {
    if src.is_empty() {
        return Error::Decompression("empty input is not a zstd frame".into());
    }
    let mut rest = src;
    while !rest.is_empty() {
        match zstd_safe::find_frame_compressed_size(rest) {
            Ok(n) if n > 0 && n <= rest.len() => rest = &rest[n..],
            Ok(_) => break,
            Err(code) => {
                let name = zstd_err(code);
                let offset = src.len() - rest.len();
                let magic_ok = rest.len() >= 4
                    && (rest[..4] == [0x28, 0xb5, 0x2f, 0xfd]
                        || (rest[0] & 0xf0 == 0x50 && rest[1..4] == [0x2a, 0x4d, 0x18]));
                return Error::Decompression(if !magic_ok && rest.len() >= 4 {
                    format!(
                        "not a zstd frame at byte {offset}: unknown magic number {:02x?} ({name})",
                        &rest[..4]
                    )
                } else if name.contains("Src size") || rest.len() < 4 {
                    format!(
                        "truncated zstd input: the frame at byte {offset} is cut short ({name})"
                    )
                } else {
                    format!("corrupt zstd input at byte {offset}: {name}")
                });
            }
        }
    }
    Error::Decompression("corrupt zstd input: frame headers could not be read".into())
}

fn decode_error(src: &[u8], code: usize) -> Error {
    match diagnose(src) {
        Error::Decompression(msg) if msg.starts_with("corrupt zstd input: frame headers") => {
            Error::Decompression(format!("corrupt zstd input: {}", zstd_err(code)))
        }
        other => other,
    }
}

/// Smallest dictionary zstd's trainer makes.
pub const MIN_DICTIONARY_SIZE: usize = 256;
/// Largest dictionary `train_dictionary` makes (1 GiB: zstd's trainer
/// counts in 32 bits, and useful dictionaries are 16-128 KiB). The size is
/// reserved up front, so it is checked before anything is allocated.
pub const MAX_DICTIONARY_SIZE: usize = 1 << 30;

/// Train a dictionary of at most `size` bytes from `samples`.
pub fn train_dictionary(samples: &[&[u8]], size: usize) -> Result<Vec<u8>> {
    if !(MIN_DICTIONARY_SIZE..=MAX_DICTIONARY_SIZE).contains(&size) {
        return Err(Error::invalid(
            "size",
            size,
            format!("must be between {MIN_DICTIONARY_SIZE} and {MAX_DICTIONARY_SIZE} bytes"),
        ));
    }
    if samples.len() < 8 {
        return Err(Error::invalid(
            "samples",
            format!("<{} samples>", samples.len()),
            "zstd's trainer needs at least 8 samples (hundreds work best)",
        ));
    }
    let sizes: Vec<usize> = samples.iter().map(|s| s.len()).collect();
    let joined: Vec<u8> = samples.concat();
    let mut dict = Vec::new();
    dict.try_reserve_exact(size).map_err(|_| {
        Error::Dictionary(format!("cannot allocate a {size}-byte dictionary buffer"))
    })?;
    zstd_safe::train_from_buffer(&mut dict, &joined, &sizes).map_err(|code| {
        Error::Dictionary(format!(
            "{} (give more, or more varied, samples)",
            zstd_err(code)
        ))
    })?;
    Ok(dict)
}

#[cfg(test)]
mod tests;
