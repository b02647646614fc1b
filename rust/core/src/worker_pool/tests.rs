use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::error::{Error, Result};

fn ok<T>(r: Result<T>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("unexpected error: {e}"),
    }
}

proptest! {
    #[test]
    fn queue_pops_by_priority_then_fifo(prios in proptest::collection::vec(-3i64..3, 1..200)) {
        let seen = Arc::new(StdMutex::new(Vec::new()));
        let sink = Arc::clone(&seen);
        let cfg = PoolConfig { min_workers: 1, max_workers: 1, aging: None, ..PoolConfig::with_cores(1) };
        let gate = Arc::new(StdMutex::new(()));
        let hold = gate.lock().unwrap_or_else(|e| e.into_inner());
        let g2 = Arc::clone(&gate);
        let pool: WorkerPool<(i64, usize)> = ok(WorkerPool::new(cfg, Arc::new(move |t: (i64, usize)| {
            if t.1 == usize::MAX { drop(g2.lock()); return; }
            sink.lock().unwrap_or_else(|e| e.into_inner()).push(t);
        })));
        // A blocker occupies the single worker while the others queue up.
        prop_assert!(pool.try_push((i64::MAX, usize::MAX), 100).is_ok());
        while pool.stats().busy == 0 { std::thread::yield_now(); }
        for (i, &p) in prios.iter().enumerate() {
            prop_assert!(pool.try_push((p, i), p).is_ok());
        }
        drop(hold);
        pool.close(false);
        prop_assert!(pool.join(Some(Duration::from_secs(10))));
        let got = seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut want: Vec<(i64, usize)> = prios.iter().copied().enumerate().map(|(i, p)| (p, i)).collect();
        want.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        prop_assert_eq!(got, want);
    }
}

#[test]
fn pool_runs_everything_and_scales() {
    let done = Arc::new(AtomicU64::new(0));
    let d2 = Arc::clone(&done);
    let cfg = PoolConfig {
        min_workers: 1,
        max_workers: 4,
        scale_down_window: Duration::from_millis(50),
        ..PoolConfig::with_cores(1)
    };
    let pool: WorkerPool<u64> = ok(WorkerPool::new(
        cfg,
        Arc::new(move |x| {
            std::thread::sleep(Duration::from_micros(200));
            d2.fetch_add(x, Relaxed);
        }),
    ));
    for _ in 0..400 {
        assert!(pool.try_push(1, 0).is_ok());
    }
    let peak = pool.stats().workers;
    assert!(peak > 1, "scaled up under a deep queue: {peak}");
    while done.load(Relaxed) < 400 {
        std::thread::sleep(Duration::from_millis(5));
    }
    // Idle now: the pool retires workers down to min_workers.
    let mut waited = 0;
    while pool.stats().workers > 1 && waited < 400 {
        std::thread::sleep(Duration::from_millis(10));
        waited += 1;
    }
    let s = pool.stats();
    assert_eq!(s.workers, 1, "{s:?}");
    assert!(s.scale_downs >= 1);
    assert_eq!(s.completed, 400);
    pool.close(false);
    assert!(pool.join(Some(Duration::from_secs(5))));
    assert!(matches!(
        pool.try_push(1, 0),
        Err(Rejected {
            error: Error::PoolShutdown,
            ..
        })
    ));
}

#[test]
fn bounded_queue_rejects_and_cancel_returns_tasks() {
    let gate = Arc::new(StdMutex::new(()));
    let hold = gate.lock().unwrap_or_else(|e| e.into_inner());
    let g2 = Arc::clone(&gate);
    let cfg = PoolConfig {
        min_workers: 1,
        max_workers: 1,
        max_queue: 3,
        ..PoolConfig::with_cores(1)
    };
    let pool: WorkerPool<u32> = ok(WorkerPool::new(cfg, Arc::new(move |_| drop(g2.lock()))));
    assert!(pool.try_push(0, 0).is_ok());
    while pool.stats().busy == 0 {
        std::thread::yield_now();
    }
    for i in 1..=3 {
        assert!(pool.try_push(i, 0).is_ok());
    }
    match pool.push(4, 0, Some(Duration::from_millis(10))) {
        Err(Rejected {
            task: 4,
            error: Error::WorkerQueueFull { capacity: 3 },
        }) => {}
        other => panic!("{other:?}"),
    }
    let cancelled = pool.close(true);
    assert_eq!(cancelled, vec![1, 2, 3]);
    drop(hold);
    assert!(pool.join(Some(Duration::from_secs(5))));
    let s = pool.stats();
    assert_eq!((s.completed, s.cancelled, s.rejected), (1, 3, 1));
}
