//! Which latent cells hold an object, for the DiT's object-weighted flow loss (`flow.object_weight`). A physics
//! clip's objects cover about 1% of its pixels and a handful of latent cells; under a uniform loss the background
//! is most of what the DiT learns, and a small one blurs or drops the objects where their motion is hard (a
//! gripper's block at contact). The cells are found with the VAE loss's foreground test
//! ([`foreground_weights`]) on the clip's pixels and pooled to the latent grid.

use candle_core::{Result, Tensor};

use crate::vae::foreground::foreground_weights;

/// 1 on the latent cells (1, t, h, w) of `video` (3, T, H, W) in [-1, 1] that hold a foreground pixel whose
/// colour covers at most `max_fraction` of its frame, 0 elsewhere. The grid is the causal VAE's: latent frame 0
/// is pixel frame 0, latent frame k >= 1 pixel frames (k - 1) s + 1 ..= k s with s = (T - 1) / (t - 1); a cell
/// is a (H / h) x (W / w) block.
pub fn object_cells(
    video: &Tensor,
    (t, h, w): (usize, usize, usize),
    max_fraction: f32,
) -> Result<Tensor> {
    let (_, frames, height, width) = video.dims4()?;
    let tiles = t > 0
        && h > 0
        && w > 0
        && frames > 0
        && height % h == 0
        && width % w == 0
        && (t == 1 || (frames - 1) % (t - 1) == 0);
    if !tiles {
        candle_core::bail!(
            "a latent grid of {t}x{h}x{w} does not tile {frames} frames of {width}x{height} as a causal VAE's does"
        );
    }
    let stride = match t {
        1 => frames,
        _ => ((frames - 1) / (t - 1)).max(1),
    };
    let (cell_h, cell_w) = (height / h, width / w);
    // (T, H, W): 2 on foreground pixels, 1 elsewhere.
    let pixels = foreground_weights(&video.unsqueeze(0)?, 1.0, max_fraction)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    let mut cells = vec![0f32; t * h * w];
    for frame in 0..frames {
        // Frame 0 alone makes latent frame 0; then each `stride` frames one more.
        let k = match frame {
            0 => 0,
            f => (f - 1) / stride + 1,
        }
        .min(t - 1);
        let plane = &pixels[frame * height * width..(frame + 1) * height * width];
        for (y, row) in plane.chunks_exact(width).enumerate() {
            for (x, weight) in row.iter().enumerate() {
                if *weight > 1.0 {
                    cells[(k * h + y / cell_h) * w + x / cell_w] = 1.0;
                }
            }
        }
    }
    Tensor::from_vec(cells, (1, t, h, w), video.device())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// A grey (3, T, H, W) video with one red pixel at (frame, y, x).
    fn one_dot(frames: usize, size: usize, (frame, y, x): (usize, usize, usize)) -> Tensor {
        let plane = size * size;
        let mut data = vec![0f32; 3 * frames * plane];
        let at = |c: usize| (c * frames + frame) * plane + y * size + x;
        data[at(0)] = 1.0;
        data[at(1)] = -1.0;
        data[at(2)] = -1.0;
        Tensor::from_vec(data, (3, frames, size, size), &Device::Cpu).unwrap()
    }

    fn marked(cells: &Tensor) -> Vec<(usize, usize, usize)> {
        let (_, t, h, w) = cells.dims4().unwrap();
        let v = cells.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        (0..t * h * w)
            .filter(|i| v[*i] > 0.0)
            .map(|i| (i / (h * w), i / w % h, i % w))
            .collect()
    }

    #[test]
    fn an_object_pixel_marks_the_cell_and_latent_frame_that_encode_it() {
        // 9 frames into 3 latent frames (stride 4), 16x16 pixels into 4x4 cells.
        let grid = (3, 4, 4);
        assert_eq!(
            marked(&object_cells(&one_dot(9, 16, (0, 5, 14)), grid, 1.0).unwrap()),
            [(0, 1, 3)]
        );
        assert_eq!(
            marked(&object_cells(&one_dot(9, 16, (1, 0, 0)), grid, 1.0).unwrap()),
            [(1, 0, 0)]
        );
        assert_eq!(
            marked(&object_cells(&one_dot(9, 16, (4, 15, 3)), grid, 1.0).unwrap()),
            [(1, 3, 0)]
        );
        assert_eq!(
            marked(&object_cells(&one_dot(9, 16, (5, 8, 8)), grid, 1.0).unwrap()),
            [(2, 2, 2)]
        );
        assert_eq!(
            marked(&object_cells(&one_dot(9, 16, (8, 3, 4)), grid, 1.0).unwrap()),
            [(2, 0, 1)]
        );
    }

    #[test]
    fn a_plain_video_has_no_object_cells_and_a_grid_that_does_not_tile_is_refused() {
        let grey = Tensor::zeros((3, 9, 16, 16), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(marked(&object_cells(&grey, (3, 4, 4), 1.0).unwrap()).is_empty());
        assert!(object_cells(&grey, (4, 4, 4), 1.0).is_err());
        assert!(object_cells(&grey, (3, 5, 4), 1.0).is_err());
        assert!(object_cells(&grey, (0, 4, 4), 1.0).is_err());
    }
}
