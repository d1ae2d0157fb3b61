//! `orrery policy eval`: scripted gripper policies run closed loop in the simulator and, with `--model`, inside an
//! action-conditioned world model from the same start frames (`orrery_eval::policy`), reported side by side.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use orrery_eval::policy::report::{comparison_lines, table, to_html, to_json};
use orrery_eval::policy::{evaluate, EvalOptions, PolicyWorld, SimWorld, WorldResult};
use orrery_physics::manip::{Skill, Task};
use orrery_physics::ClipSettings;
use orrery_pipeline::policy_world::{ModelWorld, RoundTripWorld};
use orrery_pipeline::{Engine, Mode, Size};

use crate::sampling_args::SamplingArgs;

#[derive(clap::Subcommand)]
pub enum PolicyCommand {
    /// Run scripted policies for a manipulation task in the simulator (and a world model) and report success
    /// rate, completion time and effort per policy, as JSON and an HTML page with side-by-side GIFs.
    Eval(Box<EvalArgs>),
    /// The action bench: an action-conditioned model predicts held-out manipulation clips from their first frame
    /// and recorded actions, scored (PSNR, SSIM, latent L2, trajectory error) beside models without actions and
    /// the copy and constant-velocity baselines; JSON, HTML and MP4s for FVD.
    Bench(Box<crate::policy_bench_cmd::BenchArgs>),
}

#[derive(clap::Args)]
pub struct EvalArgs {
    /// Policies, comma-separated: expert, good, sloppy, poor.
    #[arg(long, value_delimiter = ',', default_value = "expert,good,sloppy,poor")]
    pub policy: Vec<String>,
    /// The task: push (push the block into the zone) or pick-place (lift it over a wall into the zone).
    #[arg(long)]
    pub task: String,
    /// Episodes per policy (episode i is the same scene for every policy and world).
    #[arg(long, default_value_t = 20)]
    pub episodes: usize,
    /// Base seed of the episodes' scenes.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Frames per episode, the start frame included.
    #[arg(long, default_value_t = 121)]
    pub frames: usize,
    /// Frame size WxH (with --model: the model's size, which this must match if given).
    #[arg(long)]
    pub size: Option<Size>,
    /// Frames per second (with --model: the model's).
    #[arg(long)]
    pub fps: Option<f32>,
    /// Also run the policies inside this action-conditioned model bundle (its DiT takes 4-wide actions:
    /// [dx, dy, dtheta, grip] scaled as the official pipeline scales actions), closed loop from the same start
    /// frames, and compare it with the simulator; in both worlds the policies then plan the model's chunk of
    /// actions from each observed frame.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// With --model, also run the simulator seen through the model's VAE (each chunk of frames encoded and
    /// decoded from its true start frame): the success rates a world model whose latent predictions were perfect
    /// would be judged to have, the ceiling of any model with that VAE.
    #[arg(long, requires = "model")]
    pub vae_ceiling: bool,
    /// The model's prompt.
    #[arg(
        long,
        default_value = "A robot gripper moves a block on the floor towards a pink target zone."
    )]
    pub prompt: String,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// Results as JSON (written atomically).
    #[arg(long)]
    pub out: PathBuf,
    /// Also an HTML report with the tables and side-by-side GIFs (a column per policy, a row per world).
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Episodes shown as GIFs in the report.
    #[arg(long, default_value_t = 4)]
    pub gif_episodes: usize,
}

pub fn run(cmd: PolicyCommand) -> Result<()> {
    match cmd {
        PolicyCommand::Eval(args) => eval(&args),
        PolicyCommand::Bench(args) => crate::policy_bench_cmd::bench(&args),
    }
}

fn parse_policies(names: &[String]) -> Result<Vec<Skill>> {
    let known = || {
        Skill::ALL
            .iter()
            .map(|s| s.name())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut out = Vec::new();
    for name in names.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
        let skill = Skill::parse(name)
            .with_context(|| format!("--policy: unknown policy {name:?} (known: {})", known()))?;
        if out.contains(&skill) {
            bail!("--policy: {name} is given twice");
        }
        out.push(skill);
    }
    if out.is_empty() {
        bail!("--policy: name at least one policy (known: {})", known());
    }
    Ok(out)
}

