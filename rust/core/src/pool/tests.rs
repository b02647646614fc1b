use super::*;
use proptest::prelude::*;
use std::collections::HashSet;
use std::sync::Arc;
use std::thread;

fn ok<T, E: std::fmt::Debug>(r: Result<T, E>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("unexpected error: {e:?}"),
    }
}

fn pool(buffer_size: usize, min_size: usize, max_size: usize) -> BufferPool {
    ok(BufferPool::new(BufferPoolConfig {
        buffer_size,
        min_size,
        max_size,
        ..BufferPoolConfig::default()
    }))
}

fn get(p: &BufferPool) -> Buf {
    match ok(p.try_acquire()) {
        Some(b) => b,
        None => panic!("pool unexpectedly exhausted"),
    }
}

#[test]
fn bad_config_is_refused_with_the_parameter_named() {
    for (cfg, param) in [
        ((0, 1, 4), "buffer_size"),
        ((16, 5, 4), "min_size"),
        ((16, 0, 0), "max_size"),
    ] {
        let err = BufferPool::new(BufferPoolConfig {
            buffer_size: cfg.0,
            min_size: cfg.1,
            max_size: cfg.2,
            ..BufferPoolConfig::default()
        })
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(err.contains(param), "{err}");
    }
}

#[test]
fn buffers_are_aligned_zeroed_and_preallocated() {
    let p = pool(1000, 4, 16);
    assert_eq!(p.stats().idle, 4);
    assert_eq!(p.stats().bytes_allocated, 4000);
    let b = get(&p);
    assert_eq!(b.as_ptr() as usize % BUF_ALIGN, 0);
    assert_eq!(b.len(), 1000);
    assert!(b.as_slice().iter().all(|&x| x == 0));
    p.release(b);
    let s = p.stats();
    assert_eq!((s.hits, s.misses, s.in_use), (1, 0, 0));
}

#[test]
fn zero_on_release_wipes_and_default_keeps() {
    for zero in [false, true] {
        let p = ok(BufferPool::new(BufferPoolConfig {
            buffer_size: 64,
            min_size: 1,
            max_size: 1,
            zero_on_release: zero,
            ..BufferPoolConfig::default()
        }));
        let mut b = get(&p);
        b.as_mut_slice().fill(0xAB);
        p.release(b);
        let b = get(&p);
        assert_eq!(b.as_slice().iter().all(|&x| x == 0), zero);
        p.release(b);
    }
}

#[test]
fn exhaustion_non_blocking_and_timed() {
    let p = pool(64, 0, 2);
    let a = get(&p);
    let b = get(&p);
    assert!(ok(p.try_acquire()).is_none());
    let err = p.acquire_timeout(None).err();
    assert!(
        matches!(err, Some(Error::PoolExhausted { max_size: 2, .. })),
        "{err:?}"
    );
    let err = p.acquire_timeout(Some(Duration::from_millis(20))).err();
    assert!(matches!(err, Some(Error::PoolExhausted { .. })), "{err:?}");
    assert_eq!(p.stats().exhausted, 2);
    p.release(a);
    p.release(b);
    assert_eq!(p.stats().in_use, 0);
}

#[test]
fn a_release_wakes_a_waiter() {
    let p = Arc::new(pool(64, 0, 1));
    let held = get(&p);
    let waiter = {
        let p = Arc::clone(&p);
        thread::spawn(move || {
            p.acquire_timeout(Some(Duration::from_secs(10))).map(|b| {
                let n = b.len();
                p.release(b);
                n
            })
        })
    };
    while p.waiters() == 0 {
        thread::yield_now();
    }
    p.release(held);
    let got = waiter.join().unwrap_or_else(|_| panic!("waiter panicked"));
    assert_eq!(ok(got), 64);
    assert_eq!(p.stats().in_use, 0);
}

#[test]
fn grows_above_80_percent_and_shrinks_below_25() {
    let p = ok(BufferPool::new(BufferPoolConfig {
        buffer_size: 32,
        min_size: 4,
        max_size: 100,
        window: Duration::from_millis(1),
        ..BufferPoolConfig::default()
    }));
    let held: Vec<Buf> = (0..40).map(|_| get(&p)).collect();
    let s = p.stats();
    assert!(s.grows > 0 && s.capacity >= 40, "{s:?}");
    assert!(s.capacity <= 100);
    // Pre-allocation: capacity - in_use buffers wait on the free list.
    assert_eq!(s.idle + s.in_use, s.capacity, "{s:?}");
    for b in held {
        p.release(b);
    }
    let before = p.stats().capacity;
    for _ in 0..4 {
        thread::sleep(Duration::from_millis(2));
        p.end_window_if_due(Instant::now());
    }
    let s = p.stats();
    assert!(s.shrinks >= 1 && s.capacity < before, "{s:?}");
    assert!(s.capacity >= 4);
    assert_eq!(s.idle, s.capacity, "idle above capacity is freed: {s:?}");
    let freed = p.trim(0);
    assert_eq!(freed, s.idle * 32);
    assert_eq!(p.stats().bytes_allocated, 0);
    // Still usable after a full trim.
    let b = get(&p);
    p.release(b);
}

