use super::*;
use proptest::prelude::*;
use std::sync::Arc;

fn ok<T>(r: Result<T>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("unexpected error: {e}"),
    }
}

fn cfg(max_batch_size: usize) -> Config {
    Config {
        max_batch_size,
        ..Config::default()
    }
}

fn batch<T: std::fmt::Debug>(f: Formation<T>) -> Batch<T> {
    match f {
        Formation::Batch(b) => b,
        Formation::Wait(w) => panic!("expected a batch, got Wait({w:?})"),
    }
}

#[test]
fn idle_dispatches_at_once() {
    let c = cfg(8);
    let mut s = State::new();
    let t0 = Instant::now();
    s.push(1, Meta::default(), t0);
    let b = batch(s.form(t0, &c, 8, c.max_wait, 0));
    assert_eq!(b.items, vec![1]);
    assert_eq!(b.reason, Reason::Idle);
}

#[test]
fn busy_grows_until_size_or_oldest_waited() {
    let c = Config {
        max_concurrency: 2,
        ..cfg(3)
    };
    let mut s = State::new();
    let t0 = Instant::now();
    s.push(1, Meta::default(), t0);
    s.push(2, Meta::default(), t0 + Duration::from_millis(1));
    // One batch running, a slot free: wait until the OLDEST item's max_wait.
    match s.form(t0 + Duration::from_millis(2), &c, 3, c.max_wait, 1) {
        Formation::Wait(Some(w)) => assert_eq!(w, t0 + c.max_wait),
        other => panic!("{other:?}"),
    }
    let b = batch(s.form(t0 + c.max_wait, &c, 3, c.max_wait, 1));
    assert_eq!((b.items, b.reason), (vec![1, 2], Reason::Time));
    for i in 0..4 {
        s.push(i, Meta::default(), t0);
    }
    let b = batch(s.form(t0, &c, 3, c.max_wait, 1));
    assert_eq!((b.items.len(), b.reason), (3, Reason::Size));
}

#[test]
fn no_slot_no_batch() {
    let c = cfg(4);
    let mut s = State::new();
    let t0 = Instant::now();
    s.push(1, Meta::default(), t0);
    assert!(matches!(
        s.form(t0 + Duration::from_secs(1), &c, 4, c.max_wait, 1),
        Formation::Wait(None)
    ));
}

#[test]
fn oversize_item_runs_alone() {
    let c = Config {
        max_batch_weight: Some(10),
        ..cfg(8)
    };
    let mut s = State::new();
    let t0 = Instant::now();
    for (v, w) in [(1, 4), (2, 4), (3, 50), (4, 1)] {
        s.push(
            v,
            Meta {
                weight: w,
                ..Meta::default()
            },
            t0,
        );
    }
    let b = batch(s.form(t0, &c, 8, c.max_wait, 0));
    assert_eq!((b.items, b.reason), (vec![1, 2], Reason::Weight));
    let b = batch(s.form(t0, &c, 8, c.max_wait, 0));
    assert_eq!(b.items, vec![3]);
    let b = batch(s.form(t0, &c, 8, c.max_wait, 0));
    assert_eq!(b.items, vec![4]);
}

#[test]
fn aging_lets_low_priority_through() {
    let c = Config {
        aging: Duration::from_millis(10),
        ..cfg(1)
    };
    let mut s = State::new();
    let t0 = Instant::now();
    s.push(
        "low",
        Meta {
            priority: 0,
            ..Meta::default()
        },
        t0,
    );
    s.push(
        "high",
        Meta {
            priority: 5,
            ..Meta::default()
        },
        t0 + Duration::from_millis(100),
    );
    // At t0+100ms low has aged 10 levels: it goes first.
    let b = batch(s.form(t0 + Duration::from_millis(100), &c, 1, c.max_wait, 0));
    assert_eq!(b.items, vec!["low"]);
}

