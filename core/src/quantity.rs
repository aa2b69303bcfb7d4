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
    let mut num_mul: u128 = 1;
    let mut den_mul: u128 = 10u128.pow(frac_part.len() as u32);
    match suffix {
        "" => {}
        "m" => den_mul *= 1000,
        "k" => num_mul = 1_000,
        "M" => num_mul = 1_000_000,
        "G" => num_mul = 1_000_000_000,
        "T" => num_mul = 1_000_000_000_000,
        "P" => num_mul = 1_000_000_000_000_000,
        "E" => num_mul = 1_000_000_000_000_000_000,
        "Ki" => num_mul = 1 << 10,
        "Mi" => num_mul = 1 << 20,
        "Gi" => num_mul = 1 << 30,
        "Ti" => num_mul = 1 << 40,
        "Pi" => num_mul = 1 << 50,
        "Ei" => num_mul = 1 << 60,
        e if e.starts_with(['e', 'E']) => {
            let exp: u32 = e[1..]
                .parse()
                .map_err(|_| format!("{text:?} has a bad exponent"))?;
            if exp > 18 {
                return Err(format!("{text:?} is too large"));
            }
            num_mul = 10u128.pow(exp);
        }
        other => return Err(format!("{text:?} has an unknown suffix {other:?}")),
    }
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
        // 31 significant digits: more than the parser carries.
        let long = "1234567890123456789012345678901";
        assert_eq!(parse_count(long), Err(format!("{long:?} is too large")));
    }
}