#[test]
fn lease_export_blocks_take_and_double_take_fails() {
    let p = pool(128, 1, 1);
    let lease = Lease::holding(get(&p));
    assert!(lease.is_held());
    let ptr = ok(lease.export());
    assert_eq!(lease.exports(), 1);
    assert_eq!(lease.take().err(), Some(LeaseError::Exported(1)));
    lease.unexport();
    let buf = ok(lease.take());
    assert_eq!(buf.as_ptr(), ptr.as_ptr());
    assert_eq!(lease.take().err(), Some(LeaseError::Released));
    assert_eq!(lease.export().err(), Some(LeaseError::Released));
    // An empty lease can be refilled, a full one cannot.
    assert!(lease.hold(buf).is_ok());
    let other = Buf::new(128).unwrap_or_else(|e| panic!("{e}"));
    assert!(lease.hold(other).is_err());
    p.release(ok(lease.take()));
}

#[derive(Debug, Clone)]
enum Op {
    Acquire,
    Release(usize),
    Export(usize),
    Unexport(usize),
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(
        prop_oneof![
            3 => Just(Op::Acquire),
            3 => any::<usize>().prop_map(Op::Release),
            1 => any::<usize>().prop_map(Op::Export),
            1 => any::<usize>().prop_map(Op::Unexport),
        ],
        0..200,
    )
}

proptest! {
    /// No buffer is ever held twice; counts add up; a live export blocks release.
    #[test]
    fn pool_model(ops in ops(), max_size in 1usize..12, min_size in 0usize..4) {
        let p = pool(16, min_size.min(max_size), max_size);
        let mut held: Vec<(Lease, usize)> = Vec::new(); // (lease, live exports)
        let mut acquires = 0u64;
        for op in ops {
            match op {
                Op::Acquire => match ok(p.try_acquire()) {
                    Some(b) => {
                        acquires += 1;
                        let addr = b.as_ptr() as usize;
                        let live: HashSet<usize> = held
                            .iter()
                            .filter_map(|(l, _)| l.export().ok().map(|ptr| {
                                l.unexport();
                                ptr.as_ptr() as usize
                            }))
                            .collect();
                        prop_assert!(!live.contains(&addr), "buffer handed out twice");
                        held.push((Lease::holding(b), 0));
                    }
                    None => prop_assert_eq!(held.len(), max_size),
                },
                Op::Release(i) if !held.is_empty() => {
                    let i = i % held.len();
                    if held[i].1 > 0 {
                        prop_assert_eq!(held[i].0.take().err(), Some(LeaseError::Exported(held[i].1)));
                    } else {
                        let (lease, _) = held.swap_remove(i);
                        p.release(ok(lease.take()));
                        prop_assert_eq!(lease.take().err(), Some(LeaseError::Released));
                    }
                }
                Op::Export(i) if !held.is_empty() => {
                    let i = i % held.len();
                    ok(held[i].0.export());
                    held[i].1 += 1;
                }
                Op::Unexport(i) if !held.is_empty() => {
                    let i = i % held.len();
                    if held[i].1 > 0 {
                        held[i].0.unexport();
                        held[i].1 -= 1;
                    }
                }
                _ => {}
            }
            let s = p.stats();
            prop_assert_eq!(s.in_use, held.len());
            prop_assert_eq!(s.hits + s.misses, acquires);
            prop_assert!(s.idle + s.in_use <= max_size);
            prop_assert!(s.high_water >= s.in_use);
        }
        for (lease, n) in held {
            for _ in 0..n {
                lease.unexport();
            }
            p.release(ok(lease.take()));
        }
        prop_assert_eq!(p.stats().in_use, 0);
    }
}

#[test]
fn eight_threads_never_share_a_buffer() {
    let p = Arc::new(pool(256, 2, 6));
    let handles: Vec<_> = (0..8u8)
        .map(|t| {
            let p = Arc::clone(&p);
            thread::spawn(move || {
                let mut done = 0u32;
                while done < 20_000 {
                    let Ok(mut b) = p.acquire_timeout(Some(Duration::from_secs(10))) else {
                        return Err("timed out");
                    };
                    b.as_mut_slice().fill(t);
                    thread::yield_now();
                    if b.as_slice().iter().any(|&x| x != t) {
                        return Err("another thread wrote into my buffer");
                    }
                    p.release(b);
                    done += 1;
                }
                Ok(done)
            })
        })
        .collect();
    let mut total = 0;
    for h in handles {
        total += ok(h.join().unwrap_or(Err("panicked")));
    }
    assert_eq!(total, 8 * 20_000);
    let s = p.stats();
    assert_eq!(s.in_use, 0);
    assert_eq!(s.hits + s.misses, 8 * 20_000);
    assert!(s.high_water <= 6 && s.idle <= 6, "{s:?}");
}

