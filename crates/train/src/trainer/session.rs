//! What every training run shares: trainable variables, AdamW with EMA, the run's random generator, the loss
//! history, and checkpoints that hold all of it so that a resumed run continues bit for bit.
//!
//! A checkpoint is a folder `checkpoints/step-NNNNNNN/` with `state.safetensors` (`param.*`, `adam_m.*`,
//! `adam_v.*`, `ema.*`), `state.json` (step, generator state, history) and `config.json` (the resolved run
//! configuration). It is written under a temporary name and renamed, so it exists whole or not at all.

use std::path::{Path, PathBuf};

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
}

pub struct Session {
    pub out_dir: PathBuf,
    pub vars: SeededVarMap,
    pub optimizer: AdamW,
    pub rng: FastRng,
    pub history: Vec<LossPoint>,
    pub total_steps: usize,
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
        })
    }

    pub fn step(&self) -> usize {
        self.optimizer.step
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

    /// Backpropagates `loss` and applies one optimiser step; returns the record.
    pub fn update(&mut self, loss: &Tensor) -> Result<LossPoint> {
        let value = loss.to_scalar::<f32>()?;
        if !value.is_finite() {
            return Err(TrainError::Data(format!(
                "loss is {value} at step {}: training diverged (lower the learning rate?)",
                self.step()
            )));
        }
        let grads = loss.backward()?;
        let report = self.optimizer.step(&grads, self.total_steps)?;
        let point = LossPoint {
            step: self.optimizer.step,
            loss: value,
            lr: report.lr,
            grad_norm: report.grad_norm,
        };
        self.history.push(point);
        Ok(point)
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
        for ((name, var), st) in self.optimizer.vars.iter().zip(&self.optimizer.state) {
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
        let mut loaded: Vec<Vec<Vec<f32>>> = Vec::with_capacity(self.optimizer.vars.len());
        for (name, var) in &self.optimizer.vars {
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
        if ckpt.tensors().len() != GROUPS.len() * self.optimizer.vars.len() {
            return Err(bad(format!(
                "{} tensors stored, the model has {} parameters x {}",
                ckpt.tensors().len(),
                self.optimizer.vars.len(),
                GROUPS.len()
            )));
        }
        let targets = self.optimizer.vars.iter().zip(&mut self.optimizer.state);
        for (((_, var), st), groups) in targets.zip(loaded) {
            let [param, m, v, ema]: [Vec<f32>; 4] =
                groups.try_into().expect("one vector per group");
            var.set(&Tensor::from_vec(param, var.shape(), var.device())?)?;
            (st.m, st.v, st.ema) = (m, v, ema);
        }
        self.optimizer.step = state.step;
        self.rng = FastRng::from_state(state.rng_words, state.rng_cached_normal);
        self.history = state.history;
        Ok(state.step)
    }
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
