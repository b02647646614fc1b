use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;

use super::Strategy;
use super::*;
use crate::error::{Error, Result};

fn ok<T>(r: Result<T>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("unexpected error: {e}"),
    }
}

fn lb(n: usize, strategy: Strategy) -> Balancer {
    let config = BalancerConfig {
        strategy,
        ..BalancerConfig::default()
    };
    ok(Balancer::new(&vec![1.0; n], config))
}

#[test]
fn least_outstanding_is_exact_jsq() {
    let b = lb(4, Strategy::LeastOutstanding);
    let picks: Vec<usize> = (0..4).map(|_| ok(b.acquire())).collect();
    let mut sorted = picks.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, vec![0, 1, 2, 3]);
    ok(b.release(2, Some(0.01), true));
    assert_eq!(ok(b.acquire()), 2);
}

#[test]
fn load_score_prefers_low_reported_queue() {
    let b = lb(3, Strategy::LoadScore);
    ok(b.report_queue(0, 0.9));
    ok(b.report_queue(1, 0.1));
    ok(b.report_queue(2, 0.5));
    assert_eq!(ok(b.acquire()), 1);
}

#[test]
fn round_robin_cycles_and_skips_down() {
    let b = lb(3, Strategy::RoundRobin);
    ok(b.mark_down(1));
    let picks: Vec<usize> = (0..4).map(|_| ok(b.acquire())).collect();
    assert!(!picks.contains(&1), "{picks:?}");
    assert!(picks.contains(&0) && picks.contains(&2));
}

#[test]
fn all_down_is_an_error() {
    let b = lb(2, Strategy::P2C);
    ok(b.mark_down(0));
    ok(b.remove(1));
    assert!(matches!(b.acquire(), Err(Error::NoBackendAvailable(_))));
    assert_eq!(b.no_backend_errors(), 1);
    assert!(b.mark_up(1).is_err(), "a removed backend stays removed");
    ok(b.mark_up(0));
    assert_eq!(ok(b.acquire()), 0);
}

#[test]
fn release_without_acquire_is_refused() {
    let b = lb(2, Strategy::LoadScore);
    assert!(b.release(0, None, true).is_err());
    assert!(b.release(7, None, true).is_err());
    let i = ok(b.acquire());
    assert!(b.release(i, Some(f64::NAN), true).is_err());
    ok(b.release(i, Some(0.5), true));
    assert_eq!(ok(b.in_flight(i)), 0);
}

#[test]
fn errors_eject_then_probe_then_recover() {
    let config = BalancerConfig {
        strategy: Strategy::LeastOutstanding,
        cooldown: Duration::from_millis(20),
        eject_min_requests: 3,
        ..BalancerConfig::default()
    };
    let b = ok(Balancer::new(&[1.0; 4], config));
    for _ in 0..10 {
        b.in_flight(0).ok();
        // drive backend 0 only: take every backend, release the others
        let picks: Vec<usize> = (0..4).map(|_| ok(b.acquire())).collect();
        for p in picks {
            ok(b.release(p, Some(0.001), p != 0));
        }
        if ok(b.state(0)) == State::Ejected {
            break;
        }
    }
    assert_eq!(ok(b.state(0)), State::Ejected);
    for _ in 0..20 {
        let i = ok(b.acquire());
        assert_ne!(i, 0);
        ok(b.release(i, None, true));
    }
    std::thread::sleep(Duration::from_millis(30));
    // The first pick after the cool-down is the probe.
    let probe = ok(b.acquire());
    assert_eq!(probe, 0);
    assert_eq!(ok(b.state(0)), State::Probing);
    ok(b.release(0, Some(0.001), true));
    assert_eq!(ok(b.state(0)), State::Up);
    let s = b.stats();
    assert_eq!(s[0].ejections, 1);
}

#[test]
fn weights_bias_picks() {
    let config = BalancerConfig {
        strategy: Strategy::LeastOutstanding,
        ..BalancerConfig::default()
    };
    let b = ok(Balancer::new(&[1.0, 3.0], config));
    let picks: Vec<usize> = (0..8).map(|_| ok(b.acquire())).collect();
    let heavy = picks.iter().filter(|&&i| i == 1).count();
    assert_eq!(heavy, 6, "{picks:?}");
}

