//! Starting a DiT run from an exported model bundle: its DiT and word encoder as they are, or the DiT grown in
//! depth or width (`crate::surgery`), so fine-tuning and growth continue from a trained model.

use std::path::{Path, PathBuf};

use orrery_dit::DitConfig;
use orrery_nn::SeededVarMap;
use orrery_text::WordEncoderConfig;

use crate::dit::config::DitTrainConfig;
use crate::error::{Result, TrainError};
use crate::surgery::grow::{grown_init, growth_factor, GrownInit};
use crate::surgery::grow_width::{widen_dit_parameter, width_factor};
use crate::surgery::widen::set_vars_widened;
use crate::trainer::session::{init_vars_from, init_vars_mapped};

/// The word encoder configuration of an exported bundle, which a run starting from it keeps; counts the words of
/// `captions` it does not know (they read as unknown) and says so.
pub(crate) fn bundle_text_config<'a>(
    bundle: &Path,
    captions: impl Iterator<Item = &'a str>,
) -> Result<WordEncoderConfig> {
    let config_path = bundle.join("text_encoder/config.json");
    let text = std::fs::read_to_string(&config_path).map_err(TrainError::io(&config_path))?;
    let source: WordEncoderConfig = serde_json::from_str(&text)
        .map_err(|e| TrainError::Data(format!("{}: {e}", config_path.display())))?;
    let mut unknown: Vec<String> = captions
        .flat_map(orrery_text::word_encoder::words)
        .filter(|w| source.vocab.binary_search(w).is_err())
        .collect();
    unknown.sort_unstable();
    unknown.dedup();
    if !unknown.is_empty() {
        tracing::warn!(
            "{} caption word(s) are not in the bundle's vocabulary and read as unknown, e.g. {:?}",
            unknown.len(),
            &unknown[..unknown.len().min(5)]
        );
    }
    Ok(source)
}

/// The DiT weights of an exported bundle.
pub(crate) fn bundle_dit_weights(bundle: &Path) -> PathBuf {
    bundle.join("transformer/diffusion_pytorch_model.safetensors")
}

/// Starts from the DiT and word encoder of an exported bundle; its caption vocabulary must be this run's. With
/// `grow_blocks` the DiT may have a whole multiple of the bundle DiT's blocks, with `grow_width` of its width.
/// A LoRA run holds no DiT variables (its frozen DiT is loaded from the bundle as it is), so only the word
/// encoder's are set.
pub(crate) fn init_from_bundle(
    vars: &SeededVarMap,
    bundle: &Path,
    text_config: &WordEncoderConfig,
    config: &DitTrainConfig,
) -> Result<()> {
    let config_path = bundle.join("text_encoder/config.json");
    let text = std::fs::read_to_string(&config_path).map_err(TrainError::io(&config_path))?;
    let source: WordEncoderConfig = serde_json::from_str(&text)
        .map_err(|e| TrainError::Data(format!("{}: {e}", config_path.display())))?;
    if &source != text_config {
        return Err(TrainError::Data(format!(
            "{}: the bundle's word encoder (vocabulary of {} words, width {}) differs from this run's ({} words, \
             width {}); fine-tuning needs the same captions and text shape",
            config_path.display(),
            source.vocab.len(),
            source.width,
            text_config.vocab.len(),
            text_config.width
        )));
    }
    let dit_weights = bundle_dit_weights(bundle);
    // Growth checks the bundle DiT's shape against this run's; errors name its config.
    let source_config = bundle.join("transformer/config.json");
    let grown_from = |factor: fn(&DitConfig, &DitConfig) -> std::result::Result<usize, String>| {
        let source = DitConfig::from_diffusers_file(&source_config)?;
        let model = config.model().map_err(TrainError::Data)?;
        factor(&source, model)
            .map_err(|e| TrainError::Data(format!("{}: {e}", source_config.display())))
    };
    if config.grow_blocks {
        let factor = grown_from(|s, t| growth_factor(s.num_blocks, t.num_blocks))?;
        init_vars_mapped(
            vars,
            &dit_weights,
            "dit.",
            |name| match grown_init(name, factor) {
                GrownInit::Source(s) => Some(s),
                GrownInit::Zero | GrownInit::Fresh => None,
            },
            |_| false,
        )?;
        for (name, var) in vars.named_vars() {
            let zero = name
                .strip_prefix("dit.")
                .is_some_and(|n| grown_init(n, factor) == GrownInit::Zero);
            if zero {
                var.set(&var.zeros_like()?)?;
            }
        }
    } else if config.grow_width {
        grown_from(width_factor)?;
        set_vars_widened(
            vars,
            &dit_weights,
            |name| name.strip_prefix("dit.").map(str::to_owned),
            false,
            widen_dit_parameter,
        )?;
    } else if let Some(model) = config.model.as_ref().filter(|m| m.action.is_some()) {
        init_action_dit(vars, &source_config, &dit_weights, model)?;
    } else if config.lora.is_none() {
        init_vars_from(vars, &dit_weights, "dit.", |_| false)?;
    }
    init_vars_from(
        vars,
        &bundle.join("text_encoder/model.safetensors"),
        "text.",
        |_| false,
    )
}

