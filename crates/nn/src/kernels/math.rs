//! Branch-free float32 elementary functions that auto-vectorise (libm's do not).

/// e^x to about 2 ulp (Cephes' expf polynomial after range reduction by ln 2); 0 below -87.3, clamped at
/// e^88.7 above.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding and subtracting 1.5 * 2^23 rounds to the nearest integer without a rounding instruction.
    const ROUND: f32 = 12_582_912.0;
    let xc = x.clamp(-87.3, 88.7);
    let shifted = xc * LOG2E + ROUND;
    let n = shifted - ROUND;
    let r = xc - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4_f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let e = p * r * r + r + 1.0;
    // n's integer value sits in the low mantissa bits of `shifted` (1.5 * 2^23 + n): integer arithmetic on the
    // bits builds 2^n without a float-to-int conversion (which does not vectorise).
    let n_bits = shifted.to_bits().wrapping_sub(ROUND.to_bits());
    let scale = f32::from_bits(n_bits.wrapping_add(127) << 23);
    if x < -87.3 {
        0.0
    } else {
        e * scale
    }
}

/// erf(x), absolute error below 6e-7 in float32 (Abramowitz & Stegun 7.1.26: 1.5e-7, plus rounding).
#[inline(always)]
pub(crate) fn erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let mut p = 1.061_405_4_f32;
    p = p * t - 1.453_152_1;
    p = p * t + 1.421_413_8;
    p = p * t - 0.284_496_74;
    p = p * t + 0.254_829_6;
    let y = 1.0 - p * t * exp(-a * a);
    y.copysign(x)
}

/// tanh(x) = 1 - 2 / (e^{2x} + 1), with |x| clamped at 9 (where tanh is 1 in float32).
#[inline(always)]
pub(crate) fn tanh(x: f32) -> f32 {
    let e = exp(2.0 * x.clamp(-9.0, 9.0));
    1.0 - 2.0 / (e + 1.0)
}

/// The logistic function 1 / (1 + e^{-x}).
#[inline(always)]
pub(crate) fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// Lanes of the reductions below: float additions do not reassociate, so a single running sum would keep a loop
/// scalar; eight independent partial sums vectorise (one AVX register).
const LANES: usize = 8;

/// Sum of `x`, in eight interleaved partial sums.
#[inline(always)]
pub(crate) fn sum(x: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for i in 0..LANES {
            acc[i] += c[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Dot product of `a` and `b` (equal lengths), in eight interleaved partial sums.
#[inline(always)]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..LANES {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `sum (x - mean)^2`, in eight partial sums: the two-pass variance (E[x^2] - mean^2 would cancel).
#[inline(always)]
pub(crate) fn centred_square_sum(x: &[f32], mean: f32) -> f32 {
    let mut acc = [0f32; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail: f32 = chunks
        .remainder()
        .iter()
        .map(|v| (v - mean) * (v - mean))
        .sum();
    for c in chunks {
        for i in 0..LANES {
            acc[i] += (c[i] - mean) * (c[i] - mean);
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Largest element of `x` (-inf when empty; NaNs are skipped as `f32::max` does).
#[inline(always)]
pub(crate) fn max(x: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks
        .remainder()
        .iter()
        .fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    for c in chunks {
        for i in 0..LANES {
            acc[i] = if c[i] > acc[i] { c[i] } else { acc[i] };
        }
    }
    acc.iter().fold(tail, |m, &v| m.max(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn max_rel(
        f: impl Fn(f32) -> f32,
        g: impl Fn(f64) -> f64,
        lo: f32,
        hi: f32,
        abs_floor: f64,
    ) -> f64 {
        (0..=20_000)
            .map(|i| lo + (hi - lo) * i as f32 / 20_000.0)
            .map(|x| {
                let want = g(x as f64);
                ((f(x) as f64 - want).abs()) / want.abs().max(abs_floor)
            })
            .fold(0.0, f64::max)
    }

    #[test]
    fn lane_reductions_equal_plain_ones() {
        let x: Vec<f32> = (0..37).map(|i| ((i * 7) % 11) as f32 - 5.0).collect();
        let y: Vec<f32> = (0..37).map(|i| ((i * 3) % 5) as f32 * 0.5).collect();
        assert_eq!(sum(&x), x.iter().sum::<f32>());
        assert_eq!(
            dot(&x, &y),
            x.iter().zip(&y).map(|(a, b)| a * b).sum::<f32>()
        );
        assert_eq!(max(&x), 5.0);
        assert_eq!(max(&[]), f32::NEG_INFINITY);
    }

    #[test]
    fn exp_is_within_a_few_ulp() {
        assert!(max_rel(exp, f64::exp, -87.0, 88.0, 0.0) < 4e-7);
        assert_eq!(exp(-100.0), 0.0);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(0.0), 1.0);
    }

    #[test]
    fn erf_tanh_sigmoid_match_float64() {
        let erf64 = |x: f64| {
            // erf by its Maclaurin series (|x| <= 3 converges in f64).
            let (mut term, mut sum) = (x, x);
            for n in 1..200 {
                term *= -x * x / n as f64;
                sum += term / (2 * n + 1) as f64;
            }
            sum * 2.0 / std::f64::consts::PI.sqrt()
        };
        assert!(max_rel(erf, erf64, -3.0, 3.0, 1.0) < 6e-7);
        assert!(max_rel(tanh, f64::tanh, -12.0, 12.0, 1.0) < 3e-7);
        assert!(max_rel(sigmoid, |x| 1.0 / (1.0 + (-x).exp()), -30.0, 30.0, 1e-3) < 1e-6);
    }
}
