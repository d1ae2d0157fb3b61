//! Writing the parts of a model bundle that every trainer's export shares: the transformer folder and folders
//! copied from the bundle a run started from.

use std::collections::HashMap;
use std::path::Path;

use candle_core::Tensor;
use orrery_dit::DitConfig;
use orrery_nn::checkpoint::save_tensors;

use crate::error::{Result, TrainError};
use crate::trainer::session::write_file;

/// `dir/transformer/`: `weights` (sorted by name) as `diffusion_pytorch_model.safetensors` and `model`'s
/// diffusers config.
pub fn write_transformer(
    dir: &Path,
    weights: HashMap<String, Tensor>,
    model: &DitConfig,
) -> Result<()> {
    let transformer = dir.join("transformer");
    std::fs::create_dir_all(&transformer).map_err(TrainError::io(&transformer))?;
    let mut weights: Vec<_> = weights.into_iter().collect();
    weights.sort_by(|a, b| a.0.cmp(&b.0));
    save_tensors(
        &transformer.join("diffusion_pytorch_model.safetensors"),
        weights,
    )?;
    write_file(
        &transformer.join("config.json"),
        model.to_diffusers_json().as_bytes(),
    )
}

/// Copies every file of the folder `name` of bundle `from` into `dir/name`.
pub fn copy_folder(from: &Path, dir: &Path, name: &str) -> Result<()> {
    let (source, to) = (from.join(name), dir.join(name));
    std::fs::create_dir_all(&to).map_err(TrainError::io(&to))?;
    for entry in std::fs::read_dir(&source).map_err(TrainError::io(&source))? {
        let path = entry.map_err(TrainError::io(&source))?.path();
        if path.is_file() {
            let bytes = std::fs::read(&path).map_err(TrainError::io(&path))?;
            write_file(&to.join(path.file_name().expect("a file")), &bytes)?;
        }
    }
    Ok(())
}

/// Everything of an exported bundle but its transformer: the word encoder and VAE copied from bundle `source`,
/// the sampling defaults `sampling` (`orrery_sampling.json`) and the run's configuration (`train_config.json`).
pub fn write_bundle_rest<C: serde::Serialize>(
    dir: &Path,
    source: &Path,
    sampling: &orrery_pipeline::BundleDefaults,
    config: &C,
) -> Result<()> {
    for folder in ["text_encoder", "vae"] {
        copy_folder(source, dir, folder)?;
    }
    write_file(
        &dir.join(orrery_pipeline::SAMPLING_FILE),
        sampling.to_json().as_bytes(),
    )?;
    let json = serde_json::to_string_pretty(config).expect("plain values");
    write_file(&dir.join("train_config.json"), json.as_bytes())
}

/// Puts the file `from` at `to`: a hard link where the file system allows (a released text encoder is many
/// gigabytes), else a copy. An existing `to` is replaced.
pub fn link_or_copy(from: &Path, to: &Path) -> Result<()> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent).map_err(TrainError::io(parent))?;
    }
    if to.exists() {
        std::fs::remove_file(to).map_err(TrainError::io(to))?;
    }
    if std::fs::hard_link(from, to).is_ok() {
        return Ok(());
    }
    std::fs::copy(from, to).map_err(TrainError::io(to))?;
    Ok(())
}

/// [`link_or_copy`] of every file of the folder `from` into the folder `to` (sub-folders too).
pub fn link_or_copy_folder(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).map_err(TrainError::io(to))?;
    for entry in std::fs::read_dir(from).map_err(TrainError::io(from))? {
        let path = entry.map_err(TrainError::io(from))?.path();
        let target = to.join(path.file_name().expect("a named entry"));
        if path.is_dir() {
            link_or_copy_folder(&path, &target)?;
        } else if path.is_file() {
            link_or_copy(&path, &target)?;
        }
    }
    Ok(())
}
