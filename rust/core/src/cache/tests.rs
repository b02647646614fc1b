use std::collections::{HashMap, VecDeque};
use std::num::NonZeroU64;

use proptest::prelude::*;

use super::*;

type S = Store<u64, u64>;

fn cfg(max_bytes: Option<u64>, max_entries: Option<u64>, policy: Policy) -> Config {
    match Config::new(max_bytes, max_entries, policy) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    }
}

fn eq(k: u64) -> impl FnMut(&u64) -> Result<bool, ()> {
    move |x| Ok(*x == k)
}

fn get(s: &mut S, k: u64, now: u64) -> Option<u64> {
    match s.get(k, eq(k), |_| now) {
        Ok(Found::Hit(v, _)) => Some(*v),
        _ => None,
    }
}

fn set(s: &mut S, k: u64, v: u64, w: u64, expires: u64, now: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let _ = s.insert(k, k, v, w, expires, &[], now, eq(k), &mut out);
    out
}

fn check(s: &S) {
    if let Err(e) = s.check_invariants() {
        panic!("{e}");
    }
}

#[test]
fn config_errors_name_the_parameter() {
    let e = Config::new(Some(0), None, Policy::Lru).err();
    assert!(e.is_some_and(|e| e.to_string().contains("max_bytes=0")));
    let e = Config::new(None, Some(0), Policy::Lru).err();
    assert!(e.is_some_and(|e| e.to_string().contains("max_entries=0")));
    let e = Policy::parse("fifo").err();
    assert!(e.is_some_and(|e| e.to_string().contains("policy=\"fifo\"")));
    let c = cfg(None, None, Policy::TinyLfu);
    assert_eq!(c.max_bytes, Some(DEFAULT_MAX_BYTES));
    assert_eq!(Policy::parse("lru").ok(), Some(Policy::Lru));
    assert_eq!(Policy::TinyLfu.name(), "tinylfu");
}

#[test]
fn get_set_delete_replace() {
    let mut s = S::new(cfg(None, Some(10), Policy::TinyLfu));
    assert_eq!(get(&mut s, 1, 0), None);
    assert!(set(&mut s, 1, 100, 5, NEVER, 0).is_empty());
    assert_eq!(get(&mut s, 1, 0), Some(100));
    // Replacing hands the old value back with the new key.
    assert_eq!(set(&mut s, 1, 101, 7, NEVER, 0), vec![(1, 100)]);
    assert_eq!(get(&mut s, 1, 0), Some(101));
    assert_eq!(s.stats().bytes, 7);
    let mut out = Vec::new();
    assert_eq!(s.delete(1, eq(1), 0, &mut out), Ok(true));
    assert_eq!(out, vec![(1, 101)]);
    assert_eq!(s.delete(1, eq(1), 0, &mut out), Ok(false));
    let st = s.stats();
    assert_eq!((st.hits, st.misses, st.sets, st.deletes), (2, 1, 2, 1));
    assert_eq!((st.entries, st.bytes), (0, 0));
    check(&s);
}

#[test]
fn eq_errors_pass_through() {
    let mut s = S::new(cfg(None, Some(10), Policy::Lru));
    set(&mut s, 1, 1, 1, NEVER, 0);
    let r = s.get(1, |_: &u64| Err::<bool, &str>("boom"), |_| 0);
    assert!(matches!(r, Err("boom")));
    // Same hash, different key: eq says no; a miss.
    let r = s.get(1, |_: &u64| Ok::<bool, ()>(false), |_| 0);
    assert!(matches!(r, Ok(Found::Miss)));
}

