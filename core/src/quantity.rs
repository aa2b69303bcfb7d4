//! Kubernetes quantities (`500m`, `2`, `16Gi`, `1e3`) parsed exactly, without floating point.

/// Parse a quantity and return its value multiplied by `scale_num / scale_den`, which must be
/// an exact non-negative integer. `Err` names what is wrong (negative, fractional, garbage).
///
/// `scale_num/scale_den` lets one parser serve counts (1/1), milli-CPU (1000/1) and MiB of
/// memory (1/2^20).
pub fn parse_scaled(
    text: &str,
    scale_num: u128,
    scale_den: u128,
    round_up: bool,
) -> Result<u64, String> {
    match parse_plain(text, scale_num, scale_den, round_up) {
        Some(v) => Ok(v),
        None => parse_general(text, scale_num, scale_den, round_up),
    }
}

/// The common spellings (`8`, `500m`, `16Gi`: at most 18 digits, then nothing or a fixed
/// suffix) without the general parser's passes; `None` for anything else, which the
/// general parser answers (same value, or the error). Translation parses several quantities
/// per pod, and the general parser cost hundreds of instructions each.
fn parse_plain(text: &str, scale_num: u128, scale_den: u128, round_up: bool) -> Option<u64> {
    let b = text.as_bytes();
    let digits = b.iter().take_while(|c| c.is_ascii_digit()).count();
    if digits == 0 || digits > 18 {
        return None;
    }
    let mantissa = b[..digits]
        .iter()
        .fold(0u64, |m, &c| m * 10 + u64::from(c - b'0'));
    // Digits end at an ASCII byte: a character boundary.
    let (num_mul, den_mul) = suffix_scale(&text[digits..])?;
    // Checked: an overflow goes to the general parser, which words it.
    let numer = u128::from(mantissa)
        .checked_mul(num_mul)?
        .checked_mul(scale_num)?;
    let denom = den_mul.checked_mul(scale_den)?;
    let (q, r) = (numer / denom, numer % denom);
    let v = match (r, round_up) {
        (0, _) => q,
        (_, true) => q + 1,
        (_, false) => return None,
    };
    u64::try_from(v).ok()
}

/// The value a fixed suffix stands for, as (numerator, denominator); `None` for an exponent
/// or an unknown suffix. Both parsers read suffixes here.
fn suffix_scale(suffix: &str) -> Option<(u128, u128)> {
    Some(match suffix {
        "" => (1, 1),
        "m" => (1, 1000),
        "k" => (1_000, 1),
        "M" => (1_000_000, 1),
        "G" => (1_000_000_000, 1),
        "T" => (1_000_000_000_000, 1),
        "P" => (1_000_000_000_000_000, 1),
        "E" => (1_000_000_000_000_000_000, 1),
        "Ki" => (1 << 10, 1),
        "Mi" => (1 << 20, 1),
        "Gi" => (1 << 30, 1),
        "Ti" => (1 << 40, 1),
        "Pi" => (1 << 50, 1),
        "Ei" => (1 << 60, 1),
        _ => return None,
    })
}

/// [`parse_scaled`] for every spelling.
fn parse_general(
    text: &str,
    scale_num: u128,
    scale_den: u128,
    round_up: bool,
) -> Result<u64, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("empty quantity".into());
    }
    if s.starts_with('-') {
        return Err(format!("negative quantity {s:?}"));
    }
    let s = s.strip_prefix('+').unwrap_or(s);
    let num_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(num_end);
    if num.is_empty() || num == "." || num.matches('.').count() > 1 {
        return Err(format!("{text:?} is not a quantity"));
    }
    let (int_part, frac_part) = num.split_once('.').unwrap_or((num, ""));
    // value = digits / 10^frac_len * multiplier; at most 30 significant digits (fits a u128).
    let mut mantissa: u128 = 0;
    let mut significant = 0usize;
    for b in int_part.bytes().chain(frac_part.bytes()) {
        if significant == 0 && b == b'0' {
            continue;
        }
        significant += 1;
        if significant > 30 {
            return Err(format!("{text:?} is too large"));
        }
        mantissa = mantissa * 10 + u128::from(b - b'0');
    }
    // Leading zeros are not significant, so a fraction can be longer than a u128 holds.
    let too_precise = || format!("{text:?} is too precise");
    let frac_den = u32::try_from(frac_part.len())
        .ok()
        .and_then(|n| 10u128.checked_pow(n))
        .ok_or_else(too_precise)?;
    let (num_mul, den_mul) = match suffix_scale(suffix) {
        Some((num, den)) => (num, den.checked_mul(frac_den).ok_or_else(too_precise)?),
        None if suffix.starts_with(['e', 'E']) => {
            let exp: u32 = suffix[1..]
                .parse()
                .map_err(|_| format!("{text:?} has a bad exponent"))?;
            if exp > 18 {
                return Err(format!("{text:?} is too large"));
            }
            (10u128.pow(exp), frac_den)
        }
        None => return Err(format!("{text:?} has an unknown suffix {suffix:?}")),
    };
    let numer = mantissa
        .checked_mul(num_mul)
        .and_then(|v| v.checked_mul(scale_num))
        .ok_or_else(|| format!("{text:?} is too large"))?;
    let denom = den_mul
        .checked_mul(scale_den)
        .ok_or_else(|| format!("{text:?} is too precise"))?;
    // Dividing u128s is a library call; nearly every quantity fits a u64.
    let (q, r) = match (u64::try_from(numer), u64::try_from(denom)) {
        (Ok(n), Ok(d)) => (u128::from(n / d), u128::from(n % d)),
        _ => (numer / denom, numer % denom),
    };
    let v = if r == 0 {
        q
    } else if round_up {
        q + 1
    } else {
        return Err(format!("{text:?} is not a whole number"));
    };
    u64::try_from(v).map_err(|_| format!("{text:?} is too large"))
}

