//! GRPO post-training of a bundle's DiT with rewards from the simulator, as the released Cosmos RL run trains
//! (posttraining spec section 3): per step, `run.batch_size` conditions (a physics world's caption and its first
//! 0, 1, ... latent frames), each rolled out `grpo.rollouts` times with the stochastic sampler under the current
//! weights; the rollouts are decoded and judged, the rewards normalised within each group into advantages; then
//! every `train_every`-th transition of each rollout gives the clipped-ratio policy loss (its mean recomputed with
//! gradients) plus `data_beta` times the diffusion loss on the real clip at that step's sigma and the rollout's
//! initial noise (DDRL). The gradients of all of them accumulate into one optimiser step.

use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use orrery_dit::{CosmosDit, DitConfig, DitModelDir};
use orrery_media::RgbImage;
use orrery_nn::SeededVarMap;
use orrery_pipeline::conditioning::{batch_condition_mask, guide};
use orrery_pipeline::distilled::TrigCondition;
use orrery_pipeline::inputs::frames_from_clip;
use orrery_pipeline::rollout::{
    edm_sigma, edm_x0, rollout, transition_mean, Rollout, RolloutSampler, Transition,
};
use orrery_pipeline::{BundleDefaults, SAMPLING_FILE};
use orrery_text::{Overflow, WordEncoder};
use orrery_vae::{Chunking, VaeModelPath, WanVae};

use crate::distill::trainer::load_word_encoder;
use crate::dit::latents::LatentSet;
use crate::dit::lora::LORA_PREFIX;
use crate::error::{Result, TrainError};
use crate::rl::config::RlConfig;
use crate::rl::grpo::{clipped_policy_loss, composed_advantages, composed_reward, log_ratio};
use crate::rl::history::{RewardHistory, RewardPoint};
use crate::rl::rewards::{continuation_score, external_reward, reward, Judged, RewardKind};
use crate::trainer::config::RunConfig;
use crate::trainer::random::{conditioning_frames, index, normal};
use crate::trainer::run::Run;
use crate::trainer::session::{accumulate_grads, init_vars_from, LossPoint, Session};

/// The variable-name prefix of the policy's weights in a full-weight run.
pub(crate) const POLICY: &str = "dit";

/// An RL run.
pub struct RlTrainer {
    pub config: RlConfig,
    pub session: Session,
    pub policy: CosmosDit,
    pub model: DitConfig,
    pub text: WordEncoder,
    pub vae: WanVae,
    pub vae_path: VaeModelPath,
    pub data: LatentSet,
    /// The bundle's sampling defaults (conditioning-frame timestep, sizes, rates).
    pub defaults: BundleDefaults,
    /// Adapted modules (official names), empty unless `config.lora`.
    pub lora_modules: Vec<String>,
    pub rewards: RewardHistory,
    device: Device,
}

/// One condition and its rollouts' draws.
struct Group {
    clip: usize,
    caption: String,
    cond_frames: usize,
    /// Unit initial noise of each rollout (N, C, T, h, w).
    noise: Tensor,
}

/// What conditions a group's rollouts: its clean latents (N copies), mask and caption embedding.
struct GroupCondition {
    gt: Tensor,
    mask: Tensor,
    text: Tensor,
    pin_timestep: bool,
}

impl GroupCondition {
    fn condition(&self) -> TrigCondition<'_> {
        TrigCondition {
            gt: &self.gt,
            mask: &self.mask,
            text: &self.text,
            pin_timestep: self.pin_timestep,
        }
    }
}

/// A judged group: what conditioned it, the rollouts, their advantages and each term's weight and rewards.
struct Judgement {
    condition: GroupCondition,
    rollout: Rollout,
    advantages: Vec<f64>,
    terms: Vec<(f64, Vec<Option<f64>>)>,
}

