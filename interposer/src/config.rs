//! The environment contract (HAMi-core's variable names), parsed once.
//!
//! Bad values never abort and never silently limit: each produces an `Error` line naming the
//! variable and the value, and the safe default (no limit) applies.

use crate::log::Level;

/// Largest number of devices with their own limit (`..._LIMIT_0` .. `_15`), as in HAMi-core.
pub const MAX_DEVICES: usize = 16;

/// What `GPU_CORE_UTILIZATION_POLICY` selects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// Enforce the SM limit always — also for a process alone on its card. (HAMi-core's
    /// `default` only limits when the card is shared; we deliberately do not copy that.)
    Default,
    /// Same as `Default` here; accepted for compatibility.
    Force,
    /// Never limit compute.
    Disable,
}

/// Parsed configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// `CUDA_DISABLE_CONTROL=true`: pure pass-through whatever else is set.
    pub disabled: bool,
    /// Memory limit in bytes per CUDA device ordinal; 0 = none.
    pub mem_limit: [u64; MAX_DEVICES],
    /// SM limit in percent per device; 0 = none (values ≥ 100 also mean none).
    pub sm_limit: [u32; MAX_DEVICES],
    /// Compute policy.
    pub policy: Policy,
    /// Log level 0..=4.
    pub log_level: u8,
    /// Path of the shared accounting file.
    pub cache_path: String,
}

/// Default shared accounting file (HAMi-core uses `/tmp/cudevshr.cache` with another layout, so
/// ours differs to never misread it).
pub const DEFAULT_CACHE: &str = "/tmp/hami-rs-vgpu.cache";

/// Parses `16g`, `512m`, `1024k` (powers of 1024, either case) or a byte count.
pub fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let last = t.chars().last()?;
    let (num, mult) = match last {
        'k' | 'K' => (&t[..t.len() - 1], 1u64 << 10),
        'm' | 'M' => (&t[..t.len() - 1], 1u64 << 20),
        'g' | 'G' => (&t[..t.len() - 1], 1u64 << 30),
        _ => (t, 1),
    };
    num.trim().parse::<u64>().ok()?.checked_mul(mult)
}

impl Config {
    /// True when something must be enforced (otherwise every hook is a pure pass-through).
    pub fn enabled(&self) -> bool {
        !self.disabled && (self.any_memory_limit() || self.any_compute_limit())
    }

    /// Some device has a memory limit.
    pub fn any_memory_limit(&self) -> bool {
        self.mem_limit.iter().any(|l| *l > 0)
    }

    /// Some device has an SM limit that the policy lets us enforce.
    pub fn any_compute_limit(&self) -> bool {
        self.policy != Policy::Disable && self.sm_limit.iter().any(|l| (1..100).contains(l))
    }

