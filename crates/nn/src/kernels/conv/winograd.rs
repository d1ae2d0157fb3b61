//! The forward pass of a 3x3 convolution with one pixel of zero padding ("same" size) by Winograd's F(2x2, 3x3):
//! each 2x2 block of output pixels is A^T [sum over input channels and taps of (G g G^T) . (B^T d B)] A, with d the
//! 4x4 input patch around the block and g a 3x3 kernel. The 16 transformed positions turn into 16 GEMMs of
//! (Cout, kt Cin) x (kt Cin, tiles) that take 36 / 16 = 2.25 times fewer multiplications than im2col's, and the
//! input is transformed once per frame instead of being copied nine times. The transforms only add, subtract and
//! halve, so the result differs from the direct sum by rounding alone.
//!
//! Tiles are processed in bands of tile rows, so an item's transformed frames stay near the cache; a band's
//! transformed input frames lie next to each other, so the kt taps of an output frame are one GEMM.

use std::cell::RefCell;

use super::super::gemm::{gemm, View};
use super::super::storage::multiversion;
use super::Conv;

/// Positions of the transformed 4x4 tile.
const XI: usize = 16;

/// Output tiles (2x2 pixels) per band, at least one row of tiles (a band of 64, 128 or 256 decoded 33 frames at
/// 64x64 in 152, 149 and 156 ms, medians of 24 runs).
const BAND_TILES: usize = 128;

/// Work buffers of one thread, kept between calls: every element a call reads it has written first, so they grow
/// but are never cleared.
#[derive(Default)]
struct Scratch {
    /// Transformed input of a band: (16, frames Cin, tiles).
    v: Vec<f32>,
    /// Transformed output of one frame's band: (16, Cout, tiles).
    m: Vec<f32>,
    /// A band's padded input rows and one tile row's row transform, or one channel's output pixels of a band.
    rows: Vec<f32>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::default();
}

/// The first `n` elements of `buf`, grown (zero-filled) when shorter.
fn at_least(buf: &mut Vec<f32>, n: usize) -> &mut [f32] {
    if buf.len() < n {
        buf.resize(n, 0.0);
    }
    &mut buf[..n]
}

/// Whether the convolution is one this path computes: a 3x3 spatial kernel with padding 1.
pub(super) fn applies(c: &Conv) -> bool {
    (c.kh, c.kw, c.ph, c.pw) == (3, 3, 1, 1)
}

/// Kernel (Cout, Cin, kt, 3, 3) -> U (16, Cout, kt Cin): G g G^T of each 3x3 kernel, its 4x4 positions outermost.
pub(super) fn transform_kernel(w: &[f32], c: &Conv) -> Vec<f32> {
    const G: [[f32; 3]; 4] = [
        [1.0, 0.0, 0.0],
        [0.5, 0.5, 0.5],
        [0.5, -0.5, 0.5],
        [0.0, 0.0, 1.0],
    ];
    let k = c.kt * c.cin;
    let mut u = vec![0f32; XI * c.cout * k];
    for co in 0..c.cout {
        for ci in 0..c.cin {
            for dt in 0..c.kt {
                let g = &w[((co * c.cin + ci) * c.kt + dt) * 9..][..9];
                // G g: (4, 3).
                let gg: [[f32; 3]; 4] = std::array::from_fn(|p| {
                    std::array::from_fn(|j| (0..3).map(|i| G[p][i] * g[i * 3 + j]).sum())
                });
                for p in 0..4 {
                    for q in 0..4 {
                        let value: f32 = (0..3).map(|j| gg[p][j] * G[q][j]).sum();
                        u[((p * 4 + q) * c.cout + co) * k + dt * c.cin + ci] = value;
                    }
                }
            }
        }
    }
    u
}

/// Output frames `o0..` (as many as `out` holds, (n, Cout, H, W)) of one clip `x` (T, Cin, H, W), with `u` from
/// [`transform_kernel`] and the bias added.
pub(super) fn forward_frames(
    x: &[f32],
    u: &[f32],
    bias: Option<&[f32]>,
    c: &Conv,
    o0: usize,
    out: &mut [f32],
) {
    SCRATCH.with(|s| match s.try_borrow_mut() {
        Ok(mut s) => frames_with(x, u, bias, c, o0, out, &mut s),
        // Not reached (nothing below calls back into rayon), but a fresh buffer is always correct.
        Err(_) => frames_with(x, u, bias, c, o0, out, &mut Scratch::default()),
    })
}

