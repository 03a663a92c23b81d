//! What a finished job earned: its usage at the prices applied (the job's offer when it
//! made one, else the farmer's `[prices]`), as a record signed by the node (JCS + Ed25519,
//! farm_trust::record), kept in the outbox database beside its final report (one
//! transaction) and listed by `farm earnings`.

use serde_json::json;

use crate::policy::gpu_price;
use crate::protocol::{Lease, Prices, Report, Usage};

/// Credits per resource, and their total.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Credits {
    pub cpu: f64,
    pub memory: f64,
    pub gpu: f64,
    pub egress: f64,
    pub total: f64,
}

/// cpu: (user + system) seconds / 3600 x `cpu_hour`; memory: peak GB (10^9 bytes) x wall
/// hours x `memory_gb_hour`; gpu: each GPU's seconds / 3600 x the model's `gpu_hour`;
/// egress: bytes sent / 10^9 x `egress_gb`.
pub fn credits(usage: &Usage, prices: &Prices, gpu_model: Option<&str>) -> Credits {
    let cpu = (usage.cpu_user_s + usage.cpu_system_s) / 3600.0 * prices.cpu_hour;
    let memory =
        usage.peak_memory_bytes as f64 / 1e9 * usage.wall_s / 3600.0 * prices.memory_gb_hour;
    let gpu = usage.gpu_seconds.values().sum::<f64>() / 3600.0 * gpu_price(prices, gpu_model);
    let egress = usage.net_tx_bytes.unwrap_or(0) as f64 / 1e9 * prices.egress_gb;
    Credits {
        cpu,
        memory,
        gpu,
        egress,
        total: cpu + memory + gpu + egress,
    }
}

/// The record of a final report with usage; None for any other report.
pub fn record(
    node_id: &str,
    lease: &Lease,
    report: &Report,
    farmer: &Prices,
) -> Option<serde_json::Value> {
    if !report.state.is_final() {
        return None;
    }
    let usage = report.usage.as_ref()?;
    let prices = lease.job.offer.clone().unwrap_or_else(|| farmer.clone());
    let credits = credits(usage, &prices, lease.job.gpu_model.as_deref());
    Some(json!({
        "version": 1,
        "node_id": node_id,
        "lease_id": report.lease_id,
        "job_id": report.job_id,
        "fencing_token": report.fencing_token,
        "state": report.state,
        "reason_code": report.exit.as_ref().map(|e| e.reason_code),
        "ended_at_ms": report.at_ms,
        "usage": usage,
        "prices": prices,
        "credits": credits,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credits_are_usage_times_prices() {
        let usage = Usage {
            cpu_user_s: 2700.0,
            cpu_system_s: 900.0,
            peak_memory_bytes: 2_000_000_000,
            wall_s: 7200.0,
            gpu_seconds: [("GPU-0".to_owned(), 1800.0)].into(),
            net_tx_bytes: Some(3_000_000_000),
            ..Default::default()
        };
        let prices = Prices {
            cpu_hour: 1.0,
            memory_gb_hour: 0.25,
            gpu_hour: [("default".to_owned(), 4.0)].into(),
            egress_gb: 0.5,
        };
        let c = credits(&usage, &prices, None);
        assert_eq!((c.cpu, c.memory, c.gpu, c.egress), (1.0, 1.0, 2.0, 1.5));
        assert_eq!(c.total, 5.5);
    }
}
