//! The rewards of every step of an RL run: `rewards.json` in the run's folder (rewritten each step), and the
//! reward curves `rewards.png` (the composed reward) and `reward-{term}.png`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};
use crate::rl::rewards::RewardKind;
use crate::trainer::plot::write_curve_plot;
use crate::trainer::session::write_file;

const FILE: &str = "rewards.json";

/// One step's rewards over all its rollouts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RewardPoint {
    pub step: usize,
    /// Mean and (population) std of the composed reward over the step's rollouts.
    pub mean: f64,
    pub std: f64,
    /// Each term's mean over the rollouts where it has a value (`None`: it had none).
    pub terms: Vec<(String, Option<f64>)>,
}

impl RewardPoint {
    pub fn new(step: usize, composed: &[f64], kinds: &[RewardKind], per_term: &[Vec<f64>]) -> Self {
        let mean_of = |v: &[f64]| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
        let mean = mean_of(composed).unwrap_or(0.0);
        let var =
            composed.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / composed.len().max(1) as f64;
        Self {
            step,
            mean,
            std: var.sqrt(),
            terms: kinds
                .iter()
                .zip(per_term)
                .map(|(k, v)| (k.name().to_owned(), mean_of(v)))
                .collect(),
        }
    }
}

/// The run's reward points in step order.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RewardHistory {
    pub points: Vec<RewardPoint>,
}

impl RewardHistory {
    /// The history in `dir` (empty when there is none yet).
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join(FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text)
                .map_err(|e| TrainError::Data(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(TrainError::io(&path)(e)),
        }
    }

    /// Adds `point`, dropping points of its step or later (a resumed run repeats the steps after its checkpoint).
    pub fn push(&mut self, point: RewardPoint) {
        self.points.retain(|p| p.step < point.step);
        self.points.push(point);
    }

    pub fn write(&self, dir: &Path) -> Result<()> {
        let json = serde_json::to_string_pretty(self).expect("plain values");
        write_file(&dir.join(FILE), json.as_bytes())
    }

    /// `rewards.png` and one `reward-{term}.png` per term, in `dir`.
    pub fn write_plots(&self, dir: &Path) -> Result<()> {
        let composed: Vec<(usize, f32)> = self
            .points
            .iter()
            .map(|p| (p.step, p.mean as f32))
            .collect();
        write_curve_plot(&dir.join("rewards.png"), &composed, false)?;
        let Some(first) = self.points.first() else {
            return Ok(());
        };
        for (k, (name, _)) in first.terms.iter().enumerate() {
            let points: Vec<(usize, f32)> = self
                .points
                .iter()
                .filter_map(|p| Some((p.step, p.terms.get(k)?.1? as f32)))
                .collect();
            write_curve_plot(&dir.join(format!("reward-{name}.png")), &points, false)?;
        }
        Ok(())
    }
}