#[test]
fn ttl_expiry_is_lazy_and_swept() {
    let mut s = S::new(cfg(None, Some(100), Policy::TinyLfu));
    set(&mut s, 1, 10, 1, 1_000, 0);
    set(&mut s, 2, 20, 1, NEVER, 0);
    assert_eq!(get(&mut s, 1, 999), Some(10));
    assert!(matches!(
        s.get(1, eq(1), |_| 1_000),
        Ok(Found::Expired(1, 10))
    ));
    assert_eq!(get(&mut s, 1, 1_000), None);
    assert_eq!(s.stats().expirations, 1);
    for k in 10..20 {
        set(&mut s, k, k, 1, 5, 0);
    }
    let mut out = Vec::new();
    assert_eq!(s.expire(5, &mut out), 10);
    assert_eq!(s.len(), 1);
    // The write-time sweep drops expired entries without a lookup.
    for k in 30..40 {
        set(&mut s, k, k, 1, 5, 0);
    }
    for k in 100..140 {
        set(&mut s, k, k, 1, NEVER, 10);
    }
    assert!(s.stats().expirations >= 21);
    check(&s);
}

#[test]
fn oversized_entries_are_rejected() {
    let mut s = S::new(cfg(Some(100), None, Policy::Lru));
    set(&mut s, 1, 1, 10, NEVER, 0);
    let out = set(&mut s, 1, 2, 101, NEVER, 0);
    assert_eq!(out.len(), 2); // the old entry and the rejected pair
    assert_eq!(get(&mut s, 1, 0), None);
    assert_eq!(s.stats().rejected, 1);
    check(&s);
}

#[test]
fn tags_invalidate_live_entries_only() {
    let mut s = S::new(cfg(None, Some(100), Policy::TinyLfu));
    let mut out = Vec::new();
    for k in 0..10u64 {
        let tags: &[&str] = if k % 2 == 0 { &["even"] } else { &["odd"] };
        let _ = s.insert(k, k, k, 1, NEVER, tags, 0, eq(k), &mut out);
    }
    // Rewriting 0 without tags drops it from "even".
    let _ = s.insert(0, 0, 0, 1, NEVER, &[], 0, eq(0), &mut out);
    let _ = s.delete(2, eq(2), 0, &mut out);
    out.clear();
    assert_eq!(s.invalidate_tag("even", &mut out), 3); // 4, 6, 8
    assert_eq!(s.invalidate_tag("even", &mut out), 0);
    assert_eq!(s.invalidate_tag("nope", &mut out), 0);
    assert_eq!(get(&mut s, 0, 0), Some(0));
    assert_eq!(s.len(), 6);
    check(&s);
}

#[test]
fn tag_references_stay_bounded() {
    let mut s = S::new(cfg(None, Some(10), Policy::Lru));
    let mut out = Vec::new();
    for k in 0..100_000u64 {
        let _ = s.insert(k % 20, k % 20, k, 1, NEVER, &["t"], 0, eq(k % 20), &mut out);
        out.clear();
    }
    assert!(s.tag_refs <= 2048, "{}", s.tag_refs);
    assert_eq!(s.invalidate_tag("t", &mut out), 10);
}

#[test]
fn clear_and_for_each() {
    let mut s = S::new(cfg(None, Some(100), Policy::TinyLfu));
    for k in 0..10 {
        set(&mut s, k, k, 1, NEVER, 0);
    }
    let mut n = 0;
    let _ = s.try_for_each(|_, _| {
        n += 1;
        Ok::<(), ()>(())
    });
    assert_eq!(n, 10);
    assert_eq!(s.clear().len(), 10);
    assert!(s.is_empty());
    check(&s);
    set(&mut s, 1, 1, 1, NEVER, 0);
    assert_eq!(get(&mut s, 1, 0), Some(1));
}

// --- LRU against an exact model ------------------------------------------------

