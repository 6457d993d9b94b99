//! Kubernetes resource quantities: `250m` or `0.5` cores, `64Mi` or `1G`
//! bytes.
//!
//! A quantity is a non-negative decimal number (`2`, `0.5`) followed by an
//! optional suffix. CPU takes no suffix (cores) or `m` (millicores) and must
//! come to a whole number of millicores. Memory takes no suffix (bytes), a
//! binary suffix (`Ki` `Mi` `Gi` `Ti` `Pi` `Ei`) or a decimal one (`k` `M`
//! `G` `T` `P` `E`); a fraction of a byte is rounded up.
//!
//! Out of scope: exponents (`1e3`) and the other SI suffixes Kubernetes
//! accepts for CPU (`1k`, `500u`). A YAML number such as `1e3` reaches us
//! already written out in full and is accepted.

/// Why a quantity could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    /// Nothing was written.
    #[error("invalid quantity \"\": must not be empty")]
    Empty,
    /// A minus sign.
    #[error("invalid quantity {0:?}: must not be negative")]
    Negative(String),
    /// The number is followed by a suffix this kind of quantity does not take.
    #[error("invalid quantity {quantity:?}: unknown suffix {suffix:?}")]
    UnknownSuffix {
        /// The quantity as written.
        quantity: String,
        /// The part after the number.
        suffix: String,
    },
    /// Not a number with an optional suffix.
    #[error("invalid quantity {quantity:?}: expected {expected}")]
    Malformed {
        /// The quantity as written.
        quantity: String,
        /// What a valid quantity looks like.
        expected: &'static str,
    },
    /// A CPU quantity finer than one millicore.
    #[error("invalid quantity {0:?}: must be a whole number of millicores")]
    TooPrecise(String),
    /// The value does not fit in 64 bits.
    #[error("invalid quantity {0:?}: too large")]
    TooLarge(String),
}

/// What [`QuantityError::Malformed`] says a CPU quantity looks like.
const CPU_SYNTAX: &str = "cores (\"0.5\", \"2\") or millicores (\"250m\")";

/// What [`QuantityError::Malformed`] says a memory quantity looks like.
const MEMORY_SYNTAX: &str =
    "bytes with an optional suffix Ki, Mi, Gi, Ti, Pi, Ei, k, M, G, T, P or E (\"64Mi\")";

/// Binary memory suffixes and their power of two, largest first.
const BINARY_SUFFIXES: [(&str, u32); 6] = [
    ("Ei", 60),
    ("Pi", 50),
    ("Ti", 40),
    ("Gi", 30),
    ("Mi", 20),
    ("Ki", 10),
];

/// Decimal memory suffixes and their power of ten.
const DECIMAL_SUFFIXES: [(&str, u32); 6] = [
    ("E", 18),
    ("P", 15),
    ("T", 12),
    ("G", 9),
    ("M", 6),
    ("k", 3),
];

/// Parses a CPU quantity into millicores: `250m` → 250, `0.5` → 500.
pub fn parse_cpu(q: &str) -> Result<u64, QuantityError> {
    let (number, suffix) = split(q, CPU_SYNTAX)?;
    let (whole_scale, fraction_digits) = match suffix {
        "" => (1000, 3),
        "m" => (1, 0),
        other => return Err(unknown_suffix(q, other)),
    };
    let whole = parse_whole(q, number.whole)?
        .checked_mul(whole_scale)
        .ok_or_else(|| QuantityError::TooLarge(q.to_owned()))?;
    let (shifted, rest) = shift_fraction(q, number.fraction, fraction_digits)?;
    if rest.bytes().any(|digit| digit != b'0') {
        return Err(QuantityError::TooPrecise(q.to_owned()));
    }
    whole
        .checked_add(shifted)
        .ok_or_else(|| QuantityError::TooLarge(q.to_owned()))
}

