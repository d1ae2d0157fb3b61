//! Width growth of a Wan VAE decoder: a decoder with more channels per stage starts out computing exactly what a
//! trained narrower one computes, so fine-tuning it starts from the trained decoder's quality instead of noise.
//!
//! Every new channel of the hidden activations starts at zero: the rows of each layer that produce them are zero,
//! and the columns that read them keep their fresh initialisation (they multiply zeros, and they pass gradient
//! back to the zero rows, which therefore learn). Three things depend on the channel count and are rescaled:
//! - `RMS_norm` multiplies by sqrt(C): its gamma on the old channels is scaled by sqrt(C_old / C_new);
//! - the middle attention divides q·k by sqrt(C) (one head of the block's width): q is scaled by
//!   sqrt(C_new / C_old) (and its new channels are zero, while k's keep their fresh rows so q's can learn);
//! - channel groups keep their layout: `time_conv` writes 2 groups of C channels (two output frames) and `to_qkv`
//!   3 (q, k, v); old channel i of group g moves from g·C_old + i to g·C_new + i.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use orrery_nn::{Checkpoint, SeededVarMap};

use crate::error::{Result, TrainError};

/// How the output channels of a parameter are laid out: groups of C channels.
fn output_groups(name: &str) -> usize {
    if name.contains(".time_conv.") {
        2
    } else if name.contains(".to_qkv.") {
        3
    } else {
        1
    }
}

/// What the new output rows of group `group` start as: zero (so the new channels start at zero), except the
/// attention's keys, which keep their fresh rows (q's new channels are zero, so the product is unchanged).
fn new_rows_keep_fresh(name: &str, group: usize) -> bool {
    name.contains(".to_qkv.") && group == 1
}

/// Factor on the old rows of group `group` when the channels grow from `c_old` to `c_new`.
fn old_row_scale(name: &str, group: usize, c_old: usize, c_new: usize) -> f64 {
    let ratio = c_old as f64 / c_new as f64;
    if name.ends_with(".gamma") {
        ratio.sqrt()
    } else if name.contains(".to_qkv.") && group == 0 {
        ratio.recip().sqrt()
    } else {
        1.0
    }
}

/// The parameter `name` of the wider decoder: `source` is the narrower decoder's tensor, `fresh` the wider one's
/// fresh initialisation (the shape wanted). Axis 0 is the output channels (or the channels of a gamma or bias),
/// axis 1 the input channels; later axes (kernel) must agree.
pub fn widen_parameter(
    name: &str,
    source: &Tensor,
    fresh: &Tensor,
) -> std::result::Result<Tensor, String> {
    let (s, t) = (source.dims(), fresh.dims());
    let wrong_shape = || format!("`{name}`: a tensor of shape {s:?} cannot be widened to {t:?}");
    if s.len() != t.len() || s.is_empty() || s.len() > 1 && s[2..] != t[2..] {
        return Err(wrong_shape());
    }
    let (rows_s, rows_t) = (s[0], t[0]);
    let (cols_s, cols_t) = if s.len() > 1 { (s[1], t[1]) } else { (1, 1) };
    let inner: usize = s.iter().skip(2).product();
    let groups = if rows_s == rows_t {
        1
    } else {
        output_groups(name)
    };
    if rows_t < rows_s || cols_t < cols_s || rows_s % groups != 0 || rows_t % groups != 0 {
        return Err(wrong_shape());
    }
    let (c_old, c_new) = (rows_s / groups, rows_t / groups);
    let src = values_f32(name, source)?;
    let mut out = values_f32(name, fresh)?;
    let row_len_s = cols_s * inner;
    let row_len_t = cols_t * inner;
    for group in 0..groups {
        let scale = old_row_scale(name, group, c_old, c_new) as f32;
        for i in 0..c_new {
            let rt = (group * c_new + i) * row_len_t;
            if i < c_old {
                let rs = (group * c_old + i) * row_len_s;
                // Old columns (first in the row) from the source; new ones (reading new, zero channels) stay fresh.
                for (o, v) in out[rt..rt + row_len_s]
                    .iter_mut()
                    .zip(&src[rs..rs + row_len_s])
                {
                    *o = v * scale;
                }
            } else if !name.ends_with(".gamma") && !new_rows_keep_fresh(name, group) {
                out[rt..rt + row_len_t].fill(0.0);
            }
        }
    }
    tensor_like(name, out, t, fresh)
}

/// The values of parameter `name` as float32, row-major.
pub(crate) fn values_f32(name: &str, x: &Tensor) -> std::result::Result<Vec<f32>, String> {
    x.to_dtype(DType::F32)
        .and_then(|x| x.flatten_all())
        .and_then(|x| x.to_vec1::<f32>())
        .map_err(|e| format!("`{name}`: {e}"))
}

