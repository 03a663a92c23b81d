//! The farmer's acceptance policy: every lease offered passes [`accept`] before the
//! worker takes it, and `farm policy check JOB.json` asks the same question locally. The
//! policy and the prices are the `[policy]` and `[prices]` tables of `<root>/config.toml`
//! (every key optional; an absent limit is no limit). Each check is one small function;
//! a refusal carries a stable snake_case code, the limit it hit and what the job asked.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::config::{parse_bytes, parse_duration};
use crate::protocol::{JobSpec, Lease, Network, Prices, RefusalInfo};

/// `[policy]`: what this machine takes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Policy {
    /// The most CPUs one job may ask for.
    pub max_cpus: Option<f64>,
    /// The most memory one job may ask for (`16g`).
    pub max_memory: Option<String>,
    /// The most GPUs one job may ask for (`--gpus all` counts as more than any limit).
    pub max_gpus: Option<u32>,
    /// The longest time limit (`12h`); a job without one is refused when this is set.
    pub max_time_limit: Option<String>,
    /// Registries jobs may pull from (`ghcr.io`, `docker.io`); empty: any.
    pub allowed_registries: Vec<String>,
    pub refused_registries: Vec<String>,
    /// Image name patterns (`*` matches any run of characters), on `registry/repo`.
    pub allowed_images: Vec<String>,
    pub refused_images: Vec<String>,
    /// GPU models a job may ask for by name; empty: any.
    pub gpu_models: Vec<String>,
    /// `none`, `internet`; empty: both.
    pub network_modes: Vec<String>,
    /// The least dust a requester must hold.
    pub min_dust: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
struct File {
    #[serde(default)]
    policy: Policy,
    #[serde(default)]
    prices: Prices,
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message} (see the [policy] and [prices] keys in docs/worker-protocol.md)")]
    Parse { path: String, message: String },
    #[error("[policy] {key} = {value:?} is not a {what}")]
    Value {
        key: &'static str,
        value: String,
        what: &'static str,
    },
}

/// The `[policy]` and `[prices]` of `<root>/config.toml` (defaults when it is absent).
pub fn load(root: &Path) -> Result<(Policy, Prices), PolicyError> {
    let path = root.join("config.toml");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Default::default()),
        Err(source) => {
            return Err(PolicyError::Read {
                path: path.display().to_string(),
                source,
            })
        }
    };
    let file: File = toml::from_str(&text).map_err(|e| PolicyError::Parse {
        path: path.display().to_string(),
        message: e.message().to_owned(),
    })?;
    file.policy.validate()?;
    Ok((file.policy, file.prices))
}

