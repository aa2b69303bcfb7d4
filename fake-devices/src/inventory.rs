//! The fake inventory: which cards the fake driver and fake NVML pretend to have.
//!
//! # Format
//!
//! Plain `key=value` lines; `#` starts a comment; blank lines are ignored. Global keys give the
//! default for every device, `device.<i>.<key>` overrides one device:
//!
//! ```text
//! # two A100s, the second with less memory
//! count=2
//! name=NVIDIA A100-SXM4-80GB
//! memory=80g            # bytes, or with a k/m/g/t suffix (powers of 1024)
//! sms=108
//! numa=0
//! cc=8.0                # compute capability
//! kernel_ns_per_block=1000
//! max_queue_ms=20
//! device.1.memory=40g
//! device.1.numa=1
//! device.1.uuid=GPU-12345678-1234-1234-1234-123456789abc
//! ```
//!
//! Sources, first match wins: the file named by `HAMI_FAKE_INVENTORY`; the inline text in
//! `HAMI_FAKE_GPUS` (same keys, separated by `;` or newlines); otherwise one default card.
//! Every error names its source (file path or variable) and line.

use std::fmt;

/// Largest number of fake devices (the shared state file has this many device records).
pub const MAX_DEVICES: usize = 16;

/// One fake card.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceSpec {
    /// Index (CUDA ordinal and NVML index; the fake does not reorder).
    pub index: u32,
    /// Marketing name, as `cuDeviceGetName` and `nvmlDeviceGetName` report it.
    pub name: String,
    /// `GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, NVML's UUID form.
    pub uuid: String,
    /// Device memory in bytes.
    pub memory_bytes: u64,
    /// Streaming multiprocessors.
    pub sms: u32,
    /// NUMA node of the card (for topology queries).
    pub numa: i32,
    /// Compute capability (major, minor).
    pub cc: (u32, u32),
}

/// The whole fake inventory plus the timing knobs of the fake kernels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inventory {
    /// The cards, indexed 0..n.
    pub devices: Vec<DeviceSpec>,
    /// Simulated device time of one thread block of a fake kernel, in nanoseconds.
    /// A launch of `gx*gy*gz` blocks occupies the device for `gx*gy*gz * kernel_ns_per_block`.
    pub kernel_ns_per_block: u64,
    /// How far ahead of the device a launch may run before it blocks (the launch queue depth
    /// of a real driver, expressed as time), in nanoseconds.
    pub max_queue_ns: u64,
}

/// A parse error that names where it happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InventoryError {
    /// File path or environment variable the text came from.
    pub source: String,
    /// 1-based line (0 when the error is not tied to one line).
    pub line: usize,
    /// What was wrong.
    pub message: String,
}

impl fmt::Display for InventoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "{}:{}: {}", self.source, self.line, self.message)
        } else {
            write!(f, "{}: {}", self.source, self.message)
        }
    }
}

impl std::error::Error for InventoryError {}

/// Parses `16g`, `512m`, `1024k`, `2t` or a plain byte count (powers of 1024).
pub fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let (num, mult) = match t.chars().last()? {
        'k' | 'K' => (&t[..t.len() - 1], 1u64 << 10),
        'm' | 'M' => (&t[..t.len() - 1], 1u64 << 20),
        'g' | 'G' => (&t[..t.len() - 1], 1u64 << 30),
        't' | 'T' => (&t[..t.len() - 1], 1u64 << 40),
        _ => (t, 1),
    };
    num.trim().parse::<u64>().ok()?.checked_mul(mult)
}

/// The default UUID of fake device `i`: stable, and clearly fake (`fa4e` = "fake").
pub fn default_uuid(i: u32) -> String {
    format!(
        "GPU-fa4e{:04x}-0000-4000-8000-{:012x}",
        i,
        0xfa4e_0000u64 + i as u64
    )
}

/// Parses a `GPU-` UUID into the 16 raw bytes `cuDeviceGetUuid` returns.
pub fn uuid_bytes(uuid: &str) -> Option<[u8; 16]> {
    let hex: Vec<u8> = uuid
        .strip_prefix("GPU-")?
        .bytes()
        .filter(|b| *b != b'-')
        .collect();
    if hex.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, pair) in hex.chunks(2).enumerate() {
        let s = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(s, 16).ok()?;
    }
    Some(out)
}

/// Formats 16 raw UUID bytes the way NVML prints them.
pub fn uuid_string(b: &[u8; 16]) -> String {
    let h: Vec<String> = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "GPU-{}-{}-{}-{}-{}",
        h[0..4].concat(),
        h[4..6].concat(),
        h[6..8].concat(),
        h[8..10].concat(),
        h[10..16].concat()
    )
}