#[test]
fn expired_items_never_form() {
    let c = cfg(8);
    let mut s = State::new();
    let t0 = Instant::now();
    s.push(
        1,
        Meta {
            deadline: Some(t0 + Duration::from_millis(1)),
            ..Meta::default()
        },
        t0,
    );
    s.push(2, Meta::default(), t0);
    let later = t0 + Duration::from_millis(2);
    assert_eq!(s.take_expired(later), vec![1]);
    let b = batch(s.form(later, &c, 8, c.max_wait, 0));
    assert_eq!(b.items, vec![2]);
}

#[test]
fn queue_policies() {
    let q = ok(Queue::new(Config {
        max_queue: 2,
        on_full: OnFull::Reject,
        ..cfg(4)
    }));
    assert!(q.push(1, Meta::default(), false, None).is_ok());
    assert!(q.push(2, Meta::default(), false, None).is_ok());
    assert!(matches!(
        q.push(3, Meta::default(), false, None),
        Err(PushError::Failed(3, Error::QueueFull(_)))
    ));
    let q = ok(Queue::new(Config {
        max_queue: 2,
        on_full: OnFull::DropOldest,
        ..cfg(4)
    }));
    for i in 0..3 {
        let r = q.push(i, Meta::default(), false, None);
        let dropped = match r {
            Ok(p) => p.dropped,
            Err(_) => panic!("push failed"),
        };
        assert_eq!(dropped, if i == 2 { Some(0) } else { None });
    }
    let q = ok(Queue::new(Config {
        max_queue: 1,
        ..cfg(4)
    }));
    assert!(q.push(1, Meta::default(), false, None).is_ok());
    assert!(matches!(
        q.push(2, Meta::default(), false, None),
        Err(PushError::WouldBlock(2))
    ));
    assert!(matches!(
        q.push(2, Meta::default(), true, Some(Duration::from_millis(5))),
        Err(PushError::Failed(2, Error::QueueFull(_)))
    ));
    q.close();
    assert!(matches!(
        q.push(3, Meta::default(), false, None),
        Err(PushError::Failed(3, Error::Closed(_)))
    ));
    match q.next(None) {
        Next::Batch(b, _) => assert_eq!(b.items, vec![1]),
        other => panic!("{other:?}"),
    }
    q.done(1, Duration::from_micros(5), true, 1, 0);
    assert!(matches!(q.next(None), Next::Closed));
}

#[test]
fn threads_count_exactly() {
    let q = Arc::new(ok(Queue::new(Config {
        max_queue: 64,
        ..cfg(16)
    })));
    let producers: Vec<_> = (0..4u64)
        .map(|p| {
            let q = Arc::clone(&q);
            std::thread::spawn(move || {
                for i in 0..5000u64 {
                    if q.push(p * 1_000_000 + i, Meta::default(), true, None)
                        .is_err()
                    {
                        return false;
                    }
                }
                true
            })
        })
        .collect();
    let consumer = {
        let q = Arc::clone(&q);
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            loop {
                match q.next(Some(Duration::from_secs(10))) {
                    Next::Batch(b, _) => {
                        assert!(b.items.len() <= 16);
                        let n = b.items.len();
                        seen.extend(b.items);
                        q.done(n, Duration::from_micros(1), true, n as u64, 0);
                    }
                    Next::Closed | Next::Timeout => return seen,
                    _ => {}
                }
            }
        })
    };
    for p in producers {
        assert!(p.join().unwrap_or(false));
    }
    q.close();
    let mut seen = consumer.join().unwrap_or_default();
    assert_eq!(seen.len(), 20_000);
    // Per producer, FIFO order is kept.
    for p in 0..4u64 {
        let mine: Vec<u64> = seen
            .iter()
            .copied()
            .filter(|v| v / 1_000_000 == p)
            .collect();
        assert!(mine.windows(2).all(|w| w[0] < w[1]));
    }
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), 20_000);
    assert_eq!(q.snapshot().stats.completed, 20_000);
}

#[test]
fn model_learns_a_plus_bn() {
    let mut m = Model::new(64);
    for n in [1usize, 8, 16, 32, 64, 4] {
        m.observe(n, Duration::from_secs_f64(0.002 + 0.0001 * n as f64), true);
    }
    assert!((m.a() - 0.002).abs() < 1e-6, "{}", m.a());
    assert!((m.b() - 0.0001).abs() < 1e-7, "{}", m.b());
    // 2 ms + 0.1 ms * n <= 4.05 ms -> n = 20
    assert_eq!(m.choose(Some(Duration::from_micros(4050))), 20);
    m.observe(8, Duration::from_millis(3), false);
    assert_eq!(m.aimd_cap(), 32);
}