impl Policy {
    fn validate(&self) -> Result<(), PolicyError> {
        if let Some(v) = &self.max_memory {
            parse_bytes(v).ok_or(PolicyError::Value {
                key: "max_memory",
                value: v.clone(),
                what: "size like 16g",
            })?;
        }
        if let Some(v) = &self.max_time_limit {
            parse_duration(v).ok_or(PolicyError::Value {
                key: "max_time_limit",
                value: v.clone(),
                what: "duration like 12h",
            })?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Accept,
    Refuse(Refusal),
}

/// Why an offer was refused: the code goes to the coordinator, the sentence to people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{sentence} (limit {limit}, the job asked {asked})")]
pub struct Refusal {
    pub code: &'static str,
    pub sentence: &'static str,
    pub limit: String,
    pub asked: String,
}

impl Refusal {
    pub fn info(&self) -> RefusalInfo {
        RefusalInfo {
            code: self.code.to_owned(),
            limit: self.limit.clone(),
            asked: self.asked.clone(),
        }
    }
}

fn refuse(
    code: &'static str,
    sentence: &'static str,
    limit: impl ToString,
    asked: impl ToString,
) -> Decision {
    Decision::Refuse(Refusal {
        code,
        sentence,
        limit: limit.to_string(),
        asked: asked.to_string(),
    })
}

type Check = fn(&JobSpec, &Policy, &Prices) -> Decision;

/// Every check, in order; the first refusal wins.
pub fn accept(lease: &Lease, policy: &Policy, prices: &Prices) -> Decision {
    check(&lease.job, policy, prices)
}

/// [`accept`] for a job alone (`farm policy check`).
pub fn check(job: &JobSpec, policy: &Policy, prices: &Prices) -> Decision {
    let checks: [Check; 11] = [
        known_network,
        has_image,
        network_mode,
        cpus,
        memory,
        gpus,
        time_limit,
        registry,
        image_name,
        gpu_model,
        dust,
    ];
    for check in checks.iter().chain([price_floors as Check].iter()) {
        if let refusal @ Decision::Refuse(_) = check(job, policy, prices) {
            return refusal;
        }
    }
    Decision::Accept
}

fn known_network(job: &JobSpec, _: &Policy, _: &Prices) -> Decision {
    match job.network {
        Network::Unknown => refuse(
            "unknown_network",
            "the job asks for a network mode this worker does not know: update farm",
            "none, internet",
            "another",
        ),
        Network::None | Network::Internet => Decision::Accept,
    }
}

fn has_image(job: &JobSpec, _: &Policy, _: &Prices) -> Decision {
    if job.image.trim().is_empty() {
        return refuse("no_image", "the job names no image", "an image", "none");
    }
    Decision::Accept
}

fn network_name(network: Network) -> &'static str {
    match network {
        Network::None => "none",
        Network::Internet => "internet",
        Network::Unknown => "unknown",
    }
}

fn network_mode(job: &JobSpec, policy: &Policy, _: &Prices) -> Decision {
    let asked = network_name(job.network);
    if policy.network_modes.is_empty() || policy.network_modes.iter().any(|m| m == asked) {
        return Decision::Accept;
    }
    refuse(
        "network_mode_refused",
        "this machine does not take jobs with that network mode",
        policy.network_modes.join(", "),
        asked,
    )
}

fn cpus(job: &JobSpec, policy: &Policy, _: &Prices) -> Decision {
    match (policy.max_cpus, job.cpus) {
        (Some(max), None) => refuse(
            "cpus_over_limit",
            "the job sets no CPU limit and this machine caps CPUs per job",
            max,
            "unlimited",
        ),
        (Some(max), Some(asked)) if asked > max => refuse(
            "cpus_over_limit",
            "the job asks for more CPUs than this machine gives one job",
            max,
            asked,
        ),
        _ => Decision::Accept,
    }
}

fn memory(job: &JobSpec, policy: &Policy, _: &Prices) -> Decision {
    let Some(max) = policy.max_memory.as_deref().and_then(parse_bytes) else {
        return Decision::Accept;
    };
    match job.memory_bytes {
        None => refuse(
            "memory_over_limit",
            "the job sets no memory limit and this machine caps memory per job",
            max,
            "unlimited",
        ),
        Some(asked) if asked > max => refuse(
            "memory_over_limit",
            "the job asks for more memory than this machine gives one job",
            max,
            asked,
        ),
        Some(_) => Decision::Accept,
    }
}

/// GPUs a `--gpus` value asks for: `all` is u32::MAX, `device=0,2` two.
pub fn gpu_count(gpus: Option<&str>) -> u32 {
    match gpus.map(str::trim) {
        None | Some("") => 0,
        Some("all") => u32::MAX,
        Some(text) => match text.strip_prefix("device=") {
            Some(list) => list.split(',').filter(|d| !d.trim().is_empty()).count() as u32,
            None => text.parse().unwrap_or(u32::MAX),
        },
    }
}

fn gpus(job: &JobSpec, policy: &Policy, _: &Prices) -> Decision {
    let asked = gpu_count(job.gpus.as_deref());
    match policy.max_gpus {
        Some(max) if asked > max => refuse(
            "gpus_over_limit",
            "the job asks for more GPUs than this machine gives one job",
            max,
            job.gpus.as_deref().unwrap_or("0"),
        ),
        _ => Decision::Accept,
    }
}

fn time_limit(job: &JobSpec, policy: &Policy, _: &Prices) -> Decision {
    let Some(max) = policy.max_time_limit.as_deref().and_then(parse_duration) else {
        return Decision::Accept;
    };
    let max_ms = max.as_millis() as u64;
    match job.time_limit_ms {
        None => refuse(
            "time_limit_over_limit",
            "the job has no time limit and this machine caps job time",
            format!("{max_ms} ms"),
            "none",
        ),
        Some(asked) if asked > max_ms => refuse(
            "time_limit_over_limit",
            "the job's time limit is longer than this machine takes",
            format!("{max_ms} ms"),
            format!("{asked} ms"),
        ),
        Some(_) => Decision::Accept,
    }
}

/// The registry of an image reference, as docker reads it: the first part when it has a
/// `.` or `:` or is `localhost`, else `docker.io`.
pub fn registry_of(image: &str) -> &str {
    match image.split_once('/') {
        Some((first, _)) if first.contains(['.', ':']) || first == "localhost" => first,
        _ => "docker.io",
    }
}

/// `registry/repository` of a reference (no tag, no digest), for the name patterns.
pub fn repository_of(image: &str) -> String {
    let name = image.split('@').next().unwrap_or(image);
    let name = match name.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => repo,
        _ => name,
    };
    if registry_of(image) == "docker.io" && !name.starts_with("docker.io/") {
        let repo = if name.contains('/') {
            name.to_owned()
        } else {
            format!("library/{name}")
        };
        return format!("docker.io/{repo}");
    }
    name.to_owned()
}

/// `*` matches any run of characters (slashes included); everything else itself.
pub fn matches(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, rest)) => {
            let Some(tail) = text.strip_prefix(head) else {
                return false;
            };
            (0..=tail.len()).any(|i| tail.is_char_boundary(i) && matches(rest, &tail[i..]))
        }
    }
}

