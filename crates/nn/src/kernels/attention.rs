//! Fused scaled dot-product attention (flash-attention style): queries in blocks of `BQ` rows, keys in blocks
//! of `BK` with an online softmax, so memory is O(BQ x BK) per thread instead of the (Lq x Lk) score matrix.
//! The forward keeps each row's log-sum-exp; the backward recomputes the probabilities block by block from it
//! (flash-attention 2's backward). Tiles are multiplied with a single-threaded GEMM; rayon splits (batch, head,
//! query-block) items forward and (batch, head) items backward.

use std::sync::Mutex;

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::gemm::{gemm, View};
use super::math::{dot, exp, max, sum};
use super::storage::{f32_data, multiversion, output, prepare, tensor, with_f32};

/// Query rows per block.
const BQ: usize = 64;
/// Keys per block: one block covers a 512-token sequence, so short sequences never rescale.
const BK: usize = 512;

/// (batch x heads, query length, key length, head dim)
#[derive(Debug, Clone, Copy)]
struct Dims {
    bh: usize,
    lq: usize,
    lk: usize,
    dh: usize,
}

impl Dims {
    fn new(q: &[usize], k: &[usize], v: &[usize]) -> Result<Self> {
        let (&[b, h, lq, dh], &[kb, kh, lk, kd]) = (q, k) else {
            candle_core::bail!("attention: q and k must be (B, H, L, Dh), got {q:?} and {k:?}")
        };
        if [kb, kh, kd] != [b, h, dh] || v != k {
            candle_core::bail!("attention: q {q:?}, k {k:?}, v {v:?} do not fit together");
        }
        if lk == 0 || dh == 0 {
            candle_core::bail!("attention: no keys or empty heads ({k:?})");
        }
        Ok(Self {
            bh: b * h,
            lq,
            lk,
            dh,
        })
    }
}

multiversion! {
    /// Online-softmax step over one score tile `s` (rows of `bk`): updates each row's running max `m` and sum
    /// `l`, rescales the accumulator rows `acc` (rows of `dh`) and leaves the tile's probabilities in `s`.
    fn online_softmax_tile(s: &mut [f32], bk: usize, m: &mut [f32], l: &mut [f32], acc: &mut [f32], dh: usize) {
        for (((row, mi), li), ai) in s.chunks_exact_mut(bk).zip(m.iter_mut()).zip(l.iter_mut()).zip(acc.chunks_exact_mut(dh)) {
            let new_max = mi.max(max(row));
            let alpha = exp(*mi - new_max);
            row.iter_mut().for_each(|p| *p = exp(*p - new_max));
            *li = *li * alpha + sum(row);
            ai.iter_mut().for_each(|a| *a *= alpha);
            *mi = new_max;
        }
    }
}

multiversion! {
    /// Backward tile: `p = exp(s - lse)` in place of `s`, and `dp` becomes `ds = p (dp - delta) scale`.
    fn backward_tile(s: &mut [f32], dp: &mut [f32], bk: usize, lse: &[f32], delta: &[f32], scale: f32) {
        for (((srow, drow), &lse), &delta) in s.chunks_exact_mut(bk).zip(dp.chunks_exact_mut(bk)).zip(lse).zip(delta) {
            for (p, d) in srow.iter_mut().zip(drow.iter_mut()) {
                *p = exp(*p - lse);
                *d = *p * (*d - delta) * scale;
            }
        }
    }
}