#[derive(Debug, Clone)]
enum Op {
    Get(u64),
    Set(u64, u64),
    Delete(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..40u64).prop_map(Op::Get),
        4 => (0..40u64, 1..30u64).prop_map(|(k, w)| Op::Set(k, w)),
        1 => (0..40u64).prop_map(Op::Delete),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn lru_matches_a_model(
        ops in prop::collection::vec(op(), 1..400),
        max_entries in prop::option::of(1..20u64),
        max_bytes in prop::option::of(20..200u64),
    ) {
        let mut s = S::new(cfg(max_bytes, max_entries, Policy::Lru));
        let max_bytes = if max_entries.is_none() && max_bytes.is_none() {
            Some(DEFAULT_MAX_BYTES)
        } else {
            max_bytes
        };
        // The model: keys from least to most recent, with value and weight.
        let mut model: VecDeque<(u64, u64, u64)> = VecDeque::new();
        for (n, op) in ops.into_iter().enumerate() {
            match op {
                Op::Get(k) => {
                    let want = model.iter().position(|e| e.0 == k).map(|p| {
                        let e = model.remove(p).unwrap_or_default();
                        model.push_back(e);
                        e.1
                    });
                    prop_assert_eq!(get(&mut s, k, 0), want);
                }
                Op::Set(k, w) => {
                    let v = n as u64;
                    set(&mut s, k, v, w, NEVER, 0);
                    if let Some(p) = model.iter().position(|e| e.0 == k) {
                        model.remove(p);
                    }
                    if max_bytes.is_none_or(|m| w <= m) {
                        model.push_back((k, v, w));
                        loop {
                            let bytes: u64 = model.iter().map(|e| e.2).sum();
                            let over = max_entries.is_some_and(|m| model.len() as u64 > m)
                                || max_bytes.is_some_and(|m| bytes > m);
                            if !over {
                                break;
                            }
                            model.pop_front();
                        }
                    }
                }
                Op::Delete(k) => {
                    let mut out = Vec::new();
                    let had = model.iter().position(|e| e.0 == k).map(|p| model.remove(p));
                    prop_assert_eq!(s.delete(k, eq(k), 0, &mut out), Ok(had.is_some()));
                }
            }
            let order: Vec<u64> = s.lru_order().into_iter().copied().collect();
            let want: Vec<u64> = model.iter().map(|e| e.0).collect();
            prop_assert_eq!(order, want);
            prop_assert!(s.check_invariants().is_ok(), "{:?}", s.check_invariants());
        }
    }

    #[test]
    fn tinylfu_invariants(
        ops in prop::collection::vec((op(), 0..3u64, prop::option::of(1..50u64)), 1..600),
        max_entries in prop::option::of(1..30u64),
        max_bytes in prop::option::of(30..300u64),
        doorkeeper in any::<bool>(),
    ) {
        let mut c = cfg(max_bytes, max_entries, Policy::TinyLfu);
        c.doorkeeper = doorkeeper;
        let mut s = S::new(c);
        let limit_bytes = c.max_bytes;
        let mut now = 0u64;
        // What was last written (value, expiry) per key.
        let mut written: HashMap<u64, (u64, u64)> = HashMap::new();
        let (mut gets, mut sets) = (0u64, 0u64);
        for (n, (op, tick, ttl)) in ops.into_iter().enumerate() {
            now += tick * 10;
            match op {
                Op::Get(k) => {
                    gets += 1;
                    if let Ok(Found::Hit(v, exp)) = s.get(k, eq(k), |_| now) {
                        let (want, want_exp) = written.get(&k).copied().unwrap_or((u64::MAX, 0));
                        prop_assert_eq!(*v, want);
                        prop_assert_eq!(exp, want_exp);
                        prop_assert!(exp > now, "expired entry returned");
                    }
                }
                Op::Set(k, w) => {
                    sets += 1;
                    let exp = ttl.map_or(NEVER, |t| now + t);
                    let v = n as u64;
                    set(&mut s, k, v, w, exp, now);
                    written.insert(k, (v, exp));
                }
                Op::Delete(k) => {
                    let mut out = Vec::new();
                    let _ = s.delete(k, eq(k), now, &mut out);
                    written.remove(&k);
                }
            }
            let st = s.stats();
            prop_assert!(limit_bytes.is_none_or(|m| st.bytes <= m));
            prop_assert!(max_entries.is_none_or(|m| st.entries <= m));
            prop_assert_eq!(st.hits + st.misses, gets);
            prop_assert_eq!(st.sets, sets);
            prop_assert_eq!(s.pairs().count() as u64, st.entries);
            prop_assert!(s.check_invariants().is_ok(), "{:?}", s.check_invariants());
        }
        let mut out = Vec::new();
        s.expire(now, &mut out);
        prop_assert!(s.pairs().all(|(_, _, e)| e > now));
    }
}