#[test]
fn frame_round_trip_and_corruption() {
    let msgs: Vec<Vec<u8>> = (0..50)
        .map(|i| format!("{{\"id\":{i},\"text\":\"hello world\"}}").into_bytes())
        .collect();
    let enc = ok(FrameEncoder::new(3, 64));
    let frame = ok(enc.encode(&msgs));
    assert_eq!(frame[5] & 1, 1, "compressed");
    let (body, spans) = ok(decode_frame(&frame, 1 << 20));
    let back: Vec<Vec<u8>> = spans
        .iter()
        .map(|&(s, n)| body[s..s + n].to_vec())
        .collect();
    assert_eq!(back, msgs);
    assert!(decode_frame(&frame[..frame.len() - 1], 1 << 20).is_err());
    assert!(decode_frame(b"XXXXXXXXXXXXXXXXXXXX", 1 << 20).is_err());
    assert!(decode_frame(&frame, 10).is_err());
}

proptest! {
    #[test]
    fn frames_round_trip(
        msgs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..40),
        threshold in 0usize..4096,
    ) {
        let enc = ok(FrameEncoder::new(1, threshold));
        let frame = ok(enc.encode(&msgs));
        let (body, spans) = ok(decode_frame(&frame, 1 << 24));
        let back: Vec<Vec<u8>> = spans.iter().map(|&(s, n)| body[s..s + n].to_vec()).collect();
        prop_assert_eq!(back, msgs);
    }

    #[test]
    fn formation_loses_nothing_and_keeps_rules(
        items in proptest::collection::vec((0i32..4, 0u64..3, 1u64..12), 1..200),
        cap in 1usize..20,
        max_weight in proptest::option::of(1u64..30),
    ) {
        let c = Config { max_batch_weight: max_weight, ..cfg(cap) };
        let mut s = State::new();
        let t0 = Instant::now();
        for (i, &(priority, key, weight)) in items.iter().enumerate() {
            s.push(i, Meta { priority, key, weight, deadline: None }, t0);
        }
        let mut seen = vec![0u32; items.len()];
        let mut guard = 0;
        while !s.is_empty() {
            guard += 1;
            prop_assert!(guard <= items.len() + 1);
            let b = batch(s.form(t0, &c, cap, c.max_wait, 0));
            prop_assert!(!b.items.is_empty() && b.items.len() <= cap);
            prop_assert!(b.items.iter().all(|&i| items[i].1 == b.key), "keys never mix");
            prop_assert!(b.priorities.windows(2).all(|w| w[0] >= w[1]), "priority order");
            if let Some(w) = max_weight {
                prop_assert!(b.items.len() == 1 || b.weight <= w);
            }
            for i in b.items {
                seen[i] += 1;
            }
        }
        prop_assert!(seen.iter().all(|&n| n == 1));
    }
}

#[test]
fn pipeline_hands_out_frames_in_order_from_two_framers() {
    let q = Arc::new(ok(Window::new(Config {
        max_concurrency: 2,
        max_queue: 100_000,
        ..cfg(7)
    })));
    let enc = ok(FrameEncoder::new(1, 64));
    let p = ok(FramePipeline::start(Arc::clone(&q), enc, 4, 2));
    let consumer = std::thread::spawn(move || {
        let mut got: Vec<Vec<u8>> = Vec::new();
        loop {
            match p.recv(Some(Duration::from_secs(10)), 16) {
                Received::Frames(frames) => {
                    for f in frames {
                        let frame = ok(f.frame);
                        let (body, spans) = ok(decode_frame(&frame, 1 << 20));
                        assert!(spans.len() <= 7);
                        got.extend(spans.iter().map(|&(s, n)| body[s..s + n].to_vec()));
                    }
                }
                Received::Finished | Received::Timeout => return got,
            }
        }
    });
    let sent: Vec<Vec<u8>> = (0..5000u32)
        .map(|i| format!("message number {i}").into_bytes())
        .collect();
    for m in &sent {
        assert!(q.push(m, true, None).is_ok());
    }
    q.close();
    let got = consumer.join().unwrap_or_default();
    assert_eq!(got, sent);
}

