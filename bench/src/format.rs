//! How the bench's tables write figures: rates with thousands separators, milliseconds,
//! ratios, and the mark for a target met or missed.

use std::time::Duration;

pub fn rate(x: f64) -> String {
    let n = x.round() as u64;
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    format!("{out}/s")
}

pub fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

pub fn times(x: f64) -> String {
    format!("{x:.2}×")
}

pub fn mark(met: Option<bool>, what: &str) -> String {
    match met {
        Some(true) => format!("✓ {what}"),
        Some(false) => format!("✗ {what}"),
        None => format!("? {what}"),
    }
}