fn opool(min_size: usize, max_size: usize, max_idle: Option<Duration>) -> ObjectPool<u32> {
    ok(ObjectPool::new(ObjectPoolConfig {
        min_size,
        max_size,
        max_idle,
    }))
}

#[test]
fn object_pool_lifo_reuse_and_counts() {
    let p = opool(0, 3, None);
    assert!(matches!(p.take(), Take::Create));
    assert!(matches!(p.take(), Take::Create));
    p.count_created();
    p.count_created();
    p.put(1);
    p.put(2);
    assert!(
        matches!(p.take(), Take::Idle(2)),
        "LIFO: the warmest item first"
    );
    p.discard(true); // e.g. failed validation
    let s = p.stats();
    assert_eq!((s.in_use, s.idle, s.discarded, s.created), (0, 1, 1, 2));
    assert!(matches!(p.take(), Take::Idle(1)));
    assert!(matches!(p.take(), Take::Create));
    assert!(matches!(p.take(), Take::Create));
    assert!(matches!(p.take(), Take::Exhausted));
    assert!(matches!(
        p.take_timeout(Duration::from_millis(10)),
        Take::Exhausted
    ));
    assert!(ObjectPool::<u32>::new(ObjectPoolConfig {
        min_size: 2,
        max_size: 1,
        max_idle: None
    })
    .is_err());
    // Made up front one by one: a huge min_size is refused, not attempted.
    assert!(ObjectPool::<u32>::new(ObjectPoolConfig {
        min_size: MAX_MIN_SIZE + 1,
        max_size: usize::MAX,
        max_idle: None
    })
    .is_err());
}

#[test]
fn object_pool_evicts_idle_but_keeps_min_size() {
    let p = opool(1, 4, Some(Duration::from_millis(5)));
    for i in 0..3 {
        assert!(matches!(p.take(), Take::Create));
        p.count_created();
        let _ = i;
    }
    for i in 0..3 {
        p.put(i);
    }
    assert!(p.evict_expired(Instant::now()).is_empty(), "too young");
    thread::sleep(Duration::from_millis(10));
    let gone = p.evict_expired(Instant::now());
    assert_eq!(gone, vec![0, 1], "oldest first, min_size kept");
    let s = p.stats();
    assert_eq!((s.idle, s.evicted), (1, 2));
}

#[test]
fn object_pool_wakes_waiter_and_stress_counts_add_up() {
    let p = Arc::new(opool(0, 3, None));
    let handles: Vec<_> = (0..8u32)
        .map(|t| {
            let p = Arc::clone(&p);
            thread::spawn(move || {
                let mut n = 0u32;
                for i in 0..5_000u32 {
                    match p.take_timeout(Duration::from_secs(10)) {
                        Take::Idle(v) => {
                            p.count_borrow(true);
                            p.put(v);
                        }
                        Take::Create => {
                            p.count_borrow(false);
                            p.count_created();
                            p.put(t * 100_000 + i);
                        }
                        Take::Exhausted => return n,
                    }
                    n += 1;
                }
                n
            })
        })
        .collect();
    let total: u32 = handles.into_iter().map(|h| h.join().unwrap_or(0)).sum();
    assert_eq!(total, 8 * 5_000);
    let s = p.stats();
    assert_eq!(s.hits + s.misses, 8 * 5_000);
    assert_eq!(s.in_use, 0);
    assert!(s.created <= 3 && s.idle as u64 == s.created, "{s:?}");
}

#[test]
fn huge_max_size_reserves_a_bounded_free_list() {
    // A max_size far above MAX_IDLE_SLOTS must neither reserve a huge queue
    // nor spin when the free list is full.
    let p = pool(1, MAX_IDLE_SLOTS + 10, 1 << 40);
    let s = p.stats();
    assert_eq!(s.idle, MAX_IDLE_SLOTS);
    assert_eq!(s.bytes_allocated, MAX_IDLE_SLOTS);
    let extra: Vec<Buf> = (0..MAX_IDLE_SLOTS + 5).map(|_| get(&p)).collect();
    for b in extra {
        p.release(b);
    }
    let s = p.stats();
    assert_eq!((s.in_use, s.idle), (0, MAX_IDLE_SLOTS));
    assert_eq!(s.bytes_allocated, MAX_IDLE_SLOTS);
}