fn eval(args: &EvalArgs) -> Result<()> {
    let task = Task::parse(&args.task).with_context(|| {
        format!(
            "--task: unknown task {:?} (known: {})",
            args.task,
            Task::ALL.map(|t| t.name()).join(", ")
        )
    })?;
    let policies = parse_policies(&args.policy)?;
    if args.episodes == 0 {
        bail!("--episodes must be at least 1");
    }
    if args.frames < 2 {
        bail!(
            "--frames {}: an episode needs at least 2 frames",
            args.frames
        );
    }
    for path in [Some(&args.out), args.report.as_ref()]
        .into_iter()
        .flatten()
    {
        orrery_pipeline::engine::check_output(path)?;
    }
    // Refused here even without a model, so that a device this build cannot use never passes unnoticed.
    let device = args.sampling.device.device()?;
    // With a model, its size and frame rate; the flags must agree with them.
    let engine = match &args.model {
        Some(root) => Some(Engine::open(root, args.sampling.bench_options(device))?),
        None => None,
    };
    let size = match (&engine, args.size) {
        (Some(e), Some(s)) if s != e.size() => {
            bail!("--size {s}: the model generates {}", e.size())
        }
        (Some(e), _) => e.size(),
        (None, s) => s.unwrap_or(Size {
            width: 64,
            height: 64,
        }),
    };
    let fps = match (&engine, args.fps) {
        (Some(e), Some(f)) if (f as f64 - e.fps()).abs() > 1e-6 => {
            bail!("--fps {f}: the model's frame rate is {}", e.fps())
        }
        (Some(e), _) => e.fps() as f32,
        (None, f) => f.unwrap_or(16.0),
    };
    let side = |n: usize| u32::try_from(n).with_context(|| format!("--size: {n} is too large"));
    let settings = ClipSettings {
        frames: args.frames,
        width: side(size.width)?,
        height: side(size.height)?,
        fps,
    };
    settings.validate()?;
    let options = EvalOptions {
        task,
        policies,
        episodes: args.episodes,
        seed: args.seed,
        frames: args.frames,
        width: settings.width,
        height: settings.height,
        fps,
        keep_frames: if args.report.is_some() {
            args.gif_episodes
        } else {
            0
        },
    };
    let runs = options.policies.len() * options.episodes;
    // With a model, the simulator is run under the same control: the policies plan the model's chunk of actions
    // from each observed frame in both worlds.
    let model = match engine {
        Some(engine) => {
            let mode = Mode::Image2World;
            let (text, negative) = engine
                .clip_prompts(&[(args.prompt.as_str(), mode, None)], None)?
                .remove(0);
            Some(ModelWorld::new(engine.load()?, text, negative)?)
        }
        None => None,
    };
    let chunk = model.as_ref().map_or(1, |m| m.chunk());
    let mut worlds: Vec<WorldResult> = Vec::new();
    let bar = crate::progress_bar(runs, "episodes", "simulator")?;
    worlds.push(evaluate(&mut SimWorld::chunked(chunk), &options, || {
        bar.inc(1)
    })?);
    bar.finish();
    if let Some(model) = model.as_ref().filter(|_| args.vae_ceiling) {
        let mut world = RoundTripWorld::of(model);
        let bar = crate::progress_bar(runs, "episodes", "simulator through the VAE")?;
        worlds.push(evaluate(&mut world, &options, || bar.inc(1))?);
        bar.finish();
    }
    if let Some(mut world) = model {
        let bar = crate::progress_bar(runs, "episodes", "world model")?;
        worlds.push(evaluate(&mut world, &options, || bar.inc(1))?);
        bar.finish();
    }
    for w in &worlds {
        print!("{}", table(w));
    }
    for line in comparison_lines(&worlds) {
        println!("{line}");
    }
    let json = to_json(&options, &worlds);
    crate::write_text_atomically(&args.out, &serde_json::to_string_pretty(&json)?)?;
    if let Some(path) = &args.report {
        let about = format!(
            "Task {}: {} episodes per policy (base seed {}), {} frames of {}x{} at {} fps. Each policy sees the \
             block where the colour detector finds it in the latest frame; success is the block's detected centre \
             over the zone and resting on the floor in each of the last {} frames, completion the first frame \
             from which that holds, effort the sum over frames of |v|² dt of the gripper's commanded motion.",
            task.name(),
            options.episodes,
            options.seed,
            options.frames,
            options.width,
            options.height,
            options.fps,
            orrery_physics::manip::task::SETTLE_FRAMES
        );
        crate::write_text_atomically(path, &to_html(&options, &worlds, &about))?;
    }
    Ok(())
}
