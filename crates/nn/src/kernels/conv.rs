//! 3D convolution over frame-major video, `x` (B, T, Cin, H, W) -> (B, T', Cout, H', W'), spatial stride 1 with
//! symmetric zero padding, temporal stride s, and in time optionally `front` implicit zero frames before the
//! first (a causal convolution at the start of a clip; later chunks prepend their context frames instead), with
//! an optional bias. Each output frame is a sum over the kt temporal taps of im2col + GEMM of one input frame
//! (taps on the implicit zero frames are skipped), written straight into the output, its bias added while the
//! frame is in cache. rayon splits the work over runs of consecutive output frames, which share the im2col tile
//! of each input frame they read. A 3x3 kernel with padding 1 (the VAE's convolutions) computes the same sums by
//! Winograd's F(2x2, 3x3) instead ([`winograd`]).
//!
//! Backward: the input gradient of each input frame gathers, over the (tap, output frame) pairs that read it,
//! the 2D convolution of the output gradient with the flipped, transposed kernel ("full" padding), so frames
//! are again independent; the weight gradient sums GEMMs of the output gradient with the im2col tiles in fixed
//! groups of frames, added in order (bit-reproducible).

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::gemm::{gemm, View};
use super::storage::{f32_data, output, par_zeros, prepare, sum_in_order, tensor, with_f32};

mod winograd;

/// Output pixels per im2col tile (the tile is K x this many floats).
const TILE_PIXELS: usize = 1024;

/// Shapes of one convolution.
#[derive(Debug, Clone, Copy)]
struct Conv {
    b: usize,
    t_in: usize,
    cin: usize,
    h: usize,
    w: usize,
    cout: usize,
    kt: usize,
    kh: usize,
    kw: usize,
    stride_t: usize,
    ph: usize,
    pw: usize,
    /// Implicit zero frames before the first input frame.
    front: usize,
}

impl Conv {
    fn new(x: &[usize], k: &[usize], p: &Conv3d) -> Result<Self> {
        let (stride_t, (ph, pw), front) = (p.stride_t, p.padding, p.front);
        let (&[b, t_in, cin, h, w], &[cout, kc, kt, kh, kw]) = (x, k) else {
            candle_core::bail!("conv3d: x (B, T, Cin, H, W) and kernel (Cout, Cin, kt, kh, kw) expected, got {x:?} and {k:?}")
        };
        if kc != cin || kt == 0 || kh == 0 || kw == 0 || stride_t == 0 {
            candle_core::bail!("conv3d: kernel {k:?} does not fit input {x:?}");
        }
        if t_in + front < kt
            || front >= kt
            || h + 2 * ph < kh
            || w + 2 * pw < kw
            || ph >= kh
            || pw >= kw
        {
            candle_core::bail!(
                "conv3d: input {x:?} too small for kernel {k:?} with padding ({ph}, {pw}) and {front} zero frames in front"
            );
        }
        Ok(Self {
            b,
            t_in,
            cin,
            h,
            w,
            cout,
            kt,
            kh,
            kw,
            stride_t,
            ph,
            pw,
            front,
        })
    }

    fn t_out(&self) -> usize {
        (self.t_in + self.front - self.kt) / self.stride_t + 1
    }

    /// The input frame (within its clip) that tap `dt` of output frame `t` reads; None on an implicit zero frame.
    fn input_frame(&self, t: usize, dt: usize) -> Option<usize> {
        (t * self.stride_t + dt).checked_sub(self.front)
    }

    /// The input frames (within the clip) that output frames `o0..o0 + n` read over all their taps; n >= 1.
    fn input_frames(&self, o0: usize, n: usize) -> std::ops::Range<usize> {
        let first = (o0 * self.stride_t).saturating_sub(self.front);
        first..((o0 + n - 1) * self.stride_t + self.kt - self.front).min(self.t_in)
    }

    /// The output frame whose tap `dt` reads input frame `t`, if any.
    fn output_frame(&self, t: usize, dt: usize) -> Option<usize> {
        (t + self.front)
            .checked_sub(dt)
            .filter(|v| v % self.stride_t == 0)
            .map(|v| v / self.stride_t)
            .filter(|&o| o < self.t_out())
    }

    fn h_out(&self) -> usize {
        self.plane().h_out()
    }

    fn w_out(&self) -> usize {
        self.plane().w_out()
    }

    /// GEMM depth of one tap: Cin kh kw.
    fn k2(&self) -> usize {
        self.plane().k2()
    }