/// A whole, non-negative count (`2`, `3000`, `1k`).
pub fn parse_count(text: &str) -> Result<u64, String> {
    parse_scaled(text, 1, 1, false)
}

/// CPU in milli-cores (`500m`, `0.5`, `2`), rounded up like kube-scheduler.
pub fn parse_cpu_milli(text: &str) -> Result<u64, String> {
    parse_scaled(text, 1000, 1, true)
}

/// Memory in MiB (`16Gi`, `512Mi`, `1000000`), rounded up.
pub fn parse_memory_mib(text: &str) -> Result<u64, String> {
    parse_scaled(text, 1, 1 << 20, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// The common-spelling path gives the general parser's answer, or leaves it to it.
        #[test]
        fn plain_path_agrees_with_the_general_parser(
            text in "[+ -]?[0-9]{0,20}(\\.[0-9]{0,3})?(m|k|M|G|T|Ki|Mi|Gi|Ti|e3|x|)[ ]?",
        ) {
            for (num, den, up) in [(1, 1, false), (1000, 1, true), (1, 1 << 20, true)] {
                if let Some(v) = parse_plain(&text, num, den, up) {
                    proptest::prop_assert_eq!(Ok(v), parse_general(&text, num, den, up), "{}", text);
                }
                proptest::prop_assert_eq!(
                    parse_scaled(&text, num, den, up),
                    parse_general(&text, num, den, up)
                );
            }
        }
    }

    #[test]
    fn table() {
        type Parser = fn(&str) -> Result<u64, String>;
        let ok: &[(&str, Parser, u64)] = &[
            ("2", parse_count, 2),
            ("3000", parse_count, 3000),
            ("1k", parse_count, 1000),
            ("1e3", parse_count, 1000),
            ("500m", parse_cpu_milli, 500),
            ("0.5", parse_cpu_milli, 500),
            ("2", parse_cpu_milli, 2000),
            ("1Gi", parse_memory_mib, 1024),
            ("1G", parse_memory_mib, 954),
            ("512Mi", parse_memory_mib, 512),
            ("007", parse_count, 7),
            ("0.000", parse_cpu_milli, 0),
            ("0.250", parse_cpu_milli, 250),
            // Leading zeros are not significant digits.
            ("000000000000000000000000000000000001", parse_count, 1),
        ];
        for (text, f, want) in ok {
            assert_eq!(f(text), Ok(*want), "{text}");
        }
        for bad in ["-1", "1.5", "abc", "", "1x", "500m", "1e99", "1..2"] {
            assert!(parse_count(bad).is_err(), "{bad} should fail");
        }
        // A fraction longer than a u128 power of ten: an error, not an overflow.
        let tiny = format!("0.{}1", "0".repeat(40));
        assert_eq!(
            parse_cpu_milli(&tiny),
            Err(format!("{tiny:?} is too precise"))
        );
        let tiny_milli = format!("0.{}1m", "0".repeat(36));
        assert_eq!(
            parse_cpu_milli(&tiny_milli),
            Err(format!("{tiny_milli:?} is too precise"))
        );
        // 31 significant digits: more than the parser carries.
        let long = "1234567890123456789012345678901";
        assert_eq!(parse_count(long), Err(format!("{long:?} is too large")));
    }
}
