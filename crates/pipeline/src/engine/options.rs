//! What a caller may choose about a generation; everything left unset comes from the model bundle.

use std::str::FromStr;

use candle_core::{DType, Device};
use orrery_flow::noise::NoiseKind;
use orrery_text::TextWeights;
use orrery_vae::tiling::Tiling;

use crate::defaults::ModeSampling;
use crate::observed::KeepObserved;
use crate::sample::SamplerKind;

/// The official default negative prompt (`DEFAULT_NEGATIVE_PROMPT`, cosmos_predict2/config.py).
pub const DEFAULT_NEGATIVE_PROMPT: &str = "The video captures a series of frames showing ugly scenes, static with no motion, motion blur, over-saturation, shaky footage, low resolution, grainy texture, pixelated images, poorly lit areas, underexposed and overexposed scenes, poor color balance, washed out colors, choppy sequences, jerky movements, low frame rate, artifacting, color banding, unnatural transitions, outdated special effects, fake elements, unconvincing visuals, poorly edited content, jump cuts, visual noise, and flickering. Overall, the video is of poor quality.";

/// An output size, `WxH` on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size {
    pub width: usize,
    pub height: usize,
}

impl FromStr for Size {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s}: expected WxH, e.g. 1280x704");
        let (w, h) = s.split_once(['x', 'X']).ok_or_else(bad)?;
        Ok(Self {
            width: w.trim().parse().map_err(|_| bad())?,
            height: h.trim().parse().map_err(|_| bad())?,
        })
    }
}

impl std::fmt::Display for Size {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}", self.width, self.height)
    }
}

/// The weight type of the DiT and text encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightType {
    Bf16,
    F32,
}

impl WeightType {
    pub fn dtype(self) -> DType {
        match self {
            WeightType::Bf16 => DType::BF16,
            WeightType::F32 => DType::F32,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            WeightType::Bf16 => "bf16",
            WeightType::F32 => "f32",
        }
    }
}

impl FromStr for WeightType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "bf16" | "bfloat16" => Ok(Self::Bf16),
            "f32" | "float32" => Ok(Self::F32),
            other => Err(format!("{other}: expected bf16 or f32")),
        }
    }
}

/// The caller's sampling choices: each `None` leaves the bundle's setting for the mode.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplingOverrides {
    pub steps: Option<usize>,
    /// Guidance g of `cond + g (cond - uncond)`: 0 is the conditional prediction alone.
    pub guidance: Option<f64>,
    pub conditional_frames: Option<usize>,
    /// `Some(None)` turns keeping the observed pixels off, `Some(Some(k))` sets it.
    pub keep_observed: Option<Option<KeepObserved>>,
    pub seed: u64,
    pub noise: NoiseKind,
    /// UniPC or the distilled sampler (default: the bundle's).
    pub sampler: Option<SamplerKind>,
}

impl Default for SamplingOverrides {
    /// Nothing overridden; seed 1 and NumPy noise (the official seeds).
    fn default() -> Self {
        Self {
            steps: None,
            guidance: None,
            conditional_frames: None,
            keep_observed: None,
            seed: 1,
            noise: NoiseKind::Numpy,
            sampler: None,
        }
    }
}

impl SamplingOverrides {
    pub fn per_mode(&self) -> ModeSampling {
        ModeSampling {
            sampler: None,
            steps: self.steps,
            guidance: self.guidance,
            conditional_frames: self.conditional_frames,
        }
    }
}

/// Everything a caller may set about generation besides the inputs.
#[derive(Debug, Clone)]
pub struct GenerationOptions {
    pub sampling: SamplingOverrides,
    /// Output size (default: the bundle's).
    pub size: Option<Size>,
    /// Output frames, 1 + 4k; more than the bundle's chunk length makes a long video, chunk by chunk.
    pub frames: Option<usize>,
    pub fps: Option<f64>,
    /// Default: bf16 for the released models, f32 for orrery's own small ones.
    pub weights: Option<WeightType>,
    /// Default: the model's unconditional prompt (the empty prompt for orrery's own models), else the official
    /// negative prompt.
    pub negative_prompt: Option<String>,
    /// Cut prompts longer than the text encoder takes, with a warning, as the reference does (else refuse them).
    pub truncate: bool,
    /// LoRA adapters fused into the DiT's weights at load, each with its scale.
    pub loras: Vec<orrery_dit::LoraSpec>,
    /// Where the text encoder, the DiT and the VAE run (default: the CPU). Inputs, noise and conditioning are
    /// made on the CPU as they always are and moved there; outputs come back to the CPU.
    pub device: Device,
    /// How the networks share the device's memory.
    pub memory: MemoryOptions,
}

/// Ways to trade speed or the last digits for device memory; the defaults change nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryOptions {
    /// The text encoder's Linear weights in 8 bits (about 7 GB instead of 14 GB for Cosmos-Reason1-7B); its
    /// embeddings differ slightly from the full encoder's and are cached apart.
    pub text_weights: TextWeights,
    /// The first this many DiT blocks (all of them if more) stay in host memory and are copied to the device one
    /// at a time for each forward; with all of them there, the DiT holds almost nothing on the device while the
    /// VAE decodes.
    pub offload_blocks: usize,
    /// Decode in overlapping spatial tiles (latent pixels) instead of whole frames; seams are blended, so the
    /// pixels differ slightly from a whole-frame decode.
    pub vae_tiling: Option<Tiling>,
}

impl Default for GenerationOptions {
    fn default() -> Self {
        Self {
            sampling: SamplingOverrides::default(),
            size: None,
            frames: None,
            fps: None,
            weights: None,
            negative_prompt: None,
            truncate: false,
            loras: Vec::new(),
            device: Device::Cpu,
            memory: MemoryOptions::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_weight_types_parse_or_say_what_is_expected() {
        assert_eq!(
            "1280x704".parse::<Size>(),
            Ok(Size {
                width: 1280,
                height: 704
            })
        );
        for bad in ["1280", "x704", "12.5x3", "-3x4"] {
            assert!(bad.parse::<Size>().unwrap_err().contains("WxH"), "{bad}");
        }
        assert_eq!("bf16".parse::<WeightType>(), Ok(WeightType::Bf16));
        assert!("f16"
            .parse::<WeightType>()
            .unwrap_err()
            .contains("bf16 or f32"));
    }
}
