//! Width growth of the DiT: a network k times as wide (k times the heads, the same head size) starts out
//! computing exactly what a trained narrower one computes.
//!
//! The blocks' residual stream goes through non-affine LayerNorms, so it cannot grow by zero channels (they would
//! change the mean and variance); instead every channel is copied k times (Net2Net). k copies of a vector have
//! its mean and variance, so each LayerNorm gives k copies of its old output; every layer writing a copied space
//! (the residual stream, the heads, the MLP hidden units, the timestep MLP's hidden units) repeats its rows, and
//! every layer reading one splits each old column over its k copies: old / k plus a zero-sum perturbation
//! (fresh weights minus their mean over the copies). The perturbation changes nothing while the copies are equal,
//! and it is what lets them come apart: identical copies read with identical weights would get identical updates
//! forever. Heads copy whole (same head size), so q/k RMS norms, the softmax scale and RoPE are unchanged.
//!
//! The timestep sinusoid is not copied but refined: its frequencies are exp(-ln(10^4) i / (C/2)), so the wider
//! network's frequencies include the old ones at every k-th index, and the RMS of [cos | sin] is 1/sqrt(2) at any
//! width. Layers reading it take their old columns at those indices and zero elsewhere (the new frequencies start
//! unread and learn).

use candle_core::Tensor;
use orrery_dit::DitConfig;

use crate::surgery::widen::{tensor_like, values_f32};

/// The width factor k from `source` to `target`: a whole number of at least 2, with k times the heads and
/// everything else the same.
pub fn width_factor(source: &DitConfig, target: &DitConfig) -> std::result::Result<usize, String> {
    let k = target.model_channels / source.model_channels.max(1);
    let scaled = DitConfig {
        model_channels: source.model_channels * k,
        num_heads: source.num_heads * k,
        ..source.clone()
    };
    if k < 2 || &scaled != target {
        return Err(format!(
            "a DiT of width {} ({} heads) cannot grow from one of width {} ({} heads): it needs a whole multiple \
             k >= 2 of the width and k times the heads, with every other setting the same",
            target.model_channels, target.num_heads, source.model_channels, source.num_heads
        ));
    }
    Ok(k)
}

/// How one axis of a parameter relates to the narrower network's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Axis {
    /// Unchanged (text context, input and output patches, the adaLN-LoRA rank, head size).
    Same,
    /// `chunks` consecutive groups (shift / scale / gate), each copied k times.
    Copied { chunks: usize },
    /// The timestep sinusoid `[cos f_0..f_h | sin f_0..f_h]`, refined k times.
    Sinusoid,
}

/// The (output, input) axes of a parameter (official DiT naming); `None` for a parameter that does not change.
fn axes(name: &str) -> Option<(Axis, Axis)> {
    use Axis::*;
    let copied = Copied { chunks: 1 };
    let pair = if name == "x_embedder.proj.1.weight" {
        (copied, Same)
    } else if name == "t_embedder.1.linear_1.weight" {
        (copied, Sinusoid)
    } else if name == "t_embedder.1.linear_2.weight" {
        (Copied { chunks: 3 }, copied)
    } else if name == "t_embedding_norm.weight" {
        (Sinusoid, Same)
    } else if name.contains("adaln_modulation") && name.ends_with(".1.weight") {
        (Same, Sinusoid)
    } else if name.contains("adaln_modulation") && name.ends_with(".2.weight") {
        let chunks = if name.starts_with("final_layer.") {
            2
        } else {
            3
        };
        (Copied { chunks }, Same)
    } else if name == "final_layer.linear.weight" {
        (Same, copied)
    } else if name.ends_with("cross_attn.k_proj.weight")
        || name.ends_with("cross_attn.v_proj.weight")
    {
        (copied, Same)
    } else if [
        "q_proj.weight",
        "k_proj.weight",
        "v_proj.weight",
        "output_proj.weight",
        "mlp.layer1.weight",
        "mlp.layer2.weight",
    ]
    .iter()
    .any(|p| name.ends_with(p))
    {
        (copied, copied)
    } else {
        return None;
    };
    Some(pair)
}

/// The old index that new index `j` of an axis (old size `old`, new size `k * old`) comes from; `None` for a
/// sinusoid frequency the old network lacks.
fn source_index(axis: Axis, j: usize, old: usize, k: usize) -> Option<usize> {
    match axis {
        Axis::Same => Some(j),
        Axis::Copied { chunks } => {
            let (chunk_old, chunk_new) = (old / chunks, k * old / chunks);
            Some(j / chunk_new * chunk_old + j % chunk_new % chunk_old)
        }
        Axis::Sinusoid => {
            let (half_old, half_new) = (old / 2, k * old / 2);
            let (part, f) = (j / half_new, j % half_new);
            f.is_multiple_of(k).then(|| part * half_old + f / k)
        }
    }
}