/// Parses a memory quantity into bytes: `64Mi` → 67108864, `1k` → 1000,
/// `0.5Ki` → 512; a fraction of a byte is rounded up.
pub fn parse_memory(q: &str) -> Result<u64, QuantityError> {
    let (number, suffix) = split(q, MEMORY_SYNTAX)?;
    let (power_of_two, power_of_ten) = if suffix.is_empty() {
        (0, 0)
    } else if let Some((_, power)) = BINARY_SUFFIXES.iter().find(|(name, _)| *name == suffix) {
        (*power, 0)
    } else if let Some((_, power)) = DECIMAL_SUFFIXES.iter().find(|(name, _)| *name == suffix) {
        (0, *power)
    } else {
        return Err(unknown_suffix(q, suffix));
    };
    let too_large = || QuantityError::TooLarge(q.to_owned());
    let multiplier = 10u64
        .checked_pow(power_of_ten)
        .and_then(|scale| scale.checked_mul(1 << power_of_two))
        .ok_or_else(too_large)?;
    let whole = parse_whole(q, number.whole)?
        .checked_mul(multiplier)
        .ok_or_else(too_large)?;
    // The fraction times 10^p is a whole part plus a smaller fraction; that
    // times 2^p is doubled digit by digit, so no precision is lost however
    // many digits were written.
    let (shifted, rest) = shift_fraction(q, number.fraction, power_of_ten as usize)?;
    let (doubled, remainder) = double_fraction(rest, power_of_two);
    let fraction = shifted
        .checked_mul(1 << power_of_two)
        .and_then(|value| value.checked_add(doubled))
        .and_then(|value| value.checked_add(u64::from(remainder)))
        .ok_or_else(too_large)?;
    whole.checked_add(fraction).ok_or_else(too_large)
}

/// Writes millicores as Kubernetes does: `2` for whole cores, else `250m`.
pub fn format_cpu(millis: u64) -> String {
    if millis.is_multiple_of(1000) {
        (millis / 1000).to_string()
    } else {
        format!("{millis}m")
    }
}

/// Writes bytes with the largest binary suffix that divides them exactly:
/// `64Mi`, `1Gi`, else plain bytes.
pub fn format_memory(bytes: u64) -> String {
    if bytes != 0 {
        for (suffix, power) in BINARY_SUFFIXES {
            let unit = 1u64 << power;
            if bytes.is_multiple_of(unit) {
                return format!("{}{suffix}", bytes / unit);
            }
        }
    }
    bytes.to_string()
}

/// The digits of a quantity's number: `12` and `5` for `12.5`.
struct Number<'a> {
    whole: &'a str,
    fraction: &'a str,
}

/// Splits `q` into its number and its suffix, checking the number's syntax.
fn split<'a>(q: &'a str, expected: &'static str) -> Result<(Number<'a>, &'a str), QuantityError> {
    if q.is_empty() {
        return Err(QuantityError::Empty);
    }
    if q.starts_with('-') {
        return Err(QuantityError::Negative(q.to_owned()));
    }
    let malformed = || QuantityError::Malformed {
        quantity: q.to_owned(),
        expected,
    };
    let end = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(q.len());
    let (number, suffix) = q.split_at_checked(end).ok_or_else(malformed)?;
    let (whole, fraction) = match number.split_once('.') {
        Some((whole, fraction)) => (whole, fraction),
        None => (number, ""),
    };
    let digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || (number.contains('.') && !digits(fraction)) {
        return Err(malformed());
    }
    Ok((Number { whole, fraction }, suffix))
}

/// Parses the whole part, leading zeros allowed.
fn parse_whole(q: &str, digits: &str) -> Result<u64, QuantityError> {
    digits.bytes().try_fold(0u64, |value, digit| {
        value
            .checked_mul(10)
            .and_then(|value| value.checked_add(u64::from(digit - b'0')))
            .ok_or_else(|| QuantityError::TooLarge(q.to_owned()))
    })
}

