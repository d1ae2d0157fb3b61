//! Opening a merge's inputs and checking that they can be merged: the same tensor names, shapes and float types
//! in every one. Errors name the tensor and both files.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use orrery_nn::{Checkpoint, DType};

use super::error::{MergeError, Result};

/// One input: the path the user gave (a checkpoint or a bundle folder) and its weights, memory-mapped.
pub(crate) struct Input {
    pub given: PathBuf,
    pub ckpt: Checkpoint,
    pub bundle: bool,
}

impl Input {
    /// A model bundle (a folder with `transformer/`) opens its transformer's weights (found as `orrery generate`
    /// finds them); anything else opens as a checkpoint (safetensors, sharded folder, PyTorch zip).
    pub fn open(path: &Path) -> Result<Self> {
        let bundle = is_bundle(path);
        let weights = if bundle {
            let transformer = path.join("transformer");
            orrery_dit::DitModelDir::open(&transformer)
                .map_err(|e| MergeError::Bundle {
                    path: path.to_owned(),
                    detail: format!("transformer/: {e}"),
                })?
                .weights
        } else {
            path.to_owned()
        };
        let ckpt = Checkpoint::open(&weights)?;
        if !ckpt.skipped_entries().is_empty() {
            tracing::info!(
                "{}: {} non-tensor entries are not merged (they are not weights)",
                weights.display(),
                ckpt.skipped_entries().len()
            );
        }
        if ckpt.tensors().is_empty() {
            return Err(MergeError::Empty { path: weights });
        }
        Ok(Self {
            given: path.to_owned(),
            ckpt,
            bundle,
        })
    }

    /// The weights' file (what errors about tensors name).
    pub fn weights(&self) -> &Path {
        self.ckpt.path()
    }
}

pub(crate) fn is_bundle(path: &Path) -> bool {
    path.join("transformer").is_dir()
}

/// Whether every input is a bundle; an error if only some are (a bundle's transformer is not comparable with an
/// arbitrary checkpoint without saying which part of the bundle is meant).
pub(crate) fn all_bundles_or_none(inputs: &[Input]) -> Result<bool> {
    let first = &inputs[0];
    match inputs.iter().find(|i| i.bundle != first.bundle) {
        None => Ok(first.bundle),
        Some(odd) => {
            let (bundle, plain) = if first.bundle {
                (first, odd)
            } else {
                (odd, first)
            };
            Err(MergeError::Bundle {
                path: plain.given.clone(),
                detail: format!(
                    "not a model bundle (no transformer/ folder), but {} is: give every input as a bundle or \
                     every input as a checkpoint (e.g. BUNDLE/transformer/diffusion_pytorch_model.safetensors)",
                    bundle.given.display()
                ),
            })
        }
    }
}

/// The (name, dtype, shape) list every input shares, sorted by name, or the first difference found.
pub(crate) fn common_entries(
    reference: &Input,
    others: &[&Input],
) -> Result<Vec<(String, DType, Vec<usize>)>> {
    for t in reference.ckpt.tensors() {
        if !t.dtype.is_float() {
            return Err(MergeError::NotFloat {
                name: t.name.clone(),
                path: reference.weights().to_owned(),
                dtype: t.dtype,
            });
        }
    }
    for other in others {
        check_against(reference, other)?;
    }
    Ok(reference
        .ckpt
        .tensors()
        .iter()
        .map(|t| (t.name.clone(), t.dtype, t.shape.clone()))
        .collect())
}

fn check_against(reference: &Input, other: &Input) -> Result<()> {
    let (a, b) = (&reference.ckpt, &other.ckpt);
    let names_a: BTreeSet<&str> = a.tensors().iter().map(|t| t.name.as_str()).collect();
    let names_b: BTreeSet<&str> = b.tensors().iter().map(|t| t.name.as_str()).collect();
    let missing =
        |name: &str, present_in: &Input, missing_from: &Input| MergeError::MissingTensor {
            name: name.to_owned(),
            present_in: present_in.weights().to_owned(),
            missing_from: missing_from.weights().to_owned(),
        };
    if let Some(name) = names_a.difference(&names_b).next() {
        return Err(missing(name, reference, other));
    }
    if let Some(name) = names_b.difference(&names_a).next() {
        return Err(missing(name, other, reference));
    }
    for t in a.tensors() {
        let u = b.get(&t.name)?;
        if !u.dtype.is_float() {
            return Err(MergeError::NotFloat {
                name: u.name.clone(),
                path: other.weights().to_owned(),
                dtype: u.dtype,
            });
        }
        if u.shape != t.shape {
            return Err(MergeError::ShapeMismatch {
                name: t.name.clone(),
                reference: reference.weights().to_owned(),
                expected: t.shape.clone(),
                path: other.weights().to_owned(),
                found: u.shape.clone(),
            });
        }
        if u.dtype != t.dtype {
            return Err(MergeError::DTypeMismatch {
                name: t.name.clone(),
                reference: reference.weights().to_owned(),
                expected: t.dtype,
                path: other.weights().to_owned(),
                found: u.dtype,
            });
        }
    }
    Ok(())
}