    fn out_shape(&self) -> Shape {
        Shape::from((self.b, self.t_out(), self.cout, self.h_out(), self.w_out()))
    }

    /// The input-gradient convolution: output gradient (Cout channels) -> input frame (Cin channels) with the
    /// flipped kernel and "full" padding.
    fn transposed(&self) -> Plane {
        Plane {
            cin: self.cout,
            h: self.h_out(),
            w: self.w_out(),
            kh: self.kh,
            kw: self.kw,
            ph: self.kh - 1 - self.ph,
            pw: self.kw - 1 - self.pw,
        }
    }

    fn plane(&self) -> Plane {
        Plane {
            cin: self.cin,
            h: self.h,
            w: self.w,
            kh: self.kh,
            kw: self.kw,
            ph: self.ph,
            pw: self.pw,
        }
    }
}

/// A 2D convolution of one frame: input (cin, h, w), kernel (kh, kw), padding (ph, pw), stride 1.
#[derive(Debug, Clone, Copy)]
struct Plane {
    cin: usize,
    h: usize,
    w: usize,
    kh: usize,
    kw: usize,
    ph: usize,
    pw: usize,
}

impl Plane {
    fn h_out(&self) -> usize {
        self.h + 2 * self.ph - self.kh + 1
    }

    fn w_out(&self) -> usize {
        self.w + 2 * self.pw - self.kw + 1
    }

    fn k2(&self) -> usize {
        self.cin * self.kh * self.kw
    }

    /// Output rows per im2col tile.
    fn tile_rows(&self) -> usize {
        (TILE_PIXELS / self.w_out().max(1)).clamp(1, self.h_out().max(1))
    }

    /// im2col of output rows `y0..y0 + rows`: `col` (k2, rows w_out), row (c, dy, dx), zeros outside the frame.
    fn im2col(&self, x: &[f32], y0: usize, rows: usize, col: &mut [f32]) {
        let (wo, n) = (self.w_out(), rows * self.w_out());
        for c in 0..self.cin {
            let frame = &x[c * self.h * self.w..(c + 1) * self.h * self.w];
            for dy in 0..self.kh {
                for dx in 0..self.kw {
                    let k = (c * self.kh + dy) * self.kw + dx;
                    let dst = &mut col[k * n..(k + 1) * n];
                    for r in 0..rows {
                        let out = &mut dst[r * wo..(r + 1) * wo];
                        let iy = (y0 + r + dy) as isize - self.ph as isize;
                        if iy < 0 || iy >= self.h as isize {
                            out.fill(0.0);
                            continue;
                        }
                        let src = &frame[iy as usize * self.w..(iy as usize + 1) * self.w];
                        // Output column ox reads input column ox + dx - pw.
                        let lo = self.pw.saturating_sub(dx).min(wo);
                        let hi = (self.w + self.pw).saturating_sub(dx).min(wo).max(lo);
                        out[..lo].fill(0.0);
                        out[hi..].fill(0.0);
                        out[lo..hi].copy_from_slice(&src[lo + dx - self.pw..hi + dx - self.pw]);
                    }
                }
            }
        }
    }

    /// Calls `f(first_pixel, pixels, col)` for each tile of output rows with the tile's im2col (k2, pixels).
    fn for_each_tile(
        &self,
        x: &[f32],
        col: &mut Vec<f32>,
        mut f: impl FnMut(usize, usize, &[f32]),
    ) {
        let (wo, ho, k2) = (self.w_out(), self.h_out(), self.k2());
        let rows = self.tile_rows();
        col.resize(k2 * rows * wo, 0.0);
        for y0 in (0..ho).step_by(rows) {
            let n = rows.min(ho - y0) * wo;
            self.im2col(x, y0, n / wo, &mut col[..k2 * n]);
            f(y0 * wo, n, &col[..k2 * n]);
        }
    }

    /// `out` (cout, h_out w_out) (+)= `kernel` (cout, k2) * im2col(`x`); the first call of a sum passes
    /// `accumulate = false`.
    fn conv(
        &self,
        x: &[f32],
        kernel: &[f32],
        cout: usize,
        out: &mut [f32],
        accumulate: bool,
        col: &mut Vec<f32>,
    ) {
        let (hw, k2) = (self.h_out() * self.w_out(), self.k2());
        self.for_each_tile(x, col, |first, n, tile| {
            gemm(
                &mut out[first..],
                hw,
                (cout, n, k2),
                View::rows(kernel, k2),
                View::rows(tile, n),
                accumulate,
                1.0,
            );
        });
    }

