//! Model merging: one model from several fine-tunes of the same network, as Cosmos-Predict2.5 merges its domain
//! specialists (the paper tried soup, TIES, DARE-Linear and DARE-TIES and chose the soup; `posttraining-spec.md`
//! section 4 gives each method with its source).
//!
//! - [`MergeMethod`]: the methods with their parameters; [`algorithms`]: their arithmetic on float64 slices;
//! - [`Merger`]: opens the inputs (any checkpoint format, or model bundles, whose transformer is merged, with
//!   their trained word encoders, and whose other parts are copied from the first model), checks that they hold
//!   the same float tensors, and writes the merge.
//!
//! Merging streams: the inputs are memory-mapped, and the output file is written one tensor at a time, each
//! computed in chunks of [`algorithms::CHUNK`] elements in float64 and stored in the inputs' type, after which
//! the inputs' pages of that tensor are dropped from resident memory ([`orrery_nn::Checkpoint::release`]). Memory
//! is the output tensor (plus, for TIES, one float64 scratch copy of it for the top-k selection) and the inputs'
//! pages of the tensor being merged, not the models. (A PyTorch checkpoint's strided views are gathered into a
//! contiguous copy first, as every reader of them does.)

pub mod algorithms;
mod bundle;
mod elements;
mod error;
mod inputs;
mod stream;

use std::path::{Path, PathBuf};

use orrery_nn::DType;
use serde::Serialize;

pub use error::{MergeError, Result};

use inputs::Input;

/// TIES's density when none is given: the paper keeps the top 20 % of each task vector (k = 20).
pub const TIES_DENSITY: f64 = 0.2;
/// λ, the scale of the merged task vector, when none is given (mergekit's and the papers' 1).
pub const LAMBDA: f64 = 1.0;

/// A merge method and its parameters (spec section 4). Every method but the soup works on task vectors
/// τ_i = θ_i − θ_b and so needs a base model θ_b.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "method", rename_all = "kebab-case")]
pub enum MergeMethod {
    /// θ = Σ w_i·θ_i / Σ w_i (weights normalised; uniform by default).
    Soup,
    /// θ = θ_b + λ·Σ w_i·τ_i.
    TaskArithmetic { lambda: f64 },
    /// TIES (arXiv 2306.01708): trim each τ_i to its top `density` fraction by magnitude, weight, elect each
    /// entry's sign by the weighted sum, average the agreeing entries (normalised by their weights), θ_b + λ·τ_m.
    Ties { density: f64, lambda: f64 },
    /// DARE (arXiv 2311.03099) then task arithmetic: θ = θ_b + λ·Σ w_i·DARE(τ_i).
    DareLinear(Dare),
    /// DARE then TIES's weighting, sign election and sum of the agreeing entries, without normalisation.
    DareTies(Dare),
}

/// DARE's parameters: keep each entry with probability `density`, rescale the kept ones.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Dare {
    pub density: f64,
    pub lambda: f64,
    /// With the tensor's name, the model's position and the chunk, this seeds each mask
    /// ([`algorithms::dare_rng`]): the same seed gives the same file, byte for byte.
    pub seed: u64,
    pub rescale: DareRescale,
}

/// How DARE rescales the entries it keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DareRescale {
    /// The paper's 1/density: every kept entry becomes τ/density, the expectation stays τ.
    InverseDensity,
    /// mergekit's: scale the kept entries so that the tensor's L1 norm is unchanged (1/density in expectation).
    L1,
}

impl MergeMethod {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Soup => "soup",
            Self::TaskArithmetic { .. } => "task-arithmetic",
            Self::Ties { .. } => "ties",
            Self::DareLinear(_) => "dare-linear",
            Self::DareTies(_) => "dare-ties",
        }
    }

    pub fn needs_base(&self) -> bool {
        !matches!(self, Self::Soup)
    }

    fn validate(&self) -> Result<()> {
        let (density, lambda) = match *self {
            Self::Soup => return Ok(()),
            Self::TaskArithmetic { lambda } => (None, lambda),
            Self::Ties { density, lambda } => (Some(density), lambda),
            Self::DareLinear(d) | Self::DareTies(d) => (Some(d.density), d.lambda),
        };
        if let Some(d) = density {
            // NaN fails both comparisons.
            if !(d > 0.0 && d <= 1.0) {
                return Err(MergeError::option(
                    "density",
                    format!("must be in (0, 1] (the fraction of each task vector kept), got {d}"),
                ));
            }
        }
        if !lambda.is_finite() {
            return Err(MergeError::option(
                "lambda",
                format!("must be finite, got {lambda}"),
            ));
        }
        Ok(())
    }
}

/// What to merge and how.
#[derive(Debug, Clone, PartialEq)]
pub struct MergeOptions {
    pub method: MergeMethod,
    /// One weight per model; `None`: 1 each (for the soup, the uniform mean).
    pub weights: Option<Vec<f64>>,
}