/// Forward of one (batch, head): `o` (lq, dh) and `lse` (lq) from `q` (lq, dh), `k`/`v` (lk, dh).
fn forward_head(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    o: &mut [f32],
    lse: &mut [f32],
    d: Dims,
    scale: f32,
) {
    let dh = d.dh;
    o.par_chunks_mut(BQ * dh)
        .zip(lse.par_chunks_mut(BQ))
        .enumerate()
        .for_each(|(qb, (o_blk, lse_blk))| {
            let bq = lse_blk.len();
            let q_blk = &q[qb * BQ * dh..(qb * BQ + bq) * dh];
            let mut s = vec![0f32; bq * BK.min(d.lk)];
            let mut m = vec![f32::NEG_INFINITY; bq];
            let mut l = vec![0f32; bq];
            o_blk.fill(0.0);
            for k0 in (0..d.lk).step_by(BK) {
                let bk = BK.min(d.lk - k0);
                let tile = &mut s[..bq * bk];
                let (k_blk, v_blk) = (&k[k0 * dh..(k0 + bk) * dh], &v[k0 * dh..(k0 + bk) * dh]);
                gemm(
                    tile,
                    bk,
                    (bq, bk, dh),
                    View::rows(q_blk, dh),
                    View::transposed(k_blk, dh),
                    false,
                    scale,
                );
                online_softmax_tile(tile, bk, &mut m, &mut l, o_blk, dh);
                gemm(
                    o_blk,
                    dh,
                    (bq, dh, bk),
                    View::rows(tile, bk),
                    View::rows(v_blk, dh),
                    true,
                    1.0,
                );
            }
            for ((row, &li), (lse, &mi)) in o_blk
                .chunks_exact_mut(dh)
                .zip(&l)
                .zip(lse_blk.iter_mut().zip(&m))
            {
                row.iter_mut().for_each(|a| *a /= li);
                *lse = mi + li.ln();
            }
        });
}

/// Gradients of one (batch, head). `dq` (lq, dh), `dk`/`dv` (lk, dh) are written.
#[allow(clippy::too_many_arguments)]
fn backward_head(
    (q, k, v): (&[f32], &[f32], &[f32]),
    (o, go, lse): (&[f32], &[f32], &[f32]),
    (dq, dk, dv): (&mut [f32], &mut [f32], &mut [f32]),
    d: Dims,
    scale: f32,
) {
    let dh = d.dh;
    // delta_i = sum_j dO_ij O_ij
    let delta: Vec<f32> = o
        .chunks_exact(dh)
        .zip(go.chunks_exact(dh))
        .map(|(a, b)| dot(a, b))
        .collect();
    dq.fill(0.0);
    dk.fill(0.0);
    dv.fill(0.0);
    let bk_max = BK.min(d.lk);
    let mut s = vec![0f32; BQ * bk_max];
    let mut dp = vec![0f32; BQ * bk_max];
    for q0 in (0..d.lq).step_by(BQ) {
        let bq = BQ.min(d.lq - q0);
        let rows = q0 * dh..(q0 + bq) * dh;
        let (q_blk, go_blk) = (&q[rows.clone()], &go[rows.clone()]);
        for k0 in (0..d.lk).step_by(BK) {
            let bk = BK.min(d.lk - k0);
            let keys = k0 * dh..(k0 + bk) * dh;
            let (k_blk, v_blk) = (&k[keys.clone()], &v[keys.clone()]);
            let (s_t, dp_t) = (&mut s[..bq * bk], &mut dp[..bq * bk]);
            gemm(
                s_t,
                bk,
                (bq, bk, dh),
                View::rows(q_blk, dh),
                View::transposed(k_blk, dh),
                false,
                scale,
            );
            gemm(
                dp_t,
                bk,
                (bq, bk, dh),
                View::rows(go_blk, dh),
                View::transposed(v_blk, dh),
                false,
                1.0,
            );
            backward_tile(s_t, dp_t, bk, &lse[q0..q0 + bq], &delta[q0..q0 + bq], scale);
            // s_t = P, dp_t = dS (scale folded in).
            gemm(
                &mut dv[keys.clone()],
                dh,
                (bk, dh, bq),
                View::transposed(s_t, bk),
                View::rows(go_blk, dh),
                true,
                1.0,
            );
            gemm(
                &mut dq[rows.clone()],
                dh,
                (bq, dh, bk),
                View::rows(dp_t, bk),
                View::rows(k_blk, dh),
                true,
                1.0,
            );
            gemm(
                &mut dk[keys],
                dh,
                (bk, dh, bq),
                View::transposed(dp_t, bk),
                View::rows(q_blk, dh),
                true,
                1.0,
            );
        }
    }
}