    /// `dw` (cout, k2) += `g` (cout, h_out w_out) * im2col(`x`)^T.
    fn weight_grad(&self, x: &[f32], g: &[f32], cout: usize, dw: &mut [f32], col: &mut Vec<f32>) {
        let (hw, k2) = (self.h_out() * self.w_out(), self.k2());
        self.for_each_tile(x, col, |first, n, tile| {
            let g_tile = View {
                data: &g[first..],
                rs: hw,
                cs: 1,
            };
            gemm(
                dw,
                k2,
                (cout, k2, n),
                g_tile,
                View::transposed(tile, n),
                true,
                1.0,
            );
        });
    }
}

/// Kernel (Cout, Cin, kt, kh, kw) -> per tap (kt, Cout, Cin kh kw).
fn taps(w: &[f32], c: &Conv) -> Vec<f32> {
    let (k2, khw) = (c.k2(), c.kh * c.kw);
    let mut out = vec![0f32; c.kt * c.cout * k2];
    for dt in 0..c.kt {
        for co in 0..c.cout {
            for ci in 0..c.cin {
                let src = ((co * c.cin + ci) * c.kt + dt) * khw;
                let dst = (dt * c.cout + co) * k2 + ci * khw;
                out[dst..dst + khw].copy_from_slice(&w[src..src + khw]);
            }
        }
    }
    out
}

/// Kernel (Cout, Cin, kt, kh, kw) -> per tap the flipped transpose (kt, Cin, Cout kh kw):
/// `[dt][ci][co][y][x] = w[co][ci][dt][kh-1-y][kw-1-x]`.
fn flipped_taps(w: &[f32], c: &Conv) -> Vec<f32> {
    let khw = c.kh * c.kw;
    let mut out = vec![0f32; c.kt * c.cin * c.cout * khw];
    for dt in 0..c.kt {
        for ci in 0..c.cin {
            for co in 0..c.cout {
                let src = ((co * c.cin + ci) * c.kt + dt) * khw;
                let dst = ((dt * c.cin + ci) * c.cout + co) * khw;
                for i in 0..khw {
                    out[dst + i] = w[src + khw - 1 - i];
                }
            }
        }
    }
    out
}

/// Output frames per work item of the forward pass, at most 8: an item builds each input frame's im2col tile once
/// for all of its output frames that read it (kt times fewer at stride 1 than frame by frame), and there are at
/// least two items per thread while the frames allow. Every output frame adds its taps in the same order for any
/// item size, so the result does not depend on the thread count.
fn frames_per_item(c: &Conv) -> usize {
    let items = 2 * rayon::current_num_threads();
    (c.b * c.t_out()).div_ceil(items).clamp(1, 8)
}

fn forward(x: &[f32], w: &[f32], bias: Option<&[f32]>, c: &Conv) -> Vec<f32> {
    let hw = c.h_out() * c.w_out();
    let (in_frame, out_frame) = (c.cin * c.h * c.w, c.cout * hw);
    let t_out = c.t_out();
    let mut out = par_zeros(c.b * t_out * out_frame);
    if out_frame == 0 || in_frame == 0 {
        return out;
    }
    let winograd = winograd::applies(c);
    let kernels = if winograd {
        winograd::transform_kernel(w, c)
    } else {
        taps(w, c)
    };
    let per = frames_per_item(c);
    out.par_chunks_mut(t_out * out_frame)
        .zip(x.par_chunks(c.t_in * in_frame))
        .for_each(|(out_b, x_b)| {
            out_b
                .par_chunks_mut(per * out_frame)
                .enumerate()
                .for_each_init(Vec::new, |col, (item, o)| {
                    if winograd {
                        winograd::forward_frames(x_b, &kernels, bias, c, item * per, o);
                        return;
                    }
                    forward_frames(x_b, &kernels, c, item * per, o, col);
                    if let Some(bias) = bias {
                        for frame in o.chunks_exact_mut(out_frame) {
                            for (row, &v) in frame.chunks_exact_mut(hw).zip(bias) {
                                row.iter_mut().for_each(|y| *y += v);
                            }
                        }
                    }
                });
        });
    out
}

