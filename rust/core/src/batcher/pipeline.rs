//! A framing thread for message batches: it takes batches from a
//! [`Window`] of messages, frames (and compresses) them, and hands finished
//! frames to the consumer through a bounded channel.
//!
//! The framing thread never touches Python, so compression runs on another
//! core while producers hold the interpreter; the consumer only needs the
//! interpreter to call the sink.

use std::collections::BTreeMap;
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::{FrameEncoder, Reason, Window, WindowNext};
use crate::error::{Error, Result};

/// One finished frame.
#[derive(Debug)]
pub struct Framed {
    /// The frame bytes, or why framing failed.
    pub frame: Result<Vec<u8>>,
    /// Messages in it.
    pub count: usize,
    /// Why its batch was dispatched.
    pub reason: Reason,
    seq: u64,
}

/// What [`FramePipeline::recv`] returns.
#[derive(Debug)]
pub enum Received {
    /// One or more frames, in order.
    Frames(Vec<Framed>),
    /// Nothing within the timeout.
    Timeout,
    /// The queue is closed and every frame was handed out.
    Finished,
}

/// The receiving end: frames come in from several framers out of order and
/// leave in batch order.
struct Reorder {
    rx: Receiver<Framed>,
    next: u64,
    early: BTreeMap<u64, Framed>,
}

impl Reorder {
    fn pop_ready(&mut self, out: &mut Vec<Framed>, max: usize) {
        while out.len() < max {
            match self.early.remove(&self.next) {
                Some(f) => {
                    self.next += 1;
                    out.push(f);
                }
                None => break,
            }
        }
    }

    fn accept(&mut self, f: Framed) {
        self.early.insert(f.seq, f);
    }
}

/// The framing threads and the channel of their frames.
pub struct FramePipeline {
    queue: Arc<Window>,
    rx: Mutex<Option<Reorder>>,
    workers: Mutex<Vec<JoinHandle<()>>>,
}

impl FramePipeline {
    /// Start `framers` threads framing batches of `queue` with `enc`; at most
    /// about `depth` frames wait for the consumer (then the framers wait, and
    /// the queue fills). Frames are handed out in batch order. Give the queue
    /// `max_concurrency >= framers`.
    pub fn start(
        queue: Arc<Window>,
        enc: FrameEncoder,
        depth: usize,
        framers: usize,
    ) -> Result<Self> {
        let (tx, rx) = sync_channel::<Framed>(depth.max(1));
        let enc = Arc::new(enc);
        let mut workers = Vec::new();
        for i in 0..framers.max(1) {
            let q = Arc::clone(&queue);
            let enc = Arc::clone(&enc);
            let tx = tx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("overdrive-framer-{i}"))
                .spawn(move || frame_loop(&q, &enc, &tx));
            match spawned {
                Ok(h) => workers.push(h),
                Err(e) => {
                    queue.close();
                    return Err(Error::Frame(format!("cannot start a framing thread: {e}")));
                }
            }
        }
        Ok(FramePipeline {
            queue,
            rx: Mutex::new(Some(Reorder {
                rx,
                next: 1,
                early: BTreeMap::new(),
            })),
            workers: Mutex::new(workers),
        })
    }

    /// The queue feeding the framers.
    pub fn queue(&self) -> &Window {
        &self.queue
    }

    /// Wait up to `timeout` (None: forever) for the next frame in order,
    /// then take up to `max` frames that are ready, in order.
    pub fn recv(&self, timeout: Option<Duration>, max: usize) -> Received {
        let max = max.max(1);
        let mut guard = self.rx.lock();
        let Some(r) = guard.as_mut() else {
            return Received::Finished;
        };
        let until = timeout.map(|t| Instant::now() + t);
        let mut out = Vec::new();
        loop {
            r.pop_ready(&mut out, max);
            // Drain what has already arrived without waiting.
            while out.len() < max {
                match r.rx.try_recv() {
                    Ok(f) => {
                        r.accept(f);
                        r.pop_ready(&mut out, max);
                    }
                    Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                }
            }
            if !out.is_empty() {
                return Received::Frames(out);
            }
            let got = match until {
                None => r.rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
                Some(u) => {
                    r.rx.recv_timeout(u.saturating_duration_since(Instant::now()))
                }
            };
            match got {
                Ok(f) => r.accept(f),
                Err(RecvTimeoutError::Timeout) => return Received::Timeout,
                Err(RecvTimeoutError::Disconnected) => {
                    // Every framer is done: hand out what is left, in order.
                    let rest: Vec<Framed> = std::mem::take(&mut r.early).into_values().collect();
                    return if rest.is_empty() {
                        Received::Finished
                    } else {
                        r.next = rest.last().map_or(r.next, |f| f.seq + 1);
                        Received::Frames(rest)
                    };
                }
            }
        }
    }
}

fn frame_loop(q: &Window, enc: &FrameEncoder, tx: &SyncSender<Framed>) {
    let mut next = q.next();
    loop {
        let b = match next {
            WindowNext::Batch(b) => b,
            WindowNext::Closed => return,
        };
        let start = Instant::now();
        let count = b.body.count;
        let frame = enc.encode_body(&b.body.bytes, count);
        drop(b.body);
        let elapsed = start.elapsed();
        let out = Framed {
            frame,
            count,
            reason: b.reason,
            seq: b.seq,
        };
        if tx.send(out).is_err() {
            q.done(elapsed);
            return; // the consumer is gone
        }
        // Free the framing slot and take the next batch under one lock
        // acquisition (producers contend for that lock).
        next = q.done_then_next(elapsed);
    }
}

impl Drop for FramePipeline {
    fn drop(&mut self) {
        self.queue.close();
        // Drop the receiver first so a framer blocked on a full channel exits.
        drop(self.rx.get_mut().take());
        for h in self.workers.get_mut().drain(..) {
            let _ = h.join();
        }
    }
}
