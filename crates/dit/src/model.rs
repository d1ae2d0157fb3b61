//! The whole network: `MinimalV1LVGDiT` (condition-mask channel) over `MiniTrainDIT`.

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use orrery_nn::layers::Linear;
use orrery_nn::ops;

use crate::action::ActionEmbedder;
use crate::block::{Block, FinalLayer};
use crate::error::{DitError, Result};
use crate::patch::{patchify, resize_nearest, unpatchify};
use crate::rope::rope_table;
use crate::time_embed::{TimeEmbedder, TimeEmbedding};
use crate::DitConfig;

/// One call's inputs. Shapes: `x` (B, C, T, H, W) noisy latent; `timesteps` (B,) or (B, T') in the network's
/// units (the scheduler's timestep x 0.001 for the released models), T' = 1 or the number of latent frames;
/// `crossattn_emb` (B, N, text width); `condition_mask` (B, 1, T, H, W), 1 on conditioning frames;
/// `padding_mask` (1 or B, 1, H', W') at any resolution (resized to the latent like the reference), zeros if
/// absent; `action` (B, ratio (T - 1), A) for an action-conditioned network (required there, refused elsewhere),
/// already scaled as the official data pipeline scales it.
#[derive(Debug, Clone)]
pub struct DitInput<'a> {
    pub x: &'a Tensor,
    pub timesteps: &'a Tensor,
    pub crossattn_emb: &'a Tensor,
    pub condition_mask: &'a Tensor,
    pub padding_mask: Option<&'a Tensor>,
    pub action: Option<&'a Tensor>,
}

/// What every block reads besides its input: the time embedding, the projected text and the RoPE tables.
#[derive(Debug, Clone)]
pub(crate) struct BlockShared {
    pub time: TimeEmbedding,
    /// (B, N, crossattn_emb_channels) in the blocks' type.
    pub context: Tensor,
    /// RoPE (cos, sin), each (T' Hp Wp, head_dim).
    pub cos: Tensor,
    pub sin: Tensor,
}

impl BlockShared {
    pub fn rope(&self) -> (&Tensor, &Tensor) {
        (&self.cos, &self.sin)
    }
}

/// The network up to its first block.
pub(crate) struct Embedded {
    /// The first block's input, (B, T', Hp Wp, D).
    pub x: Tensor,
    pub shared: BlockShared,
    /// The patch grid (T', Hp, Wp).
    pub grid: [usize; 3],
}

/// The Cosmos-Predict2.5 diffusion transformer. Blocks run in the type of the `VarBuilder` they were built
/// from (float32 or bfloat16); the time embedding, every adaLN modulation, RoPE'd q/k and the final layer run
/// in float32, as the reference's Wan fp32 strategy does.
#[derive(Debug, Clone)]
pub struct CosmosDit {
    pub config: DitConfig,
    pub x_embedder: Linear,
    pub t_embedder: TimeEmbedder,
    pub crossattn_proj: Option<Linear>,
    pub blocks: Vec<Block>,
    pub final_layer: FinalLayer,
    /// `action_embedder_B_D` and `action_embedder_B_3D` of an action-conditioned network.
    pub action_embedder: Option<ActionEmbedder>,
    dtype: DType,
}

