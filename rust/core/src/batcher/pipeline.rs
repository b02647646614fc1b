//! A framing thread for message batches: it takes batches from a [`Queue`]
//! of messages, frames (and compresses) them, and hands finished frames to
//! the consumer through a bounded channel.
//!
//! The framing thread never touches Python, so compression runs on another
//! core while producers hold the interpreter; the consumer only needs the
//! interpreter to call the sink.

use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::{FrameEncoder, Next, Queue, Reason};
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

/// The framing thread and the channel of its frames.
pub struct FramePipeline {
    queue: Arc<Queue<Vec<u8>>>,
    rx: Mutex<Option<Receiver<Framed>>>,
    worker: Mutex<Option<JoinHandle<()>>>,
}

impl FramePipeline {
    /// Start framing batches of `queue` with `enc`; at most `depth` frames
    /// wait for the consumer (then the framer waits, and the queue fills).
    pub fn start(queue: Arc<Queue<Vec<u8>>>, enc: FrameEncoder, depth: usize) -> Result<Self> {
        let (tx, rx) = sync_channel::<Framed>(depth.max(1));
        let q = Arc::clone(&queue);
        let worker = std::thread::Builder::new()
            .name("overdrive-framer".into())
            .spawn(move || loop {
                match q.next(None) {
                    Next::Batch(b, _) => {
                        let start = Instant::now();
                        let count = b.items.len();
                        let frame = enc.encode(&b.items);
                        drop(b.items);
                        // The framing slot is free again: the next batch may form.
                        q.done(count, start.elapsed(), frame.is_ok(), 0, 0);
                        let out = Framed {
                            frame,
                            count,
                            reason: b.reason,
                        };
                        if tx.send(out).is_err() {
                            return; // the consumer is gone
                        }
                    }
                    Next::Closed => return,
                    _ => {}
                }
            })
            .map_err(|e| Error::Frame(format!("cannot start the framing thread: {e}")))?;
        Ok(FramePipeline {
            queue,
            rx: Mutex::new(Some(rx)),
            worker: Mutex::new(Some(worker)),
        })
    }

    /// The queue feeding the framer.
    pub fn queue(&self) -> &Queue<Vec<u8>> {
        &self.queue
    }

    /// Wait up to `timeout` (None: forever) for a frame, then take up to
    /// `max` frames that are ready, in order.
    pub fn recv(&self, timeout: Option<Duration>, max: usize) -> Received {
        let guard = self.rx.lock();
        let Some(rx) = guard.as_ref() else {
            return Received::Finished;
        };
        let first = match timeout {
            None => match rx.recv() {
                Ok(f) => f,
                Err(_) => return Received::Finished,
            },
            Some(t) => match rx.recv_timeout(t) {
                Ok(f) => f,
                Err(RecvTimeoutError::Timeout) => return Received::Timeout,
                Err(RecvTimeoutError::Disconnected) => return Received::Finished,
            },
        };
        let mut out = vec![first];
        while out.len() < max.max(1) {
            match rx.try_recv() {
                Ok(f) => out.push(f),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        Received::Frames(out)
    }
}

impl Drop for FramePipeline {
    fn drop(&mut self) {
        self.queue.close();
        // Drop the receiver first so a framer blocked on a full channel exits.
        drop(self.rx.get_mut().take());
        if let Some(h) = self.worker.get_mut().take() {
            let _ = h.join();
        }
    }
}