impl RlTrainer {
    /// A run on the CPU.
    pub fn new(config: RlConfig) -> Result<Self> {
        let device = Device::Cpu;
        let bundle = &config.init_from;
        let dir = DitModelDir::open(&bundle.join("transformer"))?;
        let model = dir.config.clone();
        let text = load_word_encoder(bundle, &device)?;
        let vae_path = VaeModelPath::open(&bundle.join("vae"))?;
        let vae = vae_path.load(DType::F32, &device)?;
        // The policy is the bundle's `transformer/`, and it samples every mode.
        let defaults = BundleDefaults::read(&bundle.join(SAMPLING_FILE))?.one_transformer();
        let data = LatentSet::build(
            &config.data,
            &vae,
            &vae_path.weights,
            &config.run.out_dir,
            None,
        )?;
        let vars = SeededVarMap::new(config.run.seed);
        let vb = vars.var_builder(&device);
        let (out_dir, seed, steps) = (&config.run.out_dir, config.run.seed, config.run.steps);
        let optim = config.optim.clone();
        let (policy, lora_modules, session) = match &config.lora {
            // The bundle's DiT loaded once in the type it trains in, frozen; the adapters are the only variables
            // that train and are checkpointed (a resumed run takes the base again from `init_from`).
            Some(lora) => {
                let mut policy = dir.load(lora.base_dtype(), &device)?;
                let modules = policy.attach_adapters(vb.pp("lora"), &lora.shape())?;
                let session = Session::training_only(out_dir, vars, optim, seed, steps, |n| {
                    n.starts_with(LORA_PREFIX)
                })?;
                (policy, modules, session)
            }
            None => {
                let policy = CosmosDit::new(vb.pp(POLICY), &model)?;
                init_vars_from(&vars, &dir.weights, &format!("{POLICY}."), |_| false)?;
                (
                    policy,
                    Vec::new(),
                    Session::new(out_dir, vars, optim, seed, steps)?,
                )
            }
        };
        let rewards = RewardHistory::read(out_dir)?;
        Ok(Self {
            config,
            session,
            policy,
            model,
            text,
            vae,
            vae_path,
            data,
            defaults,
            lora_modules,
            rewards,
            device,
        })
    }

    fn sampler(&self) -> RolloutSampler {
        self.config.grpo.sampler()
    }

    fn draw(&mut self) -> Result<Vec<Group>> {
        let g = &self.config.grpo;
        let rng = &mut self.session.rng;
        let n = self.data.latents.dim(0)?;
        let shape = self.data.latents.dims()[1..].to_vec();
        let mut groups = Vec::new();
        for _ in 0..self.config.run.batch_size {
            let clip = index(rng, n);
            let latent_frames = shape[1];
            let cond_frames =
                conditioning_frames(&g.cond_probs, rng.next_f64()).min(latent_frames - 1);
            let caption = self.data.captions[clip][index(rng, 3)].clone();
            let mut dims = vec![g.rollouts];
            dims.extend(&shape);
            let noise = normal(rng, &dims, &self.device)?;
            groups.push(Group {
                clip,
                caption,
                cond_frames,
                noise,
            });
        }
        Ok(groups)
    }

    /// The group's clean latents (N copies), mask and caption embedding.
    fn condition_tensors(&self, group: &Group) -> Result<GroupCondition> {
        let n = self.config.grpo.rollouts;
        let x0 = self.data.latents.get(group.clip)?;
        let (_, t, h, w) = x0.dims4()?;
        let gt = x0.unsqueeze(0)?.repeat((n, 1, 1, 1, 1))?;
        let mask = batch_condition_mask(&vec![group.cond_frames; n], t, h, w, &self.device)?;
        let ids = self
            .text
            .config
            .tokenize(&group.caption, Overflow::Truncate)?;
        let text = self.text.embed_batch(&vec![ids.as_slice(); n])?.detach();
        Ok(GroupCondition {
            gt,
            mask,
            text,
            pin_timestep: self.defaults.cond_timestep.is_some(),
        })
    }

