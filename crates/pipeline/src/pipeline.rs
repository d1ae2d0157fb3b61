//! Text/Image/Video2World with one model: input preparation, conditioning latents, sampling, decoding.

use candle_core::{DType, Device, Tensor};
use orrery_dit::CosmosDit;
use orrery_media::RgbImage;
use orrery_vae::tiling::Tiling;
use orrery_vae::{Chunking, WanVae};

use crate::conditioning::Mode;
use crate::error::{PipelineError, Result};
use crate::inputs::{conditioning_frames, frames_to_clip, validate_size};
use crate::observed::keep_observed_pixels;
use crate::sample::{sample_latents, LatentCondition, SamplingSettings};
use crate::stage::Stage;

/// What to generate.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// Pixel frames of the output (1 + 4k; 93 for the released models).
    pub frames: usize,
    pub width: usize,
    pub height: usize,
    /// Prompt embedding (1, N, width) and, for guidance, the negative prompt's.
    pub text: &'a Tensor,
    pub negative: Option<&'a Tensor>,
    /// Image2World input.
    pub image: Option<&'a RgbImage>,
    /// Video2World input (its last frames that make `settings.conditional_frames` latent frames condition: 5 for
    /// Wan2.1's VAE and the default 2).
    pub video: Option<&'a [RgbImage]>,
    pub settings: SamplingSettings,
    /// Actions (1, ratio (T' - 1), A) for an action-conditioned DiT (T' latent frames), else `None`.
    pub action: Option<&'a Tensor>,
}

impl Request<'_> {
    pub fn mode(&self) -> Mode {
        match (self.image, self.video) {
            (_, Some(_)) => Mode::Video2World,
            (Some(_), None) => Mode::Image2World,
            (None, None) => Mode::Text2World,
        }
    }
}

/// A generated clip, on the CPU: `video` (1, 3, T, H, W) float32 in about [-1, 1] (unclamped decoder output, with
/// the observed pixels kept where `settings.keep_observed` says), the final normalised `latents` (1, C, T', h, w)
/// as the DiT produced them, and for Image2World and Video2World the `observed` pixel frames (1, 3, P, H, W) that
/// conditioned, resized to the output: the first P frames of `video` decode them (and are them when the observed
/// pixels are kept).
#[derive(Debug, Clone)]
pub struct Generated {
    pub video: Tensor,
    /// The decoder's output alone (1, 3, T, H, W), before any observed pixels are kept.
    pub decoded: Tensor,
    pub latents: Tensor,
    pub observed: Option<Tensor>,
}

/// The conditioning of a request: its latents and the pixel frames they encode.
struct Conditioning {
    latents: LatentCondition,
    observed: Option<Tensor>,
}

/// A DiT and the VAE whose latents it works in, on one device (the DiT's): frames, embeddings and actions a caller
/// gives on the CPU are moved there, and what [`WorldPipeline::generate`] returns is on the CPU.
pub struct WorldPipeline {
    pub dit: CosmosDit,
    /// The DiT of Text2World, Image2World and Video2World where a bundle gives the mode its own
    /// ([`crate::BundleDefaults::mode_transformers`]); `dit` samples the others.
    pub mode_dits: [Option<CosmosDit>; 3],
    pub vae: WanVae,
    /// Decode in overlapping spatial tiles (latent pixels) instead of whole frames, to bound the VAE's memory.
    pub decode_tiling: Option<Tiling>,
}

impl WorldPipeline {
    pub fn new(dit: CosmosDit, vae: WanVae) -> Result<Self> {
        if dit.config.in_channels != vae.config.z_dim || dit.config.out_channels != vae.config.z_dim
        {
            return Err(PipelineError::Settings(format!(
                "the DiT works on {} latent channels, the VAE makes {}",
                dit.config.in_channels, vae.config.z_dim
            )));
        }
        Ok(Self {
            dit,
            mode_dits: Default::default(),
            vae,
            decode_tiling: None,
        })
    }

    /// The DiT that samples `mode`.
    pub fn dit_for(&self, mode: Mode) -> &CosmosDit {
        self.mode_dits[mode as usize].as_ref().unwrap_or(&self.dit)
    }

