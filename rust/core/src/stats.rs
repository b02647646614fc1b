//! Small helpers shared by the components' counters.

/// `num / den` as a float, 0.0 when nothing was counted yet.
pub fn ratio(num: u64, den: u64) -> f64 {
    if den == 0 {
        0.0
    } else {
        num as f64 / den as f64
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn ratio_guards_zero() {
        assert_eq!(super::ratio(5, 0), 0.0);
        assert_eq!(super::ratio(3, 4), 0.75);
    }
}