impl Default for Inventory {
    /// One 16 GiB card with 80 SMs.
    fn default() -> Self {
        Inventory::parse("", "<default>").expect("empty inventory text is valid")
    }
}

impl Inventory {
    /// Parses inventory text; `source` names the file or variable for error messages.
    /// Lines may be separated by newlines or `;`.
    pub fn parse(text: &str, source: &str) -> Result<Inventory, InventoryError> {
        let err = |line: usize, message: String| InventoryError {
            source: source.to_string(),
            line,
            message,
        };
        let mut count: u32 = 1;
        let mut global: Vec<(usize, String, String)> = Vec::new();
        let mut per_dev: Vec<(usize, u32, String, String)> = Vec::new();
        let mut ns_per_block = 1000u64;
        let mut max_queue_ns = 20_000_000u64;
        for (lineno, raw_line) in text.lines().enumerate() {
            let lineno = lineno + 1;
            for raw in raw_line.split(';') {
                let line = raw.split('#').next().unwrap_or("").trim();
                if line.is_empty() {
                    continue;
                }
                let Some((k, v)) = line.split_once('=') else {
                    return Err(err(lineno, format!("expected key=value, got `{line}`")));
                };
                let (k, v) = (k.trim(), v.trim());
                if let Some(rest) = k.strip_prefix("device.") {
                    let Some((idx, key)) = rest.split_once('.') else {
                        return Err(err(lineno, format!("expected device.<i>.<key>, got `{k}`")));
                    };
                    let idx: u32 = idx
                        .parse()
                        .map_err(|_| err(lineno, format!("bad device index `{idx}` in `{k}`")))?;
                    per_dev.push((lineno, idx, key.to_string(), v.to_string()));
                    continue;
                }
                match k {
                    "count" => {
                        count = v.parse().map_err(|_| {
                            err(lineno, format!("count must be an integer, got `{v}`"))
                        })?;
                        if count == 0 || count as usize > MAX_DEVICES {
                            return Err(err(
                                lineno,
                                format!("count must be 1..={MAX_DEVICES}, got {count}"),
                            ));
                        }
                    }
                    "kernel_ns_per_block" => {
                        ns_per_block = v.parse().map_err(|_| {
                            err(
                                lineno,
                                format!("kernel_ns_per_block must be an integer, got `{v}`"),
                            )
                        })?
                    }
                    "max_queue_ms" => {
                        let ms: u64 = v.parse().map_err(|_| {
                            err(
                                lineno,
                                format!("max_queue_ms must be an integer, got `{v}`"),
                            )
                        })?;
                        max_queue_ns = ms * 1_000_000;
                    }
                    _ => global.push((lineno, k.to_string(), v.to_string())),
                }
            }
        }
        let mut devices: Vec<DeviceSpec> = (0..count)
            .map(|i| DeviceSpec {
                index: i,
                name: "Fake NVIDIA GPU".to_string(),
                uuid: default_uuid(i),
                memory_bytes: 16 << 30,
                sms: 80,
                numa: 0,
                cc: (8, 0),
            })
            .collect();
        for (lineno, key, value) in &global {
            if key == "uuid" {
                return Err(err(
                    *lineno,
                    "uuid must be set per device (device.<i>.uuid)".into(),
                ));
            }
            for d in devices.iter_mut() {
                apply(d, key, value).map_err(|m| err(*lineno, m))?;
            }
        }
        for (lineno, idx, key, value) in &per_dev {
            let Some(d) = devices.get_mut(*idx as usize) else {
                return Err(err(
                    *lineno,
                    format!("device {idx} does not exist (count={count})"),
                ));
            };
            apply(d, key, value).map_err(|m| err(*lineno, m))?;
        }
        for (i, d) in devices.iter().enumerate() {
            if devices[..i].iter().any(|o| o.uuid == d.uuid) {
                return Err(err(0, format!("duplicate uuid {}", d.uuid)));
            }
        }
        Ok(Inventory {
            devices,
            kernel_ns_per_block: ns_per_block,
            max_queue_ns,
        })
    }

    /// Reads and parses an inventory file.
    pub fn from_file(path: &str) -> Result<Inventory, InventoryError> {
        let text = std::fs::read_to_string(path).map_err(|e| InventoryError {
            source: path.to_string(),
            line: 0,
            message: format!("cannot read: {e}"),
        })?;
        Inventory::parse(&text, path)
    }

