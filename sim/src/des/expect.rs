//! Expectations: `allocation_ratio >= 0.92`, `fgd: wait_p99 <= 30s`,
//! `fgd beats binpack on unallocated_gpus`. Checked on the mean over seeds.

use super::metrics::MetricName;
use super::units::parse_duration;
use serde::Deserialize;

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `>=`
    Ge,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `<`
    Lt,
    /// `==` (within 1e-9)
    Eq,
}

impl Op {
    /// The operator text.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Ge => ">=",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Lt => "<",
            Op::Eq => "==",
        }
    }

    /// Whether `a op b` holds.
    pub fn holds(self, a: f64, b: f64) -> bool {
        match self {
            Op::Ge => a >= b,
            Op::Le => a <= b,
            Op::Gt => a > b,
            Op::Lt => a < b,
            Op::Eq => (a - b).abs() < 1e-9,
        }
    }
}

/// One expectation.
#[derive(Debug, Clone, PartialEq)]
pub enum Expectation {
    /// `[policy:] metric op value` — for one policy, or for every policy when `None`.
    Threshold {
        /// Policy name, or every policy.
        policy: Option<String>,
        /// Metric.
        metric: MetricName,
        /// Operator.
        op: Op,
        /// Bound (ratios as 0..1; `92%` is accepted; waits in seconds, `30s` accepted).
        value: f64,
    },
    /// `a beats b on metric` — `a`'s mean is strictly better than `b`'s.
    Beats {
        /// Winner.
        a: String,
        /// Loser.
        b: String,
        /// Metric.
        metric: MetricName,
    },
}

impl std::fmt::Display for Expectation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Expectation::Threshold {
                policy,
                metric,
                op,
                value,
            } => {
                if let Some(p) = policy {
                    write!(f, "{p}: ")?;
                }
                write!(f, "{metric} {} {value}", op.as_str())
            }
            Expectation::Beats { a, b, metric } => write!(f, "{a} beats {b} on {metric}"),
        }
    }
}

fn parse_value(metric: MetricName, s: &str) -> Result<f64, String> {
    let s = s.trim();
    if let Some(p) = s.strip_suffix('%') {
        return p
            .trim()
            .parse::<f64>()
            .map(|v| v / 100.0)
            .map_err(|_| format!("{s:?} is not a number"));
    }
    if let Ok(v) = s.parse::<f64>() {
        return Ok(v);
    }
    if metric.unit() == "s" {
        return parse_duration(s).map(|d| d.secs());
    }
    Err(format!("{s:?} is not a number"))
}

/// Parse one expectation; the error says what form is expected.
pub fn parse_expectation(s: &str) -> Result<Expectation, String> {
    let form = "expected `[policy:] metric >= value` or `a beats b on metric`";
    let words: Vec<&str> = s.split_whitespace().collect();
    if words.len() == 5 && words[1] == "beats" && words[3] == "on" {
        return Ok(Expectation::Beats {
            a: words[0].to_string(),
            b: words[2].to_string(),
            metric: MetricName::parse(words[4])?,
        });
    }
    let (policy, rest) = match s.split_once(':') {
        Some((p, r)) if !p.contains(['<', '>', '=']) => (Some(p.trim().to_string()), r),
        _ => (None, s),
    };
    for op in [Op::Ge, Op::Le, Op::Eq, Op::Gt, Op::Lt] {
        if let Some((m, v)) = rest.split_once(op.as_str()) {
            let metric = MetricName::parse(m.trim())?;
            let value = parse_value(metric, v)?;
            return Ok(Expectation::Threshold {
                policy,
                metric,
                op,
                value,
            });
        }
    }
    Err(format!("cannot read expectation {s:?}: {form}"))
}

impl<'de> Deserialize<'de> for Expectation {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_expectation(&s).map_err(serde::de::Error::custom)
    }
}

/// The outcome of one expectation.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Verdict {
    /// The expectation, as text.
    pub expectation: String,
    /// Whether it held.
    pub pass: bool,
    /// What was measured, readable (`fgd: allocation_ratio = 0.941 (needs >= 0.92)`).
    pub detail: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        assert_eq!(
            parse_expectation("fgd: wait_p99 <= 30s"),
            Ok(Expectation::Threshold {
                policy: Some("fgd".into()),
                metric: MetricName::WaitP99,
                op: Op::Le,
                value: 30.0
            })
        );
        assert_eq!(
            parse_expectation("allocation_ratio >= 92%"),
            Ok(Expectation::Threshold {
                policy: None,
                metric: MetricName::AllocationRatio,
                op: Op::Ge,
                value: 0.92
            })
        );
        assert!(matches!(
            parse_expectation("fgd beats binpack on unallocated_gpus"),
            Ok(Expectation::Beats { .. })
        ));
        assert!(parse_expectation("fgd is great").is_err());
    }
}
