//! Fine-tuning a released-format bundle (a diffusers folder or the official `.pt` layout, any preset) whose text
//! encoder is Cosmos-Reason1: the bundle gives the DiT's shape and the VAE, and its text encoder stays frozen, as
//! in the official recipe. Each training caption is embedded once into a prompt cache in the run folder (a resumed
//! or repeated run reads it there), and a step reads its captions' embeddings back from that cache; a dropped
//! caption is the zero embedding (the official conditioner's and diffusers' caption dropout).

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use orrery_nn::checkpoint::names::{dit_is_non_parameter, DitNaming};
use orrery_nn::{Checkpoint, SeededVarMap};
use orrery_pipeline::{ModelBundle, TextEncoderKind};
use orrery_text::{Overflow, PromptCache, TextWeights};

use crate::dit::config::DitTrainConfig;
use crate::error::{Result, TrainError};
use crate::trainer::bundle_files::link_or_copy_folder;
use crate::trainer::session::init_vars_mapped;

/// The run folder's prompt cache of Reason1 caption embeddings.
pub const PROMPT_CACHE_DIR: &str = "prompt_cache";

/// The type the frozen Reason1 encoder runs in while embedding captions: float32, as the samples and the
/// cache of `orrery generate --dtype f32` (the embeddings are made once per caption, so speed matters little).
const EMBED_DTYPE: DType = DType::F32;

/// Opens `init_from` as a model bundle; `Some` when its text encoder is Reason1 (a released-format bundle), `None`
/// for orrery's own bundles (word encoder), which train as before.
pub(crate) fn open_released(path: &Path) -> Result<Option<ModelBundle>> {
    let bundle = ModelBundle::open(path).map_err(|e| {
        TrainError::Data(format!(
            "init_from {}: not a model bundle ({e}); expected an orrery export, a diffusers folder \
             (transformer/, vae/, text_encoder/) or the official layout (DiT .pt, tokenizer.pth, Reason1 folder)",
            path.display()
        ))
    })?;
    match bundle.text.as_ref().map(|t| t.kind) {
        Some(TextEncoderKind::Reason1) => Ok(Some(bundle)),
        Some(TextEncoderKind::Words) => Ok(None),
        None => Err(TrainError::Data(format!(
            "init_from {}: the bundle has no text encoder (a Reason1 folder or orrery's word encoder) to embed \
             the captions with",
            path.display()
        ))),
    }
}

/// Where the bundle's VAE is: its `vae/` folder or its `tokenizer.pth`.
pub(crate) fn bundle_vae(bundle: &ModelBundle) -> PathBuf {
    let folder = bundle.root.join("vae");
    if folder.exists() {
        folder
    } else {
        bundle.vae.weights.clone()
    }
}

