//! Summary statistics the tools print: one definition of a percentile.

/// The nearest-rank percentile `p` (0 < `p` ≤ 1) of `sorted` (ascending): the smallest value
/// with at least `p` of the values at or below it; 0 for no values.
pub fn nearest_rank(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn nearest_rank_follows_its_definition_on_small_samples() {
        let v = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0];
        assert_eq!(nearest_rank(&v, 0.50), 5.0);
        assert_eq!(nearest_rank(&v, 0.95), 10.0);
        assert_eq!(nearest_rank(&v, 0.10), 1.0);
        assert_eq!(nearest_rank(&[7.0], 0.99), 7.0);
        assert_eq!(nearest_rank(&[], 0.5), 0.0);
    }

    proptest! {
        /// At least a share `p` of the values are at or below the percentile, and fewer are
        /// strictly below it.
        #[test]
        fn at_least_p_of_the_values_are_at_or_below_it(
            mut v in prop::collection::vec(-1e6f64..1e6, 1..200),
            p in 0.01f64..=1.0,
        ) {
            v.sort_by(f64::total_cmp);
            let x = nearest_rank(&v, p);
            let at_or_below = v.iter().filter(|y| **y <= x).count() as f64;
            let below = v.iter().filter(|y| **y < x).count() as f64;
            let n = v.len() as f64;
            prop_assert!(at_or_below >= (n * p).ceil() - 1e-9);
            prop_assert!(below < (n * p).ceil());
        }
    }
}