/// Multiplies the fraction `0.<digits>` by 10^`places`: the whole part of
/// the product, and the digits of the fraction left over.
fn shift_fraction<'a>(
    q: &str,
    digits: &'a str,
    places: usize,
) -> Result<(u64, &'a str), QuantityError> {
    let (head, rest) = digits
        .split_at_checked(places.min(digits.len()))
        .unwrap_or((digits, ""));
    let padding = places.saturating_sub(head.len());
    let value = parse_whole(q, head)?;
    let scale = u32::try_from(padding)
        .ok()
        .and_then(|padding| 10u64.checked_pow(padding))
        .ok_or_else(|| QuantityError::TooLarge(q.to_owned()))?;
    let value = value
        .checked_mul(scale)
        .ok_or_else(|| QuantityError::TooLarge(q.to_owned()))?;
    Ok((value, rest))
}

/// Multiplies the fraction `0.<digits>` by 2^`power` (at most 63): the whole
/// part of the product, and whether a fraction is left over.
fn double_fraction(digits: &str, power: u32) -> (u64, bool) {
    let mut fraction: Vec<u8> = digits.bytes().map(|digit| digit - b'0').collect();
    let mut whole = 0u64;
    for _ in 0..power {
        let mut carry = 0;
        for digit in fraction.iter_mut().rev() {
            let doubled = *digit * 2 + carry;
            *digit = doubled % 10;
            carry = doubled / 10;
        }
        // `whole` stays below 2^power, so doubling it cannot overflow.
        whole = whole * 2 + u64::from(carry);
    }
    (whole, fraction.iter().any(|digit| *digit != 0))
}

