//! Patchify / unpatchify and the padding-mask resize, in the reference's exact element orders.

use candle_core::{Result, Tensor};

/// (B, C, T, H, W) -> (B, T/pt, (H/ps)(W/ps), C pt ps ps), features ordered (c, t, row, col) as the official
/// `b c (t r) (h m) (w n) -> b t h w (c r m n)`.
pub fn patchify(x: &Tensor, pt: usize, ps: usize) -> Result<Tensor> {
    let (b, c, t, h, w) = x.dims5()?;
    x.reshape(vec![b, c, t / pt, pt, h / ps, ps, w / ps, ps])?
        .permute(vec![0, 2, 4, 6, 1, 3, 5, 7])?
        .contiguous()?
        .reshape((b, t / pt, (h / ps) * (w / ps), c * pt * ps * ps))
}

/// (B, T', Hp Wp, ps ps pt C) -> (B, C, T' pt, Hp ps, Wp ps). The output features are packed (row, col, t, c),
/// not in patchify's order: the official `B T H W (p1 p2 t C) -> B C (T t) (H p1) (W p2)`.
pub fn unpatchify(x: &Tensor, grid_thw: [usize; 3], pt: usize, ps: usize) -> Result<Tensor> {
    let (b, _, _, features) = x.dims4()?;
    let [nt, nh, nw] = grid_thw;
    let c = features / (pt * ps * ps);
    x.reshape(vec![b, nt, nh, nw, ps, ps, pt, c])?
        .permute(vec![0, 7, 1, 6, 2, 4, 3, 5])?
        .contiguous()?
        .reshape((b, c, nt * pt, nh * ps, nw * ps))
}

/// Source index of PyTorch's `nearest` interpolation (torchvision `resize(..., NEAREST)` on tensors).
fn nearest_source(dst: usize, in_size: usize, out_size: usize) -> usize {
    if in_size == out_size {
        dst
    } else if out_size == 2 * in_size {
        dst >> 1
    } else {
        let scale = in_size as f32 / out_size as f32;
        ((dst as f32 * scale).floor() as usize).min(in_size - 1)
    }
}

/// Nearest-neighbour resize of the last two dimensions of `mask` (N, 1, H, W) to (height, width).
pub fn resize_nearest(mask: &Tensor, height: usize, width: usize) -> Result<Tensor> {
    let (_, _, h, w) = mask.dims4()?;
    let rows: Vec<u32> = (0..height)
        .map(|i| nearest_source(i, h, height) as u32)
        .collect();
    let cols: Vec<u32> = (0..width)
        .map(|i| nearest_source(i, w, width) as u32)
        .collect();
    let rows = Tensor::from_vec(rows, height, mask.device())?;
    let cols = Tensor::from_vec(cols, width, mask.device())?;
    mask.index_select(&rows, 2)?.index_select(&cols, 3)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn patchify_orders_channel_then_time_then_row_then_column() {
        let dev = Device::Cpu;
        // (1, 2, 2, 2, 2): value = c*8 + t*4 + h*2 + w
        let x = Tensor::arange(0f32, 16., &dev)
            .unwrap()
            .reshape((1, 2, 2, 2, 2))
            .unwrap();
        let p = patchify(&x, 2, 2).unwrap();
        assert_eq!(p.dims(), &[1, 1, 1, 16]);
        let v = p.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(v, (0..16).map(|i| i as f32).collect::<Vec<_>>());
    }

    #[test]
    fn unpatchify_reads_row_col_time_channel() {
        let dev = Device::Cpu;
        // One token, features packed (p1, p2, t, c) with ps = 2, pt = 1, c = 3.
        let x = Tensor::arange(0f32, 12., &dev)
            .unwrap()
            .reshape((1, 1, 1, 12))
            .unwrap();
        let y = unpatchify(&x, [1, 1, 1], 1, 2).unwrap();
        assert_eq!(y.dims(), &[1, 3, 1, 2, 2]);
        // y[c, 0, p1, p2] = (p1*2 + p2)*3 + c
        let v = y.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let expect: Vec<f32> = (0..3)
            .flat_map(|c| (0..4).map(move |p| (p * 3 + c) as f32))
            .collect();
        assert_eq!(v, expect);
    }

    #[test]
    fn nearest_matches_pytorch_rules() {
        assert_eq!(
            (0..4).map(|i| nearest_source(i, 8, 4)).collect::<Vec<_>>(),
            [0, 2, 4, 6]
        );
        assert_eq!(
            (0..4).map(|i| nearest_source(i, 2, 4)).collect::<Vec<_>>(),
            [0, 0, 1, 1]
        );
        assert_eq!(
            (0..3).map(|i| nearest_source(i, 7, 3)).collect::<Vec<_>>(),
            [0, 2, 4]
        );
    }
}