// --- hit ratio on a Zipf trace -------------------------------------------------

struct Zipf {
    cdf: Vec<f64>,
    state: u64,
}

impl Zipf {
    fn new(n: usize, s: f64, seed: u64) -> Self {
        let mut cdf = Vec::with_capacity(n);
        let mut acc = 0.0;
        for rank in 1..=n {
            acc += 1.0 / (rank as f64).powf(s);
            cdf.push(acc);
        }
        Zipf {
            cdf,
            state: seed | 1,
        }
    }

    fn next(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.state = x;
        let total = self.cdf[self.cdf.len() - 1];
        let u = (x >> 11) as f64 / (1u64 << 53) as f64 * total;
        self.cdf.partition_point(|&c| c < u) as u64
    }
}

fn hit_ratio(policy: Policy, doorkeeper: bool, ops: usize) -> f64 {
    let mut c = cfg(None, Some(10_000), policy);
    c.doorkeeper = doorkeeper;
    let mut s = S::new(c);
    let mut z = Zipf::new(100_000, 1.0, 42);
    let mut out = Vec::new();
    let warm = 0; // counted from a cold start, as the benchmark does
    let mut hits = 0;
    for n in 0..ops {
        let k = z.next();
        if get(&mut s, k, 0).is_some() {
            if n >= warm {
                hits += 1;
            }
        } else {
            let _ = s.insert(k, k, k, 1, NEVER, &[], 0, eq(k), &mut out);
            out.clear();
        }
    }
    hits as f64 / (ops - warm) as f64
}

#[test]
fn tinylfu_beats_lru_on_zipf() {
    let ops = 1_000_000;
    let lru = hit_ratio(Policy::Lru, false, ops);
    let tiny = hit_ratio(Policy::TinyLfu, false, ops);
    let door = hit_ratio(Policy::TinyLfu, true, ops);
    println!(
        "zipf 1.0, 100k keys, 10k entries: lru {lru:.4} tinylfu {tiny:.4} (+doorkeeper {door:.4})"
    );
    assert!(tiny > lru + 0.03, "tinylfu {tiny} vs lru {lru}");
    assert!(tiny >= 0.785, "tinylfu {tiny}");
}

// --- memory per entry ----------------------------------------------------------

#[test]
fn overhead_per_entry() {
    // Pointer-sized, non-null keys and values, like Python object references.
    type P = Store<NonZeroU64, NonZeroU64>;
    for (n, max_entries) in [(100_000u64, Some(100_000u64)), (100_000, None)] {
        let mut s = P::new(cfg(None, max_entries, Policy::TinyLfu));
        let mut out = Vec::new();
        for k in 1..=n {
            let key = NonZeroU64::new(k).unwrap_or(NonZeroU64::MIN);
            let _ = s.insert(
                k,
                key,
                key,
                64,
                NEVER,
                &[],
                0,
                |x: &NonZeroU64| Ok::<_, ()>(*x == key),
                &mut out,
            );
        }
        assert_eq!(s.len() as u64, n);
        let per = s.heap_bytes() as f64 / n as f64;
        println!(
            "max_entries={max_entries:?}: {per:.1} B/entry (slab entry {} B, bucket {} B)",
            std::mem::size_of::<Entry>(),
            std::mem::size_of::<Slot<NonZeroU64, NonZeroU64>>()
        );
        assert!(per <= 100.0, "{per} B per entry");
    }
}

#[test]
fn hill_climber_moves_the_window_and_keeps_invariants() {
    for by_bytes in [false, true] {
        let c = if by_bytes {
            cfg(Some(2_000), None, Policy::TinyLfu)
        } else {
            cfg(None, Some(100), Policy::TinyLfu)
        };
        let mut s = S::new(c);
        let start = s.window_max;
        let mut z = Zipf::new(2_000, 0.9, 3);
        let mut out = Vec::new();
        for n in 0..60_000u64 {
            let k = z.next();
            if get(&mut s, k, 0).is_none() {
                let w = 1 + (k % 37);
                let _ = s.insert(k, k, k, w, NEVER, &[], 0, eq(k), &mut out);
                out.clear();
            }
            if n % 997 == 0 {
                check(&s);
                assert!(s.window_max >= 1);
            }
        }
        check(&s);
        assert_ne!(
            s.window_max, start,
            "the climber never moved (by_bytes={by_bytes})"
        );
    }
}

