//! Merging model bundles: the transformer's weights are merged, and so is orrery's word encoder where the inputs'
//! differ (it trains with the DiT, so every full fine-tune carries its own); everything else (VAE, a frozen text
//! encoder such as Reason1, sampling defaults, the transformer's config.json) is copied from the first model, so
//! the output runs with `orrery generate --model OUT` like its inputs.

use std::path::{Path, PathBuf};

use orrery_text::word_encoder::WORD_ENCODER_TYPE;
use serde_json::Value;

use super::error::{MergeError, Result};
use super::stream;
use super::{MergeOptions, Merger};

/// The merged weights' file inside the output bundle.
const WEIGHTS: &str = "transformer/diffusion_pytorch_model.safetensors";
/// The record of the merge, beside the parts.
const RECORD: &str = "merge_config.json";
/// orrery's word encoder: its configuration (vocabulary and shape) and weights inside a bundle.
const WORD_ENCODER_CONFIG: &str = "text_encoder/config.json";
const WORD_ENCODER_WEIGHTS: &str = "text_encoder/model.safetensors";

/// Builds the output bundle in a temporary folder beside `out` and renames it to `out` once complete.
pub(crate) fn write_bundle(merger: &Merger, out: &Path, on_tensor: &dyn Fn(&str)) -> Result<()> {
    let out_error = |detail: &str| MergeError::Output {
        path: out.to_owned(),
        detail: detail.to_owned(),
    };
    if out.exists() {
        let empty_dir = out.is_dir()
            && std::fs::read_dir(out)
                .map_err(MergeError::io(out))?
                .next()
                .is_none();
        if !empty_dir {
            return Err(out_error(
                "already exists; merging bundles writes a new folder (remove it or choose another path)",
            ));
        }
    }
    let name = out
        .file_name()
        .ok_or_else(|| out_error("the output bundle needs a folder name"))?;
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let tmp = TempDir::create(parent.join(format!(
        ".{}.orrery-merge-{}",
        name.to_string_lossy(),
        std::process::id()
    )))?;
    let first = &merger.models[0].given;
    copy_tree(first, tmp.path(), Path::new(""))?;
    stream::write_merged(merger, &tmp.path().join(WEIGHTS), on_tensor)?;
    let mut parts = vec!["transformer"];
    if let Some(words) = word_encoder_merger(merger)? {
        let merged = tmp.path().join(WORD_ENCODER_WEIGHTS);
        std::fs::remove_file(&merged).map_err(MergeError::io(&merged))?;
        stream::write_merged(&words, &merged, on_tensor)?;
        parts.push("text_encoder");
    }
    let mut record: Value = serde_json::from_str(&merger.record_json(true)).expect("own JSON");
    record["merged"] = Value::from(parts);
    let record_path = tmp.path().join(RECORD);
    let text = serde_json::to_string_pretty(&record).expect("plain values") + "\n";
    orrery_io::write_atomically(&record_path, text.as_bytes())
        .map_err(MergeError::io(&record_path))?;
    tmp.commit(out)
}

/// A merger of the inputs' word encoders, with the transformer's method, weights and base, when the bundles carry
/// orrery's word encoder and not every input's is the first model's; `None` when there is nothing to merge (no
/// word encoder, or the same one everywhere, as after LoRA fine-tunes, which freeze it). Word encoders with other
/// vocabularies or shapes cannot be merged: an error names the bundle.
fn word_encoder_merger(merger: &Merger) -> Result<Option<Merger>> {
    let first = &merger.models[0].given;
    let read_config = |bundle: &Path| -> Result<Option<Value>> {
        let path = bundle.join(WORD_ENCODER_CONFIG);
        let Ok(text) = std::fs::read_to_string(&path) else {
            return Ok(None);
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| MergeError::Bundle {
                path: path.clone(),
                detail: format!("not valid JSON: {e}"),
            })
    };
    let Some(config) = read_config(first)? else {
        return Ok(None);
    };
    if config.get("model_type").and_then(Value::as_str) != Some(WORD_ENCODER_TYPE) {
        return Ok(None);
    }
    let first_weights = first.join(WORD_ENCODER_WEIGHTS);
    let first_bytes = std::fs::read(&first_weights).map_err(MergeError::io(&first_weights))?;
    let mut differ = false;
    for input in merger.inputs() {
        if read_config(&input.given)?.as_ref() != Some(&config) {
            return Err(MergeError::Bundle {
                path: input.given.join(WORD_ENCODER_CONFIG),
                detail: format!(
                    "the word encoder differs from {}'s in vocabulary or shape (or is missing): word encoders \
                     trained on other captions cannot be merged",
                    first.display()
                ),
            });
        }
        let weights = input.given.join(WORD_ENCODER_WEIGHTS);
        differ |= std::fs::read(&weights).map_err(MergeError::io(&weights))? != first_bytes;
    }
    if !differ {
        return Ok(None);
    }
    let base = merger
        .base
        .as_ref()
        .map(|b| b.given.join(WORD_ENCODER_WEIGHTS));
    let models: Vec<PathBuf> = merger
        .models
        .iter()
        .map(|m| m.given.join(WORD_ENCODER_WEIGHTS))
        .collect();
    let options = MergeOptions {
        method: merger.method,
        weights: Some(merger.weights.clone()),
    };
    Merger::open(base.as_deref(), &models, options).map(Some)
}

