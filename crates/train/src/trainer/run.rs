//! What both trainers share: the step loop with checkpoints (and samples), and export.

use std::path::PathBuf;

use crate::error::Result;
use crate::trainer::config::RunConfig;
use crate::trainer::session::{LossPoint, Session};

/// A training run: a session, a step, and what to write at checkpoints and at the end.
pub trait Run {
    fn session(&self) -> &Session;
    fn session_mut(&mut self) -> &mut Session;
    fn run_config(&self) -> &RunConfig;
    /// The resolved configuration, written beside every checkpoint.
    fn config_json(&self) -> String;
    /// One optimisation step.
    fn train_step(&mut self) -> Result<LossPoint>;
    /// Sample outputs a person can look at (nothing by default).
    fn write_samples(&self) -> Result<Option<PathBuf>> {
        Ok(None)
    }
    /// Writes `{out_dir}/final` from the EMA weights.
    fn export(&self) -> Result<PathBuf>;

    /// Runs to `run.steps` (or `max_steps` more), checkpointing every `checkpoint_every` steps and at the end,
    /// sampling every `sample_every` steps.
    fn train(&mut self, max_steps: Option<usize>, mut on_step: impl FnMut(&LossPoint)) -> Result<()>
    where
        Self: Sized,
    {
        let run = self.run_config().clone();
        let end = max_steps.map_or(run.steps, |m| (self.session().step() + m).min(run.steps));
        let json = self.config_json();
        while self.session().step() < end {
            let p = self.train_step()?;
            on_step(&p);
            if p.step % run.checkpoint_every == 0 || p.step == end {
                self.session().save(&json, run.keep_checkpoints)?;
            }
            if run.sample_every > 0 && p.step % run.sample_every == 0 {
                self.write_samples()?;
            }
        }
        Ok(())
    }
}