fn unknown_suffix(q: &str, suffix: &str) -> QuantityError {
    QuantityError::UnknownSuffix {
        quantity: q.to_owned(),
        suffix: suffix.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_accepts_cores_and_millicores() {
        assert_eq!(parse_cpu("250m"), Ok(250));
        assert_eq!(parse_cpu("100m"), Ok(100));
        assert_eq!(parse_cpu("1"), Ok(1000));
        assert_eq!(parse_cpu("0.5"), Ok(500));
        assert_eq!(parse_cpu("2.25"), Ok(2250));
        assert_eq!(parse_cpu("0.001"), Ok(1));
        assert_eq!(parse_cpu("0.5000"), Ok(500));
        assert_eq!(parse_cpu("0"), Ok(0));
        assert_eq!(parse_cpu("007"), Ok(7000));
    }

    #[test]
    fn cpu_rejects_bad_quantities() {
        assert_eq!(parse_cpu(""), Err(QuantityError::Empty));
        assert_eq!(parse_cpu("-1"), Err(QuantityError::Negative("-1".into())));
        assert_eq!(
            parse_cpu("0.0001"),
            Err(QuantityError::TooPrecise("0.0001".into()))
        );
        assert_eq!(
            parse_cpu("1.5m"),
            Err(QuantityError::TooPrecise("1.5m".into()))
        );
        assert_eq!(
            parse_cpu("18446744073709552"),
            Err(QuantityError::TooLarge("18446744073709552".into()))
        );
        assert_eq!(
            parse_cpu("99999999999999999999m"),
            Err(QuantityError::TooLarge("99999999999999999999m".into()))
        );
        for garbage in ["abc", "1.", ".5", "1.2.3", "+1", " 1", "m"] {
            assert!(
                matches!(parse_cpu(garbage), Err(QuantityError::Malformed { .. })),
                "{garbage:?}"
            );
        }
        assert_eq!(
            parse_cpu("1Gi").map_err(|e| e.to_string()),
            Err("invalid quantity \"1Gi\": unknown suffix \"Gi\"".into())
        );
    }

    #[test]
    fn memory_accepts_suffixes() {
        assert_eq!(parse_memory("1048576"), Ok(1 << 20));
        assert_eq!(parse_memory("64Mi"), Ok(64 << 20));
        assert_eq!(parse_memory("1Ki"), Ok(1024));
        assert_eq!(parse_memory("1Gi"), Ok(1 << 30));
        assert_eq!(parse_memory("2Ti"), Ok(2 << 40));
        assert_eq!(parse_memory("1Pi"), Ok(1 << 50));
        assert_eq!(parse_memory("15Ei"), Ok(15 << 60));
        assert_eq!(parse_memory("1k"), Ok(1000));
        assert_eq!(parse_memory("1M"), Ok(1_000_000));
        assert_eq!(parse_memory("1G"), Ok(1_000_000_000));
        assert_eq!(parse_memory("1T"), Ok(1_000_000_000_000));
        assert_eq!(parse_memory("1P"), Ok(1_000_000_000_000_000));
        assert_eq!(parse_memory("18E"), Ok(18_000_000_000_000_000_000));
    }

    #[test]
    fn memory_fractions_round_up() {
        assert_eq!(parse_memory("0.5Gi"), Ok(1 << 29));
        assert_eq!(parse_memory("1.5Ki"), Ok(1536));
        assert_eq!(parse_memory("0.5"), Ok(1));
        assert_eq!(parse_memory("1.0"), Ok(1));
        assert_eq!(parse_memory("0.001Ki"), Ok(2));
        assert_eq!(parse_memory("2.5k"), Ok(2500));
        assert_eq!(parse_memory("0.0000001k"), Ok(1));
        assert_eq!(parse_memory("1.25M"), Ok(1_250_000));
        // 1/2^60 exactly: one byte, not two.
        assert_eq!(
            parse_memory("0.000000000000000000867361737988403547205962240695953369140625Ei"),
            Ok(1)
        );
        assert_eq!(parse_memory("0.0000000000000000000000000001Ei"), Ok(1));
    }

    #[test]
    fn memory_rejects_bad_quantities() {
        assert_eq!(parse_memory(""), Err(QuantityError::Empty));
        assert_eq!(
            parse_memory("-1Mi"),
            Err(QuantityError::Negative("-1Mi".into()))
        );
        assert_eq!(
            parse_memory("64MB").map_err(|e| e.to_string()),
            Err("invalid quantity \"64MB\": unknown suffix \"MB\"".into())
        );
        assert!(matches!(
            parse_memory("1m"),
            Err(QuantityError::UnknownSuffix { .. })
        ));
        assert_eq!(
            parse_memory("16Ei"),
            Err(QuantityError::TooLarge("16Ei".into()))
        );
        assert_eq!(
            parse_memory("19E"),
            Err(QuantityError::TooLarge("19E".into()))
        );
        assert_eq!(
            parse_memory("18446744073709551616"),
            Err(QuantityError::TooLarge("18446744073709551616".into()))
        );
        assert_eq!(parse_memory("18446744073709551615"), Ok(u64::MAX));
        assert_eq!(
            parse_memory("18446744073709551615.5"),
            Err(QuantityError::TooLarge("18446744073709551615.5".into()))
        );
        for garbage in ["Mi", "1..5Mi", ".5Mi", "x"] {
            assert!(
                matches!(parse_memory(garbage), Err(QuantityError::Malformed { .. })),
                "{garbage:?}"
            );
        }
    }

    #[test]
    fn formats_round_trip() {
        assert_eq!(format_cpu(250), "250m");
        assert_eq!(format_cpu(2000), "2");
        assert_eq!(format_cpu(0), "0");
        assert_eq!(format_memory(64 << 20), "64Mi");
        assert_eq!(format_memory(1 << 30), "1Gi");
        assert_eq!(format_memory(1536), "1536");
        assert_eq!(format_memory(1000), "1000");
        assert_eq!(format_memory(0), "0");
        assert_eq!(format_memory(3 << 60), "3Ei");
        for millis in [0, 1, 250, 1000, 1500, 123_456] {
            assert_eq!(parse_cpu(&format_cpu(millis)), Ok(millis));
        }
        for bytes in [0, 1, 1024, 1536, 64 << 20, 5 << 40, u64::MAX] {
            assert_eq!(parse_memory(&format_memory(bytes)), Ok(bytes));
        }
    }
}