/// Whether a file of the first bundle is left out of the copy: the transformer's weights (replaced by the merge,
/// in whatever format and sharding they came) and the training config (it describes a run that did not make
/// the merged weights).
fn left_out(relative: &Path) -> bool {
    let name = relative
        .file_name()
        .map(|n| n.to_string_lossy().into_owned());
    let Some(name) = name else { return false };
    if relative == Path::new("train_config.json") {
        return true;
    }
    relative.parent() == Some(Path::new("transformer"))
        && (name.ends_with(".safetensors")
            || name.ends_with(".safetensors.index.json")
            || name.ends_with(".pt")
            || name.ends_with(".pth")
            || name.ends_with(".bin"))
}

/// Copies `from/relative` into `to/relative`, recursively, following symbolic links.
fn copy_tree(from: &Path, to: &Path, relative: &Path) -> Result<()> {
    let source = from.join(relative);
    let entries = std::fs::read_dir(&source).map_err(MergeError::io(&source))?;
    for entry in entries {
        let entry = entry.map_err(MergeError::io(&source))?;
        let rel = relative.join(entry.file_name());
        let path = entry.path();
        if path.is_dir() {
            let dest = to.join(&rel);
            std::fs::create_dir(&dest).map_err(MergeError::io(&dest))?;
            copy_tree(from, to, &rel)?;
        } else if !left_out(&rel) {
            std::fs::copy(&path, to.join(&rel)).map_err(MergeError::io(&path))?;
        }
    }
    Ok(())
}

/// A folder removed with its contents unless committed (renamed to its target).
struct TempDir(Option<PathBuf>);

impl TempDir {
    fn create(path: PathBuf) -> Result<Self> {
        // `create_dir` gives the mode an ordinary new folder gets (umask applied), and fails if a run that
        // crashed left one behind rather than mixing with it.
        std::fs::create_dir(&path).map_err(MergeError::io(&path))?;
        Ok(Self(Some(path)))
    }

    fn path(&self) -> &Path {
        self.0.as_deref().expect("not committed")
    }

    fn commit(mut self, target: &Path) -> Result<()> {
        let path = self.0.take().expect("not committed");
        // rename(2) replaces an empty folder and fails on a non-empty one (checked before the work).
        std::fs::rename(&path, target).map_err(|cause| {
            let _ = std::fs::remove_dir_all(&path);
            MergeError::Io {
                path: target.to_owned(),
                cause,
            }
        })
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_dir_all(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::left_out;
    use std::path::Path;

    #[test]
    fn only_the_transformer_weights_and_training_config_are_left_out() {
        for p in [
            "transformer/diffusion_pytorch_model.safetensors",
            "transformer/diffusion_pytorch_model.safetensors.index.json",
            "transformer/model-00001-of-00002.safetensors",
            "transformer/dit.pt",
            "train_config.json",
        ] {
            assert!(left_out(Path::new(p)), "{p}");
        }
        for p in [
            "transformer/config.json",
            "vae/diffusion_pytorch_model.safetensors",
            "text_encoder/model.safetensors",
            "orrery_sampling.json",
        ] {
            assert!(!left_out(Path::new(p)), "{p}");
        }
    }
}