fn window_batch(n: WindowNext) -> WindowBatch {
    match n {
        WindowNext::Batch(b) => b,
        WindowNext::Closed => panic!("expected a batch"),
    }
}

fn messages_of(b: &WindowBatch) -> Vec<Vec<u8>> {
    let frame =
        ok(FrameEncoder::new(1, usize::MAX)
            .and_then(|e| e.encode_body(&b.body.bytes, b.body.count)));
    let (body, spans) = ok(decode_frame(&frame, 1 << 20));
    spans
        .iter()
        .map(|&(s, n)| body[s..s + n].to_vec())
        .collect()
}

#[test]
fn window_seals_by_size_weight_flush_and_close_in_order() {
    let w = ok(Window::new(Config {
        max_batch_weight: Some(10),
        max_wait: Duration::from_secs(3600),
        ..cfg(3)
    }));
    for m in [
        &b"a"[..],
        b"b",
        b"c",
        b"dddd",
        b"eeeeeeeeeeee",
        b"ff",
        b"gg",
    ] {
        assert!(w.push(m, false, None).is_ok());
    }
    w.flush();
    assert!(w.push(b"h", false, None).is_ok());
    w.close();
    assert!(matches!(
        w.push(b"x", false, None),
        Err(PushError::Failed((), Error::Closed(_)))
    ));
    let mut got = Vec::new();
    while let WindowNext::Batch(b) = w.next() {
        got.push((messages_of(&b), b.reason, b.seq));
        w.done(Duration::ZERO);
    }
    let v = |xs: &[&[u8]]| xs.iter().map(|x| x.to_vec()).collect::<Vec<_>>();
    assert_eq!(
        got,
        vec![
            (v(&[b"a", b"b", b"c"]), Reason::Size, 1),
            // "eeee..." (12 bytes) would pass the 10-byte limit: it goes alone.
            (v(&[b"dddd"]), Reason::Weight, 2),
            (v(&[b"eeeeeeeeeeee"]), Reason::Weight, 3),
            (v(&[b"ff", b"gg"]), Reason::Flush, 4),
            (v(&[b"h"]), Reason::Close, 5),
        ]
    );
    let s = w.snapshot();
    assert_eq!(
        (s.stats.submitted, s.stats.batches, s.queue_depth),
        (8, 5, 0)
    );
}

#[test]
fn window_full_policies() {
    let mk = |on_full| {
        ok(Window::new(Config {
            max_queue: 2,
            on_full,
            max_wait: Duration::from_secs(3600),
            ..cfg(10)
        }))
    };
    let w = mk(OnFull::DropOldest);
    for m in [&b"1"[..], b"2"] {
        assert!(matches!(w.push(m, false, None), Ok(None)));
    }
    assert!(matches!(w.push(b"3", false, None), Ok(Some(d)) if d == b"1"));
    w.close();
    assert_eq!(
        messages_of(&window_batch(w.next())),
        vec![b"2".to_vec(), b"3".to_vec()]
    );
    let w = mk(OnFull::Reject);
    assert!(w.push(b"1", false, None).is_ok() && w.push(b"2", false, None).is_ok());
    assert!(matches!(
        w.push(b"3", false, None),
        Err(PushError::Failed((), Error::QueueFull(_)))
    ));
    let w = mk(OnFull::Block);
    assert!(w.push(b"1", false, None).is_ok() && w.push(b"2", false, None).is_ok());
    assert!(matches!(
        w.push(b"3", false, None),
        Err(PushError::WouldBlock(()))
    ));
    let r = w.push(b"3", true, Some(Duration::from_millis(20)));
    assert!(matches!(r, Err(PushError::Failed((), Error::QueueFull(_)))));
}

