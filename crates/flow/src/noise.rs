//! Seeded Gaussian noise. [`NumpyRng`] reproduces `numpy.random.RandomState(seed).standard_normal` bit for bit
//! (MT19937 seeded by `init_genrand`, legacy polar Box-Muller in float64), which is how the official code draws
//! its initial noise (`misc.arch_invariant_rand`, then cast to float32). [`FastRng`] is a quicker generator with
//! no such constraint.

use candle_core::{Device, Tensor};

use crate::error::Result;

const N: usize = 624;
const M: usize = 397;

/// NumPy's legacy `RandomState`: MT19937 and the cached polar Box-Muller Gaussian.
#[derive(Debug, Clone)]
pub struct NumpyRng {
    mt: Box<[u32; N]>,
    index: usize,
    cached_gauss: Option<f64>,
}

impl NumpyRng {
    /// `RandomState(seed)` for a 32-bit seed (`init_genrand`).
    pub fn new(seed: u32) -> Self {
        let mut mt = Box::new([0u32; N]);
        mt[0] = seed;
        for i in 1..N {
            mt[i] = 1_812_433_253u32
                .wrapping_mul(mt[i - 1] ^ (mt[i - 1] >> 30))
                .wrapping_add(i as u32);
        }
        Self {
            mt,
            index: N,
            cached_gauss: None,
        }
    }

    fn generate(&mut self) {
        const UPPER: u32 = 0x8000_0000;
        const LOWER: u32 = 0x7fff_ffff;
        const MATRIX_A: u32 = 0x9908_b0df;
        for i in 0..N {
            let y = (self.mt[i] & UPPER) | (self.mt[(i + 1) % N] & LOWER);
            let mut v = self.mt[(i + M) % N] ^ (y >> 1);
            if y & 1 != 0 {
                v ^= MATRIX_A;
            }
            self.mt[i] = v;
        }
        self.index = 0;
    }

    pub fn next_u32(&mut self) -> u32 {
        if self.index >= N {
            self.generate();
        }
        let mut y = self.mt[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    /// A double in [0, 1) from 53 random bits (`random_double` / `legacy_double`).
    pub fn next_f64(&mut self) -> f64 {
        let a = (self.next_u32() >> 5) as f64;
        let b = (self.next_u32() >> 6) as f64;
        (a * 67_108_864.0 + b) / 9_007_199_254_740_992.0
    }

    /// `legacy_gauss`: polar Box-Muller, returning the second value of each pair first and caching the other.
    pub fn standard_normal(&mut self) -> f64 {
        if let Some(g) = self.cached_gauss.take() {
            return g;
        }
        loop {
            let x1 = 2.0 * self.next_f64() - 1.0;
            let x2 = 2.0 * self.next_f64() - 1.0;
            let r2 = x1 * x1 + x2 * x2;
            if r2 < 1.0 && r2 != 0.0 {
                let f = (-2.0 * r2.ln() / r2).sqrt();
                self.cached_gauss = Some(f * x1);
                return f * x2;
            }
        }
    }
}

/// xoshiro256++ seeded through SplitMix64, with Box-Muller pairs: a fast generator for training and previews.
#[derive(Debug, Clone)]
pub struct FastRng {
    s: [u64; 4],
    cached_gauss: Option<f64>,
}

impl FastRng {
    pub fn new(seed: u64) -> Self {
        let mut z = seed;
        let mut next = || {
            z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut x = z;
            x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            x ^ (x >> 31)
        };
        Self {
            s: [next(), next(), next(), next()],
            cached_gauss: None,
        }
    }

    /// The generator's whole state (for training checkpoints): the four words and the cached Box-Muller normal.
    pub fn state(&self) -> ([u64; 4], Option<f64>) {
        (self.s, self.cached_gauss)
    }

    /// The generator at a state from [`Self::state`].
    pub fn from_state(s: [u64; 4], cached_gauss: Option<f64>) -> Self {
        Self { s, cached_gauss }
    }

    pub fn next_u64(&mut self) -> u64 {
        let result = (self.s[0].wrapping_add(self.s[3]))
            .rotate_left(23)
            .wrapping_add(self.s[0]);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn standard_normal(&mut self) -> f64 {
        if let Some(g) = self.cached_gauss.take() {
            return g;
        }
        let u1 = 1.0 - self.next_f64(); // (0, 1]
        let u2 = self.next_f64();
        let r = (-2.0 * u1.ln()).sqrt();
        let (s, c) = (2.0 * std::f64::consts::PI * u2).sin_cos();
        self.cached_gauss = Some(r * s);
        r * c
    }
}

/// Which generator draws the initial noise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoiseKind {
    /// NumPy's `RandomState(seed).standard_normal`: the official seeds reproduce.
    Numpy,
    /// [`FastRng`].
    Fast,
}

impl NoiseKind {
    /// `numpy` or `fast`, as the command line and generation records spell it.
    pub fn name(self) -> &'static str {
        match self {
            NoiseKind::Numpy => "numpy",
            NoiseKind::Fast => "fast",
        }
    }
}

impl std::str::FromStr for NoiseKind {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "numpy" => Ok(NoiseKind::Numpy),
            "fast" => Ok(NoiseKind::Fast),
            other => Err(format!("{other}: expected numpy or fast")),
        }
    }
}

/// Gaussian noise of `shape` (row-major, as NumPy fills it), float32.
pub fn gaussian(kind: NoiseKind, seed: u64, shape: &[usize], device: &Device) -> Result<Tensor> {
    let n: usize = shape.iter().product();
    let values: Vec<f32> = match kind {
        NoiseKind::Numpy => {
            let mut rng = NumpyRng::new(seed as u32);
            (0..n).map(|_| rng.standard_normal() as f32).collect()
        }
        NoiseKind::Fast => return normal_from(&mut FastRng::new(seed), shape, device),
    };
    Ok(Tensor::from_vec(values, shape, device)?)
}

/// Float32 Gaussian noise of `shape` drawn from the stream `rng` (a run's or a sampler's generator, which goes on
/// from where this leaves it).
pub fn normal_from(rng: &mut FastRng, shape: &[usize], device: &Device) -> Result<Tensor> {
    let n: usize = shape.iter().product();
    let values: Vec<f32> = (0..n).map(|_| rng.standard_normal() as f32).collect();
    Ok(Tensor::from_vec(values, shape, device)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mt19937_reference_outputs() {
        // The reference implementation's init_genrand(5489) sequence starts 3499211612, 581869302, 3890346734.
        let mut rng = NumpyRng::new(5489);
        assert_eq!(
            [rng.next_u32(), rng.next_u32(), rng.next_u32()],
            [3_499_211_612, 581_869_302, 3_890_346_734]
        );
    }

    #[test]
    fn fast_generator_resumes_from_its_state() {
        let mut a = FastRng::new(9);
        a.standard_normal();
        let (words, cached) = a.state();
        let mut b = FastRng::from_state(words, cached);
        for _ in 0..5 {
            assert_eq!(a.standard_normal().to_bits(), b.standard_normal().to_bits());
        }
    }

    #[test]
    fn fast_generator_has_unit_moments() {
        let mut rng = FastRng::new(3);
        let xs: Vec<f64> = (0..200_000).map(|_| rng.standard_normal()).collect();
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / xs.len() as f64;
        assert!(
            mean.abs() < 0.01 && (var - 1.0).abs() < 0.01,
            "{mean} {var}"
        );
    }
}
