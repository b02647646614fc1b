use std::sync::Arc;

use proptest::prelude::*;

use super::*;

/// The exact nearest-rank percentile of `values` (sorted copy).
fn exact(values: &[u64], p: f64) -> u64 {
    let mut v = values.to_vec();
    v.sort_unstable();
    let rank = nearest_rank(p, v.len() as u64);
    v[(rank - 1) as usize]
}

fn rel_err(got: f64, want: u64) -> f64 {
    if want == 0 {
        got.abs()
    } else {
        (got - want as f64).abs() / want as f64
    }
}

#[test]
fn small_values_are_exact() {
    for v in 0..SUB {
        assert_eq!(bucket_index(v), v as usize);
        assert_eq!(bucket_low(v as usize), v);
        assert_eq!(bucket_high(v as usize), v);
    }
    assert_eq!(bucket_index(128), 128);
    assert_eq!(bucket_index(255), 255);
    assert_eq!(bucket_index(256), 256);
    assert_eq!(bucket_high(256), 257);
}

#[test]
fn default_range_is_one_hour() {
    let h = Histogram::default();
    assert_eq!(h.max_trackable(), DEFAULT_MAX_NS);
    assert_eq!(h.bucket_count(), bucket_index(DEFAULT_MAX_NS) + 1);
    assert!(h.bucket_count() < 5000, "{}", h.bucket_count());
}

#[test]
fn empty_reads_zero() {
    let h = Histogram::default();
    assert_eq!(h.count(), 0);
    assert_eq!(h.min(), 0);
    assert_eq!(h.max(), 0);
    assert_eq!(h.mean(), 0.0);
    assert_eq!(h.percentile(99.0), Ok(0.0));
    assert!(h.buckets().is_empty());
    assert_eq!(h.cumulative(&[10, 100]), vec![0, 0]);
}

#[test]
fn summary_and_percentiles() {
    let h = Histogram::default();
    for v in 1..=100_000u64 {
        h.record(v * 1000);
    }
    assert_eq!(h.count(), 100_000);
    assert_eq!(h.sum(), (1..=100_000u64).map(|v| v * 1000).sum::<u64>());
    assert_eq!(h.min(), 1000);
    assert_eq!(h.max(), 100_000_000);
    assert_eq!(h.percentile(0.0), Ok(1000.0));
    assert_eq!(h.percentile(100.0), Ok(100_000_000.0));
    let ps = [50.0, 90.0, 99.0, 99.9, 1.0];
    let got = h.percentiles(&ps).unwrap_or_default();
    for (p, g) in ps.iter().zip(&got) {
        let want = (p / 100.0 * 100_000.0).ceil() * 1000.0;
        assert!((g - want).abs() / want < 0.01, "p{p}: {g} vs {want}");
    }
    // one pass == one at a time
    for (p, g) in ps.iter().zip(&got) {
        assert_eq!(h.percentile(*p), Ok(*g));
    }
}