// --- index buckets: expiry hints, read buffer, matcher -----------------------

#[test]
fn hint_is_a_lower_bound_of_the_expiry() {
    assert_eq!(hint(NEVER), HINT_NEVER);
    for e in [
        0,
        1,
        (1 << HINT_SHIFT) - 1,
        1 << HINT_SHIFT,
        (1 << HINT_SHIFT) + 1,
        u64::from(u32::MAX) << HINT_SHIFT,
        (u64::from(HINT_NEVER - 1) << HINT_SHIFT) - 1,
        u64::from(HINT_NEVER - 1) << HINT_SHIFT,
        NEVER - 1,
    ] {
        let h = hint(e);
        assert_ne!(h, HINT_NEVER, "{e}");
        assert!(u64::from(h) << HINT_SHIFT <= e, "{e}");
        // ... and a tight one below saturation.
        if e < u64::from(HINT_NEVER - 1) << HINT_SHIFT {
            assert!(e - (u64::from(h) << HINT_SHIFT) < 1 << HINT_SHIFT, "{e}");
        }
    }
}

/// A matcher with a quick answer for nothing, counting full comparisons.
struct Counting<'a> {
    key: u64,
    calls: &'a mut Vec<u64>,
}

impl Matcher<u64> for Counting<'_> {
    type Error = ();
    fn full(&mut self, k: &u64) -> Result<bool, ()> {
        self.calls.push(*k);
        Ok(*k == self.key)
    }
}

#[test]
fn full_comparison_only_on_a_hash_match() {
    let mut s = S::new(cfg(None, Some(5000), Policy::TinyLfu));
    for k in 0..4000 {
        set(&mut s, k, k, 1, NEVER, 0);
    }
    let mut calls = Vec::new();
    for k in 4000..8000u64 {
        let r = s.get(
            k,
            Counting {
                key: k,
                calls: &mut calls,
            },
            |_| 0,
        );
        assert!(matches!(r, Ok(Found::Miss)));
    }
    // Missing keys: every full comparison was of a key whose 32-bit table
    // hash equals the one looked up (a tag match alone is not enough).
    for k in &calls {
        assert!(
            (4000..8000u64).any(|m| table_hash(m) as u32 == table_hash(*k) as u32),
            "{k}"
        );
    }
    let mut calls = Vec::new();
    for k in 0..4000u64 {
        let r = s.get(
            k,
            Counting {
                key: k,
                calls: &mut calls,
            },
            |_| 0,
        );
        assert!(matches!(r, Ok(Found::Hit(v, NEVER)) if *v == k));
    }
    check(&s);
}