/// Output frames `o0..` (as many as `out` holds, (n, Cout, h_out w_out)) of one clip `x` (T, Cin, H, W): tile by
/// tile of output rows, each input frame the item reads is im2col'd once and multiplied by the kernel tap of each
/// output frame that reads it, in ascending input frames, so each output frame sums its taps in ascending order.
fn forward_frames(
    x: &[f32],
    kernels: &[f32],
    c: &Conv,
    o0: usize,
    out: &mut [f32],
    col: &mut Vec<f32>,
) {
    let plane = c.plane();
    let (wo, ho, k2, hw) = (c.w_out(), c.h_out(), c.k2(), c.h_out() * c.w_out());
    let (in_frame, out_frame, tap) = (c.cin * c.h * c.w, c.cout * hw, c.cout * k2);
    let n = out.len() / out_frame;
    let rows = plane.tile_rows();
    col.resize(k2 * rows * wo, 0.0);
    let mut written = vec![false; n];
    for y0 in (0..ho).step_by(rows) {
        let pixels = rows.min(ho - y0) * wo;
        let tile = &mut col[..k2 * pixels];
        written.fill(false);
        for i in c.input_frames(o0, n) {
            plane.im2col(&x[i * in_frame..(i + 1) * in_frame], y0, pixels / wo, tile);
            for (j, done) in written.iter_mut().enumerate() {
                let Some(dt) = (i + c.front)
                    .checked_sub((o0 + j) * c.stride_t)
                    .filter(|&dt| dt < c.kt)
                else {
                    continue;
                };
                gemm(
                    &mut out[j * out_frame + y0 * wo..],
                    hw,
                    (c.cout, pixels, k2),
                    View::rows(&kernels[dt * tap..(dt + 1) * tap], k2),
                    View::rows(tile, pixels),
                    *done,
                    1.0,
                );
                *done = true;
            }
        }
    }
}

/// (dx, dw) from the output gradient `g`.
fn backward(x: &[f32], w: &[f32], g: &[f32], c: &Conv) -> (Vec<f32>, Vec<f32>) {
    let (in_frame, out_frame) = (c.cin * c.h * c.w, c.cout * c.h_out() * c.w_out());
    let (t_out, k2) = (c.t_out(), c.k2());
    // dx: each input frame from the output frames whose window covers it.
    let back = c.transposed();
    let flipped = flipped_taps(w, c);
    let kk = c.cout * c.kh * c.kw;
    let mut dx = vec![0f32; c.b * c.t_in * in_frame];
    if in_frame > 0 {
        dx.par_chunks_mut(in_frame)
            .enumerate()
            .for_each_init(Vec::new, |col, (i, d)| {
                let (b, t) = (i / c.t_in, i % c.t_in);
                let mut first = true;
                for dt in 0..c.kt {
                    let Some(o) = c.output_frame(t, dt) else {
                        continue;
                    };
                    let frame = b * t_out + o;
                    let kernel = &flipped[dt * c.cin * kk..(dt + 1) * c.cin * kk];
                    back.conv(
                        &g[frame * out_frame..(frame + 1) * out_frame],
                        kernel,
                        c.cin,
                        d,
                        !first,
                        col,
                    );
                    first = false;
                }
                if first {
                    d.fill(0.0);
                }
            });
    }
    // dw: fixed groups of output frames, partial sums added in order.
    let plane = c.plane();
    let frames = c.b * t_out;
    let group = frames.div_ceil(8).max(1);
    let width = c.kt * c.cout * k2;
    let partials: Vec<Vec<f32>> = (0..frames.div_ceil(group))
        .into_par_iter()
        .map(|gi| {
            let mut acc = vec![0f32; width];
            let mut col = Vec::new();
            for i in gi * group..((gi + 1) * group).min(frames) {
                let (b, t) = (i / t_out, i % t_out);
                let gf = &g[i * out_frame..(i + 1) * out_frame];
                for dt in 0..c.kt {
                    let Some(f) = c.input_frame(t, dt) else {
                        continue;
                    };
                    let frame = b * c.t_in + f;
                    let dw_tap = &mut acc[dt * c.cout * k2..(dt + 1) * c.cout * k2];
                    plane.weight_grad(
                        &x[frame * in_frame..(frame + 1) * in_frame],
                        gf,
                        c.cout,
                        dw_tap,
                        &mut col,
                    );
                }
            }
            acc
        })
        .collect();
    // Back from per-tap (kt, Cout, Cin kh kw) to the kernel's (Cout, Cin, kt, kh, kw).
    let per_tap = sum_in_order(partials, width);
    let khw = c.kh * c.kw;
    let mut dw = vec![0f32; width];
    for dt in 0..c.kt {
        for co in 0..c.cout {
            for ci in 0..c.cin {
                let src = (dt * c.cout + co) * k2 + ci * khw;
                let dst = ((co * c.cin + ci) * c.kt + dt) * khw;
                dw[dst..dst + khw].copy_from_slice(&per_tap[src..src + khw]);
            }
        }
    }
    (dx, dw)
}

