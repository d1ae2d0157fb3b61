//! Plumbing shared by the kernels: float32 views of CPU storage, row-parallel loops, AVX2 multiversioning.

use candle_core::{CpuStorage, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// Elements per parallel work item: large enough that rayon's per-task cost is noise, small enough that two
/// cores split a 512-token activation evenly.
const GRAIN: usize = 16 * 1024;

/// The contiguous float32 data behind a kernel input.
pub(crate) fn f32_data<'a>(
    storage: &'a CpuStorage,
    layout: &Layout,
    op: &str,
) -> Result<&'a [f32]> {
    let CpuStorage::F32(data) = storage else {
        candle_core::bail!(
            "{op}: float32 input expected, got {:?}",
            candle_core::backend::BackendStorage::dtype(storage)
        )
    };
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => candle_core::bail!("{op}: contiguous input expected"),
    }
}

/// Float32, contiguous, on the CPU: what every kernel reads.
pub(crate) fn prepare(x: &Tensor) -> Result<Tensor> {
    x.to_dtype(candle_core::DType::F32)?.contiguous()
}

pub(crate) fn output(data: Vec<f32>, shape: &Shape) -> (CpuStorage, Shape) {
    (CpuStorage::F32(data), shape.clone())
}

/// `n` zeros written by the worker threads: a fresh `vec![0; n]` from reused memory is one serial memset, which
/// for a kernel's output costs as much as a pass of the kernel.
pub(crate) fn par_zeros(n: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(n);
    out.par_extend(rayon::iter::repeat_n(0f32, n));
    out
}

/// Rows of `row` elements per work item.
fn rows_per_item(row: usize) -> usize {
    (GRAIN / row.max(1)).max(1)
}

/// Calls `f(first_row, out_rows)` on consecutive blocks of rows of `out` (rows of `row` elements) in parallel.
pub(crate) fn par_rows(out: &mut [f32], row: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    let per = rows_per_item(row);
    out.par_chunks_mut(per * row.max(1))
        .enumerate()
        .for_each(|(i, chunk)| f(i * per, chunk));
}

/// Sums over rows computed in parallel: `f(first_row, rows, acc)` adds the contribution of `rows` rows starting
/// at `first_row` into `acc` (`width` accumulators, zeroed). The blocks are fixed and their partial sums are
/// added in order, so the result does not depend on how rayon scheduled them (training stays bit-reproducible).
pub(crate) fn par_row_sums(
    rows: usize,
    row: usize,
    width: usize,
    f: impl Fn(usize, usize, &mut [f32]) + Sync,
) -> Vec<f32> {
    let per = rows_per_item(row);
    let items = rows.div_ceil(per);
    let partials: Vec<Vec<f32>> = (0..items)
        .into_par_iter()
        .map(|i| {
            let mut acc = vec![0f32; width];
            let first = i * per;
            f(first, per.min(rows - first), &mut acc);
            acc
        })
        .collect();
    sum_in_order(partials, width)
}

/// The element-wise sum of equally long partial sums, added first to last.
pub(crate) fn sum_in_order(partials: Vec<Vec<f32>>, width: usize) -> Vec<f32> {
    let mut parts = partials.into_iter();
    let mut total = parts.next().unwrap_or_else(|| vec![0f32; width]);
    for p in parts {
        total.iter_mut().zip(&p).for_each(|(a, b)| *a += b);
    }
    total
}

/// Defines `fn name(args) -> ret` whose body is compiled twice: for AVX2+FMA, used when the CPU has them, and for
/// the baseline target. Everything the body calls must be `#[inline(always)]` to be compiled for AVX2 too.
macro_rules! multiversion {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$m])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            fn inner($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn avx2($($arg: $ty),*) $(-> $ret)? {
                    inner($($arg),*)
                }
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    // SAFETY: the CPU supports the features `avx2` was compiled for.
                    return unsafe { avx2($($arg),*) };
                }
            }
            inner($($arg),*)
        }
    };
}
pub(crate) use multiversion;

/// Runs `f` on the float32 data of a tensor without copying it when it is already a contiguous float32 CPU
/// tensor (a backward pass reading a saved input, an optimiser reading gradients); a tensor on another device is
/// copied to host memory first.
pub fn with_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    let t = prepare(&t.to_device(&candle_core::Device::Cpu)?)?;
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        candle_core::Storage::Cpu(cpu) => Ok(f(f32_data(cpu, layout, "kernel input")?)),
        _ => candle_core::bail!("orrery kernels run on the CPU"),
    }
}

/// A float32 CPU tensor from its data.
pub(crate) fn tensor(data: Vec<f32>, shape: &Shape) -> Result<Tensor> {
    Tensor::from_vec(data, shape.clone(), &candle_core::Device::Cpu)
}