/// How a merge was made, stored in the output's safetensors metadata (key `orrery_merge`) and, for bundles,
/// as `merge_config.json`.
#[derive(Debug, Serialize)]
struct MergeRecord<'a> {
    #[serde(flatten)]
    method: &'a MergeMethod,
    weights: &'a [f64],
    base: Option<String>,
    models: Vec<String>,
}

/// Opened and checked inputs of a merge, ready to write.
pub struct Merger {
    method: MergeMethod,
    weights: Vec<f64>,
    base: Option<Input>,
    models: Vec<Input>,
    /// (name, dtype, shape) of every tensor, sorted by name: the same in every input.
    entries: Vec<(String, DType, Vec<usize>)>,
    bundle: bool,
}

impl Merger {
    /// Opens `models` (and `base` for the methods that need one), each a checkpoint in any format orrery reads or a
    /// model bundle (a folder with `transformer/`; then all must be), and checks the options and that every input
    /// holds the same tensor names, shapes and float types.
    pub fn open(base: Option<&Path>, models: &[PathBuf], options: MergeOptions) -> Result<Self> {
        let method = options.method;
        method.validate()?;
        if models.is_empty() {
            return Err(MergeError::option("models", "no model to merge"));
        }
        match (method.needs_base(), base) {
            (true, None) => {
                return Err(MergeError::option(
                    "base",
                    format!(
                        "{} merges task vectors (model − base) and needs a base model",
                        method.name()
                    ),
                ))
            }
            (false, Some(_)) => {
                return Err(MergeError::option(
                    "base",
                    "the soup averages the models themselves and takes no base",
                ))
            }
            _ => {}
        }
        let weights = match options.weights {
            None => vec![1.0; models.len()],
            Some(w) if w.len() != models.len() => {
                return Err(MergeError::option(
                    "weights",
                    format!(
                        "{} weights for {} models: give one per model",
                        w.len(),
                        models.len()
                    ),
                ))
            }
            Some(w) => w,
        };
        if let Some(w) = weights.iter().find(|w| !w.is_finite()) {
            return Err(MergeError::option(
                "weights",
                format!("must be finite, got {w}"),
            ));
        }
        if method == MergeMethod::Soup && weights.iter().sum::<f64>() == 0.0 {
            return Err(MergeError::option(
                "weights",
                "the soup divides by the sum of the weights, which is 0",
            ));
        }
        let opened: Vec<Input> = base
            .into_iter()
            .chain(models.iter().map(PathBuf::as_path))
            .map(Input::open)
            .collect::<Result<_>>()?;
        let bundle = inputs::all_bundles_or_none(&opened)?;
        let mut opened = opened.into_iter();
        let base = base.and_then(|_| opened.next());
        let models: Vec<Input> = opened.collect();
        let others: Vec<&Input> = models[1..].iter().chain(base.as_ref()).collect();
        let entries = inputs::common_entries(&models[0], &others)?;
        Ok(Self {
            method,
            weights,
            base,
            models,
            entries,
            bundle,
        })
    }

    pub fn method(&self) -> &MergeMethod {
        &self.method
    }

    pub fn tensor_count(&self) -> usize {
        self.entries.len()
    }

    /// Elements in one model (what the merge computes).
    pub fn parameter_count(&self) -> u64 {
        self.entries
            .iter()
            .map(|(_, _, s)| s.iter().product::<usize>() as u64)
            .sum()
    }

    /// Whether the inputs are model bundles (and the output is a bundle folder).
    pub fn is_bundle(&self) -> bool {
        self.bundle
    }

    /// Writes the merge to `out`: a `.safetensors` file, or for bundles a new folder (which must not exist or be
    /// empty) with the merged `transformer/` and the rest copied from the first model. Either appears complete or
    /// not at all. `on_tensor` is called with each tensor's name once it is computed (progress).
    pub fn write(&self, out: &Path, on_tensor: &dyn Fn(&str)) -> Result<()> {
        if self.bundle {
            bundle::write_bundle(self, out, on_tensor)
        } else {
            if out.extension().is_none_or(|e| e != "safetensors") {
                return Err(MergeError::Output {
                    path: out.to_owned(),
                    detail: "the merged checkpoint is written as safetensors: name it .safetensors"
                        .into(),
                });
            }
            orrery_io::check_writable(out).map_err(MergeError::io(out))?;
            stream::write_merged(self, out, on_tensor)
        }
    }

    /// The merge's description as JSON: one line for the metadata, indented with a final newline for
    /// `merge_config.json`.
    fn record_json(&self, pretty: bool) -> String {
        let record = MergeRecord {
            method: &self.method,
            weights: &self.weights,
            base: self.base.as_ref().map(|b| b.given.display().to_string()),
            models: self
                .models
                .iter()
                .map(|m| m.given.display().to_string())
                .collect(),
        };
        if pretty {
            serde_json::to_string_pretty(&record).expect("plain values") + "\n"
        } else {
            serde_json::to_string(&record).expect("plain values")
        }
    }

    fn inputs(&self) -> impl Iterator<Item = &Input> {
        self.models.iter().chain(self.base.as_ref())
    }
}
