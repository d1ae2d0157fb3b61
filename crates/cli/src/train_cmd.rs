//! `orrery train vae|dit|distill|rl --config FILE [--resume] [--dry-run] [--smoke] [--device cpu|cuda]`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Result};
use indicatif::{ProgressBar, ProgressStyle};
use orrery_train::{DistillConfig, DitTrainConfig, LossPoint, RlConfig, Run, VaeTrainConfig};

use crate::device::parse_device;

#[derive(clap::Subcommand)]
pub enum TrainCommand {
    /// Train a small Wan-architecture video VAE on physics worlds.
    Vae(TrainArgs),
    /// Train the flow-matching DiT and its word encoder on a trained VAE's latents.
    Dit(TrainArgs),
    /// Distil a trained model bundle into a 4-step student (DMD2 in TrigFlow form, the released recipe); the
    /// student exports as a bundle that samples with the distilled sampler.
    Distill(TrainArgs),
    /// Post-train a model bundle with GRPO (the released Cosmos RL recipe) on rewards judged against the
    /// simulator: trajectories, objects, permanence, penetration, gravity, captions, or an external command.
    Rl(TrainArgs),
}

#[derive(clap::Args)]
pub struct TrainArgs {
    /// Run configuration (JSON; see configs/).
    #[arg(long)]
    pub config: PathBuf,
    /// Continue from the newest checkpoint in the run folder.
    #[arg(long)]
    pub resume: bool,
    /// Print the resolved configuration and exit.
    #[arg(long)]
    pub dry_run: bool,
    /// One step, no checkpoint: checks that the configuration trains.
    #[arg(long)]
    pub smoke: bool,
    /// Stop after this many steps of this invocation (a later --resume continues).
    #[arg(long)]
    pub max_steps: Option<usize>,
    /// Export the newest checkpoint's EMA weights to `{out_dir}/final` without training.
    #[arg(long, conflicts_with_all = ["smoke", "dry_run"])]
    pub export: bool,
    /// Where the DiT trains: cpu, cuda or cuda:N (a build with the `cuda` feature). The VAE trains on the CPU.
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

fn progress(total: usize, done: usize) -> ProgressBar {
    let bar = ProgressBar::new(total as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{elapsed_precise} [{bar:30}] {pos}/{len} steps ({eta} left) {msg}",
        )
        .expect("static template")
        .progress_chars("=> "),
    );
    bar.set_position(done as u64);
    bar
}

fn report(bar: &ProgressBar, p: &LossPoint) {
    bar.set_position(p.step as u64);
    let line = format!("loss {:.4} lr {:.2e} |g| {:.3}", p.loss, p.lr, p.grad_norm);
    // Without a terminal (logs, CI) the bar is hidden: a plain line every 25 steps instead.
    if bar.is_hidden() && p.step.is_multiple_of(25) {
        eprintln!("step {}: {line}", p.step);
    }
    bar.set_message(line);
}

/// Prepares resumption or refuses to overwrite an existing run.
fn start(session: &mut orrery_train::Session, resume: bool) -> Result<()> {
    if resume {
        match session.resume_latest()? {
            Some(step) => eprintln!("resumed at step {step}"),
            None => eprintln!(
                "no checkpoint yet in {}: starting",
                session.out_dir.display()
            ),
        }
    } else if !session.checkpoints().is_empty() {
        bail!(
            "{} already has checkpoints: pass --resume to continue it, or choose another out_dir",
            session.out_dir.display()
        );
    }
    Ok(())
}

pub fn run(cmd: TrainCommand) -> Result<()> {
    match cmd {
        TrainCommand::Vae(args) => train_vae(&args),
        TrainCommand::Dit(args) => train_dit(&args),
        TrainCommand::Distill(args) => train_distill(&args),
        TrainCommand::Rl(args) => train_rl(&args),
    }
}

/// Smoke step, or training (fresh or resumed) and export, for either trainer.
fn drive(mut trainer: impl Run, args: &TrainArgs, what: &str) -> Result<()> {
    if args.smoke {
        let t0 = Instant::now();
        let p = trainer.train_step()?;
        println!(
            "smoke step: loss {:.5} in {:.2} s",
            p.loss,
            t0.elapsed().as_secs_f64()
        );
        return Ok(());
    }
    start(trainer.session_mut(), args.resume || args.export)?;
    let steps = trainer.run_config().steps;
    if !args.export {
        let bar = progress(steps, trainer.session().step());
        trainer.train(args.max_steps, |p| report(&bar, p))?;
        bar.finish();
    }
    if args.export || trainer.session().step() >= steps {
        let dir = trainer.export()?;
        println!(
            "{what} of step {} written to {}",
            trainer.session().step(),
            dir.display()
        );
        if let Some(samples) = trainer.write_samples()? {
            println!("samples: {}", samples.display());
        }
    }
    Ok(())
}

