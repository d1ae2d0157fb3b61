//! Wall time of the stages of a generation (text encoder, loading, VAE encode, sampling, VAE decode), logged as
//! `stage NAME: SECONDS s` lines at debug level (`RUST_LOG=info,orrery_pipeline::stage=debug`), which GPU
//! benchmarks read (`tools/gpu/bench-2b.sh`).

use std::time::Instant;

use candle_core::Device;

use crate::error::Result;

/// A stage being timed on `device`.
pub(crate) struct Stage<'a> {
    name: &'static str,
    device: &'a Device,
    start: Instant,
}

impl<'a> Stage<'a> {
    pub(crate) fn start(name: &'static str, device: &'a Device) -> Self {
        Self {
            name,
            device,
            start: Instant::now(),
        }
    }

    /// Logs the stage's time once the device has done the work queued on it: a GPU runs asynchronously, and
    /// without the wait the time would be that of launching the work.
    pub(crate) fn done(self) -> Result<()> {
        self.device.synchronize()?;
        let seconds = self.start.elapsed().as_secs_f64();
        tracing::debug!("stage {}: {seconds:.3} s", self.name);
        Ok(())
    }
}