#[test]
fn add_and_remove_at_run_time() {
    let b = lb(1, Strategy::LeastOutstanding);
    let i0 = ok(b.acquire());
    let j = ok(b.add(1.0));
    assert_eq!(j, 1);
    assert_eq!(ok(b.acquire()), 1);
    ok(b.remove(1));
    ok(b.release(1, None, true));
    ok(b.release(i0, None, true));
    for _ in 0..5 {
        let i = ok(b.acquire());
        assert_eq!(i, 0);
        ok(b.release(i, None, true));
    }
    assert!(Balancer::new(&[], BalancerConfig::default()).is_err());
    assert!(Balancer::new(&[0.0], BalancerConfig::default()).is_err());
    assert!(Strategy::parse("fastest").is_err());
}

#[test]
fn concurrent_counts_are_exact() {
    let b = Arc::new(lb(64, Strategy::P2C));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let b = Arc::clone(&b);
            std::thread::spawn(move || {
                for _ in 0..20_000 {
                    let i = ok(b.acquire());
                    ok(b.release(i, Some(0.001), true));
                }
            })
        })
        .collect();
    for t in threads {
        assert!(t.join().is_ok());
    }
    let s = b.stats();
    assert_eq!(s.iter().map(|x| x.picks).sum::<u64>(), 160_000);
    assert_eq!(s.iter().map(|x| x.completed).sum::<u64>(), 160_000);
    assert!(s.iter().all(|x| x.in_flight == 0));
}