    /// The x0 prediction of the policy (with gradients) at one sigma for every sample, guided when
    /// `grpo.guidance` is not 0 (the unconditional branch with the empty caption, whose embedding is zero).
    fn predict(
        &self,
        x: &Tensor,
        sigma: f64,
        condition: &TrigCondition,
    ) -> orrery_pipeline::Result<Tensor> {
        let b = x.dim(0)?;
        let cond = edm_x0(&self.policy, x, &vec![sigma; b], condition)?;
        let g = self.config.grpo.guidance;
        if g == 0.0 {
            return Ok(cond);
        }
        let empty = condition.text.zeros_like()?;
        let uncond_condition = TrigCondition {
            text: &empty,
            ..*condition
        };
        let uncond = edm_x0(&self.policy, x, &vec![sigma; b], &uncond_condition)?;
        Ok(guide(&cond, &uncond, g)?)
    }

    /// Rolls the group out under the current weights, decodes and judges it.
    fn judge(&mut self, group: &Group) -> Result<Judgement> {
        let tensors = self.condition_tensors(group)?;
        let grpo = self.config.grpo.clone();
        let sampler = self.sampler();
        let mut rng = self.session.rng.clone();
        let device = self.device.clone();
        let result = {
            let condition = tensors.condition();
            let mut denoise =
                |x: &Tensor, sigma: f64| self.predict(x, sigma, &condition).map(|t| t.detach());
            let draw = |shape: &[usize]| -> orrery_pipeline::Result<Tensor> {
                Ok(normal(&mut rng, shape, &device)?)
            };
            rollout(
                &sampler,
                &mut denoise,
                &group.noise,
                draw,
                |i| grpo.trains_on(i),
                |_, _| {},
            )?
        };
        self.session.rng = rng;
        let t0 = std::time::Instant::now();
        let videos = self.decode(&result.latents)?;
        tracing::debug!(
            "decoding {} rollouts: {:.1} s",
            videos.len(),
            t0.elapsed().as_secs_f64()
        );
        let clip = self
            .config
            .data
            .clip(group.clip)
            .map_err(TrainError::Data)?;
        let real = clip.images();
        let conditioning = match group.cond_frames {
            0 => 0,
            n => self.vae.config.pixel_frames(n),
        };
        let fps = self.config.data.fps as f64;
        let terms_spec = self.config.rewards.clone();
        let mut terms: Vec<(f64, Vec<Option<f64>>)> =
            terms_spec.iter().map(|t| (t.weight, Vec::new())).collect();
        for frames in &videos {
            let judged = Judged {
                frames,
                real: &real,
                truth: &clip.truth,
                conditioning,
                caption: &group.caption,
                fps,
            };
            let score = continuation_score(&judged);
            for (k, term) in terms_spec.iter().enumerate() {
                let value = match term.kind {
                    RewardKind::External => self.external(&judged)?,
                    kind => reward(kind, &judged, score.as_ref()),
                };
                terms[k].1.push(value);
            }
        }
        let advantages = composed_advantages(
            &terms,
            grpo.reward_clip,
            grpo.advantage_clip,
            grpo.exp_reward,
        );
        Ok(Judgement {
            condition: tensors,
            rollout: result,
            advantages,
            terms,
        })
    }

    /// The external command's score of a rollout, written to a temporary MP4 in the run's folder.
    fn external(&self, j: &Judged) -> Result<Option<f64>> {
        let Some(command) = &self.config.reward_command else {
            return Ok(None);
        };
        let path = self.config.run.out_dir.join("reward-rollout.mp4");
        orrery_media::write_mp4(&path, j.frames, j.fps, Default::default())?;
        Ok(external_reward(command, &path, j.caption))
    }

    /// Decoded frames of each rollout's latents (N, C, T, h, w).
    fn decode(&self, latents: &Tensor) -> Result<Vec<Vec<RgbImage>>> {
        let mut out = Vec::new();
        for i in 0..latents.dim(0)? {
            let z = self.vae.denormalize(&latents.get(i)?.unsqueeze(0)?)?;
            let video = self.vae.decode(&z, Chunking::Whole)?;
            out.push(frames_from_clip(&video)?);
        }
        Ok(out)
    }

