//! What every training run shares: trainable variables, AdamW with EMA, the run's random generator, the loss
//! history, and checkpoints that hold all of it so that a resumed run continues bit for bit.
//!
//! A run may have a second optimiser over other variables, with its own schedule and loss history (the critic of
//! DMD2 distillation, which updates on the steps the student does not); the run's step counts the updates of both.
//!
//! A checkpoint is a folder `checkpoints/step-NNNNNNN/` with `state.safetensors` (`param.*`, `adam_m.*`,
//! `adam_v.*`, `ema.*`), `state.json` (step, generator state, history) and `config.json` (the resolved run
//! configuration). It is written under a temporary name and renamed, so it exists whole or not at all.

use std::path::{Path, PathBuf};

use candle_core::backprop::GradStore;
use candle_core::{Device, Tensor};
use orrery_flow::noise::FastRng;
use orrery_nn::checkpoint::save_tensors;
use orrery_nn::{Checkpoint, SeededVarMap};
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};
use crate::trainer::optim::{AdamW, OptimConfig};
use crate::trainer::plot::write_loss_plot;

/// One step's record.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LossPoint {
    pub step: usize,
    pub loss: f32,
    pub lr: f64,
    pub grad_norm: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct SavedState {
    step: usize,
    rng_words: [u64; 4],
    rng_cached_normal: Option<f64>,
    history: Vec<LossPoint>,
    /// Updates and history of the second optimiser, when the run has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    secondary: Option<(usize, Vec<LossPoint>)>,
}

pub struct Session {
    pub out_dir: PathBuf,
    pub vars: SeededVarMap,
    pub optimizer: AdamW,
    pub rng: FastRng,
    pub history: Vec<LossPoint>,
    pub total_steps: usize,
    pub secondary: Option<Secondary>,
}

/// A second optimiser over variables the first does not train.
pub struct Secondary {
    pub optimizer: AdamW,
    /// The updates its learning-rate schedule spans.
    pub total_steps: usize,
    pub history: Vec<LossPoint>,
}

const GROUPS: [&str; 4] = ["param", "adam_m", "adam_v", "ema"];

impl Session {
    /// A fresh run over the variables already created in `vars`.
    pub fn new(
        out_dir: &Path,
        vars: SeededVarMap,
        optim: OptimConfig,
        seed: u64,
        total_steps: usize,
    ) -> Result<Self> {
        Self::training_only(out_dir, vars, optim, seed, total_steps, |_| true)
    }

    /// A fresh run that updates (and checkpoints) only the variables whose names pass `trained`; the others keep
    /// the values they were created or initialised with.
    pub fn training_only(
        out_dir: &Path,
        vars: SeededVarMap,
        optim: OptimConfig,
        seed: u64,
        total_steps: usize,
        trained: impl Fn(&str) -> bool,
    ) -> Result<Self> {
        let trainable = vars
            .named_vars()
            .into_iter()
            .filter(|(name, _)| trained(name))
            .collect();
        let optimizer = AdamW::new(optim, trainable)?;
        Ok(Self {
            out_dir: out_dir.to_owned(),
            vars,
            optimizer,
            rng: FastRng::new(seed ^ 0x005e_ed0f_7a1e),
            history: Vec::new(),
            total_steps,
            secondary: None,
        })
    }

    /// Adds a second optimiser over the variables that pass `trained` (none of which the first may train), whose
    /// schedule spans `total_steps` of its own updates.
    pub fn with_secondary(
        mut self,
        optim: OptimConfig,
        total_steps: usize,
        trained: impl Fn(&str) -> bool,
    ) -> Result<Self> {
        let first: std::collections::HashSet<&str> = self
            .optimizer
            .vars
            .iter()
            .map(|(n, _)| n.as_str())
            .collect();
        let vars: Vec<(String, candle_core::Var)> = self
            .vars
            .named_vars()
            .into_iter()
            .filter(|(name, _)| trained(name))
            .collect();
        if let Some((name, _)) = vars.iter().find(|(n, _)| first.contains(n.as_str())) {
            return Err(TrainError::Data(format!(
                "{name} would be trained by both optimisers"
            )));
        }
        self.secondary = Some(Secondary {
            optimizer: AdamW::new(optim, vars)?,
            total_steps,
            history: Vec::new(),
        });
        Ok(self)
    }

    /// Updates of the run: the first optimiser's and the second's.
    pub fn step(&self) -> usize {
        self.optimizer.step + self.secondary.as_ref().map_or(0, |s| s.optimizer.step)
    }

