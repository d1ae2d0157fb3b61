//! Episodes of scripted policies in a [`PolicyWorld`], judged from their video by the bench's detector.
//!
//! - Episode `i` of an evaluation with base seed `s` is the task's scene of seed [`episode_seed`]`(s, i)`, the
//!   same for every policy and every world; the policy's own draws use that seed too.
//! - Every world starts from the simulator's rendering of frame 0. Each observation, the policy sees the target
//!   object where the colour detector ([`crate::track::locate`]) finds it in the latest frame (converted to world
//!   metres by the camera) and the gripper as the world reports it; it plans [`PolicyWorld::chunk`] actions from
//!   that observation, dead-reckoning the gripper between them.
//! - Success, completion and effort are those of [`orrery_physics::manip::task`]: the object's detected centre
//!   over the zone and resting on the floor in each of the last frames; completion is the first frame from
//!   which that holds to the end (reported in seconds); effort is `Σ |v|² dt` of the actions.

use orrery_media::RgbImage;
use orrery_physics::manip::episode::policy_for;
use orrery_physics::manip::{
    effort, task_scene, GripperAction, Observation, Skill, Success, Task, ZoneJudge,
};
use orrery_physics::{render_frame, simulate, Camera};
use serde::Serialize;

use super::world::PolicyWorld;
use crate::track::locate;

/// What to evaluate.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalOptions {
    pub task: Task,
    pub policies: Vec<Skill>,
    pub episodes: usize,
    pub seed: u64,
    /// Frames per episode, the start frame included.
    pub frames: usize,
    pub width: u32,
    pub height: u32,
    pub fps: f32,
    /// Episodes whose frames are kept (for side-by-side GIFs).
    pub keep_frames: usize,
}

/// The scene seed of episode `i`.
pub fn episode_seed(seed: u64, i: usize) -> u64 {
    let mut z = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (i as u64).wrapping_add(0x5851_f42d);
    z = (z ^ (z >> 31)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z ^ (z >> 29)
}

/// One policy's episode in one world.
#[derive(Debug, Clone, Serialize)]
pub struct EpisodeOutcome {
    pub episode: usize,
    pub seed: u64,
    pub policy: Skill,
    /// Judged from the video by the detector.
    pub success: bool,
    pub completion_frame: Option<usize>,
    pub completion_seconds: Option<f64>,
    pub effort: f64,
    /// Judged from the world's true state, where it has one (the simulator).
    pub state_success: Option<bool>,
    /// Frames the detector did not find the object in.
    pub object_missed: usize,
    pub actions: Vec<GripperAction>,
    #[serde(skip)]
    pub frames: Option<Vec<RgbImage>>,
}

/// Runs policy `skill` for episode `episode` in `world`.
pub fn run_episode<W: PolicyWorld>(
    world: &mut W,
    options: &EvalOptions,
    skill: Skill,
    episode: usize,
) -> Result<EpisodeOutcome, W::Error> {
    let seed = episode_seed(options.seed, episode);
    let aspect = options.height as f32 / options.width as f32;
    let scene = task_scene(options.task, seed, aspect);
    let m = scene
        .manipulation
        .clone()
        .expect("a task scene has a manipulation spec");
    let camera = Camera::new(&scene, options.width, options.height);
    let first = simulate(&scene, 1, options.fps);
    let start = RgbImage::from_raw(
        camera.width_px,
        camera.height_px,
        render_frame(&scene, &first, 0, &camera),
    )
    .expect("rendered at the camera's size");
    world.begin(&scene, &camera, options.fps, &start, seed)?;
    let mut policy = policy_for(&scene, skill, options.fps, seed).expect("a task scene");
    let target = &scene.objects[m.target];
    let chunk = world.chunk().max(1);
    let mut frames = vec![start];
    let mut actions = Vec::new();
    while frames.len() < options.frames {
        let n = chunk.min(options.frames - frames.len());
        let seen = locate(frames.last().expect("the start frame"), target.color)
            .map(|(c, _)| camera.to_world([c[0] as f32, c[1] as f32]));
        let mut g = world.gripper();
        let mut planned = Vec::with_capacity(n);
        for k in 0..n {
            let obs = Observation {
                frame: frames.len() - 1 + k,
                gripper: g,
                object: seen,
                fresh: k == 0,
            };
            let a = policy.act(&obs).clamped(&m.gripper, options.fps);
            g = g.predicted(a, &m.gripper, options.fps, scene.width, scene.height);
            planned.push(a);
        }
        let new = world.step(&planned)?;
        frames.extend(new.into_iter().take(n));
        actions.extend(planned);
        if frames.len() < options.frames && frames.len() <= actions.len() {
            // A world that returned fewer frames than actions: judge what there is.
            break;
        }
    }
    let judge = ZoneJudge::new(&scene, &camera).expect("a task scene");
    let seen: Vec<Option<[f64; 2]>> = frames
        .iter()
        .map(|f| locate(f, target.color).map(|(c, _)| c))
        .collect();
    let in_zone: Vec<bool> = seen.iter().map(|c| judge.in_zone(*c)).collect();
    let video = Success::judge(&in_zone);
    let state_success = world.state_in_zone().map(|z| Success::judge(&z).success);
    Ok(EpisodeOutcome {
        episode,
        seed,
        policy: skill,
        success: video.success,
        completion_frame: video.completion_frame,
        completion_seconds: video
            .completion_frame
            .map(|f| f as f64 / options.fps as f64),
        effort: effort(&actions, &m.gripper, options.fps),
        state_success,
        object_missed: seen.iter().filter(|c| c.is_none()).count(),
        actions,
        frames: (episode < options.keep_frames).then_some(frames),
    })
}

/// A policy's numbers in one world.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PolicySummary {
    pub policy: Skill,
    pub episodes: usize,
    pub success_rate: f64,
    /// Mean completion time of the successful episodes (seconds).
    pub mean_completion_seconds: Option<f64>,
    pub mean_effort: f64,
    /// Success rate by the world's true state, where it has one.
    pub state_success_rate: Option<f64>,
    /// Episodes whose video and state judgements agree, where the world has a state.
    pub video_state_agreement: Option<usize>,
}

