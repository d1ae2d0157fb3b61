//! `orrery forward`: run one network on tensors from a safetensors file, to check a port against the reference.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor};
use orrery_dit::{DitInput, DitModelDir, LoraSpec, ScaledLora};
use orrery_nn::checkpoint::save_tensors;
use orrery_nn::Checkpoint;
use orrery_pipeline::WeightType;
use orrery_vae::{Chunking, VaeModelPath};

#[derive(clap::Subcommand)]
pub enum ForwardCommand {
    /// The diffusion transformer: `hidden_states` (B,C,T,H,W), `timestep` ((B,) or (B,1,T,1,1), in the network's
    /// [0,1] units: the scheduler's timestep x 0.001), `encoder_hidden_states`, `condition_mask` (B,1,T,H,W),
    /// optional `padding_mask` -> `velocity`. An action-conditioned model (config.json with `action_dim`) also
    /// takes `action` (B, 4 (T-1), action_dim), scaled as the official data pipeline scales it.
    Dit(DitForwardArgs),
    /// The Reason1 text encoder: `input_ids` (B, L) -> `prompt_embeds` (B, L, layers x hidden), the Cosmos
    /// multi-layer embedding. The model folder is a Hugging Face Qwen2.5-VL / Cosmos-Reason1 folder.
    Text(ForwardArgs),
    /// The VAE encoder: `video` (B,3,T,H,W) in [-1,1] -> `latent` (B,C,T',H/8,W/8), the unnormalised mean. The
    /// model is a diffusers AutoencoderKLWan folder or an official tokenizer.pth / Wan2.1_VAE.pth.
    VaeEncode(ForwardArgs),
    /// The VAE decoder: `latent` (B,C,T',h,w), unnormalised -> `video` (B,3,1+4(T'-1),8h,8w), unclamped.
    VaeDecode(ForwardArgs),
}

#[derive(clap::Args)]
pub struct ForwardArgs {
    /// Model folder: a diffusers-style config.json plus weights (safetensors, sharded, or an official .pt).
    #[arg(long)]
    pub model: PathBuf,
    /// Input tensors (safetensors).
    #[arg(long)]
    pub inputs: PathBuf,
    /// Output tensors (safetensors, written atomically).
    #[arg(long)]
    pub out: PathBuf,
    /// Type the weights are converted to: f32 or bf16 (the float32 parts of the network stay float32).
    #[arg(long, default_value = "f32")]
    pub dtype: WeightType,
    /// The network and its inputs are here; the outputs are written from the CPU.
    #[command(flatten)]
    pub device: crate::device::DeviceArgs,
}

#[derive(clap::Args)]
pub struct DitForwardArgs {
    #[command(flatten)]
    pub common: ForwardArgs,
    /// A LoRA adapter fused into the weights at load, with its scale (default 1): a diffusers
    /// pytorch_lora_weights.safetensors (alpha from its metadata, else alpha = rank) or an official checkpoint
    /// with lora_A/lora_B.default keys (alpha = rank). Repeat for several adapters; their deltas add up.
    #[arg(long = "lora", value_name = "FILE[:SCALE]")]
    pub loras: Vec<LoraSpec>,
}

/// Reads every `--lora` adapter (the DiT checks them against its weights when it loads); errors name the file.
pub fn open_loras(specs: &[LoraSpec]) -> Result<Vec<ScaledLora>> {
    Ok(specs
        .iter()
        .map(LoraSpec::open)
        .collect::<orrery_dit::Result<_>>()?)
}

pub fn run(cmd: ForwardCommand) -> Result<()> {
    match cmd {
        ForwardCommand::Dit(args) => forward_dit(&args),
        ForwardCommand::Text(args) => forward_text(&args),
        ForwardCommand::VaeEncode(args) => forward_vae(&args, true),
        ForwardCommand::VaeDecode(args) => forward_vae(&args, false),
    }
}

/// The input file's tensors, by name, loaded on `device`.
struct Inputs {
    path: PathBuf,
    checkpoint: Checkpoint,
    device: Device,
}

impl Inputs {
    fn open(path: &Path, device: &Device) -> Result<Self> {
        let checkpoint =
            Checkpoint::open(path).with_context(|| format!("reading inputs {}", path.display()))?;
        Ok(Self {
            path: path.to_owned(),
            checkpoint,
            device: device.clone(),
        })
    }