    fn optimizers(&self) -> impl Iterator<Item = &AdamW> {
        std::iter::once(&self.optimizer).chain(self.secondary.as_ref().map(|s| &s.optimizer))
    }

    /// Every variable for export: the EMA of the trained ones, the current value of those left out of training.
    pub fn export_tensors(&self) -> Result<Vec<(String, Tensor)>> {
        let mut tensors = self.optimizer.ema_tensors()?;
        let trained: std::collections::HashSet<String> =
            tensors.iter().map(|(name, _)| name.clone()).collect();
        for (name, var) in self.vars.named_vars() {
            if !trained.contains(&name) {
                tensors.push((name, var.as_tensor().to_device(&Device::Cpu)?));
            }
        }
        Ok(tensors)
    }

    /// [`Self::export_tensors`] of the variables named `prefix.NAME`, keyed by NAME.
    pub fn export_group(&self, prefix: &str) -> Result<std::collections::HashMap<String, Tensor>> {
        let head = format!("{prefix}.");
        Ok(self
            .export_tensors()?
            .into_iter()
            .filter_map(|(n, t)| n.strip_prefix(&head).map(|s| (s.to_owned(), t)))
            .collect())
    }

    pub fn checkpoints_dir(&self) -> PathBuf {
        self.out_dir.join("checkpoints")
    }

