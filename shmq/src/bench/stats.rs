//! Medians, quartiles and per-round paired ratios.

use serde::Serialize;

/// A figure over the rounds of a run: the median and the spread.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Stat {
    pub median: f64,
    pub p25: f64,
    pub p75: f64,
    pub min: f64,
    pub max: f64,
    /// Rounds it summarises.
    pub n: usize,
}

pub fn quantile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let pos = q * (s.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    s[lo] + (s[hi] - s[lo]) * (pos - lo as f64)
}

impl Stat {
    pub fn of(v: &[f64]) -> Stat {
        Stat {
            median: quantile(v, 0.5),
            p25: quantile(v, 0.25),
            p75: quantile(v, 0.75),
            min: v.iter().copied().fold(f64::INFINITY, f64::min),
            max: v.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            n: v.len(),
        }
    }
}

/// `a[r] / b[r]` for every round `r` both have, summarised: each ratio
/// compares two batches that ran back to back on the same machine state.
pub fn paired_ratio(a: &[f64], b: &[f64]) -> Option<Stat> {
    let v: Vec<f64> = a
        .iter()
        .zip(b)
        .filter(|(_, y)| **y > 0.0)
        .map(|(x, y)| x / y)
        .collect();
    (!v.is_empty()).then(|| Stat::of(&v))
}
