//! `farm policy check JOB.json` and `farm quote JOB.json`: the worker's acceptance policy
//! and prices (`[policy]`, `[prices]` of `<root>/config.toml`) asked locally.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use farm_scheduler_client::policy::{self, Decision};
use farm_scheduler_client::protocol::JobSpec;

use super::Globals;

#[derive(Debug, Args)]
pub struct PolicyArgs {
    #[command(subcommand)]
    command: PolicyCommand,
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Would this machine take the job? Exit 0 if so, 1 with the reason if not
    Check {
        /// A job as the coordinator sends it (the `job` object of a lease)
        job: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct QuoteArgs {
    /// A job as the coordinator sends it (the `job` object of a lease)
    job: PathBuf,
    #[arg(long)]
    json: bool,
}

fn read_job(path: &PathBuf) -> Result<JobSpec> {
    let text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&text).with_context(|| {
        format!(
            "{} is not a job (see the lease's `job` in docs/worker-protocol.md)",
            path.display()
        )
    })
}

pub fn check(globals: &Globals, args: PolicyArgs) -> Result<u8> {
    let PolicyCommand::Check { job, json } = args.command;
    let job = read_job(&job)?;
    let (policy, prices) = policy::load(&globals.root)?;
    let decision = policy::check(&job, &policy, &prices);
    match (&decision, json) {
        (Decision::Accept, true) => println!("{}", serde_json::json!({"accept": true})),
        (Decision::Accept, false) => println!("accepted"),
        (Decision::Refuse(r), true) => println!(
            "{}",
            serde_json::json!({"accept": false, "code": r.code, "limit": r.limit, "asked": r.asked, "reason": r.to_string()})
        ),
        (Decision::Refuse(r), false) => println!("refused: {} [{}]", r, r.code),
    }
    Ok(if decision == Decision::Accept { 0 } else { 1 })
}

pub fn quote(globals: &Globals, args: QuoteArgs) -> Result<u8> {
    let job = read_job(&args.job)?;
    let (_, prices) = policy::load(&globals.root)?;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let Some(q) = policy::quote(&job, &prices, cpus) else {
        anyhow::bail!("the job has no upper bound here: it needs a time limit, a memory limit and a GPU count (not `all`) for a quote");
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&q)?);
        return Ok(0);
    }
    println!("at most {:.4} credits over {:.2} h", q.total, q.hours);
    println!("  cpu     {:.4}", q.cpu);
    println!("  memory  {:.4}", q.memory);
    println!("  gpu     {:.4}", q.gpu);
    if q.egress_per_gb > 0.0 {
        println!("  plus {:.4} per GB sent to the internet", q.egress_per_gb);
    }
    Ok(0)
}
