//! The tracking law `w = ceil(base × max(0, current / target − 1))`, exactly. Metric values are decimal
//! numbers (Prometheus sends them as strings), so the law runs on `Decimal` with checked arithmetic: the
//! Route53 rebalancer's float version gave `ceil(10 × 0.10000000000000009) = 2` for (10, 1000, 1100); this
//! gives 1.

use super::TrackingError;
use rust_decimal::Decimal;
use std::str::FromStr;

/// A metric value from its text (`"1100"`, `"0.25"`, `"1.5e3"`); NaN, infinities and garbage are errors.
pub fn parse_metric(text: &str) -> Result<Decimal, TrackingError> {
    let t = text.trim();
    let lower = t.to_ascii_lowercase();
    if lower.contains("nan") || lower.contains("inf") || t.is_empty() {
        return Err(TrackingError::NotANumber { value: text.to_string() });
    }
    let parsed = if lower.contains('e') { Decimal::from_scientific(t) } else { Decimal::from_str(t) };
    parsed.map_err(|e| {
        if e.to_string().contains("overflow") || t.len() > 28 && t.chars().all(|c| c.is_ascii_digit() || c == '.') {
            TrackingError::OutOfRange { value: text.to_string() }
        } else {
            TrackingError::NotANumber { value: text.to_string() }
        }
    })
}

/// A metric value from a float, through its shortest decimal form (so `0.1` is exactly 0.1).
pub fn metric_from_f64(x: f64) -> Result<Decimal, TrackingError> {
    if !x.is_finite() {
        return Err(TrackingError::NotANumber { value: x.to_string() });
    }
    parse_metric(&x.to_string()).map_err(|_| TrackingError::OutOfRange { value: x.to_string() })
}

/// The smallest `w >= 0` with `w × target >= base × (current − target)`, capped at `cap`.
/// `target` must be positive (checked by policy validation; a non-positive target gives `cap`).
pub fn desired_weight(base: u32, target: Decimal, current: Decimal, cap: u32) -> u32 {
    if target <= Decimal::ZERO {
        return cap;
    }
    if current <= target || base == 0 {
        return 0;
    }
    let Some(need) = current.checked_sub(target).and_then(|d| d.checked_mul(Decimal::from(base))) else {
        return cap;
    };
    let Some(quotient) = need.checked_div(target) else {
        return cap;
    };
    let cap_dec = Decimal::from(cap);
    if quotient.floor() > cap_dec {
        return cap;
    }
    // The division may round in its last digit: correct it with exact multiplications.
    let mut w = quotient.floor();
    let covers = |w: Decimal| w.checked_mul(target).is_none_or(|v| v >= need);
    while !covers(w) {
        w += Decimal::ONE;
    }
    while w > Decimal::ZERO && covers(w - Decimal::ONE) {
        w -= Decimal::ONE;
    }
    if w > cap_dec { cap } else { u32::try_from(w.mantissa() / 10i128.pow(w.scale())).unwrap_or(cap) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        parse_metric(s).unwrap()
    }

    #[test]
    fn law_table() {
        let cases: &[(u32, &str, &str, u32, &str)] = &[
            (8, "1000", "3000", 16, "Route53 rebalancer README: 3000 req/min, target 1000, base 8"),
            (10, "1000", "1100", 1, "no float artefact"),
            (10, "1000", "1000", 0, "at target"),
            (10, "1000", "10", 0, "below target"),
            (10, "1000", "1000.0001", 1, "tiny excess rounds up"),
            (3, "3", "4", 1, "exact third"),
            (1, "0.1", "0.3", 2, "decimal fractions"),
            (255, "1", "100000000", 255, "capped"),
            (0, "1", "5", 0, "base 0"),
            (7, "1000", "-5", 0, "negative metric"),
        ];
        for (base, target, current, want, name) in cases {
            assert_eq!(desired_weight(*base, d(target), d(current), 255), *want, "{name}");
        }
        assert_eq!(desired_weight(8, Decimal::ZERO, d("1"), 255), 255);
    }

    #[test]
    fn huge_values_saturate() {
        let huge = Decimal::MAX;
        assert_eq!(desired_weight(u32::MAX, d("0.0000000001"), huge, 255), 255);
        assert_eq!(desired_weight(1, Decimal::new(1, 28), d("1"), 1000), 1000);
    }

    #[test]
    fn parsing() {
        assert_eq!(d("1.5e3"), Decimal::from(1500));
        assert_eq!(d(" 42 "), Decimal::from(42));
        for bad in ["NaN", "+Inf", "-Inf", "", "abc", "1..2"] {
            assert!(matches!(parse_metric(bad), Err(TrackingError::NotANumber { .. })), "{bad}");
        }
        assert!(parse_metric("1e40").is_err());
        assert_eq!(metric_from_f64(0.1).unwrap(), d("0.1"));
        assert!(metric_from_f64(f64::NAN).is_err());
        assert!(metric_from_f64(1e300).is_err());
    }
}
