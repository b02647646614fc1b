use super::*;
use proptest::prelude::*;

#[test]
fn constant_rate_is_evenly_spaced() {
    let s = Schedule::constant(100.0, 1.0).unwrap_or_else(|e| panic!("{e}"));
    let v: Vec<(u64, f64)> = s.collect();
    assert_eq!(v.len(), 100);
    for (i, (idx, t)) in v.iter().enumerate() {
        assert_eq!(*idx, i as u64);
        assert!((t - i as f64 / 100.0).abs() < 1e-9, "{i}: {t}");
    }
}

#[test]
fn bad_arguments_name_the_parameter() {
    for (rate, dur, param) in [
        (0.0, 1.0, "rate"),
        (-1.0, 1.0, "rate"),
        (f64::NAN, 1.0, "rate"),
        (10.0, 0.0, "duration"),
        (10.0, f64::INFINITY, "duration"),
    ] {
        match Schedule::constant(rate, dur) {
            Err(Error::InvalidParameter { param: p, .. }) => assert_eq!(p, param),
            other => panic!("{rate} {dur}: {other:?}"),
        }
    }
    assert!(Schedule::from_segments(vec![]).is_err());
    let s = Schedule::constant(1.0, 1.0).unwrap_or_else(|e| panic!("{e}"));
    assert!(Pacer::new(s, DEFAULT_SPIN, -1.0).is_err());
}

#[test]
fn ramp_matches_integral() {
    // 0 -> 200/s over 2 s: 200 arrivals, the k-th at t = sqrt(k / 50).
    let s = Schedule::from_segments(vec![Segment {
        duration_s: 2.0,
        start_rate: 0.0,
        end_rate: 200.0,
    }])
    .unwrap_or_else(|e| panic!("{e}"));
    let v: Vec<(u64, f64)> = s.collect();
    assert_eq!(v.len(), 200);
    for (k, t) in &v {
        let want = (*k as f64 / 50.0).sqrt();
        assert!((t - want).abs() < 1e-9, "{k}: {t} vs {want}");
    }
}

#[test]
fn steps_with_a_silent_gap() {
    let s = Schedule::from_segments(vec![
        Segment {
            duration_s: 1.0,
            start_rate: 10.0,
            end_rate: 10.0,
        },
        Segment {
            duration_s: 1.0,
            start_rate: 0.0,
            end_rate: 0.0,
        },
        Segment {
            duration_s: 1.0,
            start_rate: 20.0,
            end_rate: 20.0,
        },
    ])
    .unwrap_or_else(|e| panic!("{e}"));
    let v: Vec<f64> = s.map(|(_, t)| t).collect();
    assert_eq!(v.len(), 30);
    assert!(v[..10].iter().all(|t| *t < 1.0));
    assert!(v[10..].iter().all(|t| *t >= 2.0 && *t < 3.0));
    assert!((v[10] - 2.0).abs() < 1e-9);
}

#[test]
fn poisson_is_seeded_and_has_the_mean_rate() {
    let a: Vec<f64> = Schedule::constant(1000.0, 20.0)
        .unwrap_or_else(|e| panic!("{e}"))
        .with_poisson(7)
        .map(|(_, t)| t)
        .collect();
    let b: Vec<f64> = Schedule::constant(1000.0, 20.0)
        .unwrap_or_else(|e| panic!("{e}"))
        .with_poisson(7)
        .map(|(_, t)| t)
        .collect();
    assert_eq!(a, b);
    // 20000 expected, sd ~141.
    assert!((a.len() as f64 - 20000.0).abs() < 800.0, "{}", a.len());
    // Exponential gaps: coefficient of variation ~1.
    let gaps: Vec<f64> = a.windows(2).map(|w| w[1] - w[0]).collect();
    let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
    let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64;
    let cv = var.sqrt() / mean;
    assert!((cv - 1.0).abs() < 0.05, "cv {cv}");
}

#[test]
fn pacer_hands_out_on_time() {
    let s = Schedule::constant(2000.0, 0.05).unwrap_or_else(|e| panic!("{e}"));
    let mut p = Pacer::new(s, DEFAULT_SPIN, 0.5).unwrap_or_else(|e| panic!("{e}"));
    let mut n = 0;
    loop {
        match p.wait_next(None) {
            Next::Due(a) => {
                assert_eq!(a.index, n);
                // Never early.
                assert!(p.elapsed() >= a.intended_s);
                n += 1;
            }
            Next::Pending => panic!("no limit given"),
            Next::Done => break,
        }
    }
    assert_eq!(n, 100);
    assert_eq!(p.stats().issued, 100);
}

#[test]
fn pacer_counts_late_arrivals_and_honours_the_limit() {
    let s = Schedule::constant(1000.0, 1.0).unwrap_or_else(|e| panic!("{e}"));
    let start = Instant::now() - Duration::from_millis(100);
    let mut p = Pacer::starting_at(s, DEFAULT_SPIN, 0.001, start);
    // The first ~100 arrivals are already overdue.
    for _ in 0..50 {
        assert!(matches!(p.wait_next(None), Next::Due(_)));
    }
    assert!(p.stats().late >= 50);
    let s = Schedule::constant(1.0, 10.0).unwrap_or_else(|e| panic!("{e}"));
    let mut p = Pacer::new(s, DEFAULT_SPIN, 0.001).unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(p.wait_next(None), Next::Due(_)));
    // The next is 1 s away: a 10 ms limit returns Pending and keeps it.
    assert_eq!(p.wait_next(Some(Duration::from_millis(10))), Next::Pending);
    assert!(p.elapsed() < 0.9);
    assert_eq!(p.stats().issued, 1);
}

proptest! {
    #[test]
    fn offsets_are_sorted_and_inside_the_schedule(
        segs in prop::collection::vec((0.01f64..2.0, 0.0f64..500.0, 0.0f64..500.0), 1..5),
        seed in any::<u64>(),
        poisson in any::<bool>(),
    ) {
        let segments: Vec<Segment> = segs
            .iter()
            .map(|&(d, a, b)| Segment { duration_s: d, start_rate: a, end_rate: b })
            .collect();
        let total: f64 = segments.iter().map(|s| s.duration_s).sum();
        let expected: f64 = segments.iter().map(Segment::count).sum();
        let mut s = Schedule::from_segments(segments).unwrap_or_else(|e| panic!("{e}"));
        if poisson {
            s = s.with_poisson(seed);
        }
        let v: Vec<(u64, f64)> = s.collect();
        for w in v.windows(2) {
            prop_assert!(w[0].1 <= w[1].1);
            prop_assert_eq!(w[0].0 + 1, w[1].0);
        }
        for (_, t) in &v {
            prop_assert!(*t >= 0.0 && *t < total);
        }
        if !poisson {
            // Deterministic: exactly ceil(expected) arrivals (u = 0, 1, ... < expected).
            let want = expected.ceil() as usize;
            prop_assert!((v.len() as i64 - want as i64).abs() <= 1, "{} vs {}", v.len(), expected);
        }
    }

    #[test]
    fn constant_rate_count(rate in 1.0f64..5000.0, dur in 0.01f64..3.0) {
        let v = Schedule::constant(rate, dur).unwrap_or_else(|e| panic!("{e}")).count();
        let want = (rate * dur).ceil() as usize;
        prop_assert!((v as i64 - want as i64).abs() <= 1);
    }
}