/// The parameter `name` of the k times wider network: `source` is the narrower network's tensor, `fresh` the
/// wider one's fresh initialisation (the shape wanted, which fixes k). Parameters that do not depend on the width
/// come back as `source`.
pub fn widen_dit_parameter(
    name: &str,
    source: &Tensor,
    fresh: &Tensor,
) -> std::result::Result<Tensor, String> {
    let (s, t) = (source.dims().to_vec(), fresh.dims().to_vec());
    let wrong_shape = || format!("`{name}`: a tensor of shape {s:?} cannot be widened to {t:?}");
    let Some((rows_axis, cols_axis)) = axes(name) else {
        return if s == t {
            Ok(source.clone())
        } else {
            Err(wrong_shape())
        };
    };
    let size = |dims: &[usize], i: usize| dims.get(i).copied().unwrap_or(1);
    if s.len() != t.len() || s.is_empty() || s.len() > 2 || size(&s, 0) == 0 {
        return Err(wrong_shape());
    }
    // The axis that grows fixes k: the rows unless they keep their size.
    let grows = if rows_axis == Axis::Same { 1 } else { 0 };
    let k = size(&t, grows) / size(&s, grows).max(1);
    let fits = |axis: Axis, i: usize| {
        let (old, new) = (size(&s, i), size(&t, i));
        match axis {
            Axis::Same => old == new,
            Axis::Copied { chunks } => old.is_multiple_of(chunks) && new == k * old,
            Axis::Sinusoid => old.is_multiple_of(2) && new == k * old,
        }
    };
    if k == 0 || !fits(rows_axis, 0) || !fits(cols_axis, 1) {
        return Err(wrong_shape());
    }
    let (src, fresh_values) = (values_f32(name, source)?, values_f32(name, fresh)?);
    let (rows_s, cols_s) = (size(&s, 0), size(&s, 1));
    let (rows_t, cols_t) = (size(&t, 0), size(&t, 1));
    let col_source: Vec<Option<usize>> = (0..cols_t)
        .map(|l| source_index(cols_axis, l, cols_s, k))
        .collect();
    // (new column, old column) for the columns with a source (every one, unless a sinusoid).
    let mapped = || {
        col_source
            .iter()
            .enumerate()
            .filter_map(|(l, c)| Some((l, (*c)?)))
    };
    let mut out = fresh_values.clone();
    for j in 0..rows_t {
        let row = &mut out[j * cols_t..(j + 1) * cols_t];
        let Some(i) = source_index(rows_axis, j, rows_s, k) else {
            continue; // A new sinusoid gamma: read by zero columns only, it keeps its fresh value.
        };
        let old_row = &src[i * cols_s..(i + 1) * cols_s];
        if matches!(cols_axis, Axis::Copied { .. }) {
            // Zero-sum perturbation over the k copies of each old column.
            let fresh_row = &fresh_values[j * cols_t..(j + 1) * cols_t];
            let mut mean = vec![0f32; cols_s];
            for (l, c) in mapped() {
                mean[c] += fresh_row[l] / k as f32;
            }
            for (l, c) in mapped() {
                row[l] = old_row[c] / k as f32 + fresh_row[l] - mean[c];
            }
        } else {
            for (l, c) in col_source.iter().enumerate() {
                row[l] = c.map_or(0.0, |c| old_row[c]);
            }
        }
    }
    tensor_like(name, out, &t, fresh)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn tensor(values: &[f32], shape: &[usize]) -> Tensor {
        Tensor::from_vec(values.to_vec(), shape, &Device::Cpu).unwrap()
    }

    #[test]
    fn copied_rows_repeat_per_chunk_and_sinusoid_columns_refine() {
        // adaLN .2: rows (3 chunks of 1) -> (3 chunks of 2), columns (rank) unchanged.
        let w = widen_dit_parameter(
            "blocks.0.adaln_modulation_mlp.2.weight",
            &tensor(&[1.0, 2.0, 3.0], &[3, 1]),
            &tensor(&[9.0; 6], &[6, 1]),
        )
        .unwrap();
        assert_eq!(
            w.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            [1.0, 1.0, 2.0, 2.0, 3.0, 3.0]
        );
        // adaLN .1 reads the sinusoid: [cos f0, sin f0] -> [cos f0, cos f1, sin f0, sin f1].
        let w = widen_dit_parameter(
            "blocks.0.adaln_modulation_mlp.1.weight",
            &tensor(&[1.0, 2.0], &[1, 2]),
            &tensor(&[9.0; 4], &[1, 4]),
        )
        .unwrap();
        assert_eq!(w.to_vec2::<f32>().unwrap(), [[1.0, 0.0, 2.0, 0.0]]);
        // The sinusoid's gamma: old values at the old frequencies, fresh elsewhere.
        let g = widen_dit_parameter(
            "t_embedding_norm.weight",
            &tensor(&[1.0, 2.0], &[2]),
            &tensor(&[7.0; 4], &[4]),
        )
        .unwrap();
        assert_eq!(g.to_vec1::<f32>().unwrap(), [1.0, 7.0, 2.0, 7.0]);
    }

    #[test]
    fn copied_columns_split_the_old_weight_with_a_zero_sum_perturbation() {
        // mlp.layer2 (1 out, 1 in) -> (2, 2): each row reads the two copies of the input.
        let w = widen_dit_parameter(
            "blocks.0.mlp.layer2.weight",
            &tensor(&[4.0], &[1, 1]),
            &tensor(&[1.0, 3.0, 0.0, 0.0], &[2, 2]),
        )
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
        assert_eq!(w, [[1.0, 3.0], [2.0, 2.0]]);
        for row in w {
            assert_eq!(row.iter().sum::<f32>(), 4.0);
        }
    }

    #[test]
    fn width_free_parameters_pass_and_wrong_shapes_are_refused() {
        let q_norm = tensor(&[1.0, 2.0], &[2]);
        let same =
            widen_dit_parameter("blocks.0.self_attn.q_norm.weight", &q_norm, &q_norm).unwrap();
        assert_eq!(same.to_vec1::<f32>().unwrap(), [1.0, 2.0]);
        let err = widen_dit_parameter(
            "blocks.0.mlp.layer1.weight",
            &tensor(&[1.0; 4], &[2, 2]),
            &tensor(&[1.0; 12], &[4, 3]),
        )
        .unwrap_err();
        assert!(err.contains("cannot be widened"), "{err}");
        assert!(widen_dit_parameter(
            "blocks.0.self_attn.q_norm.weight",
            &q_norm,
            &tensor(&[1.0; 4], &[4])
        )
        .is_err());
    }
}