/// `values` as parameter `name`: a tensor of `shape` with `like`'s dtype.
pub(crate) fn tensor_like(
    name: &str,
    values: Vec<f32>,
    shape: &[usize],
    like: &Tensor,
) -> std::result::Result<Tensor, String> {
    Tensor::from_vec(values, shape, &Device::Cpu)
        .and_then(|x| x.to_dtype(like.dtype()))
        .map_err(|e| format!("`{name}`: {e}"))
}

/// Sets every `decoder.` parameter of `vars` (a wider decoder, freshly initialised) to its widened counterpart in
/// the VAE weights at `weights`. Parameters the source lacks (time convolutions of another temporal layout) stay
/// fresh.
pub fn widen_decoder_from(vars: &SeededVarMap, weights: &Path) -> Result<()> {
    set_vars_widened(
        vars,
        weights,
        |name| name.starts_with("decoder.").then(|| name.to_owned()),
        true,
        widen_parameter,
    )
}

/// Sets each variable of `vars` that `source_name` maps to a tensor NAME of the weights at `weights` to
/// `widen(NAME, that tensor, the variable's fresh value)`. A NAME the weights lack is an error unless
/// `may_be_missing` (then the variable keeps its fresh value).
pub(crate) fn set_vars_widened(
    vars: &SeededVarMap,
    weights: &Path,
    source_name: impl Fn(&str) -> Option<String>,
    may_be_missing: bool,
    widen: impl Fn(&str, &Tensor, &Tensor) -> std::result::Result<Tensor, String>,
) -> Result<()> {
    let ckpt = Checkpoint::open(weights)?;
    for (name, var) in vars.named_vars() {
        let Some(stored) = source_name(&name) else {
            continue;
        };
        if may_be_missing && !ckpt.contains(&stored) {
            continue;
        }
        let source = ckpt.load(&stored, &Device::Cpu)?;
        let widened = widen(&stored, &source, var.as_tensor())
            .map_err(|e| TrainError::Data(format!("{}: {e}", weights.display())))?;
        var.set(&widened.to_device(var.device())?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tensor(values: &[f32], shape: &[usize]) -> Tensor {
        Tensor::from_vec(values.to_vec(), shape, &Device::Cpu).unwrap()
    }

    #[test]
    fn old_weights_move_into_place_and_new_outputs_start_at_zero() {
        // (2 out, 1 in) -> (3 out, 2 in): old block copied, new row zero, new column fresh.
        let source = tensor(&[1.0, 2.0], &[2, 1]);
        let fresh = tensor(&[9.0; 6], &[3, 2]);
        let w = widen_parameter("decoder.middle.0.residual.2.weight", &source, &fresh).unwrap();
        assert_eq!(
            w.to_vec2::<f32>().unwrap(),
            [[1.0, 9.0], [2.0, 9.0], [0.0, 0.0]]
        );
    }

    #[test]
    fn grouped_outputs_keep_their_layout() {
        // time_conv: 2 groups of 1 channel -> 2 groups of 2.
        let source = tensor(&[1.0, 2.0], &[2]);
        let fresh = tensor(&[9.0; 4], &[4]);
        let b = widen_parameter("decoder.upsamples.2.time_conv.bias", &source, &fresh).unwrap();
        assert_eq!(b.to_vec1::<f32>().unwrap(), [1.0, 0.0, 2.0, 0.0]);
        // to_qkv: q scaled by sqrt(2), k's new row fresh, v's zero.
        let source = tensor(&[1.0, 2.0, 3.0], &[3]);
        let fresh = tensor(&[9.0; 6], &[6]);
        let b = widen_parameter("decoder.middle.1.to_qkv.bias", &source, &fresh).unwrap();
        let s = 2f32.sqrt();
        assert_eq!(b.to_vec1::<f32>().unwrap(), [s, 0.0, 2.0, 9.0, 3.0, 0.0]);
    }

    #[test]
    fn gammas_compensate_the_wider_norm() {
        let source = tensor(&[2.0, 4.0], &[2, 1, 1, 1]);
        let fresh = tensor(&[1.0; 8], &[8, 1, 1, 1]);
        let g = widen_parameter("decoder.head.0.gamma", &source, &fresh).unwrap();
        let g = g.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(g, [1.0, 2.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]);
    }

    #[test]
    fn narrowing_or_another_kernel_is_refused() {
        let e = widen_parameter(
            "x.weight",
            &tensor(&[0.0; 4], &[2, 2]),
            &tensor(&[0.0; 2], &[1, 2]),
        );
        assert!(e.unwrap_err().contains("cannot be widened"));
        let e = widen_parameter(
            "x.weight",
            &tensor(&[0.0; 2], &[1, 1, 2]),
            &tensor(&[0.0; 3], &[1, 1, 3]),
        );
        assert!(e.is_err());
    }
}