impl CosmosDit {
    /// Builds the network from a `VarBuilder` whose names are the official ones without `net.` (see
    /// [`crate::load`] for checkpoints in any naming), or a `VarMap` builder to train from scratch.
    pub fn new(vb: VarBuilder, config: &DitConfig) -> Result<Self> {
        config.validate()?;
        let d = config.model_channels;
        let fp32 = vb.clone().set_dtype(DType::F32);
        let crossattn_proj = match config.crossattn_proj_in_channels {
            Some(n) => Some(Linear::new(
                vb.pp("crossattn_proj").pp("0"),
                n,
                config.crossattn_emb_channels,
                true,
            )?),
            None => None,
        };
        let blocks = (0..config.num_blocks)
            .map(|i| Block::new(vb.pp("blocks").pp(i), config))
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Self {
            config: config.clone(),
            x_embedder: Linear::new(
                vb.pp("x_embedder").pp("proj").pp("1"),
                config.patch_in_features(),
                d,
                false,
            )?,
            t_embedder: TimeEmbedder::new(
                fp32.pp("t_embedder").pp("1"),
                fp32.pp("t_embedding_norm"),
                d,
            )?,
            crossattn_proj,
            blocks,
            final_layer: FinalLayer::new(fp32.pp("final_layer"), config)?,
            action_embedder: match config.action {
                Some(action) => Some(ActionEmbedder::new(vb.clone(), action, d)?),
                None => None,
            },
            dtype: vb.dtype(),
        })
    }

    /// The type the blocks compute in.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    pub fn device(&self) -> &Device {
        self.x_embedder.weight.device()
    }

    /// `crossattn_proj` (Linear + GELU) when the network has one, else the embedding as is: (B, N, C_in) ->
    /// (B, N, crossattn_emb_channels) in the blocks' type.
    pub fn project_text(&self, crossattn_emb: &Tensor) -> Result<Tensor> {
        let emb = crossattn_emb.to_dtype(self.dtype)?;
        Ok(match &self.crossattn_proj {
            Some(proj) => ops::gelu_erf(&proj.forward(&emb)?)?,
            None => emb,
        })
    }

    /// Time embedding for timesteps (B,) or (B, T').
    pub fn time_embedding(&self, timesteps: &Tensor) -> Result<TimeEmbedding> {
        let t = match timesteps.rank() {
            1 => timesteps.unsqueeze(1)?,
            _ => timesteps.clone(),
        };
        Ok(self.t_embedder.forward(&t)?)
    }

    /// RoPE (cos, sin) tables (L, head_dim) for a latent of `frames x height x width`.
    pub fn rope(&self, frames: usize, height: usize, width: usize) -> Result<(Tensor, Tensor)> {
        let c = &self.config;
        let grid = [
            frames / c.patch_temporal,
            height / c.patch_spatial,
            width / c.patch_spatial,
        ];
        Ok(rope_table(
            c.head_dim(),
            c.rope_extrapolation,
            grid,
            self.device(),
        )?)
    }

    /// Predicted velocity (B, C_out, T, H, W), float32. A block whose weights are elsewhere than the network's
    /// device (kept in host memory, see [`crate::load_dit_offloaded`]) is copied there for its forward and the copy
    /// dropped after it, so the device holds one such block at a time.
    pub fn forward(&self, input: &DitInput) -> Result<Tensor> {
        let embedded = self.embed(input)?;
        let shared = &embedded.shared;
        let device = self.device();
        let mut x = embedded.x;
        for block in &self.blocks {
            let copy;
            let block = if block.device().same_device(device) {
                block
            } else {
                copy = block.to_device(device)?;
                &copy
            };
            x = block.forward(&x, &shared.time, &shared.context, shared.rope())?;
        }
        self.head(&x, &shared.time, embedded.grid)
    }

    /// How many blocks are kept away from the network's device (in host memory).
    pub fn offloaded_blocks(&self) -> usize {
        let device = self.device();
        self.blocks
            .iter()
            .filter(|b| !b.device().same_device(device))
            .count()
    }

    /// Everything before the blocks: the patch embedding of the input channels and what every block reads.
    pub(crate) fn embed(&self, input: &DitInput) -> Result<Embedded> {
        let c = &self.config;
        let (b, t, h, w) = self.check_input(input)?;
        let (pt, ps) = (c.patch_temporal, c.patch_spatial);

        // Input channels: [latent, condition mask, padding mask], then patches.
        let mut channels = vec![
            input.x.to_dtype(self.dtype)?,
            input.condition_mask.to_dtype(self.dtype)?,
        ];
        if c.concat_padding_mask {
            let mask = match input.padding_mask {
                Some(m) => resize_nearest(&m.to_dtype(self.dtype)?, h, w)?,
                None => Tensor::zeros((1, 1, h, w), self.dtype, self.device())?,
            };
            channels.push(
                mask.unsqueeze(2)?
                    .broadcast_as((b, 1, t, h, w))?
                    .contiguous()?,
            );
        }
        let x = Tensor::cat(&channels, 1)?;
        let x = self.x_embedder.forward(&patchify(&x, pt, ps)?)?; // (B, T', HpWp, D)
        let (cos, sin) = self.rope(t, h, w)?;
        let time = match (&self.action_embedder, input.action) {
            (Some(embedder), Some(action)) => {
                let action = embedder.forward(action, input.condition_mask)?;
                let t = match input.timesteps.rank() {
                    1 => input.timesteps.unsqueeze(1)?,
                    _ => input.timesteps.clone(),
                };
                self.t_embedder.forward_with_action(&t, Some(&action))?
            }
            _ => self.time_embedding(input.timesteps)?,
        };
        Ok(Embedded {
            x,
            shared: BlockShared {
                time,
                context: self.project_text(input.crossattn_emb)?,
                cos,
                sin,
            },
            grid: [t / pt, h / ps, w / ps],
        })
    }

    /// Everything after the blocks: (B, T', HpWp, D) -> velocity (B, C_out, T, H, W) float32.
    pub(crate) fn head(
        &self,
        x: &Tensor,
        time: &TimeEmbedding,
        grid: [usize; 3],
    ) -> Result<Tensor> {
        let c = &self.config;
        let out = self.final_layer.forward(x, time)?;
        Ok(unpatchify(&out, grid, c.patch_temporal, c.patch_spatial)?)
    }

    /// Checks every input's shape against the configuration; returns (B, T, H, W).
    fn check_input(&self, input: &DitInput) -> Result<(usize, usize, usize, usize)> {
        let c = &self.config;
        let bad = |name: &'static str, expected: String, found: &Tensor| DitError::Input {
            name,
            expected,
            found: format!("{:?}", found.dims()),
        };
        let (b, ch, t, h, w) = input.x.dims5().map_err(|_| {
            bad(
                "hidden_states",
                format!("(B, {}, T, H, W)", c.in_channels),
                input.x,
            )
        })?;
        if ch != c.in_channels || b == 0 || t == 0 || h == 0 || w == 0 {
            return Err(bad(
                "hidden_states",
                format!("(B, {}, T, H, W), non-empty", c.in_channels),
                input.x,
            ));
        }
        let (pt, ps) = (c.patch_temporal, c.patch_spatial);
        if t % pt != 0 || h % ps != 0 || w % ps != 0 {
            return Err(bad(
                "hidden_states",
                format!("T divisible by {pt} and H, W divisible by {ps}"),
                input.x,
            ));
        }
        let [max_t, max_h, max_w] = c.max_size;
        if t > max_t || h > max_h || w > max_w {
            return Err(bad(
                "hidden_states",
                format!("T, H, W at most {:?} (the RoPE range)", c.max_size),
                input.x,
            ));
        }
        let ts = input.timesteps.dims();
        let frames = t / pt;
        let ok = match ts {
            [bb] => *bb == b,
            [bb, tt] => *bb == b && (*tt == 1 || *tt == frames),
            _ => false,
        };
        if !ok {
            return Err(bad(
                "timestep",
                format!("({b},) or ({b}, 1) or ({b}, {frames})"),
                input.timesteps,
            ));
        }
        let text = input.crossattn_emb.dims();
        if text.len() != 3 || text[0] != b || text[2] != c.text_input_channels() || text[1] == 0 {
            return Err(bad(
                "encoder_hidden_states",
                format!("({b}, N, {})", c.text_input_channels()),
                input.crossattn_emb,
            ));
        }
        if input.condition_mask.dims() != [b, 1, t, h, w] {
            return Err(bad(
                "condition_mask",
                format!("({b}, 1, {t}, {h}, {w})"),
                input.condition_mask,
            ));
        }
        if let Some(m) = input.padding_mask {
            let d = m.dims();
            if d.len() != 4 || !(d[0] == 1 || d[0] == b) || d[1] != 1 || d[2] == 0 || d[3] == 0 {
                return Err(bad("padding_mask", format!("(1 or {b}, 1, H, W)"), m));
            }
        }
        match (&c.action, input.action) {
            (Some(a), Some(action)) => {
                let n = a.actions_for(t);
                if action.dims() != [b, n, a.action_dim] || n == 0 {
                    return Err(bad(
                        "action",
                        format!(
                            "({b}, {n}, {}): {} actions per latent frame after the first of {t}, each {} wide",
                            a.action_dim, a.temporal_compression_ratio, a.action_dim
                        ),
                        action,
                    ));
                }
            }
            (Some(a), None) => {
                return Err(DitError::Input {
                    name: "action",
                    expected: format!(
                        "({b}, {}, {}) for this action-conditioned network",
                        a.actions_for(t),
                        a.action_dim
                    ),
                    found: "none".into(),
                })
            }
            (None, Some(action)) => {
                return Err(bad(
                    "action",
                    "none: this network is not action-conditioned".into(),
                    action,
                ))
            }
            (None, None) => {}
        }
        Ok((b, t, h, w))
    }
}
