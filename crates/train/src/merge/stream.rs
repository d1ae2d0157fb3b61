//! The streaming driver: the merge as a [`SafetensorsSource`] whose tensors are computed when the writer asks
//! for them, one at a time, chunk by chunk in parallel, so that memory holds one output tensor (and TIES's
//! scratch), never a model.

use std::borrow::Cow;
use std::ops::Range;
use std::path::Path;

use orrery_nn::checkpoint::{write_safetensors, SafetensorsSource};
use orrery_nn::{CheckpointError, DType};
use rayon::prelude::*;

use super::algorithms::{self, TopK, CHUNK};
use super::elements::{decode, encode};
use super::error::Result;
use super::{DareRescale, MergeMethod, Merger};

/// Metadata key of the merge record. Only one key: safetensors stores metadata from a `HashMap`, whose order
/// (and so the file's bytes) would vary between runs with several keys.
pub(crate) const METADATA_KEY: &str = "orrery_merge";

/// Writes the merged weights of `merger` to the safetensors file `out` (atomically).
pub(crate) fn write_merged(merger: &Merger, out: &Path, on_tensor: &dyn Fn(&str)) -> Result<()> {
    let source = MergeSource { merger, on_tensor };
    let metadata = [(METADATA_KEY.to_owned(), merger.record_json(false))]
        .into_iter()
        .collect();
    write_safetensors(&source, out, Some(metadata))?;
    Ok(())
}

struct MergeSource<'a> {
    merger: &'a Merger,
    on_tensor: &'a dyn Fn(&str),
}

impl SafetensorsSource for MergeSource<'_> {
    fn entries(&self) -> Vec<(String, DType, Vec<usize>)> {
        self.merger.entries.clone()
    }

    fn tensor_bytes(&self, name: &str) -> orrery_nn::checkpoint::Result<Cow<'_, [u8]>> {
        let m = self.merger;
        let i = m
            .entries
            .binary_search_by(|(n, ..)| n.as_str().cmp(name))
            .map_err(|_| CheckpointError::Tensor {
                name: name.to_owned(),
                detail: "not one of the merged tensors".into(),
            })?;
        let (_, dtype, shape) = &m.entries[i];
        let bytes = merge_tensor(m, name, *dtype, shape.iter().product())?;
        // This tensor is done: its input pages need not stay resident (they may be most of memory otherwise).
        for input in m.inputs() {
            input.ckpt.release(name)?;
        }
        (self.on_tensor)(name);
        Ok(Cow::Owned(bytes))
    }
}

/// One tensor's bytes in every input.
struct TensorInputs<'a> {
    name: &'a str,
    dtype: DType,
    numel: usize,
    base: Option<Cow<'a, [u8]>>,
    models: Vec<Cow<'a, [u8]>>,
}

impl TensorInputs<'_> {
    fn chunks(&self) -> usize {
        self.numel.div_ceil(CHUNK)
    }

    fn range(&self, chunk: usize) -> Range<usize> {
        chunk * CHUNK..((chunk + 1) * CHUNK).min(self.numel)
    }

    fn decode(&self, bytes: &[u8], range: Range<usize>) -> Vec<f64> {
        let elem = self.dtype.size_in_bytes();
        let mut out = vec![0.0; range.len()];
        decode(
            self.dtype,
            &bytes[range.start * elem..range.end * elem],
            &mut out,
        );
        out
    }

    /// The base's elements in `range`, or an empty vector without a base (the soup).
    fn base(&self, range: Range<usize>) -> Vec<f64> {
        self.base
            .as_ref()
            .map_or_else(Vec::new, |b| self.decode(b, range))
    }

    /// Model `i`'s elements in `range`, minus the base's when `base` is not empty: θ_i or τ_i.
    fn model(&self, i: usize, range: Range<usize>, base: &[f64]) -> Vec<f64> {
        let mut v = self.decode(&self.models[i], range);
        if !base.is_empty() {
            algorithms::task_vector(&mut v, base);
        }
        v
    }
}

/// What is done to one model's task vector before the task vectors are combined.
#[derive(Clone, Copy)]
enum Sparsify {
    Keep,
    Trim(TopK),
    /// DARE's drop, then divide the survivors by `density` (the paper) or multiply them by an L1 factor.
    Dare {
        density: f64,
        seed: u64,
        divide: f64,
        multiply: f64,
    },
}

