//! Kubernetes resource quantities (`500m`, `1.5Gi`, `1e3`, `128974848`), parsed exactly into the integer
//! units placement-core uses: CPU millicores and bytes. Like the API server, a fractional result is
//! rounded **up** (`0.1m` of CPU is 1 millicore; `0.5` bytes is 1 byte). Malformed, negative or
//! overflowing quantities are errors that say what is wrong; no float is involved anywhere.

use std::fmt;

/// Why a quantity string was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error("empty quantity")]
    Empty,
    #[error("quantity {0:?}: not a number")]
    NotANumber(String),
    #[error(
        "quantity {0:?}: unknown suffix {1:?} (expected one of n u m k M G T P E Ki Mi Gi Ti Pi Ei or an exponent like e3)"
    )]
    UnknownSuffix(String, String),
    #[error("quantity {0:?}: negative values are not allowed here")]
    Negative(String),
    #[error("quantity {0:?}: too large")]
    Overflow(String),
}

/// A parsed quantity: `digits × 10^exp10 × 2^exp2`, exactly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Exact {
    negative: bool,
    digits: u128,
    exp10: i32,
    exp2: u32,
}

fn parse_exact(input: &str) -> Result<Exact, QuantityError> {
    let s = input.trim();
    if s.is_empty() {
        return Err(QuantityError::Empty);
    }
    let nan = || QuantityError::NotANumber(input.to_string());
    let (negative, rest) = match s.as_bytes()[0] {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let number_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(number_end);
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    if (whole.is_empty() && frac.is_empty()) || frac.contains('.') {
        return Err(nan());
    }
    let mut digits: u128 = 0;
    for c in whole.bytes().chain(frac.bytes()) {
        digits = digits
            .checked_mul(10)
            .and_then(|d| d.checked_add(u128::from(c - b'0')))
            .ok_or_else(|| QuantityError::Overflow(input.to_string()))?;
    }
    let frac_len = i32::try_from(frac.len()).map_err(|_| QuantityError::Overflow(input.to_string()))?;
    let (exp10, exp2) = match suffix {
        "" => (0, 0),
        "n" => (-9, 0),
        "u" => (-6, 0),
        "m" => (-3, 0),
        "k" => (3, 0),
        "M" => (6, 0),
        "G" => (9, 0),
        "T" => (12, 0),
        "P" => (15, 0),
        "E" => (18, 0),
        "Ki" => (0, 10),
        "Mi" => (0, 20),
        "Gi" => (0, 30),
        "Ti" => (0, 40),
        "Pi" => (0, 50),
        "Ei" => (0, 60),
        s if s.starts_with(['e', 'E']) => {
            let e: i32 = s[1..].parse().map_err(|_| QuantityError::UnknownSuffix(input.to_string(), s.to_string()))?;
            (e, 0)
        }
        s => {
            return Err(QuantityError::UnknownSuffix(input.to_string(), s.to_string()));
        }
    };
    Ok(Exact { negative: negative && digits != 0, digits, exp10: exp10 - frac_len, exp2 })
}

/// `ceil(q × 10^scale)` as an unsigned integer.
fn to_units(input: &str, scale: i32) -> Result<u64, QuantityError> {
    let q = parse_exact(input)?;
    if q.negative {
        return Err(QuantityError::Negative(input.to_string()));
    }
    let overflow = || QuantityError::Overflow(input.to_string());
    let scaled = q.digits.checked_mul(1u128.checked_shl(q.exp2).ok_or_else(overflow)?).ok_or_else(overflow)?;
    let exp = q.exp10 + scale;
    let value = if exp >= 0 {
        10u128.checked_pow(exp as u32).and_then(|p| scaled.checked_mul(p)).ok_or_else(overflow)?
    } else {
        match 10u128.checked_pow((-exp) as u32) {
            Some(p) => scaled.div_ceil(p),
            // More than 38 decimal places below the unit: any non-zero value rounds up to one.
            None => u128::from(scaled != 0),
        }
    };
    u64::try_from(value).map_err(|_| overflow())
}

/// CPU quantity in millicores, rounded up (`"250m"` → 250, `"1.5"` → 1500, `"0.1m"` → 1).
pub fn cpu_millis(quantity: &str) -> Result<u64, QuantityError> {
    to_units(quantity, 3)
}

/// Byte quantity, rounded up (`"1.5Gi"` → 1610612736, `"1e3"` → 1000, `"128974848"`).
pub fn bytes(quantity: &str) -> Result<u64, QuantityError> {
    to_units(quantity, 0)
}

/// Plain count quantity such as `allocatable.pods` (`"110"`), rounded up.
pub fn count(quantity: &str) -> Result<u64, QuantityError> {
    to_units(quantity, 0)
}

/// Formats millicores the way people write them: `"250m"`, `"2"`.
pub struct Millis(pub u64);

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_multiple_of(1000) { write!(f, "{}", self.0 / 1000) } else { write!(f, "{}m", self.0) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_table() {
        let cases: &[(&str, u64)] = &[
            ("500m", 500),
            ("1", 1000),
            ("1.5", 1500),
            ("0.1m", 1),
            ("0.0001", 1),
            ("2k", 2_000_000),
            ("1e3", 1_000_000),
            ("1E-3", 1),
            ("+2", 2000),
            ("100u", 1),
            ("0", 0),
            ("-0", 0),
            (" 3 ", 3000),
        ];
        for (q, want) in cases {
            assert_eq!(cpu_millis(q), Ok(*want), "{q}");
        }
    }

    #[test]
    fn bytes_table() {
        let cases: &[(&str, u64)] = &[
            ("1.5Gi", 1_610_612_736),
            ("128974848", 128_974_848),
            ("129e6", 129_000_000),
            ("129M", 129_000_000),
            ("123Mi", 128_974_848),
            ("1Ki", 1024),
            ("0.5", 1),
            ("1e3", 1000),
            ("8Ei", 8 << 60),
        ];
        for (q, want) in cases {
            assert_eq!(bytes(q), Ok(*want), "{q}");
        }
    }

    #[test]
    fn rejects_malformed() {
        assert_eq!(bytes(""), Err(QuantityError::Empty));
        assert!(matches!(bytes("abc"), Err(QuantityError::NotANumber(_))));
        assert!(matches!(bytes("."), Err(QuantityError::NotANumber(_))));
        assert!(matches!(bytes("1.2.3"), Err(QuantityError::NotANumber(_))));
        assert!(matches!(bytes("5Qi"), Err(QuantityError::UnknownSuffix(_, _))));
        assert!(matches!(bytes("5ex"), Err(QuantityError::UnknownSuffix(_, _))));
        assert!(matches!(bytes("-1"), Err(QuantityError::Negative(_))));
        assert!(matches!(bytes("16Ei"), Err(QuantityError::Overflow(_))));
        assert!(matches!(bytes("1e40"), Err(QuantityError::Overflow(_))));
        assert!(matches!(bytes("1".repeat(50).as_str()), Err(QuantityError::Overflow(_))));
        assert_eq!(
            cpu_millis("5Qi").unwrap_err().to_string(),
            "quantity \"5Qi\": unknown suffix \"Qi\" (expected one of n u m k M G T P E Ki Mi Gi Ti Pi Ei or an exponent like e3)"
        );
    }

    #[test]
    fn millis_display() {
        assert_eq!(Millis(250).to_string(), "250m");
        assert_eq!(Millis(2000).to_string(), "2");
    }
}