fn same_path(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// Fills in the DiT's shape and the VAE of a run from a released-format `bundle`, refusing settings that
/// contradict it.
pub(crate) fn resolve_from_bundle(config: &mut DitTrainConfig, bundle: &ModelBundle) -> Result<()> {
    let root = bundle.root.display();
    let refuse = |detail: String| Err(TrainError::Data(format!("init_from {root}: {detail}")));
    if config.text.is_some() {
        return refuse(
            "the bundle's text encoder is Reason1, which stays frozen: leave out `text` (it shapes orrery's \
             word encoder)"
                .into(),
        );
    }
    if bundle.dit.config.action.is_some() {
        return refuse(
            "action-conditioned training starts from orrery bundles and learns from the gripper worlds' actions; \
             a released action-conditioned network is not fine-tuned here: fine-tune a text/image/video-conditioned \
             preset"
                .into(),
        );
    }
    if config.grow_blocks || config.grow_width {
        return refuse(
            "grow_blocks and grow_width start from orrery bundles; fine-tune the released network as it is".into(),
        );
    }
    match &config.model {
        Some(model) if model != &bundle.dit.config => {
            return refuse(format!(
                "`model` differs from the bundle's DiT ({} blocks of width {}, text input {}); leave it out to \
                 take the bundle's",
                bundle.dit.config.num_blocks,
                bundle.dit.config.model_channels,
                bundle.dit.config.text_input_channels()
            ))
        }
        _ => config.model = Some(bundle.dit.config.clone()),
    }
    let vae = bundle_vae(bundle);
    match &config.vae {
        Some(given) if !same_path(given, &vae) => {
            return refuse(format!(
                "`vae` {} is not the bundle's VAE {}; leave it out to take the bundle's",
                given.display(),
                vae.display()
            ))
        }
        _ => config.vae = Some(vae),
    }
    Ok(())
}

/// Sets the variables `dit.NAME` to the bundle DiT's weights, whatever their naming (official with or without
/// `net.`, diffusers) and stored type; every parameter of the file must be used.
pub(crate) fn init_dit_from(vars: &SeededVarMap, weights: &Path) -> Result<()> {
    let ckpt = Checkpoint::open(weights)?;
    let naming =
        DitNaming::detect(ckpt.tensors().iter().map(|t| t.name.as_str())).ok_or_else(|| {
            TrainError::Data(format!(
                "{}: no Cosmos DiT tensors (net.blocks.*, blocks.* or transformer_blocks.*)",
                weights.display()
            ))
        })?;
    drop(ckpt);
    init_vars_mapped(
        vars,
        weights,
        "dit.",
        |name| Some(naming.stored_name(name)),
        dit_is_non_parameter,
    )
}

/// A released bundle's frozen Reason1 encoder, read through the run's prompt cache.
pub struct Reason1Captions {
    pub bundle: ModelBundle,
    pub cache: PromptCache,
    fingerprint: String,
    /// The embedding's shape (tokens, width).
    shape: (usize, usize),
    /// Captions embedded when the run was opened (0 when the cache had them all).
    pub computed: usize,
}

impl Reason1Captions {
    /// Embeds every caption of `captions` missing from the cache in `out_dir`.
    pub(crate) fn open<'a>(
        bundle: ModelBundle,
        out_dir: &Path,
        captions: impl Iterator<Item = &'a str>,
    ) -> Result<Self> {
        let cache = PromptCache::new(&out_dir.join(PROMPT_CACHE_DIR))?;
        let mut all: Vec<&str> = captions.collect();
        all.sort_unstable();
        all.dedup();
        let computed = bundle.cache_prompts(&all, &cache, EMBED_DTYPE, Overflow::Truncate)?;
        if computed > 0 {
            tracing::info!(
                "embedded {computed} of {} captions with the bundle's Reason1",
                all.len()
            );
        }
        let fingerprint =
            bundle.prompt_fingerprint(EMBED_DTYPE, TextWeights::Full, Overflow::Truncate)?;
        let mut captions = Self {
            bundle,
            cache,
            fingerprint,
            shape: (0, 0),
            computed,
        };
        let probe = captions.embed(all.first().copied().unwrap_or(""), &Device::Cpu)?;
        let (_, n, c) = probe.dims3()?;
        captions.shape = (n, c);
        Ok(captions)
    }

    /// The embedding width the DiT must read.
    pub fn width(&self) -> usize {
        self.shape.1
    }

    /// The embedding (1, N, C) of `caption`: from the cache, or made (and cached) if it is not there.
    pub fn embed(&self, caption: &str, device: &Device) -> Result<Tensor> {
        if let Some(e) = self.cache.get(&self.fingerprint, caption, device) {
            return Ok(e);
        }
        let e = self.bundle.encode_prompts(
            &[caption],
            Some(&self.cache),
            EMBED_DTYPE,
            Overflow::Truncate,
        )?;
        Ok(e[0].to_device(device)?)
    }

    /// The embeddings (B, N, C) of a batch's captions, the zero embedding for dropped ones (`None`).
    pub fn embed_batch(&self, captions: &[Option<&str>], device: &Device) -> Result<Tensor> {
        let (n, c) = self.shape;
        let rows = captions
            .iter()
            .map(|caption| match caption {
                Some(caption) => self.embed(caption, device),
                None => Ok(Tensor::zeros((1, n, c), DType::F32, device)?),
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Tensor::cat(&rows, 0)?)
    }
}

/// Copies (hard-links where it can) a released bundle's text encoder and VAE into the export `dir`, in the
/// diffusers layout `orrery generate --model` reads: `text_encoder/` (and `tokenizer/` when the tokenizer lives
/// apart), and `vae/` or `tokenizer.pth`.
pub(crate) fn write_released_parts(bundle: &ModelBundle, dir: &Path) -> Result<()> {
    let text = bundle
        .text
        .as_ref()
        .expect("a released bundle has a text encoder");
    link_or_copy_folder(&text.model, &dir.join("text_encoder"))?;
    if text.tokenizer != text.model {
        link_or_copy_folder(&text.tokenizer, &dir.join("tokenizer"))?;
    }
    let vae = bundle_vae(bundle);
    if vae.is_dir() {
        link_or_copy_folder(&vae, &dir.join("vae"))
    } else {
        crate::trainer::bundle_files::link_or_copy(&vae, &dir.join("tokenizer.pth"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn testdata(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../testdata")
            .join(name)
    }

    /// A full fine-tune's DiT variables from the released `.pt` (pickle, `net.` names, TransformerEngine extra
    /// state and bookkeeping buffers) and from diffusers-named safetensors of the same network are the same.
    #[test]
    fn dit_variables_start_from_any_naming_and_format() {
        let config =
            orrery_dit::DitConfig::from_diffusers_file(&testdata("dit_tiny/config.json")).unwrap();
        let values = |weights: &str| {
            let vars = SeededVarMap::new(0);
            orrery_dit::CosmosDit::new(vars.var_builder(&Device::Cpu).pp("dit"), &config).unwrap();
            init_dit_from(&vars, &testdata("dit_tiny").join(weights)).unwrap();
            let mut v: Vec<(String, Vec<f32>)> = vars
                .named_vars()
                .into_iter()
                .map(|(n, t)| (n, t.as_tensor().flatten_all().unwrap().to_vec1().unwrap()))
                .collect();
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v
        };
        let released = values("released_layout.pt");
        assert_eq!(released.len(), config.parameter_shapes().len());
        assert_eq!(released, values("diffusion_pytorch_model.safetensors"));
        assert_eq!(released, values("official.safetensors"));
        let err = init_dit_from(
            &SeededVarMap::new(0),
            &testdata("vae_tiny/diffusion_pytorch_model.safetensors"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("no Cosmos DiT tensors"), "{err}");
    }

    /// The official layout with the Wan2.1 VAE as `tokenizer.pth` and the Reason1 tokenizer in a folder of its
    /// own: the export is a bundle `ModelBundle` opens with the same VAE file and text encoder.
    #[test]
    fn an_official_layouts_vae_file_and_text_encoder_go_into_the_export() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("official");
        std::fs::create_dir_all(root.join("reason1")).unwrap();
        std::fs::copy(testdata("dit_tiny/config.json"), root.join("config.json")).unwrap();
        std::fs::write(root.join("model.pt"), b"weights").unwrap();
        std::fs::write(root.join("tokenizer.pth"), b"the Wan2.1 VAE").unwrap();
        for f in ["config.json", "tokenizer.json", "tokenizer_config.json"] {
            std::fs::copy(testdata("qwen_tiny").join(f), root.join("reason1").join(f)).unwrap();
        }
        let bundle = ModelBundle::open(&root).unwrap();
        assert_eq!(bundle_vae(&bundle), root.join("tokenizer.pth"));
        let out = tmp.path().join("export");
        write_released_parts(&bundle, &out).unwrap();
        assert_eq!(
            std::fs::read(out.join("tokenizer.pth")).unwrap(),
            b"the Wan2.1 VAE"
        );
        assert!(out.join("text_encoder/tokenizer.json").is_file());
        assert!(!out.join("vae").exists());

        // A diffusers folder whose tokenizer lives in `tokenizer/` keeps it there.
        let diffusers = tmp.path().join("diffusers");
        std::fs::create_dir_all(diffusers.join("text_encoder")).unwrap();
        std::fs::create_dir_all(diffusers.join("tokenizer")).unwrap();
        std::fs::create_dir_all(diffusers.join("transformer")).unwrap();
        std::fs::copy(
            testdata("dit_tiny/config.json"),
            diffusers.join("transformer/config.json"),
        )
        .unwrap();
        std::fs::write(
            diffusers.join("transformer/diffusion_pytorch_model.safetensors"),
            b"weights",
        )
        .unwrap();
        std::fs::copy(
            testdata("qwen_tiny/config.json"),
            diffusers.join("text_encoder/config.json"),
        )
        .unwrap();
        std::fs::copy(
            testdata("qwen_tiny/tokenizer.json"),
            diffusers.join("tokenizer/tokenizer.json"),
        )
        .unwrap();
        let vae = diffusers.join("vae");
        std::fs::create_dir_all(&vae).unwrap();
        for f in ["config.json", "diffusion_pytorch_model.safetensors"] {
            std::fs::copy(testdata("vae_tiny").join(f), vae.join(f)).unwrap();
        }
        let bundle = ModelBundle::open(&diffusers).unwrap();
        let out = tmp.path().join("export2");
        write_released_parts(&bundle, &out).unwrap();
        assert!(out.join("tokenizer/tokenizer.json").is_file());
        assert!(out.join("text_encoder/config.json").is_file());
        assert!(out
            .join("vae/diffusion_pytorch_model.safetensors")
            .is_file());
    }
}