impl PolicySummary {
    pub fn of(policy: Skill, outcomes: &[&EpisodeOutcome]) -> Self {
        let n = outcomes.len().max(1) as f64;
        let done: Vec<f64> = outcomes
            .iter()
            .filter_map(|o| o.completion_seconds)
            .collect();
        let states: Option<Vec<bool>> = outcomes.iter().map(|o| o.state_success).collect();
        Self {
            policy,
            episodes: outcomes.len(),
            success_rate: outcomes.iter().filter(|o| o.success).count() as f64 / n,
            mean_completion_seconds: (!done.is_empty())
                .then(|| done.iter().sum::<f64>() / done.len() as f64),
            mean_effort: outcomes.iter().map(|o| o.effort).sum::<f64>() / n,
            state_success_rate: states
                .as_ref()
                .map(|s| s.iter().filter(|&&b| b).count() as f64 / n),
            video_state_agreement: states.map(|s| {
                s.iter()
                    .zip(outcomes)
                    .filter(|(s, o)| **s == o.success)
                    .count()
            }),
        }
    }
}

/// Every policy's episodes in one world.
#[derive(Debug, Clone, Serialize)]
pub struct WorldResult {
    pub world: String,
    pub summaries: Vec<PolicySummary>,
    pub episodes: Vec<EpisodeOutcome>,
    /// Wall-clock seconds the world took.
    pub seconds: f64,
}

impl WorldResult {
    /// The outcome of `policy` in episode `episode`.
    pub fn outcome(&self, policy: Skill, episode: usize) -> Option<&EpisodeOutcome> {
        self.episodes
            .iter()
            .find(|o| o.policy == policy && o.episode == episode)
    }

    pub fn success_rates(&self) -> Vec<f64> {
        self.summaries.iter().map(|s| s.success_rate).collect()
    }
}

/// Runs every policy of `options` for every episode in `world`; `on_episode` is called after each.
pub fn evaluate<W: PolicyWorld>(
    world: &mut W,
    options: &EvalOptions,
    mut on_episode: impl FnMut(),
) -> Result<WorldResult, W::Error> {
    let start = std::time::Instant::now();
    let mut episodes = Vec::new();
    for &policy in &options.policies {
        for i in 0..options.episodes {
            episodes.push(run_episode(world, options, policy, i)?);
            on_episode();
        }
    }
    let summaries = options
        .policies
        .iter()
        .map(|&p| {
            let mine: Vec<&EpisodeOutcome> = episodes.iter().filter(|o| o.policy == p).collect();
            PolicySummary::of(p, &mine)
        })
        .collect();
    Ok(WorldResult {
        world: world.name(),
        summaries,
        episodes,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// Ranks (1-based) with ties given their mean rank.
fn ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut out = vec![0.0; values.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && values[order[j + 1]] == values[order[i]] {
            j += 1;
        }
        let mean = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            out[k] = mean;
        }
        i = j + 1;
    }
    out
}

/// Spearman's rank correlation of `a` and `b` (the Pearson correlation of their tie-averaged ranks); `None` when
/// the lengths differ, there are fewer than two values or either side is constant.
pub fn spearman(a: &[f64], b: &[f64]) -> Option<f64> {
    if a.len() != b.len() || a.len() < 2 {
        return None;
    }
    let (ra, rb) = (ranks(a), ranks(b));
    let n = ra.len() as f64;
    let (ma, mb) = (ra.iter().sum::<f64>() / n, rb.iter().sum::<f64>() / n);
    let cov: f64 = ra.iter().zip(&rb).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = ra.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = rb.iter().map(|y| (y - mb).powi(2)).sum();
    (va > 0.0 && vb > 0.0).then(|| cov / (va * vb).sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spearman_handles_ties_and_order() {
        assert_eq!(
            spearman(&[1.0, 0.75, 0.5, 0.1], &[0.9, 0.8, 0.3, 0.0]),
            Some(1.0)
        );
        assert_eq!(
            spearman(&[1.0, 0.75, 0.5, 0.1], &[0.0, 0.3, 0.8, 0.9]),
            Some(-1.0)
        );
        let r = spearman(&[1.0, 0.5, 0.5, 0.0], &[1.0, 0.6, 0.4, 0.0]).unwrap();
        assert!((r - 0.9486832980505138).abs() < 1e-12, "{r}");
        assert_eq!(spearman(&[1.0, 1.0], &[0.0, 1.0]), None);
        assert_eq!(spearman(&[1.0], &[1.0]), None);
        assert_eq!(ranks(&[3.0, 1.0, 3.0, 2.0]), vec![3.5, 1.0, 3.5, 2.0]);
    }
}
