//! Nearest-neighbour 2x spatial upsampling of (N, C, H, W) (`nearest-exact` at scale 2: output pixel (y, x)
//! reads input (y / 2, x / 2)), written row by row; candle composes it from a broadcast and a strided copy, a
//! twelfth of a VAE decode. The gradient sums each 2x2 block of the output's.

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::storage::{f32_data, multiversion, output, par_zeros, prepare};

multiversion! {
    /// One input plane `x` (H, W) into its output plane `out` (2H, 2W).
    fn upsample_plane(x: &[f32], w: usize, out: &mut [f32]) {
        for (row, pair) in x.chunks_exact(w).zip(out.chunks_exact_mut(4 * w)) {
            let (top, bottom) = pair.split_at_mut(2 * w);
            for (o, &v) in top.chunks_exact_mut(2).zip(row) {
                o[0] = v;
                o[1] = v;
            }
            bottom.copy_from_slice(top);
        }
    }
}

struct Upsample2x;

impl CustomOp1 for Upsample2x {
    fn name(&self) -> &'static str {
        "orrery-upsample-nearest-2x"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let &[n, c, h, w] = layout.dims() else {
            candle_core::bail!(
                "upsample_nearest_2x: (N, C, H, W) expected, got {:?}",
                layout.dims()
            )
        };
        let x = f32_data(storage, layout, self.name())?;
        let mut out = par_zeros(4 * x.len());
        if h * w > 0 {
            out.par_chunks_mut(4 * h * w)
                .zip(x.par_chunks(h * w))
                .for_each(|(o, plane)| upsample_plane(plane, w, o));
        }
        Ok(output(out, &Shape::from((n, c, 2 * h, 2 * w))))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let (n, c, h, w) = arg.dims4()?;
        let blocks = grad.reshape((n, c, h, 2, w, 2))?;
        Ok(Some(blocks.sum(5)?.sum(3)?))
    }
}

/// Nearest-neighbour 2x upsampling of a float32 (N, C, H, W) tensor: (N, C, 2H, 2W).
pub fn upsample_nearest_2x(x: &Tensor) -> Result<Tensor> {
    prepare(x)?.apply_op1(Upsample2x)
}