fn frames_with(
    x: &[f32],
    u: &[f32],
    bias: Option<&[f32]>,
    c: &Conv,
    o0: usize,
    out: &mut [f32],
    s: &mut Scratch,
) {
    let (h, w, hw) = (c.h, c.w, c.h * c.w);
    let (th, tw) = (h.div_ceil(2), w.div_ceil(2));
    let (in_frame, out_frame, k_all) = (c.cin * hw, c.cout * hw, c.kt * c.cin);
    let n = out.len() / out_frame;
    let frames_in = c.input_frames(o0, n);
    let (first_in, rows_in) = (frames_in.start, frames_in.len() * c.cin);
    let band = (BAND_TILES / tw).clamp(1, th);
    for ty0 in (0..th).step_by(band) {
        let tiles = band.min(th - ty0) * tw;
        let v = at_least(&mut s.v, XI * rows_in * tiles);
        let rows = at_least(&mut s.rows, (2 * (tiles / tw) + 6) * 2 * (tw + 1));
        for (r, plane) in x[first_in * in_frame..frames_in.end * in_frame]
            .chunks_exact(hw)
            .enumerate()
        {
            input_tiles(
                plane,
                h,
                w,
                ty0,
                tiles / tw,
                &mut v[r * tiles..],
                rows_in * tiles,
                rows,
            );
        }
        let m = at_least(&mut s.m, XI * c.cout * tiles);
        for (j, frame) in out.chunks_exact_mut(out_frame).enumerate() {
            let o = o0 + j;
            // Taps on the implicit zero frames are skipped; the later ones all read frames of the clip.
            let dt_first = c.front.saturating_sub(o * c.stride_t);
            let row0 = (o * c.stride_t + dt_first - c.front - first_in) * c.cin;
            let k = (c.kt - dt_first) * c.cin;
            for xi in 0..XI {
                let a = View {
                    data: &u[xi * c.cout * k_all + dt_first * c.cin..],
                    rs: k_all,
                    cs: 1,
                };
                let b = View::rows(&v[(xi * rows_in + row0) * tiles..], tiles);
                gemm(
                    &mut m[xi * c.cout * tiles..],
                    tiles,
                    (c.cout, tiles, k),
                    a,
                    b,
                    false,
                    1.0,
                );
            }
            let rows = at_least(&mut s.rows, 4 * tiles);
            output_tiles(m, c.cout, h, w, ty0, tiles, bias, frame, rows);
        }
    }
}

multiversion! {
    /// B^T d B of the 4x4 patch of each tile in tile rows `ty0..ty0 + rows` of one channel `plane` (H, W)
    /// (input rows 2ty - 1.., columns 2tx - 1.., zeros outside): position xi of tile t goes to
    /// `v[xi * stride + t]`. `buf` (2 rows + 6) (2 (tw + 1)) holds the band's input rows, each split into its
    /// even and odd padded columns (input columns 2j - 1 and 2j), so that each step is an add or subtract of
    /// contiguous runs of tiles, and the row transform of one tile row.
    fn input_tiles(
        plane: &[f32],
        h: usize,
        w: usize,
        ty0: usize,
        rows: usize,
        v: &mut [f32],
        stride: usize,
        buf: &mut [f32],
    ) {
        let tw = w.div_ceil(2);
        let n = tw + 1;
        for (k, row) in buf[..(2 * rows + 2) * 2 * n].chunks_exact_mut(2 * n).enumerate() {
            let (even, odd) = row.split_at_mut(n);
            even.fill(0.0);
            odd.fill(0.0);
            let Some(iy) = (2 * ty0 + k).checked_sub(1).filter(|&iy| iy < h) else {
                continue;
            };
            let src = &plane[iy * w..(iy + 1) * w];
            for ((pair, o), e) in src.chunks_exact(2).zip(odd.iter_mut()).zip(&mut even[1..]) {
                *o = pair[0];
                *e = pair[1];
            }
            if w % 2 == 1 {
                odd[tw - 1] = src[w - 1];
            }
        }
        // After the band's rows: B^T d of one tile row, 4 rows of 2 (tw + 1).
        let (band, bt) = buf.split_at_mut((2 * rows + 2) * 2 * n);
        for r in 0..rows {
            let d = &band[2 * r * 2 * n..(2 * r + 4) * 2 * n];
            let (d0, rest) = d.split_at(2 * n);
            let (d1, rest) = rest.split_at(2 * n);
            let (d2, d3) = rest.split_at(2 * n);
            // B^T d: rows d0 - d2, d1 + d2, d2 - d1, d1 - d3.
            let (b0, rest) = bt.split_at_mut(2 * n);
            let (b1, rest) = rest.split_at_mut(2 * n);
            let (b2, b3) = rest.split_at_mut(2 * n);
            let b3 = &mut b3[..2 * n];
            for c in 0..2 * n {
                b0[c] = d0[c] - d2[c];
                b1[c] = d1[c] + d2[c];
                b2[c] = d2[c] - d1[c];
                b3[c] = d1[c] - d3[c];
            }
            // (B^T d) B over each tile's columns (e[tx], o[tx], e[tx + 1], o[tx + 1]):
            // e0 - e1, o0 + e1, e1 - o0, o0 - o1.
            let at = r * tw;
            for (i, row) in bt.chunks_exact(2 * n).enumerate() {
                let (e0, e1, o0, o1) = (&row[..tw], &row[1..n], &row[n..n + tw], &row[n + 1..]);
                let base = 4 * i * stride + at;
                let y = &mut v[base..base + tw];
                for t in 0..tw {
                    y[t] = e0[t] - e1[t];
                }
                let y = &mut v[base + stride..base + stride + tw];
                for t in 0..tw {
                    y[t] = o0[t] + e1[t];
                }
                let y = &mut v[base + 2 * stride..base + 2 * stride + tw];
                for t in 0..tw {
                    y[t] = e1[t] - o0[t];
                }
                let y = &mut v[base + 3 * stride..base + 3 * stride + tw];
                for t in 0..tw {
                    y[t] = o0[t] - o1[t];
                }
            }
        }
    }
}