    /// Checkpoints present, sorted by step.
    pub fn checkpoints(&self) -> Vec<(usize, PathBuf)> {
        let mut found: Vec<(usize, PathBuf)> = std::fs::read_dir(self.checkpoints_dir())
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .filter_map(|e| {
                        let name = e.file_name().to_string_lossy().into_owned();
                        let step = name.strip_prefix("step-")?.parse().ok()?;
                        Some((step, e.path()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        found.sort();
        found
    }

    /// Backpropagates `loss` and applies one step of the first optimiser; returns the record.
    pub fn update(&mut self, loss: &Tensor) -> Result<LossPoint> {
        let other = self.secondary.as_ref().map_or(0, |s| s.optimizer.step);
        update_one(
            &mut self.optimizer,
            self.total_steps,
            &mut self.history,
            other,
            loss,
        )
    }

    /// Applies one step of the first optimiser with gradients computed elsewhere (activation checkpointing);
    /// `loss` is the value they are the gradients of. Returns the record.
    pub fn update_with_gradients(&mut self, loss: &Tensor, grads: GradStore) -> Result<LossPoint> {
        self.update_from_grads(loss.to_scalar::<f32>()?, &grads)
    }

    /// Applies one step of the first optimiser from gradients the caller accumulated ([`accumulate_grads`]) over
    /// micro-steps whose losses sum to `loss`; returns the record.
    pub fn update_from_grads(&mut self, loss: f32, grads: &GradStore) -> Result<LossPoint> {
        let other = self.secondary.as_ref().map_or(0, |s| s.optimizer.step);
        check_finite(loss, other + self.optimizer.step)?;
        apply_grads(
            &mut self.optimizer,
            self.total_steps,
            &mut self.history,
            other,
            loss,
            grads,
        )
    }

    /// Backpropagates `loss` and applies one step of the second optimiser; returns the record.
    pub fn update_secondary(&mut self, loss: &Tensor) -> Result<LossPoint> {
        let other = self.optimizer.step;
        let Some(second) = self.secondary.as_mut() else {
            return Err(TrainError::Data("the run has no second optimiser".into()));
        };
        update_one(
            &mut second.optimizer,
            second.total_steps,
            &mut second.history,
            other,
            loss,
        )
    }

    /// Writes a checkpoint of the current step with `config_json` beside it, the loss curve, and keeps only
    /// the newest `keep` checkpoints.
    pub fn save(&self, config_json: &str, keep: usize) -> Result<PathBuf> {
        let dir = self.checkpoints_dir();
        std::fs::create_dir_all(&dir).map_err(TrainError::io(&dir))?;
        let step = self.step();
        let final_dir = dir.join(format!("step-{step:07}"));
        let tmp = dir.join(format!(".step-{step:07}.partial"));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(TrainError::io(&tmp))?;
        }
        std::fs::create_dir_all(&tmp).map_err(TrainError::io(&tmp))?;
        let mut tensors = Vec::new();
        let all = self.optimizers().flat_map(|o| o.vars.iter().zip(&o.state));
        for ((name, var), st) in all {
            let param = var.as_tensor().to_device(&Device::Cpu)?;
            tensors.push((format!("{}.{name}", GROUPS[0]), param));
            for (group, values) in GROUPS[1..].iter().zip([&st.m, &st.v, &st.ema]) {
                tensors.push((
                    format!("{group}.{name}"),
                    Tensor::from_vec(values.clone(), var.shape(), &Device::Cpu)?,
                ));
            }
        }
        save_tensors(&tmp.join("state.safetensors"), tensors)?;
        let (rng_words, rng_cached_normal) = self.rng.state();
        let state = SavedState {
            step,
            rng_words,
            rng_cached_normal,
            history: self.history.clone(),
            secondary: self
                .secondary
                .as_ref()
                .map(|s| (s.optimizer.step, s.history.clone())),
        };
        let state_json = serde_json::to_string(&state).expect("plain values");
        write_file(&tmp.join("state.json"), state_json.as_bytes())?;
        write_file(&tmp.join("config.json"), config_json.as_bytes())?;
        if final_dir.exists() {
            std::fs::remove_dir_all(&final_dir).map_err(TrainError::io(&final_dir))?;
        }
        std::fs::rename(&tmp, &final_dir).map_err(TrainError::io(&final_dir))?;
        let all = self.checkpoints();
        for (_, old) in all.iter().take(all.len().saturating_sub(keep.max(1))) {
            std::fs::remove_dir_all(old).map_err(TrainError::io(old))?;
        }
        write_loss_plot(&self.out_dir.join("loss.png"), &self.history)?;
        if let Some(second) = &self.secondary {
            write_loss_plot(&self.out_dir.join("loss-secondary.png"), &second.history)?;
        }
        Ok(final_dir)
    }

    /// Restores the newest checkpoint, if any; returns its step.
    pub fn resume_latest(&mut self) -> Result<Option<usize>> {
        let Some((_, dir)) = self.checkpoints().pop() else {
            return Ok(None);
        };
        self.restore(&dir).map(Some)
    }

    /// Restores parameters, optimiser moments, EMA, generator and history from a checkpoint folder.
    pub fn restore(&mut self, dir: &Path) -> Result<usize> {
        let bad = |detail: String| TrainError::Checkpoint {
            path: dir.to_owned(),
            detail,
        };
        let text = std::fs::read_to_string(dir.join("state.json"))
            .map_err(|e| bad(format!("state.json: {e}")))?;
        let state: SavedState =
            serde_json::from_str(&text).map_err(|e| bad(format!("state.json: {e}")))?;
        let ckpt = Checkpoint::open(dir.join("state.safetensors"))?;
        let device = Device::Cpu;
        // Everything is read and checked before anything is changed: a bad checkpoint leaves the run as it was.
        let count: usize = self.optimizers().map(|o| o.vars.len()).sum();
        if state.secondary.is_some() != self.secondary.is_some() {
            return Err(bad(format!(
                "the checkpoint has {} optimiser(s), this run {}",
                1 + usize::from(state.secondary.is_some()),
                1 + usize::from(self.secondary.is_some())
            )));
        }
        let mut loaded: Vec<Vec<Vec<f32>>> = Vec::with_capacity(count);
        for (name, var) in self.optimizers().flat_map(|o| &o.vars) {
            let mut groups = Vec::with_capacity(GROUPS.len());
            for group in GROUPS {
                let key = format!("{group}.{name}");
                let t = ckpt.load(&key, &device).map_err(|_| {
                    bad(format!(
                        "no tensor `{key}`: the checkpoint is of another model"
                    ))
                })?;
                if t.dims() != var.dims() {
                    return Err(bad(format!(
                        "`{key}` has shape {:?}, the model needs {:?}",
                        t.dims(),
                        var.dims()
                    )));
                }
                groups.push(t.flatten_all()?.to_vec1::<f32>()?);
            }
            loaded.push(groups);
        }
        if ckpt.tensors().len() != GROUPS.len() * count {
            return Err(bad(format!(
                "{} tensors stored, the model has {count} parameters x {}",
                ckpt.tensors().len(),
                GROUPS.len()
            )));
        }
        let mut loaded = loaded.into_iter();
        let second = self.secondary.as_mut().map(|s| &mut s.optimizer);
        for optimizer in std::iter::once(&mut self.optimizer).chain(second) {
            let targets = optimizer.vars.iter().zip(&mut optimizer.state);
            for (((_, var), st), groups) in targets.zip(&mut loaded) {
                let [param, m, v, ema]: [Vec<f32>; 4] =
                    groups.try_into().expect("one vector per group");
                var.set(&Tensor::from_vec(param, var.shape(), var.device())?)?;
                (st.m, st.v, st.ema) = (m, v, ema);
            }
        }
        let second_steps = match (state.secondary, self.secondary.as_mut()) {
            (Some((steps, history)), Some(second)) => {
                second.optimizer.step = steps;
                second.history = history;
                steps
            }
            _ => 0,
        };
        self.optimizer.step = state.step - second_steps.min(state.step);
        self.rng = FastRng::from_state(state.rng_words, state.rng_cached_normal);
        self.history = state.history;
        Ok(state.step)
    }
}

/// Backpropagates `loss`, applies one step of `optimizer` (its schedule spanning
/// `total_steps`) and appends the record to `history`; `other_steps` are the run's updates by its other
/// optimiser, so the record's step is the run's.
fn update_one(
    optimizer: &mut AdamW,
    total_steps: usize,
    history: &mut Vec<LossPoint>,
    other_steps: usize,
    loss: &Tensor,
) -> Result<LossPoint> {
    let value = loss.to_scalar::<f32>()?;
    check_finite(value, other_steps + optimizer.step)?;
    apply_grads(
        optimizer,
        total_steps,
        history,
        other_steps,
        value,
        &loss.backward()?,
    )
}

fn check_finite(loss: f32, step: usize) -> Result<()> {
    if loss.is_finite() {
        Ok(())
    } else {
        Err(TrainError::Data(format!(
            "loss is {loss} at step {step}: training diverged (lower the learning rate?)"
        )))
    }
}

fn apply_grads(
    optimizer: &mut AdamW,
    total_steps: usize,
    history: &mut Vec<LossPoint>,
    other_steps: usize,
    value: f32,
    grads: &GradStore,
) -> Result<LossPoint> {
    let report = optimizer.step(grads, total_steps)?;
    let point = LossPoint {
        step: other_steps + optimizer.step,
        loss: value,
        lr: report.lr,
        grad_norm: report.grad_norm,
    };
    history.push(point);
    Ok(point)
}

/// Adds the gradients `grads` of the first optimiser's variables to `sum` (gradient accumulation over
/// micro-steps whose graphs are freed one by one).
pub fn accumulate_grads(
    session: &Session,
    sum: &mut Option<GradStore>,
    grads: GradStore,
) -> Result<()> {
    let Some(acc) = sum.as_mut() else {
        *sum = Some(grads);
        return Ok(());
    };
    for (_, var) in &session.optimizer.vars {
        let t = var.as_tensor();
        if let Some(g) = grads.get(t) {
            let total = match acc.get(t) {
                Some(a) => (a + g)?,
                None => g.clone(),
            };
            acc.insert(t, total);
        }
    }
    Ok(())
}

/// Sets the variables named `prefix` + NAME to the tensors NAME of `weights` (same shapes). Every tensor of the
/// file must be used, but for those `may_go_unused` names: a file of another network fails instead of
/// half-initialising this one.
pub fn init_vars_from(
    vars: &SeededVarMap,
    weights: &Path,
    prefix: &str,
    may_go_unused: impl Fn(&str) -> bool,
) -> Result<()> {
    init_vars_mapped(
        vars,
        weights,
        prefix,
        |name| Some(name.to_owned()),
        may_go_unused,
    )
}

/// As [`init_vars_from`], but the variable `prefix` + NAME takes the file's tensor `source_name(NAME)`, and keeps
/// its own initialisation where that is `None`.
pub fn init_vars_mapped(
    vars: &SeededVarMap,
    weights: &Path,
    prefix: &str,
    source_name: impl Fn(&str) -> Option<String>,
    may_go_unused: impl Fn(&str) -> bool,
) -> Result<()> {
    let ckpt = Checkpoint::open(weights)?;
    let device = Device::Cpu;
    let mut used = std::collections::HashSet::new();
    for (name, var) in vars.named_vars() {
        let Some(stored) = name.strip_prefix(prefix).and_then(&source_name) else {
            continue;
        };
        let t = ckpt.load_checked(&stored, var.dims(), candle_core::DType::F32, &device)?;
        var.set(&t.to_device(var.device())?)?;
        used.insert(stored);
    }
    let unused: Vec<&str> = ckpt
        .tensors()
        .iter()
        .map(|t| t.name.as_str())
        .filter(|n| !used.contains(*n) && !may_go_unused(n))
        .collect();
    if let Some(first) = unused.first() {
        return Err(TrainError::Data(format!(
            "{}: {} tensors are not parameters of this model{} (first: `{first}`)",
            weights.display(),
            unused.len(),
            if prefix.is_empty() {
                String::new()
            } else {
                format!(" (under `{prefix}`)")
            }
        )));
    }
    Ok(())
}

/// Writes a small file atomically.
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    orrery_io::write_atomically(path, bytes).map_err(TrainError::io(path))
}