fn merge_tensor(
    m: &Merger,
    name: &str,
    dtype: DType,
    numel: usize,
) -> std::result::Result<Vec<u8>, CheckpointError> {
    let inputs = TensorInputs {
        name,
        dtype,
        numel,
        base: m.base.as_ref().map(|b| b.ckpt.bytes(name)).transpose()?,
        models: m
            .models
            .iter()
            .map(|i| i.ckpt.bytes(name))
            .collect::<std::result::Result<_, _>>()?,
    };
    let n = m.models.len();
    let sparsify: Vec<Sparsify> = match m.method {
        MergeMethod::Soup | MergeMethod::TaskArithmetic { .. } => vec![Sparsify::Keep; n],
        MergeMethod::Ties { density, .. } => top_ks(&inputs, density)
            .into_iter()
            .map(Sparsify::Trim)
            .collect(),
        MergeMethod::DareLinear(d) | MergeMethod::DareTies(d) => (0..n)
            .map(|i| {
                let (divide, multiply) = match d.rescale {
                    DareRescale::InverseDensity => (d.density, 1.0),
                    DareRescale::L1 => (1.0, l1_factor(&inputs, i, d.density, d.seed)),
                };
                Sparsify::Dare {
                    density: d.density,
                    seed: d.seed,
                    divide,
                    multiply,
                }
            })
            .collect(),
    };
    let elem = dtype.size_in_bytes();
    let mut out = vec![0u8; numel * elem];
    out.par_chunks_mut(CHUNK * elem)
        .enumerate()
        .for_each(|(c, out_bytes)| {
            let range = inputs.range(c);
            let base = inputs.base(range.clone());
            let deltas: Vec<Vec<f64>> = (0..n)
                .map(|i| {
                    let mut d = inputs.model(i, range.clone(), &base);
                    match sparsify[i] {
                        Sparsify::Keep => {}
                        Sparsify::Trim(top) => top.trim(range.start, &mut d),
                        Sparsify::Dare {
                            density,
                            seed,
                            divide,
                            multiply,
                        } => {
                            let mut rng = algorithms::dare_rng(seed, i, name, c);
                            algorithms::dare_drop(&mut d, density, &mut rng);
                            for x in &mut d {
                                *x = *x / divide * multiply;
                            }
                        }
                    }
                    d
                })
                .collect();
            let deltas: Vec<&[f64]> = deltas.iter().map(Vec::as_slice).collect();
            let mut merged = vec![0.0; range.len()];
            let w = &m.weights;
            match m.method {
                MergeMethod::Soup => algorithms::soup(&deltas, w, &mut merged),
                MergeMethod::TaskArithmetic { lambda } => {
                    algorithms::linear(&base, &deltas, w, lambda, &mut merged)
                }
                MergeMethod::DareLinear(d) => {
                    algorithms::linear(&base, &deltas, w, d.lambda, &mut merged)
                }
                MergeMethod::Ties { lambda, .. } => {
                    algorithms::ties(&base, &deltas, w, lambda, true, &mut merged)
                }
                MergeMethod::DareTies(d) => {
                    algorithms::ties(&base, &deltas, w, d.lambda, false, &mut merged)
                }
            }
            encode(dtype, &merged, out_bytes);
        });
    Ok(out)
}

/// TIES's trim of every model's task vector: the top ⌊density·numel⌋ by magnitude. One float64 scratch of the
/// tensor's size, filled with |τ_i| twice per model (the selection reorders it; locating the ties at the
/// threshold needs element order).
fn top_ks(inputs: &TensorInputs<'_>, density: f64) -> Vec<TopK> {
    let n = inputs.models.len();
    let k = algorithms::keep_count(inputs.numel, density);
    if k == 0 {
        return vec![TopK::None; n];
    }
    if k >= inputs.numel {
        return vec![TopK::All; n];
    }
    let mut scratch = vec![0.0; inputs.numel];
    let fill = |scratch: &mut [f64], i: usize| {
        scratch
            .par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(c, s)| {
                let range = inputs.range(c);
                let base = inputs.base(range.clone());
                let tau = inputs.model(i, range, &base);
                for (s, t) in s.iter_mut().zip(&tau) {
                    *s = t.abs();
                }
            });
    };
    (0..n)
        .map(|i| {
            fill(&mut scratch, i);
            let threshold = algorithms::kth_largest(&mut scratch, k);
            fill(&mut scratch, i);
            TopK::locate(&scratch, threshold, k)
        })
        .collect()
}

/// mergekit's L1 factor for model `i`: ‖τ_i‖₁ / ‖DARE-masked τ_i‖₁ over the whole tensor, from the same masks
/// the merge pass draws. The chunks' norms are summed in chunk order, so the factor (and the file) does not
/// depend on the number of threads.
fn l1_factor(inputs: &TensorInputs<'_>, i: usize, density: f64, seed: u64) -> f64 {
    let norms: Vec<(f64, f64)> = (0..inputs.chunks())
        .into_par_iter()
        .map(|c| {
            let range = inputs.range(c);
            let base = inputs.base(range.clone());
            let mut tau = inputs.model(i, range, &base);
            let mut rng = algorithms::dare_rng(seed, i, inputs.name, c);
            algorithms::dare_drop(&mut tau, density, &mut rng)
        })
        .collect();
    let (before, after) = norms
        .iter()
        .fold((0.0, 0.0), |(b, a), (cb, ca)| (b + cb, a + ca));
    algorithms::l1_rescale(before, after)
}