fn registry(job: &JobSpec, policy: &Policy, _: &Prices) -> Decision {
    let asked = registry_of(&job.image);
    if policy.refused_registries.iter().any(|r| r == asked) {
        return refuse(
            "registry_refused",
            "this machine refuses images from that registry",
            policy.refused_registries.join(", "),
            asked,
        );
    }
    if !policy.allowed_registries.is_empty()
        && !policy.allowed_registries.iter().any(|r| r == asked)
    {
        return refuse(
            "registry_not_allowed",
            "this machine takes images only from other registries",
            policy.allowed_registries.join(", "),
            asked,
        );
    }
    Decision::Accept
}

fn image_name(job: &JobSpec, policy: &Policy, _: &Prices) -> Decision {
    let repo = repository_of(&job.image);
    if let Some(p) = policy.refused_images.iter().find(|p| matches(p, &repo)) {
        return refuse(
            "image_refused",
            "this machine refuses images with that name",
            p,
            repo,
        );
    }
    if !policy.allowed_images.is_empty() && !policy.allowed_images.iter().any(|p| matches(p, &repo))
    {
        return refuse(
            "image_not_allowed",
            "this machine takes only images whose names match its list",
            policy.allowed_images.join(", "),
            repo,
        );
    }
    Decision::Accept
}

fn gpu_model(job: &JobSpec, policy: &Policy, _: &Prices) -> Decision {
    match &job.gpu_model {
        Some(model) if !policy.gpu_models.is_empty() && !policy.gpu_models.contains(model) => {
            refuse(
                "gpu_model_not_allowed",
                "this machine does not offer that GPU model",
                policy.gpu_models.join(", "),
                model,
            )
        }
        _ => Decision::Accept,
    }
}

fn dust(job: &JobSpec, policy: &Policy, _: &Prices) -> Decision {
    let Some(min) = policy.min_dust else {
        return Decision::Accept;
    };
    let asked = job.requester.as_ref().map_or(0, |r| r.dust);
    if asked < min {
        return refuse(
            "dust_too_low",
            "the requester holds less dust than this machine asks for",
            min,
            asked,
        );
    }
    Decision::Accept
}

/// The GPU-hour price for `model` (or `default`).
pub fn gpu_price(prices: &Prices, model: Option<&str>) -> f64 {
    model
        .and_then(|m| prices.gpu_hour.get(m))
        .or_else(|| prices.gpu_hour.get("default"))
        .copied()
        .unwrap_or(0.0)
}

fn price_floors(job: &JobSpec, _: &Policy, floor: &Prices) -> Decision {
    let offer = job.offer.clone().unwrap_or_default();
    let model = job.gpu_model.as_deref();
    let checks = [
        (
            "price_cpu_below_floor",
            "the job pays less per CPU-hour than this machine's price",
            floor.cpu_hour,
            offer.cpu_hour,
            job.cpus.is_some() || floor.cpu_hour > 0.0,
        ),
        (
            "price_memory_below_floor",
            "the job pays less per GB-hour of memory than this machine's price",
            floor.memory_gb_hour,
            offer.memory_gb_hour,
            true,
        ),
        (
            "price_gpu_below_floor",
            "the job pays less per GPU-hour than this machine's price for that model",
            gpu_price(floor, model),
            gpu_price(&offer, model),
            gpu_count(job.gpus.as_deref()) > 0,
        ),
        (
            "price_egress_below_floor",
            "the job pays less per GB of egress than this machine's price",
            floor.egress_gb,
            offer.egress_gb,
            job.network == Network::Internet,
        ),
    ];
    for (code, sentence, floor, offered, applies) in checks {
        if applies && floor > 0.0 && offered < floor {
            return refuse(code, sentence, floor, offered);
        }
    }
    Decision::Accept
}

/// The most a job can cost on this machine (`farm quote`): its resources for its whole
/// time limit at the farmer's prices, plus egress per GB (not bounded in advance).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Quote {
    pub hours: f64,
    pub cpu: f64,
    pub memory: f64,
    pub gpu: f64,
    /// The sum of the three: the most the job costs before egress.
    pub total: f64,
    pub egress_per_gb: f64,
}

/// `None` when the job has no time limit or no CPU limit (no upper bound exists).
pub fn quote(job: &JobSpec, prices: &Prices, host_cpus: f64) -> Option<Quote> {
    let hours = job.time_limit_ms? as f64 / 3_600_000.0;
    let cpus = job.cpus.unwrap_or(host_cpus);
    let memory_gb = job.memory_bytes? as f64 / 1e9;
    let gpus = match gpu_count(job.gpus.as_deref()) {
        u32::MAX => return None,
        n => f64::from(n),
    };
    let cpu = cpus * hours * prices.cpu_hour;
    let memory = memory_gb * hours * prices.memory_gb_hour;
    let gpu = gpus * hours * gpu_price(prices, job.gpu_model.as_deref());
    Some(Quote {
        hours,
        cpu,
        memory,
        gpu,
        total: cpu + memory + gpu,
        egress_per_gb: if job.network == Network::Internet {
            prices.egress_gb
        } else {
            0.0
        },
    })
}

#[cfg(test)]
mod tests;