    fn get(&self, name: &str) -> Result<Tensor> {
        self.get_as(name, DType::F32)
    }

    fn get_as(&self, name: &str, dtype: DType) -> Result<Tensor> {
        self.optional_as(name, dtype)?.with_context(|| {
            let names: Vec<&str> = self
                .checkpoint
                .tensors()
                .iter()
                .map(|t| t.name.as_str())
                .collect();
            format!(
                "{}: no tensor `{name}` (found {names:?})",
                self.path.display()
            )
        })
    }

    fn optional(&self, name: &str) -> Result<Option<Tensor>> {
        self.optional_as(name, DType::F32)
    }

    fn optional_as(&self, name: &str, dtype: DType) -> Result<Option<Tensor>> {
        if !self.checkpoint.contains(name) {
            return Ok(None);
        }
        Ok(Some(self.checkpoint.load_as(name, dtype, &self.device)?))
    }
}

fn forward_dit(dit_args: &DitForwardArgs) -> Result<()> {
    let args = &dit_args.common;
    let loras = open_loras(&dit_args.loras)?;
    let dtype = args.dtype.dtype();
    let device = args.device.device()?;
    let inputs = Inputs::open(&args.inputs, &device)?;
    let x = inputs.get("hidden_states")?;
    let timestep = inputs.get("timestep")?;
    let text = inputs.get("encoder_hidden_states")?;
    let condition_mask = inputs.get("condition_mask")?;
    let padding_mask = inputs.optional("padding_mask")?;
    let action = inputs.optional("action")?;
    // diffusers' per-frame layout (B, 1, T, 1, 1) -> (B, T).
    let timesteps = match timestep.dims() {
        [b, 1, t, 1, 1] => timestep.reshape((*b, *t))?,
        _ => timestep,
    };
    let model_dir = DitModelDir::open(&args.model)?;
    let model = model_dir.load_with_loras(&loras, dtype, &device)?;
    let velocity = model.forward(&DitInput {
        x: &x,
        timesteps: &timesteps,
        crossattn_emb: &text,
        condition_mask: &condition_mask,
        padding_mask: padding_mask.as_ref(),
        action: action.as_ref(),
    })?;
    let velocity = velocity.to_device(&Device::Cpu)?;
    save_tensors(&args.out, vec![("velocity".into(), velocity)])
        .with_context(|| format!("writing {}", args.out.display()))?;
    tracing::info!("wrote {}", args.out.display());
    Ok(())
}

fn forward_text(args: &ForwardArgs) -> Result<()> {
    let dtype = args.dtype.dtype();
    let device = args.device.device()?;
    let inputs = Inputs::open(&args.inputs, &device)?;
    let ids = inputs.get_as("input_ids", DType::U32)?;
    // Token ids need no tokenizer: the decoder alone.
    let decoder = orrery_text::encoder::open_decoder(
        &args.model,
        dtype,
        orrery_text::TextWeights::Full,
        &device,
    )?;
    let embeds = orrery_text::encoder::embed_token_ids(&decoder, &ids)?.to_device(&Device::Cpu)?;
    save_tensors(&args.out, vec![("prompt_embeds".into(), embeds)])
        .with_context(|| format!("writing {}", args.out.display()))?;
    tracing::info!("wrote {}", args.out.display());
    Ok(())
}

fn forward_vae(args: &ForwardArgs, encode: bool) -> Result<()> {
    let dtype = args.dtype.dtype();
    let device = args.device.device()?;
    let inputs = Inputs::open(&args.inputs, &device)?;
    let vae = VaeModelPath::open(&args.model)?.load(dtype, &device)?;
    let (name, out) = if encode {
        (
            "latent",
            vae.encode(&inputs.get("video")?, Chunking::Stream(4))?,
        )
    } else {
        (
            "video",
            vae.decode(&inputs.get("latent")?, Chunking::Stream(1))?,
        )
    };
    let out = out.to_dtype(DType::F32)?.to_device(&Device::Cpu)?;
    save_tensors(&args.out, vec![(name.into(), out)])
        .with_context(|| format!("writing {}", args.out.display()))?;
    tracing::info!("wrote {}", args.out.display());
    Ok(())
}