proptest! {
    #[test]
    fn in_flight_matches_a_model(ops in proptest::collection::vec((any::<bool>(), 0usize..8), 1..300),
                                 strategy in 0usize..4) {
        let strategy = [Strategy::LoadScore, Strategy::LeastOutstanding, Strategy::P2C, Strategy::RoundRobin][strategy];
        let b = lb(5, strategy);
        let mut model = [0u64; 5];
        for (acq, which) in ops {
            if acq {
                let i = ok(b.acquire());
                if matches!(strategy, Strategy::LoadScore | Strategy::LeastOutstanding) {
                    // Exact join-the-shortest-queue: nobody had fewer in flight.
                    prop_assert_eq!(model[i], *model.iter().min().unwrap_or(&0));
                }
                model[i] += 1;
            } else {
                let i = which % 5;
                let r = b.release(i, Some(0.001), true);
                prop_assert_eq!(r.is_ok(), model[i] > 0);
                if model[i] > 0 { model[i] -= 1; }
            }
            for (i, m) in model.iter().enumerate() {
                prop_assert_eq!(ok(b.in_flight(i)), *m);
            }
        }
    }

    #[test]
    fn bounded_load_is_never_exceeded(keys in proptest::collection::vec(0i64..50, 1..500),
                                      lf in 1.0f64..2.0, n in 1usize..8) {
        let names: Vec<String> = (0..n).map(|i| format!("node-{i}")).collect();
        let nodes: Vec<(Key<'_>, f64)> = names.iter().map(|s| (Key::Str(s), 1.0)).collect();
        let r = ok(Router::new(&nodes, lf, 40));
        for k in keys {
            let node = r.route(Key::Int(k));
            let caps = r.caps();
            let stats = r.stats();
            prop_assert!(stats[node].load <= caps[node]);
            for (s, c) in stats.iter().zip(&caps) {
                prop_assert!(s.load <= *c, "load {} > cap {}", s.load, c);
            }
        }
    }
}

proptest! {
    #[test]
    fn load_score_picks_min_in_flight_then_min_latency(
        ops in proptest::collection::vec((0u8..4, 0usize..6, 0u32..1000), 1..300),
    ) {
        let b = lb(6, Strategy::LoadScore);
        let mut model = [0u64; 6];
        let mut up = [true; 6];
        let mut lat: [Option<f64>; 6] = [None; 6];
        for (op, i, l) in ops {
            match op {
                0 | 1 => {
                    if !up.iter().any(|u| *u) {
                        prop_assert!(b.acquire().is_err());
                        continue;
                    }
                    let j = ok(b.acquire());
                    prop_assert!(up[j]);
                    let key = |k: usize| (model[k], lat[k].unwrap_or(0.0));
                    // The pick key keeps the top 40 bits of the latency's f64
                    // (28 mantissa bits): latencies within that precision tie.
                    let no_worse = |a: (u64, f64), b: (u64, f64)| {
                        a.0 < b.0 || (a.0 == b.0 && a.1 <= b.1 * (1.0 + 1e-8))
                    };
                    for k in (0..6).filter(|&k| up[k]) {
                        prop_assert!(no_worse(key(j), key(k)), "picked {j} {:?} over {k} {:?}", key(j), key(k));
                    }
                    model[j] += 1;
                }
                2 if model[i] > 0 => {
                    let sample = f64::from(l) / 1000.0;
                    ok(b.release(i, Some(sample), true));
                    model[i] -= 1;
                    let s = b.stats();
                    lat[i] = s[i].ewma_latency_s;
                }
                2 => prop_assert!(b.release(i, None, true).is_err()),
                _ => {
                    if up[i] { ok(b.mark_down(i)); } else { ok(b.mark_up(i)); }
                    up[i] = !up[i];
                }
            }
        }
    }
}

#[test]
fn routing_is_sticky_and_moves_few_keys() {
    let names: Vec<String> = (0..10).map(|i| format!("10.0.0.{i}:6379")).collect();
    let nodes: Vec<(Key<'_>, f64)> = names.iter().map(|s| (Key::Str(s), 1.0)).collect();
    let r = ok(Router::new(&nodes, 1.25, DEFAULT_VNODES_T));
    let keys: Vec<String> = (0..20_000).map(|i| format!("user:{i}")).collect();
    let before: Vec<usize> = keys.iter().map(|k| r.lookup(Key::Str(k))).collect();
    let again: Vec<usize> = keys.iter().map(|k| r.lookup(Key::Str(k))).collect();
    assert_eq!(before, again);
    let extra = "10.0.0.10:6379".to_string();
    ok(r.add_node(Key::Str(&extra), 1.0));
    let after: Vec<usize> = keys.iter().map(|k| r.lookup(Key::Str(k))).collect();
    let moved = before.iter().zip(&after).filter(|(a, b)| a != b).count();
    let frac = moved as f64 / keys.len() as f64;
    assert!((0.05..0.15).contains(&frac), "moved {frac}");
    // Every moved key moved to the new node.
    assert!(before.iter().zip(&after).all(|(a, b)| a == b || *b == 10));
}

const DEFAULT_VNODES_T: usize = router::DEFAULT_VNODES;

#[test]
fn router_release_and_errors() {
    let nodes = [(Key::Str("a"), 1.0), (Key::Str("b"), 2.0)];
    let r = ok(Router::new(&nodes, 1.25, 100));
    let n = r.route(Key::Bytes(b"k"));
    ok(r.release(n));
    assert!(r.release(n).is_err());
    assert!(r.release(9).is_err());
    assert!(Router::new(&nodes, 0.9, 100).is_err());
    assert!(Router::new(&[], 1.25, 100).is_err());
    ok(r.remove_node(0));
    assert!(r.remove_node(1).is_err(), "the last node stays");
    assert_eq!(r.route(Key::Int(5)), 1);
    assert_ne!(Key::Str("1").hash(), Key::Int(1).hash());
    assert_ne!(Key::Str("1").hash(), Key::Bytes(b"1").hash());
}

#[test]
fn the_ring_is_capped_before_it_is_built() {
    let names: Vec<String> = (0..100).map(|i| format!("n{i}")).collect();
    // 100 nodes x 1 M points (vnodes * weight at the per-node limit).
    let heavy: Vec<(Key<'_>, f64)> = names.iter().map(|n| (Key::Str(n), 100.0)).collect();
    match Router::new(&heavy, 1.25, 10_000).map(|_| ()) {
        Err(Error::InvalidParameter {
            param: "nodes",
            expected,
            ..
        }) => assert!(expected.contains("100000000 points"), "{expected}"),
        other => panic!("{other:?}"),
    }
    let r = ok(Router::new(&[(Key::Str("a"), 1.0)], 1.25, 10_000));
    assert!(r.add_node(Key::Str("b"), 1.0).is_ok());
}