#[test]
fn window_sends_a_partial_batch_after_max_wait() {
    let w = ok(Window::new(Config {
        max_wait: Duration::from_millis(5),
        ..cfg(100)
    }));
    assert!(w.push(b"only", false, None).is_ok());
    let b = window_batch(w.next());
    assert_eq!((b.reason, b.body.count), (Reason::Time, 1));
}

proptest! {
    // Formation scans every lane, so a case costs keys²: few, mid-sized cases.
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn emptied_lanes_are_dropped_and_the_lane_map_shrinks_back(
        rounds in 1usize..4,
        keys in 100u64..700,
        cap in 1usize..50,
    ) {
        let c = cfg(cap);
        let mut s = State::new();
        s.track_emptied_keys(true);
        let t0 = Instant::now();
        let mut next_key = 1u64;
        for _ in 0..rounds {
            let first = next_key;
            for _ in 0..keys {
                s.push(next_key, Meta { key: next_key, ..Meta::default() }, t0);
                next_key += 1;
            }
            prop_assert_eq!(s.lanes(), keys as usize);
            while !s.is_empty() {
                let b = batch(s.form(t0, &c, cap, c.max_wait, 0));
                prop_assert_eq!(b.items.len(), 1, "one item per key");
            }
            prop_assert_eq!(s.lanes(), 0);
            prop_assert!(s.lane_capacity() <= 128, "capacity {} kept", s.lane_capacity());
            let mut emptied = s.take_emptied_keys();
            emptied.sort_unstable();
            prop_assert_eq!(emptied, (first..next_key).collect::<Vec<_>>());
        }
    }
}

#[test]
fn expired_and_dropped_lanes_are_reported_once() {
    let mut s = State::new();
    s.track_emptied_keys(true);
    let t0 = Instant::now();
    let soon = Some(t0 + Duration::from_millis(1));
    s.push(
        1,
        Meta {
            key: 7,
            deadline: soon,
            ..Meta::default()
        },
        t0,
    );
    s.push(
        2,
        Meta {
            key: 8,
            ..Meta::default()
        },
        t0,
    );
    s.push(3, Meta::default(), t0);
    assert_eq!(s.take_expired(t0 + Duration::from_millis(2)), vec![1]);
    assert_eq!(s.pop_oldest(), Some(2));
    // The unkeyed lane (key 0) is never reported.
    assert_eq!(s.pop_oldest(), Some(3));
    assert_eq!(s.take_emptied_keys(), vec![7, 8]);
    assert_eq!(s.lanes(), 0);
    // Without tracking, nothing is kept.
    let mut s = State::new();
    s.push(
        1,
        Meta {
            key: 7,
            ..Meta::default()
        },
        t0,
    );
    assert_eq!(s.pop_oldest(), Some(1));
    assert!(!s.has_emptied_keys());
}

#[test]
fn queue_hands_out_emptied_keys_and_counts_lanes() {
    let q = ok(Queue::new(Config {
        track_emptied_keys: true,
        ..cfg(4)
    }));
    for k in 1..=3u64 {
        assert!(q
            .push(
                k,
                Meta {
                    key: k,
                    ..Meta::default()
                },
                false,
                None
            )
            .is_ok());
    }
    assert_eq!(q.snapshot().lanes, 3);
    assert!(!q.has_emptied_keys());
    for _ in 0..3 {
        match q.poll() {
            Next::Batch(b, _) => {
                assert_eq!(b.items.len(), 1);
                q.done(1, Duration::ZERO, true, 1, 0);
            }
            other => panic!("expected a batch, got {other:?}"),
        }
    }
    assert!(q.has_emptied_keys());
    let mut keys = q.take_emptied_keys();
    keys.sort_unstable();
    assert_eq!(keys, vec![1, 2, 3]);
    assert!(!q.has_emptied_keys());
    assert_eq!(q.snapshot().lanes, 0);
}