multiversion! {
    /// A^T m A of each tile of the band starting at tile row `ty0` (`m` (16, Cout, tiles)), plus the bias, into
    /// the output `frame` (Cout, H, W); pixels past an odd edge are dropped. `buf` (4 tiles) holds one channel's
    /// four output pixels of each tile.
    fn output_tiles(
        m: &[f32],
        cout: usize,
        h: usize,
        w: usize,
        ty0: usize,
        tiles: usize,
        bias: Option<&[f32]>,
        frame: &mut [f32],
        buf: &mut [f32],
    ) {
        let tw = w.div_ceil(2);
        let (y0, rest) = buf.split_at_mut(tiles);
        let (y1, rest) = rest.split_at_mut(tiles);
        let (y2, y3) = rest.split_at_mut(tiles);
        let y3 = &mut y3[..tiles];
        for (co, plane) in frame.chunks_exact_mut(h * w).enumerate() {
            let b = bias.map_or(0.0, |b| b[co]);
            let pos: [&[f32]; XI] = std::array::from_fn(|xi| &m[(xi * cout + co) * tiles..][..tiles]);
            for t in 0..tiles {
                let g: [f32; XI] = std::array::from_fn(|xi| pos[xi][t]);
                // A^T m: rows m0 + m1 + m2 and m1 - m2 - m3 (of four positions each); then the same over columns.
                let s0: [f32; 4] = std::array::from_fn(|q| g[q] + g[4 + q] + g[8 + q]);
                let s1: [f32; 4] = std::array::from_fn(|q| g[4 + q] - g[8 + q] - g[12 + q]);
                y0[t] = s0[0] + s0[1] + s0[2] + b;
                y1[t] = s0[1] - s0[2] - s0[3] + b;
                y2[t] = s1[0] + s1[1] + s1[2] + b;
                y3[t] = s1[1] - s1[2] - s1[3] + b;
            }
            for r in 0..tiles / tw {
                let oy = 2 * (ty0 + r);
                let tile_row = r * tw..(r + 1) * tw;
                for (a, (left, right)) in [(&y0[tile_row.clone()], &y1[tile_row.clone()]), (&y2[tile_row.clone()], &y3[tile_row])]
                    .into_iter()
                    .enumerate()
                {
                    if oy + a >= h {
                        continue;
                    }
                    let row = &mut plane[(oy + a) * w..(oy + a + 1) * w];
                    for (pair, (l, r)) in row.chunks_exact_mut(2).zip(left.iter().zip(right)) {
                        pair[0] = *l;
                        pair[1] = *r;
                    }
                    if w % 2 == 1 {
                        row[w - 1] = left[tw - 1];
                    }
                }
            }
        }
    }
}