/// The settings of a [`conv3d_with`]: temporal stride, spatial zero padding (ph, pw) (each below the kernel
/// size), and implicit zero frames in front of the input (below kt).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv3d {
    pub stride_t: usize,
    pub padding: (usize, usize),
    pub front: usize,
}

impl Conv3d {
    /// (dx, dw, db when `bias`) from the output gradient.
    fn gradients(
        &self,
        x: &Tensor,
        w: &Tensor,
        grad: &Tensor,
        bias: bool,
    ) -> Result<(Tensor, Tensor, Option<Tensor>)> {
        let c = Conv::new(x.dims(), w.dims(), self)?;
        let ((dx, dw), db) = with_f32(x, |x| {
            with_f32(w, |w| {
                with_f32(grad, |g| {
                    (backward(x, w, g, &c), bias.then(|| bias_grad(g, &c)))
                })
            })
        })???;
        let db = db.map(|db| tensor(db, &Shape::from(c.cout))).transpose()?;
        Ok((tensor(dx, x.shape())?, tensor(dw, w.shape())?, db))
    }
}

/// The bias gradient: the output gradient summed per channel over frames and pixels.
fn bias_grad(g: &[f32], c: &Conv) -> Vec<f32> {
    let hw = c.h_out() * c.w_out();
    let mut db = vec![0f32; c.cout];
    for frame in g.chunks_exact((c.cout * hw).max(1)) {
        for (d, row) in db.iter_mut().zip(frame.chunks_exact(hw.max(1))) {
            *d += row.iter().sum::<f32>();
        }
    }
    db
}

impl CustomOp2 for Conv3d {
    fn name(&self) -> &'static str {
        "orrery-conv3d"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let c = Conv::new(xl.dims(), wl.dims(), self)?;
        let (x, w) = (
            f32_data(xs, xl, CustomOp2::name(self))?,
            f32_data(ws, wl, CustomOp2::name(self))?,
        );
        Ok(output(forward(x, w, None, &c), &c.out_shape()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (dx, dw, _) = self.gradients(x, w, grad, false)?;
        Ok((Some(dx), Some(dw)))
    }
}

impl CustomOp3 for Conv3d {
    fn name(&self) -> &'static str {
        "orrery-conv3d-bias"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let name = CustomOp3::name(self);
        let c = Conv::new(xl.dims(), wl.dims(), self)?;
        let bias = f32_data(bs, bl, name)?;
        if bias.len() != c.cout {
            candle_core::bail!(
                "conv3d: bias of {} for {} output channels",
                bias.len(),
                c.cout
            );
        }
        let (x, w) = (f32_data(xs, xl, name)?, f32_data(ws, wl, name)?);
        Ok(output(forward(x, w, Some(bias), &c), &c.out_shape()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (dx, dw, db) = self.gradients(x, w, grad, true)?;
        Ok((Some(dx), Some(dw), db))
    }
}

/// 3D convolution of frame-major video: `x` (B, T, Cin, H, W), `kernel` (Cout, Cin, kt, kh, kw) ->
/// (B, (T - kt) / stride_t + 1, Cout, H + 2 ph - kh + 1, W + 2 pw - kw + 1). Spatial stride 1, zero padding
/// `padding` = (ph, pw) (each below the kernel size), no temporal padding. Float32 CPU tensors; no bias.
pub fn conv3d(
    x: &Tensor,
    kernel: &Tensor,
    stride_t: usize,
    padding: (usize, usize),
) -> Result<Tensor> {
    let p = Conv3d {
        stride_t,
        padding,
        front: 0,
    };
    conv3d_with(x, kernel, None, p)
}

/// [`conv3d`] with `p.front` zero frames before the input (T + front - kt frames in the window count) and a bias
/// (Cout) added when given.
pub fn conv3d_with(
    x: &Tensor,
    kernel: &Tensor,
    bias: Option<&Tensor>,
    p: Conv3d,
) -> Result<Tensor> {
    let (x, kernel) = (prepare(x)?, prepare(kernel)?);
    match bias {
        None => x.apply_op2(&kernel, p),
        Some(b) => x.apply_op3(&kernel, &prepare(&b.flatten_all()?)?, p),
    }
}