fn train_vae(args: &TrainArgs) -> Result<()> {
    let config = VaeTrainConfig::read(&args.config)?;
    if args.dry_run {
        println!("{}", serde_json::to_string_pretty(&config)?);
        return Ok(());
    }
    if args.device != "cpu" {
        bail!(
            "--device {}: the VAE trainer runs on the CPU only",
            args.device
        );
    }
    let trainer = orrery_train::VaeTrainer::new(config)?;
    eprintln!("VAE: {} parameters", trainer.session.vars.parameter_count());
    drive(trainer, args, "VAE")
}

fn train_dit(args: &TrainArgs) -> Result<()> {
    let config = DitTrainConfig::read(&args.config)?;
    if args.dry_run {
        let config = config.resolved()?;
        println!("{}", serde_json::to_string_pretty(&config)?);
        return Ok(());
    }
    let device = parse_device(&args.device)?;
    eprintln!("encoding the training clips with the VAE (cached in the run folder)");
    let trainer = orrery_train::DitTrainer::on_device(config, device)?;
    match trainer.text.words() {
        Some(words) => eprintln!(
            "DiT + word encoder: {} parameters, {} words",
            trainer.session.vars.parameter_count(),
            words.config.vocab.len()
        ),
        None => eprintln!(
            "DiT: {} parameters; the bundle's Reason1 text encoder is frozen (caption embeddings cached in {})",
            trainer.session.vars.parameter_count(),
            trainer
                .config
                .run
                .out_dir
                .join(orrery_train::dit::PROMPT_CACHE_DIR)
                .display()
        ),
    }
    if !trainer.lora_modules.is_empty() {
        let trained: usize = trainer
            .session
            .optimizer
            .vars
            .iter()
            .map(|(_, v)| v.elem_count())
            .sum();
        eprintln!(
            "LoRA: {trained} adapter parameters on {} Linears train, the rest is frozen",
            trainer.lora_modules.len()
        );
    }
    drive(trainer, args, "model bundle")
}

fn train_distill(args: &TrainArgs) -> Result<()> {
    let config = DistillConfig::read(&args.config)?;
    if args.dry_run {
        println!("{}", serde_json::to_string_pretty(&config)?);
        return Ok(());
    }
    let device = parse_device(&args.device)?;
    eprintln!("encoding the clips with the teacher's VAE (cached in the run folder)");
    let trainer = orrery_train::DistillTrainer::on_device(config, device)?;
    let d = &trainer.config.dmd;
    eprintln!(
        "student and critic: {} parameters each, from {}; 1 student update every {} steps, teacher guidance {}",
        trainer.session.optimizer.vars.iter().map(|(_, v)| v.elem_count()).sum::<usize>(),
        trainer.config.teacher.display(),
        d.student_update_freq,
        d.teacher_guidance
    );
    drive(trainer, args, "student bundle")
}

fn train_rl(args: &TrainArgs) -> Result<()> {
    let config = RlConfig::read(&args.config)?;
    if args.dry_run {
        println!("{}", serde_json::to_string_pretty(&config)?);
        return Ok(());
    }
    if args.device != "cpu" {
        bail!(
            "--device {}: the RL trainer runs on the CPU only",
            args.device
        );
    }
    eprintln!("encoding the clips with the bundle's VAE (cached in the run folder)");
    let trainer = orrery_train::RlTrainer::new(config)?;
    let g = &trainer.config.grpo;
    let rewards: Vec<String> = trainer
        .config
        .rewards
        .iter()
        .map(|r| format!("{} x{}", r.kind.name(), r.weight))
        .collect();
    eprintln!(
        "policy: {} trained parameters from {}; {} rollouts per condition, {} sampler steps ({} trained), rewards {}",
        trainer.session.optimizer.vars.iter().map(|(_, v)| v.elem_count()).sum::<usize>(),
        trainer.config.init_from.display(),
        g.rollouts,
        g.sample_steps,
        g.trained_steps(),
        rewards.join(", ")
    );
    drive(trainer, args, "post-trained bundle")
}
