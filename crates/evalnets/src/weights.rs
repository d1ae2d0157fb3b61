//! A converted feature-network file, read tensor by tensor; every tensor must be used exactly once.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use orrery_nn::Checkpoint;

use crate::error::{EvalNetError, Result};

pub(crate) struct NetWeights {
    checkpoint: Checkpoint,
    unused: BTreeSet<String>,
    device: Device,
}

impl NetWeights {
    pub fn open(path: &Path, device: &Device) -> Result<Self> {
        if !path.is_file() {
            return Err(EvalNetError::Weights {
                path: path.to_owned(),
                detail: "not found: run `python3 tools/eval_weights/fetch.py` once to fetch and convert the \
                         FID/FVD feature networks (or pass the folder it wrote to)"
                    .into(),
            });
        }
        let checkpoint = Checkpoint::open(path)?;
        let unused = checkpoint
            .tensors()
            .iter()
            .map(|t| t.name.clone())
            .collect();
        Ok(Self {
            checkpoint,
            unused,
            device: device.clone(),
        })
    }

    pub fn path(&self) -> PathBuf {
        self.checkpoint.path().to_owned()
    }

    /// The f32 tensor `name`, which must have `shape` (`None` entries match any size).
    pub fn take(&mut self, name: &str, shape: &[Option<usize>]) -> Result<Tensor> {
        let tensor = self
            .checkpoint
            .load(name, &self.device)?
            .to_dtype(DType::F32)?;
        let dims = tensor.dims();
        let fits = dims.len() == shape.len()
            && dims
                .iter()
                .zip(shape)
                .all(|(d, s)| s.is_none_or(|s| s == *d));
        if !fits {
            return Err(self.error(format!("{name} has shape {dims:?}, expected {shape:?}")));
        }
        self.unused.remove(name);
        Ok(tensor)
    }

    /// Fails when a tensor of the file was not used (a different network than expected).
    pub fn finish(self) -> Result<()> {
        match self.unused.iter().next() {
            None => Ok(()),
            Some(first) => Err(self.error(format!(
                "{} tensors not used by the network (first: {first}): not the expected network",
                self.unused.len()
            ))),
        }
    }

    pub fn error(&self, detail: String) -> EvalNetError {
        EvalNetError::Weights {
            path: self.path(),
            detail,
        }
    }
}
