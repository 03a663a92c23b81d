//! The worker's config file: `key = value` lines, `#` comments.
//!
//! ```text
//! coordinator = https://coordinator.example/      # repeat for failover, tried in order
//! label.region = eu-west
//! label.tier = home
//! label.carbon_gco2_kwh = 120
//! reserve_cpus = 1            # kept for the farmer
//! reserve_memory = 2g
//! max_jobs = 4
//! drain_timeout = 60s         # on SIGTERM, running jobs get this long, then are stopped
//! insecure_registry = 127.0.0.1:5000
//! coordinator_key = BASE64URL  # the coordinator's Ed25519 public key: answers must be signed by it
//! max_clock_skew = 300s       # how old a signed answer may be
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("reading the worker config {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: {problem}: see docs/worker-protocol.md for the config keys")]
    Line {
        path: PathBuf,
        line: usize,
        problem: String,
    },
    #[error("{path}: no `coordinator = URL` line: the worker needs at least one")]
    NoCoordinator { path: PathBuf },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub coordinators: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub reserve_cpus: f64,
    pub reserve_memory: u64,
    pub max_jobs: u32,
    pub drain_timeout: Duration,
    pub insecure_registries: Vec<String>,
    /// The coordinator's Ed25519 public key (raw 32 bytes), pinned: every answer must
    /// carry its RFC 9421 signature.
    pub coordinator_key: Option<[u8; 32]>,
    pub max_clock_skew: Duration,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            coordinators: Vec::new(),
            labels: BTreeMap::new(),
            reserve_cpus: 0.0,
            reserve_memory: 0,
            max_jobs: 1,
            drain_timeout: Duration::from_secs(300),
            insecure_registries: Vec::new(),
            coordinator_key: None,
            max_clock_skew: Duration::from_secs(300),
        }
    }
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let mut config = Config::default();
        for (index, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let bad = |problem: String| ConfigError::Line {
                path: path.to_owned(),
                line: index + 1,
                problem,
            };
            let (key, value) = line
                .split_once('=')
                .ok_or_else(|| bad(format!("{line:?} is not `key = value`")))?;
            config.set(key.trim(), value.trim()).map_err(bad)?;
        }
        if config.coordinators.is_empty() {
            return Err(ConfigError::NoCoordinator {
                path: path.to_owned(),
            });
        }
        Ok(config)
    }

    fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        let number = |v: &str| {
            v.parse::<f64>()
                .map_err(|_| format!("{key}: {v:?} is not a number"))
        };
        match key {
            "coordinator" => self.coordinators.push(value.to_owned()),
            "reserve_cpus" => self.reserve_cpus = number(value)?,
            "reserve_memory" => {
                self.reserve_memory =
                    parse_bytes(value).ok_or(format!("{key}: {value:?} is not a size like 2g"))?
            }
            "max_jobs" => {
                self.max_jobs = value
                    .parse()
                    .map_err(|_| format!("{key}: {value:?} is not a count"))?
            }
            "drain_timeout" => {
                self.drain_timeout = parse_duration(value)
                    .ok_or(format!("{key}: {value:?} is not a duration like 60s"))?
            }
            "insecure_registry" => self.insecure_registries.push(value.to_owned()),
            "coordinator_key" => {
                let raw = farm_trust::b64::decode_any(value, key).map_err(|e| e.to_string())?;
                self.coordinator_key =
                    Some(raw.try_into().map_err(|_| {
                        format!("{key}: an Ed25519 public key is 32 bytes (base64url)")
                    })?)
            }
            "max_clock_skew" => {
                self.max_clock_skew = parse_duration(value)
                    .ok_or(format!("{key}: {value:?} is not a duration like 300s"))?
            }
            _ if key.starts_with("label.") && key.len() > 6 => {
                self.labels.insert(key[6..].to_owned(), value.to_owned());
            }
            _ => return Err(format!("unknown key {key:?}")),
        }
        Ok(())
    }
}

/// `512`, `64k`, `2g` (binary units).
pub fn parse_bytes(text: &str) -> Option<u64> {
    let lower = text.trim().to_ascii_lowercase();
    let (number, shift) = match lower.chars().last()? {
        'k' => (&lower[..lower.len() - 1], 10),
        'm' => (&lower[..lower.len() - 1], 20),
        'g' => (&lower[..lower.len() - 1], 30),
        't' => (&lower[..lower.len() - 1], 40),
        _ => (lower.as_str(), 0),
    };
    let value: f64 = number.parse().ok()?;
    (value >= 0.0).then(|| (value * (1u64 << shift) as f64) as u64)
}

/// `500ms`, `30s`, `5m`, `2h`, or plain seconds.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let (number, factor) = if let Some(n) = text.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = text.strip_suffix('h') {
        (n, 3600.0)
    } else {
        (text, 1.0)
    };
    let value: f64 = number.parse().ok()?;
    (value >= 0.0 && value.is_finite()).then(|| Duration::from_secs_f64(value * factor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_config_parses() {
        let text = "coordinator = http://a:1\ncoordinator = http://b:2 # backup\n\
                    label.region = eu-west\nlabel.carbon_gco2_kwh = 120\n\
                    reserve_cpus = 1.5\nreserve_memory = 2g\nmax_jobs = 3\ndrain_timeout = 90s\n";
        let config = Config::parse(text, Path::new("w.conf")).unwrap();
        assert_eq!(config.coordinators, ["http://a:1", "http://b:2"]);
        assert_eq!(config.labels["region"], "eu-west");
        assert_eq!(config.labels["carbon_gco2_kwh"], "120");
        assert_eq!(config.reserve_memory, 2 << 30);
        assert_eq!(config.max_jobs, 3);
        assert_eq!(config.drain_timeout, Duration::from_secs(90));
    }

    #[test]
    fn mistakes_name_their_line() {
        let e =
            Config::parse("coordinator = x\nmax_jobs = many\n", Path::new("w.conf")).unwrap_err();
        assert!(e.to_string().starts_with("w.conf:2:"), "{e}");
        let e = Config::parse("label.region = x\n", Path::new("w.conf")).unwrap_err();
        assert!(matches!(e, ConfigError::NoCoordinator { .. }), "{e}");
        let e = Config::parse("colour = red\ncoordinator = x\n", Path::new("w.conf")).unwrap_err();
        assert!(e.to_string().contains("unknown key"), "{e}");
    }
}