/// The action-conditioned DiT `model` from a bundle's DiT (`source_config`, `dit_weights`), which must be the same
/// network but for the action embedders.
///
/// A bundle DiT without action embedders gives every other weight, and the embedders start fresh with their last
/// layer (`fc2` weight and bias) zero. Both action embeddings are then zero, so the network starts as the bundle's
/// exactly (the embeddings are added to the timestep embedding and the adaLN-LoRA term); and `fc2`'s gradient (the
/// output's gradient times `fc1`'s activations, which are not zero) moves it from the first step, after which `fc1`
/// learns too. A zero `fc1` instead would leave `fc2` without a gradient for good (GELU(0) = 0 in, nothing out).
/// A bundle DiT that has the same embedders (an action model trained further) gives them too.
fn init_action_dit(
    vars: &SeededVarMap,
    source_config: &Path,
    dit_weights: &Path,
    model: &DitConfig,
) -> Result<()> {
    let source = DitConfig::from_diffusers_file(source_config)?;
    let without_action = |c: &DitConfig| DitConfig {
        action: None,
        ..c.clone()
    };
    if without_action(&source) != without_action(model) {
        return Err(TrainError::Data(format!(
            "{}: the bundle's DiT ({}) is not this run's network without its action embedders ({}); an \
             action-conditioned model starts from a DiT of its own shape",
            source_config.display(),
            describe(&source),
            describe(model)
        )));
    }
    if let Some(a) = source.action {
        if Some(a) != model.action {
            return Err(TrainError::Data(format!(
                "{}: the bundle's DiT takes actions {a:?}, this run's model.action is {:?}",
                source_config.display(),
                model.action
            )));
        }
        return init_vars_from(vars, dit_weights, "dit.", |_| false);
    }
    let is_action = |name: &str| name.starts_with("action_embedder_");
    init_vars_mapped(
        vars,
        dit_weights,
        "dit.",
        |name| (!is_action(name)).then(|| name.to_owned()),
        |_| false,
    )?;
    for (name, var) in vars.named_vars() {
        let last_layer = name
            .strip_prefix("dit.")
            .is_some_and(|n| is_action(n) && n.contains(".fc2."));
        if last_layer {
            var.set(&var.zeros_like()?)?;
        }
    }
    Ok(())
}

/// A DiT's shape in words, for errors.
fn describe(c: &DitConfig) -> String {
    format!(
        "{} blocks of width {}, {} heads, {} -> {} latent channels, patch {}x{}, text {} (projected from {:?}), \
         adaLN-LoRA {}, max size {:?}",
        c.num_blocks,
        c.model_channels,
        c.num_heads,
        c.in_channels,
        c.out_channels,
        c.patch_temporal,
        c.patch_spatial,
        c.crossattn_emb_channels,
        c.crossattn_proj_in_channels,
        c.adaln_lora_dim,
        c.max_size
    )
}