#[test]
fn buffered_hits_replay_before_removals() {
    // More hits than the buffer holds, then deletes, expiries, tag
    // invalidation and clear: the buffer never names a freed entry.
    let mut s = S::new(cfg(None, Some(50), Policy::TinyLfu));
    let mut out = Vec::new();
    for k in 0..40u64 {
        let _ = s.insert(k, k, k, 1, 1_000 + k, &["t"], 0, eq(k), &mut out);
    }
    for round in 0..3u64 {
        for k in 0..(3 * READ_BUFFER as u64) {
            let _ = get(&mut s, k % 40, 10);
            check(&s);
        }
        assert!(s.nreads > 0);
        let _ = s.delete(round, eq(round), 10, &mut out);
        assert_eq!(s.nreads, 0);
        check(&s);
        for k in 0..10u64 {
            let _ = get(&mut s, k, 10);
        }
        let before = s.len();
        let gone = s.expire(1_000 + 5 + round * 5, &mut out);
        assert!(gone >= 1 && s.len() == before - gone);
        assert_eq!(s.nreads, 0);
        check(&s);
        for k in 0..10u64 {
            let _ = get(&mut s, 20 + k, 10);
        }
        // An expired hit removes its entry: the buffer is replayed first.
        assert_eq!(get(&mut s, 20, 2_000), None);
        check(&s);
    }
    for k in 0..10u64 {
        let _ = get(&mut s, 30 + k, 10);
    }
    let _ = s.invalidate_tag("t", &mut out);
    assert_eq!(s.nreads, 0);
    check(&s);
    for k in 0..10u64 {
        let _ = get(&mut s, k, 10);
    }
    let _ = s.clear();
    check(&s);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Times in the range of a real monotonic clock, ttls around the hint
    /// unit: neither kind of lookup returns an expired entry, `get` gives
    /// the exact expiry, `get_value` a lower bound of it, and the coarse
    /// path agrees with the exact one.
    #[test]
    fn expiry_hints_never_serve_expired_entries(
        base in 0..(1u64 << 50),
        ops in prop::collection::vec(
            (0..12u64, 0..(4u64 << HINT_SHIFT), prop::option::of(1..(3u64 << HINT_SHIFT)), 0..3u8),
            1..300,
        ),
        max_entries in 1..16u64,
    ) {
        let mut s = S::new(cfg(None, Some(max_entries), Policy::TinyLfu));
        let mut now = base;
        let mut written: HashMap<u64, (u64, u64)> = HashMap::new();
        for (n, (k, dt, ttl, kind)) in ops.into_iter().enumerate() {
            now += dt / 8;
            match kind {
                0 => {
                    let exp = ttl.map_or(NEVER, |t| now + t);
                    set(&mut s, k, n as u64, 1, exp, now);
                    written.insert(k, (n as u64, exp));
                }
                1 => {
                    if let Ok(Found::Hit(v, exp)) = s.get(k, eq(k), |_| now) {
                        let (want, want_exp) = written.get(&k).copied().unwrap_or((u64::MAX, 0));
                        prop_assert_eq!(*v, want);
                        prop_assert_eq!(exp, want_exp);
                        prop_assert!(exp > now, "expired entry returned");
                    }
                }
                _ => {
                    let mut calls = 0;
                    let r = s.get_value(k, eq(k), |_| {
                        calls += 1;
                        now
                    });
                    if let Ok(Found::Hit(v, lower)) = r {
                        let (want, want_exp) = written.get(&k).copied().unwrap_or((u64::MAX, 0));
                        prop_assert_eq!(*v, want);
                        prop_assert!(lower <= want_exp);
                        prop_assert!(want_exp > now, "expired entry returned");
                        if want_exp == NEVER {
                            prop_assert_eq!(calls, 0);
                        }
                    }
                }
            }
            prop_assert!(s.check_invariants().is_ok(), "{:?}", s.check_invariants());
        }
    }
}

fn queue_of(s: &S, k: u64) -> Option<u8> {
    s.table
        .iter()
        .find(|sl| sl.key == k)
        .map(|sl| s.entries[sl.idx as usize].queue)
}

#[test]
fn protected_is_clock_a_hit_entry_gets_a_second_chance() {
    let mut s = S::new(cfg(None, Some(100), Policy::TinyLfu));
    for k in 0..100u64 {
        set(&mut s, k, k, 1, NEVER, 0);
    }
    // Promote everything in probation (protected overflows and demotes).
    for k in 0..100u64 {
        let _ = get(&mut s, k, 0);
    }
    let _ = s.lru_order(); // replays the buffer
    check(&s);
    let head = s.lists[PROTECTED as usize].head;
    assert_ne!(head, NIL);
    let head_key = s.table.iter().find(|sl| sl.idx == head).map(|sl| sl.key);
    let Some(head_key) = head_key else {
        panic!("protected head not indexed");
    };
    let second = s.entries[head as usize].next;
    // A hit marks the head (no move) ...
    assert_eq!(get(&mut s, head_key, 0), Some(head_key));
    let _ = s.lru_order();
    assert_eq!(s.lists[PROTECTED as usize].head, head);
    assert!(s.entries[head as usize].referenced);
    // ... and when protected overflows, the marked head goes to the tail
    // (unmarked) while the next one is demoted.
    let Some(prob) = (0..100u64).find(|&k| queue_of(&s, k) == Some(PROBATION)) else {
        panic!("nothing in probation");
    };
    let _ = get(&mut s, prob, 0);
    let _ = s.lru_order();
    check(&s);
    assert_eq!(queue_of(&s, prob), Some(PROTECTED));
    assert_eq!(queue_of(&s, head_key), Some(PROTECTED));
    assert!(!s.entries[head as usize].referenced);
    assert_eq!(s.entries[second as usize].queue, PROBATION);
}