    /// One trained transition's loss (before scaling): the clipped policy loss plus `data_beta` times the
    /// diffusion loss on the real clip at the transition's sigma with the rollouts' initial noise.
    fn transition_loss(
        &self,
        group: &Group,
        judged: &Judgement,
        transition: &Transition,
    ) -> Result<Tensor> {
        let grpo = &self.config.grpo;
        let sampler = self.sampler();
        let condition = judged.condition.condition();
        let gt = &judged.condition.gt;
        let mut denoise = |x: &Tensor, sigma: f64| self.predict(x, sigma, &condition);
        let mean = transition_mean(&sampler, &mut denoise, transition)?;
        let ratio = log_ratio(
            &transition.sample,
            &mean,
            &transition.mean,
            transition.std,
            grpo.log_ratio,
        )?;
        let mut loss = clipped_policy_loss(&ratio, &judged.advantages, grpo.clip_ratio)?;
        if grpo.data_beta > 0.0 {
            let sigma = edm_sigma(&sampler, transition.time);
            let x_sigma = (gt + (&group.noise * sigma)?)?;
            let x0 = self.predict(&x_sigma, sigma, &condition)?;
            let weight = (1.0 + sigma).powi(2) / (sigma * sigma);
            let data = ((gt - x0)?.sqr()?.mean_all()? * weight)?;
            loss = (loss + (data * grpo.data_beta)?)?;
        }
        Ok(loss)
    }

    fn record(&mut self, step: usize, judged: &[Judgement]) -> Result<()> {
        let kinds: Vec<RewardKind> = self.config.rewards.iter().map(|r| r.kind).collect();
        let mut composed = Vec::new();
        let mut per_term = vec![Vec::new(); kinds.len()];
        for j in judged {
            composed.extend(composed_reward(&j.terms));
            for (k, (_, values)) in j.terms.iter().enumerate() {
                per_term[k].extend(values.iter().flatten().copied());
            }
        }
        self.rewards
            .push(RewardPoint::new(step, &composed, &kinds, &per_term));
        self.rewards.write(&self.config.run.out_dir)
    }
}

impl Run for RlTrainer {
    fn session(&self) -> &Session {
        &self.session
    }

    fn session_mut(&mut self) -> &mut Session {
        &mut self.session
    }

    fn run_config(&self) -> &RunConfig {
        &self.config.run
    }

    fn config_json(&self) -> String {
        serde_json::to_string_pretty(&self.config).expect("plain values")
    }

    fn train_step(&mut self) -> Result<LossPoint> {
        let groups = self.draw()?;
        let grpo = self.config.grpo.clone();
        let scale = grpo.loss_scale / (grpo.trained_steps() * groups.len()) as f64;
        let started = std::time::Instant::now();
        let mut judged = Vec::new();
        for group in &groups {
            judged.push(self.judge(group)?);
        }
        let rolled = started.elapsed();
        let (mut grads, mut total) = (None, 0f32);
        for (group, j) in groups.iter().zip(&judged) {
            for transition in &j.rollout.transitions {
                let loss = (self.transition_loss(group, j, transition)? * scale)?;
                total += loss.to_scalar::<f32>()?;
                accumulate_grads(&self.session, &mut grads, loss.backward()?)?;
            }
        }
        let grads = grads.ok_or_else(|| {
            TrainError::Data("no transition was trained on (grpo.train_every too large?)".into())
        })?;
        let point = self.session.update_from_grads(total, &grads)?;
        tracing::debug!(
            "step {}: rollouts and rewards {:.1} s, policy gradients {:.1} s",
            point.step,
            rolled.as_secs_f64(),
            (started.elapsed() - rolled).as_secs_f64()
        );
        self.record(point.step, &judged)?;
        Ok(point)
    }

    fn write_samples(&self) -> Result<Option<PathBuf>> {
        super::export::write_samples(self).map(Some)
    }

    fn export(&self) -> Result<PathBuf> {
        let dir = self.config.run.out_dir.join("final");
        super::export::export_bundle(self, &dir)?;
        Ok(dir)
    }
}