#[test]
fn push_within_waits_a_slice_without_counting_a_rejection() {
    let q = ok(Queue::new(Config {
        max_queue: 1,
        ..cfg(4)
    }));
    assert!(q.push(1, Meta::default(), false, None).is_ok());
    let r = q.push_within(2, Meta::default(), Duration::from_millis(5));
    assert!(matches!(r, Err(PushError::WouldBlock(2))));
    assert_eq!(q.snapshot().stats.rejected, 0);
    assert!(matches!(
        q.blocked_too_long(Some(Duration::from_secs(1))),
        Error::QueueFull(m) if m.contains("timeout=1s")
    ));
    assert_eq!(q.snapshot().stats.rejected, 1);
    // Room again: the next slice pushes.
    assert!(matches!(q.poll(), Next::Batch(..)));
    assert!(q
        .push_within(2, Meta::default(), Duration::from_millis(5))
        .is_ok());
    q.close();
    let r = q.push_within(3, Meta::default(), Duration::from_millis(5));
    assert!(matches!(r, Err(PushError::Failed(3, Error::Closed(_)))));

    let w = ok(Window::new(Config {
        max_queue: 1,
        max_wait: Duration::from_secs(3600),
        ..cfg(4)
    }));
    assert!(w.push(b"1", false, None).is_ok());
    let r = w.push_within(b"2", Duration::from_millis(5));
    assert!(matches!(r, Err(PushError::WouldBlock(()))));
    assert_eq!(w.snapshot().stats.rejected, 0);
    assert!(matches!(w.blocked_too_long(None), Error::QueueFull(_)));
    assert_eq!(w.snapshot().stats.rejected, 1);
}

#[test]
fn window_body_reservation_shrinks_back_after_an_oversize_message() {
    let w = ok(Window::new(Config {
        max_wait: Duration::from_secs(3600),
        ..cfg(50)
    }));
    let big = vec![7u8; 8 << 20];
    assert!(w.push(&big, false, None).is_ok());
    w.flush();
    let b = window_batch(w.next());
    assert_eq!(b.body.count, 1);
    w.done(Duration::ZERO);
    // Twenty small frames after it: none reserves the big message's size.
    let mut pending = Vec::new();
    for i in 0..20u8 {
        assert!(w.push(&[i; 200], false, None).is_ok());
        w.flush();
        pending.push(window_batch(w.next()));
        w.done(Duration::ZERO);
    }
    let reserved: usize = pending.iter().map(|b| b.body.bytes.capacity()).sum();
    assert!(
        reserved <= 4 << 20,
        "20 small frames reserve {reserved} bytes after one 8 MiB message"
    );
    assert!(w.reserve() <= 1 << 20);
    // With a weight limit, never more than a configured batch needs.
    let w = ok(Window::new(Config {
        max_wait: Duration::from_secs(3600),
        max_batch_weight: Some(1000),
        ..cfg(10)
    }));
    assert!(w.push(&big, false, None).is_ok());
    assert!(w.push(b"x", false, None).is_ok());
    w.flush();
    let _ = window_batch(w.next());
    w.done(Duration::ZERO);
    let b = window_batch(w.next());
    assert!(
        b.body.bytes.capacity() <= 1000 + 40,
        "{}",
        b.body.bytes.capacity()
    );
}

#[test]
fn wait_ready_forms_nothing_and_wakes_on_push_close_or_timeout() {
    use std::time::{Duration, Instant};
    let q = Arc::new(ok(Queue::new(cfg(4))));
    // Empty: the deadline passes.
    assert!(!q.wait_ready(Some(Instant::now() + Duration::from_millis(20))));
    // A push from another thread wakes a waiter; nothing is taken.
    let q2 = Arc::clone(&q);
    let pusher = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        assert!(q2.push(7, Meta::default(), false, None).is_ok());
    });
    assert!(q.wait_ready(Some(Instant::now() + Duration::from_secs(10))));
    let _ = pusher.join();
    assert_eq!(q.len(), 1);
    // Items that arrive before the batch is formed join it.
    assert!(q.push(8, Meta::default(), false, None).is_ok());
    match q.poll() {
        Next::Batch(b, _) => assert_eq!(b.items, vec![7, 8]),
        _ => panic!("expected a batch"),
    }
    // Closed: ready at once.
    let q = ok(Queue::<u32>::new(cfg(4)));
    q.close();
    assert!(q.wait_ready(None));
}
