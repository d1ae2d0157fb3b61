//! `orrery schedule`: the sigmas and network timesteps a sampler will use, as JSON.

use anyhow::{bail, Result};
use orrery_flow::Schedule;

#[derive(clap::Args)]
pub struct ScheduleArgs {
    /// Sampler: unipc (the official one) or euler; both step through the same sigmas.
    #[arg(long, default_value = "unipc")]
    pub sampler: String,
    /// Inference steps (Karras: steps + 1 model calls, as the official scheduler counts them).
    #[arg(long, default_value_t = 35)]
    pub steps: usize,
    /// Karras sigmas (200 -> 0.01, rho 7), as the 2B post-trained checkpoint samples.
    #[arg(long, conflicts_with = "shift")]
    pub karras: bool,
    /// Shift of the linear schedule (5 for the pre-trained checkpoints).
    #[arg(long)]
    pub shift: Option<f64>,
}

pub fn schedule(args: &ScheduleArgs) -> Result<()> {
    if !matches!(args.sampler.as_str(), "unipc" | "euler") {
        bail!("--sampler {}: expected unipc or euler", args.sampler);
    }
    let s = if args.karras {
        Schedule::karras(args.steps)?
    } else {
        Schedule::shifted(args.steps, args.shift.unwrap_or(5.0))?
    };
    let json = serde_json::json!({
        "sampler": args.sampler,
        "calls": s.calls(),
        "sigmas": s.sigmas,
        "timesteps": s.timesteps,
        "network_timesteps": s.timesteps.iter().map(|t| *t as f64 * 0.001).collect::<Vec<_>>(),
    });
    println!("{}", serde_json::to_string_pretty(&json)?);
    Ok(())
}