    /// Loads the inventory from `HAMI_FAKE_INVENTORY` (a file), else `HAMI_FAKE_GPUS` (inline),
    /// else the default single card. `HAMI_FAKE_NS_PER_BLOCK` overrides the kernel timing.
    pub fn from_env() -> Result<Inventory, InventoryError> {
        let mut inv = if let Ok(path) = std::env::var("HAMI_FAKE_INVENTORY") {
            Inventory::from_file(&path)?
        } else if let Ok(text) = std::env::var("HAMI_FAKE_GPUS") {
            Inventory::parse(&text, "HAMI_FAKE_GPUS")?
        } else {
            Inventory::default()
        };
        if let Ok(v) = std::env::var("HAMI_FAKE_NS_PER_BLOCK") {
            inv.kernel_ns_per_block = v.trim().parse().map_err(|_| InventoryError {
                source: "HAMI_FAKE_NS_PER_BLOCK".into(),
                line: 0,
                message: format!("must be an integer number of nanoseconds, got `{v}`"),
            })?;
        }
        Ok(inv)
    }

    /// A stable fingerprint, stored in the shared state file so that a state file written for
    /// another inventory is reset instead of misread.
    pub fn fingerprint(&self) -> u64 {
        // FNV-1a over a canonical text form: stable across builds, unlike std's hasher.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for d in &self.devices {
            for b in format!("{}|{}|{}|{};", d.uuid, d.memory_bytes, d.sms, d.numa).bytes() {
                h ^= b as u64;
                h = h.wrapping_mul(0x100_0000_01b3);
            }
        }
        h
    }
}

fn apply(d: &mut DeviceSpec, key: &str, value: &str) -> Result<(), String> {
    match key {
        "name" => d.name = value.to_string(),
        "uuid" => {
            if uuid_bytes(value).is_none() {
                return Err(format!(
                    "uuid must look like GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx, got `{value}`"
                ));
            }
            d.uuid = value.to_string()
        }
        "memory" => {
            d.memory_bytes = parse_size(value)
                .filter(|m| *m > 0)
                .ok_or_else(|| format!("memory must be a size like 16g or 4096m, got `{value}`"))?
        }
        "sms" => {
            d.sms = value
                .parse()
                .ok()
                .filter(|s| *s > 0)
                .ok_or_else(|| format!("sms must be a positive integer, got `{value}`"))?
        }
        "numa" => {
            d.numa = value
                .parse()
                .map_err(|_| format!("numa must be an integer, got `{value}`"))?
        }
        "cc" => {
            let (a, b) = value
                .split_once('.')
                .ok_or_else(|| format!("cc must look like 8.0, got `{value}`"))?;
            d.cc = (
                a.parse().map_err(|_| format!("bad cc `{value}`"))?,
                b.parse().map_err(|_| format!("bad cc `{value}`"))?,
            );
        }
        _ => return Err(format!("unknown key `{key}`")),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        let inv = Inventory::parse(
            "count=2\nmemory=8g # comment\nsms=40\ndevice.1.memory=4096m;device.1.numa=1",
            "t",
        )
        .unwrap();
        assert_eq!(inv.devices.len(), 2);
        assert_eq!(inv.devices[0].memory_bytes, 8 << 30);
        assert_eq!(inv.devices[1].memory_bytes, 4 << 30);
        assert_eq!(inv.devices[1].numa, 1);
        assert_eq!(inv.devices[0].sms, 40);
        assert_ne!(inv.devices[0].uuid, inv.devices[1].uuid);
    }

    #[test]
    fn errors_name_source_and_line() {
        let e = Inventory::parse("count=1\n\nmemory=lots", "/etc/fake.inv").unwrap_err();
        assert_eq!(e.line, 3);
        assert!(
            e.to_string().starts_with("/etc/fake.inv:3: memory must be"),
            "{e}"
        );
        let e = Inventory::parse("count=1\ndevice.3.sms=2", "f").unwrap_err();
        assert_eq!(e.to_string(), "f:2: device 3 does not exist (count=1)");
        let e = Inventory::parse("colour=red", "f").unwrap_err();
        assert_eq!(e.to_string(), "f:1: unknown key `colour`");
        assert!(Inventory::parse("count=17", "f").is_err());
        assert!(Inventory::parse("junk", "f").is_err());
    }

    #[test]
    fn uuid_round_trip() {
        for i in 0..3 {
            let u = default_uuid(i);
            assert_eq!(uuid_string(&uuid_bytes(&u).unwrap()), u);
        }
        assert!(uuid_bytes("GPU-zz").is_none());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1k"), Some(1024));
        assert_eq!(parse_size("3G"), Some(3 << 30));
        assert_eq!(parse_size("77"), Some(77));
        assert_eq!(parse_size("x"), None);
        assert_eq!(parse_size(""), None);
    }
}