    /// Parses the configuration from a variable getter; returns it with the log lines to print
    /// (the caller prints them once the log level is known).
    pub fn parse(get: &dyn Fn(&str) -> Option<String>) -> (Config, Vec<(Level, String)>) {
        let mut notes = Vec::new();
        let mut cfg = Config {
            disabled: false,
            mem_limit: [0; MAX_DEVICES],
            sm_limit: [0; MAX_DEVICES],
            policy: Policy::Default,
            log_level: 2,
            cache_path: DEFAULT_CACHE.to_string(),
        };
        if let Some(v) = get("LIBCUDA_LOG_LEVEL") {
            match v.trim().parse::<u8>() {
                Ok(l) if l <= 4 => cfg.log_level = l,
                _ => notes.push((
                    Level::Error,
                    format!("LIBCUDA_LOG_LEVEL={v:?} is not 0..4; using 2"),
                )),
            }
        }
        if let Some(v) = get("CUDA_DISABLE_CONTROL") {
            match v.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => cfg.disabled = true,
                "false" | "0" | "no" | "" => {}
                _ => notes.push((
                    Level::Error,
                    format!("CUDA_DISABLE_CONTROL={v:?} is not true/false; control stays on"),
                )),
            }
        }
        let mem = |name: &str, notes: &mut Vec<(Level, String)>| -> Option<u64> {
            let v = get(name)?;
            match parse_size(&v) {
                Some(b) => Some(b),
                None => {
                    notes.push((
                        Level::Error,
                        format!(
                            "{name}={v:?} is not a size (bytes, or a number with k/m/g); \
                             ignoring it (no memory limit from it)"
                        ),
                    ));
                    None
                }
            }
        };
        let all = mem("CUDA_DEVICE_MEMORY_LIMIT", &mut notes).unwrap_or(0);
        for i in 0..MAX_DEVICES {
            cfg.mem_limit[i] =
                mem(&format!("CUDA_DEVICE_MEMORY_LIMIT_{i}"), &mut notes).unwrap_or(all);
        }
        let sm = |name: &str, notes: &mut Vec<(Level, String)>| -> Option<u32> {
            let v = get(name)?;
            match v.trim().parse::<u32>() {
                Ok(p) => Some(p),
                Err(_) => {
                    notes.push((
                        Level::Error,
                        format!(
                            "{name}={v:?} is not a whole percentage; ignoring it (no compute limit from it)"
                        ),
                    ));
                    None
                }
            }
        };
        let all = sm("CUDA_DEVICE_SM_LIMIT", &mut notes).unwrap_or(0);
        for i in 0..MAX_DEVICES {
            let p = sm(&format!("CUDA_DEVICE_SM_LIMIT_{i}"), &mut notes).unwrap_or(all);
            cfg.sm_limit[i] = if p >= 100 { 0 } else { p };
        }
        if let Some(v) = get("GPU_CORE_UTILIZATION_POLICY") {
            cfg.policy = match v.trim().to_ascii_lowercase().as_str() {
                "" | "default" => Policy::Default,
                "force" => Policy::Force,
                "disable" => Policy::Disable,
                _ => {
                    notes.push((
                        Level::Error,
                        format!(
                            "GPU_CORE_UTILIZATION_POLICY={v:?} is not default/force/disable; using default"
                        ),
                    ));
                    Policy::Default
                }
            };
        }
        if let Some(v) = get("CUDA_DEVICE_MEMORY_SHARED_CACHE") {
            if v.trim().is_empty() {
                notes.push((
                    Level::Error,
                    format!("CUDA_DEVICE_MEMORY_SHARED_CACHE is empty; using {DEFAULT_CACHE}"),
                ));
            } else {
                cfg.cache_path = v;
            }
        }
        (cfg, notes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn parse(vars: &[(&str, &str)]) -> (Config, Vec<(Level, String)>) {
        let m: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::parse(&|k| m.get(k).cloned())
    }

    #[test]
    fn nothing_set_is_pass_through() {
        let (c, notes) = parse(&[]);
        assert!(!c.enabled());
        assert!(notes.is_empty());
    }

    #[test]
    fn per_device_overrides_global() {
        let (c, _) = parse(&[
            ("CUDA_DEVICE_MEMORY_LIMIT", "1g"),
            ("CUDA_DEVICE_MEMORY_LIMIT_1", "512m"),
            ("CUDA_DEVICE_SM_LIMIT", "30"),
            ("CUDA_DEVICE_SM_LIMIT_2", "100"),
        ]);
        assert_eq!(c.mem_limit[0], 1 << 30);
        assert_eq!(c.mem_limit[1], 512 << 20);
        assert_eq!(c.sm_limit[0], 30);
        assert_eq!(c.sm_limit[2], 0);
        assert!(c.enabled());
    }

    #[test]
    fn garbage_is_reported_and_ignored() {
        let (c, notes) = parse(&[
            ("CUDA_DEVICE_MEMORY_LIMIT", "lots"),
            ("CUDA_DEVICE_SM_LIMIT_0", "half"),
            ("GPU_CORE_UTILIZATION_POLICY", "sometimes"),
            ("LIBCUDA_LOG_LEVEL", "9"),
        ]);
        assert!(!c.enabled());
        assert_eq!(notes.len(), 4);
        assert!(
            notes[1].1.contains("CUDA_DEVICE_MEMORY_LIMIT=\"lots\""),
            "{notes:?}"
        );
        assert!(notes.iter().all(|(l, _)| *l == Level::Error));
    }

    #[test]
    fn disable_control_wins() {
        let (c, _) = parse(&[
            ("CUDA_DEVICE_MEMORY_LIMIT", "1g"),
            ("CUDA_DISABLE_CONTROL", "true"),
        ]);
        assert!(!c.enabled());
        let (c, _) = parse(&[
            ("CUDA_DEVICE_SM_LIMIT", "50"),
            ("GPU_CORE_UTILIZATION_POLICY", "disable"),
        ]);
        assert!(!c.enabled());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4G"), Some(4 << 30));
        assert_eq!(parse_size("10k"), Some(10240));
        assert_eq!(parse_size(" 123 "), Some(123));
        assert_eq!(parse_size("-1"), None);
        assert_eq!(parse_size("1.5g"), None);
    }
}
