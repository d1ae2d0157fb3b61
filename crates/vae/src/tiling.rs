//! Spatial tiling for large frames: the latent is cut into overlapping tiles, each decoded on its own (so the
//! memory is that of one tile), and the decoded tiles are blended with linear ramps across the overlaps.

use candle_core::Tensor;

use crate::error::{Result, VaeError};
use crate::model::{Chunking, WanVae};

/// Tile size and overlap, in latent pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tiling {
    pub tile: usize,
    pub overlap: usize,
}

/// Tile starts covering `len` with tiles of `tile` overlapping by `overlap`.
fn starts(len: usize, tile: usize, overlap: usize) -> Vec<usize> {
    if len <= tile {
        return vec![0];
    }
    let stride = tile - overlap;
    let mut s: Vec<usize> = (0..)
        .map(|i| i * stride)
        .take_while(|&p| p + tile < len)
        .collect();
    s.push(len - tile);
    s.dedup();
    s
}

/// Blend weight along one axis of a tile at `start` (length `size`, in output pixels): a linear ramp over the
/// part shared with the previous and next tiles, 1 elsewhere.
fn ramp(size: usize, start: usize, prev_end: Option<usize>, next_start: Option<usize>) -> Vec<f32> {
    (0..size)
        .map(|i| {
            let p = start + i;
            let mut w = 1f32;
            if let Some(end) = prev_end.filter(|&e| p < e) {
                w = w.min((p - start + 1) as f32 / (end - start + 1) as f32);
            }
            if let Some(ns) = next_start.filter(|&n| p >= n) {
                let end = start + size;
                w = w.min((end - p) as f32 / (end - ns + 1) as f32);
            }
            w
        })
        .collect()
}

impl WanVae {
    /// Decodes `latent` (B, z, T, h, w) tile by tile (each tile streamed through time) and blends the tiles:
    /// video (B, 3, 1 + 4 (T - 1), 8 h, 8 w). Seams are blended, not exact: border pixels of a tile see less
    /// context than in a whole-frame decode.
    pub fn decode_tiled(
        &self,
        latent: &Tensor,
        tiling: Tiling,
        chunking: Chunking,
    ) -> Result<Tensor> {
        let frames = self.config.pixel_frames(latent.dim(2)?);
        blend_tiles(
            latent,
            tiling,
            self.config.spatial_factor(),
            frames,
            |tile| self.decode(tile, chunking),
        )
    }
}

/// Cuts `latent` (B, C, T, h, w) into overlapping tiles, maps each through `decode_tile` to (B, 3, frames,
/// s h_tile, s w_tile), and blends the results into (B, 3, frames, s h, s w). Exact for a local `decode_tile`.
pub fn blend_tiles(
    latent: &Tensor,
    tiling: Tiling,
    s: usize,
    frames: usize,
    mut decode_tile: impl FnMut(&Tensor) -> Result<Tensor>,
) -> Result<Tensor> {
    {
        if tiling.tile == 0 || tiling.overlap >= tiling.tile {
            return Err(VaeError::Input {
                name: "tiling",
                expected: "tile > overlap >= 0".into(),
                found: format!("{tiling:?}"),
            });
        }
        let (b, _, _, h, w) = latent.dims5()?;
        let rows = starts(h, tiling.tile, tiling.overlap);
        let cols = starts(w, tiling.tile, tiling.overlap);
        let (out_h, out_w) = (h * s, w * s);
        // Accumulated in flat buffers: one output-sized video, not one per tile.
        let plane = out_h * out_w;
        let mut acc = vec![0f32; b * 3 * frames * plane];
        let mut weight_sum = vec![0f32; plane];
        for (ri, &r) in rows.iter().enumerate() {
            for (ci, &c) in cols.iter().enumerate() {
                let th = tiling.tile.min(h);
                let tw = tiling.tile.min(w);
                let tile = latent.narrow(3, r, th)?.narrow(4, c, tw)?.contiguous()?;
                let decoded = decode_tile(&tile)?.flatten_all()?.to_vec1::<f32>()?;
                let edge = |v: &[usize], i: usize, size: usize| {
                    (
                        i.checked_sub(1).map(|p| (v[p] + size) * s),
                        v.get(i + 1).map(|n| n * s),
                    )
                };
                let (pr, nr) = edge(&rows, ri, th);
                let (pc, nc) = edge(&cols, ci, tw);
                let wr = ramp(th * s, r * s, pr, nr);
                let wc = ramp(tw * s, c * s, pc, nc);
                let (dh, dw) = (th * s, tw * s);
                for (y, wy) in wr.iter().enumerate() {
                    for (x, wx) in wc.iter().enumerate() {
                        weight_sum[(r * s + y) * out_w + c * s + x] += wy * wx;
                    }
                }
                for (img, chunk) in decoded.chunks_exact(dh * dw).enumerate() {
                    let base = img * plane;
                    for (y, wy) in wr.iter().enumerate() {
                        let row = base + (r * s + y) * out_w + c * s;
                        for (x, wx) in wc.iter().enumerate() {
                            acc[row + x] += chunk[y * dw + x] * wy * wx;
                        }
                    }
                }
            }
        }
        for img in acc.chunks_exact_mut(plane) {
            for (v, wsum) in img.iter_mut().zip(&weight_sum) {
                *v /= wsum;
            }
        }
        Ok(Tensor::from_vec(
            acc,
            (b, 3, frames, out_h, out_w),
            latent.device(),
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blending_is_exact_for_a_local_decoder() {
        use candle_core::{DType, Device};
        // "Decoder": nearest x2 upsampling of the first 3 channels, one frame per latent frame.
        let local = |x: &Tensor| -> Result<Tensor> {
            let (b, _, t, h, w) = x.dims5()?;
            let y = x
                .narrow(1, 0, 3)?
                .reshape(vec![b, 3, t, h, 1, w, 1])?
                .broadcast_as(vec![b, 3, t, h, 2, w, 2])?;
            Ok(y.reshape((b, 3, t, 2 * h, 2 * w))?.to_dtype(DType::F32)?)
        };
        let latent = Tensor::randn(0f32, 1., (1, 4, 2, 11, 9), &Device::Cpu).unwrap();
        let full = local(&latent).unwrap();
        for tiling in [
            Tiling {
                tile: 4,
                overlap: 2,
            },
            Tiling {
                tile: 5,
                overlap: 1,
            },
            Tiling {
                tile: 3,
                overlap: 0,
            },
        ] {
            let tiled = blend_tiles(&latent, tiling, 2, 2, local).unwrap();
            let d = orrery_nn::compare::max_abs_diff(&tiled, &full).unwrap();
            assert!(d < 1e-5, "{tiling:?}: {d}");
        }
    }

    #[test]
    fn tiles_cover_with_the_requested_overlap() {
        assert_eq!(starts(10, 16, 4), vec![0]);
        assert_eq!(starts(40, 16, 4), vec![0, 12, 24]);
        assert_eq!(starts(30, 16, 4), vec![0, 12, 14]);
        let w = ramp(16, 12, Some(16), None);
        assert!(w[0] > 0.0 && w[0] < w[3] && w[4..].iter().all(|&x| x == 1.0));
    }
}