    /// Where the networks run.
    pub fn device(&self) -> &Device {
        self.dit.device()
    }

    /// Normalised conditioning latents for `mode`, padded with zeros to `latent_frames` frames, and the pixel frames
    /// they encode.
    fn condition(&self, request: &Request, latent_shape: [usize; 5]) -> Result<Conditioning> {
        let mode = request.mode();
        let n = request.settings.conditional_latent_frames(mode);
        if mode == Mode::Video2World && n == 0 {
            return Err(PipelineError::Settings(
                "Video2World needs at least 1 conditional latent frame".into(),
            ));
        }
        let [b, c, t, h, w] = latent_shape;
        if n == 0 {
            return Ok(Conditioning {
                latents: LatentCondition {
                    gt: Tensor::zeros((b, c, t, h, w), DType::F32, self.device())?,
                    frames: 0,
                    action: request.action.cloned(),
                },
                observed: None,
            });
        }
        let frames = match (request.video, request.image) {
            (Some(video), _) => conditioning_frames(video, n, self.vae.config.temporal_factor())?,
            (None, Some(image)) => vec![image.clone()],
            (None, None) => unreachable!("mode has conditioning frames"),
        };
        if n > t {
            return Err(PipelineError::Input(format!(
                "{} output frames cannot hold {n} conditioning latent frames",
                request.frames
            )));
        }
        let clip = frames_to_clip(&frames, request.width, request.height)?;
        let stage = Stage::start("vae-encode", self.device());
        let latents = self
            .vae
            .normalize(
                &self
                    .vae
                    .encode(&clip.to_device(self.device())?, Chunking::Stream(4))?,
            )?
            .to_dtype(DType::F32)?;
        stage.done()?;
        let pad = Tensor::zeros((b, c, t - n, h, w), DType::F32, latents.device())?;
        Ok(Conditioning {
            latents: LatentCondition {
                gt: Tensor::cat(&[&latents, &pad], 2)?,
                frames: n,
                action: request.action.cloned(),
            },
            observed: Some(clip),
        })
    }

    /// Generates a clip; `on_step(i, calls)` reports sampling progress.
    pub fn generate(
        &self,
        request: &Request,
        on_step: impl FnMut(usize, usize),
    ) -> Result<Generated> {
        validate_size(request.frames, request.width, request.height)?;
        let s = self.vae.config.spatial_factor();
        let shape = [
            1,
            self.vae.config.z_dim,
            self.vae.config.latent_frames(request.frames),
            request.height / s,
            request.width / s,
        ];
        let condition = self.condition(request, shape)?;
        let stage = Stage::start("sample", self.device());
        let latents = sample_latents(
            self.dit_for(request.mode()),
            shape,
            request.text,
            request.negative,
            &condition.latents,
            &request.settings,
            on_step,
        )?;
        stage.done()?;
        // The DiT stays loaded while the VAE decodes: a generator serves many clips, and a long video's next chunk
        // starts from this one's decoded last frame.
        let stage = Stage::start("vae-decode", self.device());
        let denormalized = self.vae.denormalize(&latents)?;
        let (_, _, t, h, w) = denormalized.dims5()?;
        let chunking = |h: usize, w: usize| Chunking::decode_within(&self.vae.config, t, h, w);
        let video = match self.decode_tiling {
            Some(tiling) => self.vae.decode_tiled(
                &denormalized,
                tiling,
                chunking(h.min(tiling.tile), w.min(tiling.tile)),
            )?,
            None => self.vae.decode(&denormalized, chunking(h, w))?,
        }
        .to_device(&Device::Cpu)?;
        stage.done()?;
        let latents = latents.to_device(&Device::Cpu)?;
        let kept = match (&condition.observed, request.settings.keep_observed) {
            (Some(observed), Some(keep)) => keep_observed_pixels(&video, observed, keep)?,
            _ => video.clone(),
        };
        Ok(Generated {
            video: kept,
            decoded: video,
            latents,
            observed: condition.observed,
        })
    }
}
