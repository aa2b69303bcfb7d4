//! Values with units in scenario files: durations (`90s`, `5m`, `1.5h`, `200ms`), memory sizes
//! (Kubernetes quantities: `80Gi`, `512Mi`) and CPU (`64`, `500m`). They parse while the YAML
//! is read, so a bad unit is reported with the file's line and column.

use serde::Deserialize;

/// A duration in virtual milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Dur(pub u64);

impl Dur {
    /// Seconds as a float.
    pub fn secs(self) -> f64 {
        self.0 as f64 / 1000.0
    }
}

/// Parse `250ms`, `30s`, `5m`, `2h`, `1d` (a plain number is seconds).
pub fn parse_duration(text: &str) -> Result<Dur, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let v: f64 = num
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (examples: 250ms, 30s, 5m, 2h, 1d)"))?;
    let ms = match unit.trim() {
        "ms" => v,
        "" | "s" => v * 1e3,
        "m" | "min" => v * 60e3,
        "h" => v * 3600e3,
        "d" => v * 86400e3,
        u => {
            return Err(format!(
                "{text:?}: unknown duration unit {u:?} (use ms, s, m, h or d)"
            ));
        }
    };
    if !ms.is_finite() || !(0.0..=1e15).contains(&ms) {
        return Err(format!("{text:?} is out of range"));
    }
    Ok(Dur(ms.round() as u64))
}

impl std::fmt::Display for Dur {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = self.0;
        if ms.is_multiple_of(3_600_000) && ms > 0 {
            write!(f, "{}h", ms / 3_600_000)
        } else if ms.is_multiple_of(60_000) && ms > 0 {
            write!(f, "{}m", ms / 60_000)
        } else if ms.is_multiple_of(1000) {
            write!(f, "{}s", ms / 1000)
        } else {
            write!(f, "{ms}ms")
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum NumOrText {
    Num(f64),
    Text(String),
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match NumOrText::deserialize(d)? {
            NumOrText::Num(n) if n >= 0.0 && n.is_finite() => Ok(Dur((n * 1000.0).round() as u64)),
            NumOrText::Num(n) => Err(serde::de::Error::custom(format!("{n} is not a duration"))),
            NumOrText::Text(s) => parse_duration(&s).map_err(serde::de::Error::custom),
        }
    }
}

/// Memory in MiB, written as a Kubernetes quantity (`80Gi`, `81920Mi`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Mem(pub u64);

impl<'de> Deserialize<'de> for Mem {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = match NumOrText::deserialize(d)? {
            NumOrText::Num(n) => format!("{n}"),
            NumOrText::Text(s) => s,
        };
        hami_core::quantity::parse_memory_mib(&text)
            .map(Mem)
            .map_err(|e| {
                serde::de::Error::custom(format!(
                    "bad memory size {text:?}: {e} (use a Kubernetes quantity such as 80Gi or 512Mi)"
                ))
            })
    }
}

/// CPU in milli-cores, written as a Kubernetes quantity (`64`, `500m`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Cpu(pub u64);

impl<'de> Deserialize<'de> for Cpu {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = match NumOrText::deserialize(d)? {
            NumOrText::Num(n) => format!("{n}"),
            NumOrText::Text(s) => s,
        };
        hami_core::quantity::parse_cpu_milli(&text)
            .map(Cpu)
            .map_err(|e| {
                serde::de::Error::custom(format!(
                    "bad CPU quantity {text:?}: {e} (use cores such as 64 or milli-cores such as 500m)"
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Dur(250)));
        assert_eq!(parse_duration("1.5h"), Ok(Dur(5_400_000)));
        assert_eq!(parse_duration("30"), Ok(Dur(30_000)));
        assert!(parse_duration("5 weeks").is_err());
        assert_eq!(Dur(300_000).to_string(), "5m");
    }
}
