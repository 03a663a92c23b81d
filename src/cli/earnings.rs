//! `farm earnings [--since DATE] [--json]` and `farm earnings verify FILE`: the signed
//! usage and earnings records the worker kept for every finished job.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use farm_scheduler_client::earnings::Credits;
use farm_scheduler_client::outbox::Outbox;
use farm_trust::record::{self, SignedRecord};

use super::Globals;

#[derive(Debug, Args)]
pub struct EarningsArgs {
    #[command(subcommand)]
    command: Option<EarningsCommand>,
    /// Only jobs that ended on or after this day (YYYY-MM-DD, UTC)
    #[arg(long)]
    since: Option<String>,
    /// The signed records themselves, as a JSON array (what `verify` checks)
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum EarningsCommand {
    /// Check exported records (a JSON array or one record per line): every signature
    /// and key, and the coordinator's countersignature where there is one; exit 1 naming
    /// each record that fails
    Verify {
        file: PathBuf,
        /// The coordinator's Ed25519 public key (base64url): every record must be
        /// countersigned by it
        #[arg(long, value_name = "KEY")]
        coordinator_key: Option<String>,
    },
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> String {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

fn since_ms(since: Option<&str>) -> Result<u64> {
    let Some(text) = since else { return Ok(0) };
    let parts: Vec<i64> = text.split('-').filter_map(|p| p.parse().ok()).collect();
    let [y, m, d] = parts[..] else {
        bail!("--since {text:?}: give a day as YYYY-MM-DD");
    };
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        bail!("--since {text:?}: give a day as YYYY-MM-DD");
    }
    Ok((days_from_civil(y, m, d).max(0) as u64) * 86_400_000)
}

pub fn run(globals: &Globals, args: EarningsArgs) -> Result<u8> {
    if let Some(EarningsCommand::Verify {
        file,
        coordinator_key,
    }) = args.command
    {
        return verify(&file, coordinator_key.as_deref());
    }
    let outbox = Outbox::open(&globals.root)?;
    let records: Vec<SignedRecord> = outbox
        .earnings(since_ms(args.since.as_deref())?)?
        .iter()
        .filter_map(|text| serde_json::from_str(text).ok())
        .collect();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&records)?);
        return Ok(0);
    }
    print_table(&records);
    Ok(0)
}

fn credits_of(signed: &SignedRecord) -> Credits {
    serde_json::from_value(signed.record["credits"].clone()).unwrap_or_default()
}

fn print_table(records: &[SignedRecord]) {
    if records.is_empty() {
        println!("no finished jobs yet");
        return;
    }
    let mut days: BTreeMap<String, f64> = BTreeMap::new();
    let mut total = Credits::default();
    println!(
        "{:<10}  {:<24}  {:<9}  {:>12}",
        "DAY", "LEASE", "STATE", "CREDITS"
    );
    for signed in records {
        let r = &signed.record;
        let day = civil_from_days(r["ended_at_ms"].as_i64().unwrap_or(0) / 86_400_000);
        let c = credits_of(signed);
        println!(
            "{day:<10}  {:<24}  {:<9}  {:>12.6}",
            r["lease_id"].as_str().unwrap_or("?"),
            r["state"].as_str().unwrap_or("?"),
            c.total
        );
        *days.entry(day).or_default() += c.total;
        total.cpu += c.cpu;
        total.memory += c.memory;
        total.gpu += c.gpu;
        total.egress += c.egress;
        total.total += c.total;
    }
    println!();
    let most = days.values().cloned().fold(0.0_f64, f64::max);
    for (day, credits) in &days {
        let width = if most > 0.0 {
            (credits / most * 40.0).round() as usize
        } else {
            0
        };
        println!("{day}  {:>12.6}  {}", credits, "█".repeat(width));
    }
    println!();
    println!(
        "total {:.6}: cpu {:.6}, memory {:.6}, gpu {:.6}, egress {:.6}",
        total.total, total.cpu, total.memory, total.gpu, total.egress
    );
}

fn verify(file: &PathBuf, coordinator_key: Option<&str>) -> Result<u8> {
    let pinned: Option<[u8; 32]> = match coordinator_key {
        None => None,
        Some(text) => Some(
            farm_trust::b64::decode_any(text, "--coordinator-key")
                .ok()
                .and_then(|k| k.try_into().ok())
                .context("--coordinator-key is not a base64url Ed25519 public key (32 bytes)")?,
        ),
    };
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let records: Vec<SignedRecord> = match serde_json::from_str(&text) {
        Ok(records) => records,
        Err(_) => text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(serde_json::from_str)
            .collect::<Result<_, _>>()
            .with_context(|| {
                format!(
                    "{} holds no signed records (`farm earnings --json`)",
                    file.display()
                )
            })?,
    };
    let mut failed = 0;
    for (i, signed) in records.iter().enumerate() {
        let lease = signed.record["lease_id"].as_str().unwrap_or("?");
        let checked = record::verify(signed)
            .and_then(|()| record::verify_countersignature(signed, pinned.as_ref()));
        match checked {
            Ok(None) if pinned.is_some() => {
                failed += 1;
                println!(
                    "FAILED  record {} ({lease}): not countersigned by the coordinator",
                    i + 1
                );
            }
            Ok(counter) => println!(
                "ok      record {} ({lease}) signed by {}, {}",
                i + 1,
                signed.signature.keyid,
                counter.map_or("not countersigned".to_owned(), |k| format!(
                    "countersigned by {}",
                    farm_trust::b64::url(&k)
                ))
            ),
            Err(e) => {
                failed += 1;
                println!("FAILED  record {} ({lease}): {e}", i + 1);
            }
        }
    }
    if records.is_empty() {
        bail!("{} holds no records", file.display());
    }
    Ok(if failed == 0 { 0 } else { 1 })
}

#[cfg(test)]
mod tests {
    #[test]
    fn days_convert_both_ways() {
        assert_eq!(super::days_from_civil(1970, 1, 1), 0);
        assert_eq!(super::days_from_civil(2026, 12, 7), 20_794);
        assert_eq!(super::civil_from_days(20_794), "2026-12-07");
        assert_eq!(super::civil_from_days(11_016), "2000-02-29");
    }
}