struct FlashAttention {
    scale: f32,
    /// Each query row's log-sum-exp of scores, saved by the forward for the backward.
    lse: Mutex<Option<Vec<f32>>>,
}

impl CustomOp3 for FlashAttention {
    fn name(&self) -> &'static str {
        "orrery-flash-attention"
    }

    fn cpu_fwd(
        &self,
        qs: &CpuStorage,
        ql: &Layout,
        ks: &CpuStorage,
        kl: &Layout,
        vs: &CpuStorage,
        vl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let d = Dims::new(ql.dims(), kl.dims(), vl.dims())?;
        let name = self.name();
        let (q, k, v) = (
            f32_data(qs, ql, name)?,
            f32_data(ks, kl, name)?,
            f32_data(vs, vl, name)?,
        );
        let mut o = vec![0f32; d.bh * d.lq * d.dh];
        let mut lse = vec![0f32; d.bh * d.lq];
        let (qn, kn) = (d.lq * d.dh, d.lk * d.dh);
        if qn > 0 {
            o.par_chunks_mut(qn)
                .zip(lse.par_chunks_mut(d.lq))
                .enumerate()
                .for_each(|(i, (o, lse))| {
                    let kv = i * kn..(i + 1) * kn;
                    forward_head(
                        &q[i * qn..(i + 1) * qn],
                        &k[kv.clone()],
                        &v[kv],
                        o,
                        lse,
                        d,
                        self.scale,
                    )
                });
        }
        *self
            .lse
            .lock()
            .map_err(|_| candle_core::Error::Msg("attention: poisoned lock".into()))? = Some(lse);
        Ok(output(o, ql.shape()))
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let d = Dims::new(q.dims(), k.dims(), v.dims())?;
        let lse = self
            .lse
            .lock()
            .map_err(|_| candle_core::Error::Msg("attention: poisoned lock".into()))?
            .clone()
            .ok_or_else(|| candle_core::Error::Msg("attention: backward before forward".into()))?;
        let (qn, kn) = (d.lq * d.dh, d.lk * d.dh);
        let mut dq = vec![0f32; d.bh * qn];
        let mut dk = vec![0f32; d.bh * kn];
        let mut dv = vec![0f32; d.bh * kn];
        with_f32(q, |q| {
            with_f32(k, |k| {
                with_f32(v, |v| {
                    with_f32(res, |o| {
                        with_f32(grad, |go| {
                            if qn == 0 {
                                return;
                            }
                            dq.par_chunks_mut(qn)
                                .zip(dk.par_chunks_mut(kn).zip(dv.par_chunks_mut(kn)))
                                .enumerate()
                                .for_each(|(i, (dq, (dk, dv)))| {
                                    let (qr, kr) = (i * qn..(i + 1) * qn, i * kn..(i + 1) * kn);
                                    let lse = &lse[i * d.lq..(i + 1) * d.lq];
                                    backward_head(
                                        (&q[qr.clone()], &k[kr.clone()], &v[kr]),
                                        (&o[qr.clone()], &go[qr], lse),
                                        (dq, dk, dv),
                                        d,
                                        self.scale,
                                    )
                                })
                        })
                    })
                })
            })
        })?????;
        Ok((
            Some(tensor(dq, q.shape())?),
            Some(tensor(dk, k.shape())?),
            Some(tensor(dv, v.shape())?),
        ))
    }
}

/// Softmax attention `softmax(q k^T / sqrt(Dh)) v` without a mask, fused: `q` (B, H, Lq, Dh), `k`/`v`
/// (B, H, Lk, Dh) float32 CPU tensors -> (B, H, Lq, Dh).
pub fn flash_attention(q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Tensor> {
    let dh = q.dims().last().copied().unwrap_or(1).max(1);
    let op = FlashAttention {
        scale: 1.0 / (dh as f32).sqrt(),
        lse: Mutex::new(None),
    };
    prepare(q)?.apply_op3(&prepare(k)?, &prepare(v)?, op)
}