#[test]
fn index_starts_small_then_jumps_to_the_bound() {
    let mut s = S::new(cfg(None, Some(5000), Policy::TinyLfu));
    assert!(s.table.capacity() >= TABLE_START && s.table.capacity() < 5000);
    for k in 0..3000u64 {
        set(&mut s, k, k, 1, NEVER, 0);
    }
    assert!(s.table.capacity() >= 5000);
    for k in 0..3000u64 {
        assert_eq!(get(&mut s, k, 0), Some(k));
    }
    check(&s);
    let _ = s.clear();
    assert!(s.table.capacity() < 5000);
    set(&mut s, 1, 1, 1, NEVER, 0);
    assert_eq!(get(&mut s, 1, 0), Some(1));
    check(&s);
    // A large bound is sized up front.
    let big = S::new(cfg(None, Some(100_000), Policy::TinyLfu));
    assert!(big.table.capacity() >= 100_000);
}

#[test]
fn hot_entries_skip_the_read_buffer_until_anything_changes() {
    let mut s = S::new(cfg(None, Some(100), Policy::TinyLfu));
    for k in 0..100u64 {
        set(&mut s, k, k, 1, NEVER, 0);
    }
    let Some(hot) = (0..100u64).find(|&k| queue_of(&s, k) == Some(PROBATION)) else {
        panic!("nothing in probation");
    };
    let slot_hot = |s: &S, k: u64| {
        s.table
            .iter()
            .find(|sl| sl.key == k)
            .is_some_and(|sl| sl.hint & HOT != 0)
    };
    // Promoted, then hit up to the top frequency: hot.
    for _ in 0..20 {
        assert_eq!(get(&mut s, hot, 0), Some(hot));
        let _ = s.lru_order();
        check(&s);
    }
    assert!(slot_hot(&s, hot));
    // A hot hit leaves the buffer alone and only counts an access.
    let (n0, u0) = (s.nreads, s.unticked);
    assert_eq!(get(&mut s, hot, 0), Some(hot));
    assert_eq!((s.nreads, s.unticked), (n0, u0 + 1));
    check(&s);
    // Overwriting moves it to the tail (unmarked) and counts an access
    // (marked again): the value changes, the marks stay consistent.
    set(&mut s, hot, 7, 1, NEVER, 0);
    check(&s);
    assert_eq!(get(&mut s, hot, 0), Some(7));
    for _ in 0..20 {
        let _ = get(&mut s, hot, 0);
    }
    let _ = s.lru_order();
    assert!(slot_hot(&s, hot));
    // Aging halves every frequency: nothing stays hot.
    s.halve_freqs();
    assert!(!slot_hot(&s, hot));
    check(&s);
    // Many hot hits, then churn: counters and invariants hold throughout.
    for _ in 0..20 {
        let _ = get(&mut s, hot, 0);
    }
    let hits = s.stats().hits;
    for _ in 0..1000 {
        let _ = get(&mut s, hot, 0);
    }
    assert_eq!(s.stats().hits, hits + 1000);
    for k in 100..400u64 {
        set(&mut s, k, k, 1, NEVER, 0);
        let _ = get(&mut s, k, 0);
        let _ = get(&mut s, hot, 0);
        check(&s);
    }
    assert_eq!(get(&mut s, hot, 0), Some(7));
}