#[test]
fn errors_name_the_parameter() {
    let h = Histogram::default();
    for p in [-0.1, 100.5, f64::NAN, f64::INFINITY] {
        match h.percentile(p) {
            Err(Error::InvalidParameter { param, .. }) => assert_eq!(param, "p"),
            other => panic!("{other:?}"),
        }
    }
    for s in [-1.0, f64::NAN, -f64::INFINITY] {
        match seconds_to_ns(s, "seconds") {
            Err(Error::InvalidParameter { param, .. }) => assert_eq!(param, "seconds"),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(seconds_to_ns(f64::INFINITY, "seconds"), Ok(u64::MAX));
    assert_eq!(seconds_to_ns(1.5e-9, "seconds"), Ok(2));
    assert!(Histogram::new(0).is_err());
    assert!(Histogram::new(MAX_MAX_NS + 1).is_err());
    assert!(Histogram::from_max_seconds(0.0).is_err());
    assert!(Histogram::from_max_seconds(f64::NAN).is_err());
    assert!(Histogram::from_max_seconds(1e-3).is_ok());
}

#[test]
fn overflow_goes_to_the_top_bucket() {
    let h = Histogram::new(1_000_000).unwrap_or_default();
    h.record(10);
    h.record(5_000_000);
    h.record(u64::MAX);
    assert_eq!(h.count(), 3);
    assert_eq!(h.overflow(), 2);
    assert_eq!(h.max(), u64::MAX);
    let b = h.buckets();
    assert_eq!(b.len(), 2);
    assert_eq!(b[1].low, bucket_low(bucket_index(1_000_000)));
    assert_eq!(b[1].count, 2);
    // Overflow counts toward no finite bound.
    assert_eq!(h.cumulative(&[100, 2_000_000, u64::MAX]), vec![1, 1, 1]);
}

#[test]
fn reset_forgets() {
    let h = Histogram::default();
    h.record(5);
    h.record(DEFAULT_MAX_NS + 1);
    h.reset();
    assert_eq!(h.summary(), Histogram::default().summary());
    assert!(h.buckets().is_empty());
    h.record(7);
    assert_eq!((h.min(), h.max(), h.count()), (7, 7, 1));
}

#[test]
fn merge_across_ranges() {
    let small = Histogram::new(1_000).unwrap_or_default();
    let big = Histogram::default();
    big.record(10);
    big.record(1_000_000);
    small.merge(&big);
    assert_eq!(small.count(), 2);
    assert_eq!(small.overflow(), 1);
    assert_eq!(small.max(), 1_000_000);
    let wide = Histogram::default();
    small.record(1 << 40); // overflow in small
    wide.merge(&small);
    assert_eq!(wide.count(), 3);
    assert_eq!(wide.overflow(), 2); // exact values lost in small stay overflow
}

#[test]
fn state_round_trips() {
    let h = Histogram::default();
    h.record_many(&[3, 500, 70_000, DEFAULT_MAX_NS + 5]);
    let back = Histogram::default();
    assert_eq!(back.add_state(&h.state()), Ok(()));
    assert_eq!(back.summary(), h.summary());
    assert_eq!(back.buckets(), h.buckets());
    assert_eq!(
        back.percentiles(&[10.0, 60.0]),
        h.percentiles(&[10.0, 60.0])
    );
    let small = Histogram::new(1_000).unwrap_or_default();
    assert!(small.add_state(&h.state()).is_err());
    assert_eq!(small.count(), 0);
}

#[test]
fn threads_sum_exactly() {
    let h = Arc::new(Histogram::default());
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            let h = Arc::clone(&h);
            std::thread::spawn(move || {
                for i in 0..100_000u64 {
                    h.record(t * 1_000 + i % 5_000);
                }
            })
        })
        .collect();
    for t in threads {
        assert!(t.join().is_ok());
    }
    assert_eq!(h.count(), 800_000);
    assert_eq!(h.buckets().iter().map(|b| b.count).sum::<u64>(), 800_000);
    let want: u64 = (0..8u64)
        .map(|t| (0..100_000u64).map(|i| t * 1_000 + i % 5_000).sum::<u64>())
        .sum();
    assert_eq!(h.sum(), want);
    assert_eq!(h.min(), 0);
    assert_eq!(h.max(), 7_000 + 4_999);
}

#[test]
fn nearest_rank_matches_integer_math() {
    for n in [1u64, 2, 3, 7, 10, 99, 100, 101, 1000, 12345] {
        for p in 0..=100u64 {
            let want = ((p * n).div_ceil(100)).max(1);
            assert_eq!(nearest_rank(p as f64, n), want, "p={p} n={n}");
        }
        // halves are exact in binary too
        for p2 in 0..=200u64 {
            let want = ((p2 * n).div_ceil(200)).max(1);
            assert_eq!(
                nearest_rank(p2 as f64 / 2.0, n),
                want,
                "p={} n={n}",
                p2 as f64 / 2.0
            );
        }
    }
    assert_eq!(nearest_rank(f64::MIN_POSITIVE, u64::MAX), 1);
    assert_eq!(nearest_rank(5e-324, 10), 1);
    let r = nearest_rank(99.999_999, u64::MAX);
    assert!(r < u64::MAX && r > u64::MAX - 184_467_440_738, "{r}");
}

proptest! {
    #[test]
    fn every_value_lies_in_its_bucket(v in any::<u64>()) {
        let i = bucket_index(v);
        let (lo, hi) = (bucket_low(i), bucket_high(i));
        prop_assert!(lo <= v && v <= hi, "{v} not in [{lo}, {hi}]");
        // width <= low / 128: relative error of the middle <= 0.4%
        prop_assert!(hi - lo < lo.max(1) / 128 + 1);
        prop_assert_eq!(bucket_index(lo), i);
        prop_assert_eq!(bucket_index(hi), i);
        if hi < u64::MAX {
            prop_assert_eq!(bucket_index(hi + 1), i + 1);
        }
    }

    #[test]
    fn one_value_reads_back_within_the_bound(v in 0u64..DEFAULT_MAX_NS) {
        let h = Histogram::default();
        h.record(v);
        h.record(v);
        let got = h.percentile(50.0).unwrap_or(-1.0);
        // min == max == v clamps the middle to v itself
        prop_assert_eq!(got, v as f64);
        let i = bucket_index(v);
        prop_assert!(rel_err(bucket_mid(i), v) <= 1.0 / 256.0);
    }

    #[test]
    fn percentiles_within_half_a_percent(
        values in prop::collection::vec(1u64..DEFAULT_MAX_NS, 1..400),
        ps in prop::collection::vec(0.0f64..=100.0, 1..6),
    ) {
        let h = Histogram::default();
        for &v in &values {
            h.record(v);
        }
        let got = h.percentiles(&ps).unwrap_or_default();
        for (p, g) in ps.iter().zip(&got) {
            let want = exact(&values, *p);
            prop_assert!(rel_err(*g, want) <= 1.0 / 256.0, "p{}: {} vs {}", p, g, want);
        }
    }

    #[test]
    fn merge_equals_recording_both(
        a in prop::collection::vec(0u64..DEFAULT_MAX_NS * 2, 0..200),
        b in prop::collection::vec(0u64..DEFAULT_MAX_NS * 2, 0..200),
    ) {
        let (ha, hb, both) = (Histogram::default(), Histogram::default(), Histogram::default());
        a.iter().for_each(|&v| ha.record(v));
        hb.record_many(&b);
        a.iter().chain(&b).for_each(|&v| both.record(v));
        ha.merge(&hb);
        prop_assert_eq!(ha.summary(), both.summary());
        prop_assert_eq!(ha.buckets(), both.buckets());
        let ps = [0.0, 50.0, 99.0, 100.0];
        prop_assert_eq!(ha.percentiles(&ps), both.percentiles(&ps));
    }

    #[test]
    fn cumulative_counts_values_at_or_below(
        values in prop::collection::vec(0u64..1_000_000, 1..300),
        mut bounds in prop::collection::vec(0u64..1_200_000, 1..10),
    ) {
        bounds.sort_unstable();
        let h = Histogram::default();
        h.record_many(&values);
        let got = h.cumulative(&bounds);
        for (b, g) in bounds.iter().zip(&got) {
            // exact at bucket edges; never counts a value above the bound
            let at_most = values.iter().filter(|&&v| v <= *b).count() as u64;
            let below_bucket = values.iter().filter(|&&v| bucket_high(bucket_index(v)) <= *b).count() as u64;
            prop_assert!(*g <= at_most);
            prop_assert_eq!(*g, below_bucket);
        }
    }
}
