//! LoRA adapters on the DiT, applied at load by fusing each delta into its weight:
//! `W' = W + Σ_adapters scale · (alpha / r) · B @ A` for every targeted Linear (`A`: (r, in), `B`: (out, r)).
//!
//! Two files are read (posttraining-spec §1.1–1.2):
//! - diffusers' `pytorch_lora_weights.safetensors`: keys `transformer.<diffusers module>.lora_A.weight` /
//!   `.lora_B.weight`, or the older `.lora.down.weight` / `.lora.up.weight` that diffusers still writes for the
//!   attention projections; the `transformer.` prefix is optional. `alpha` (and `use_rslora`, `alpha_pattern`)
//!   come from the header's `lora_adapter_metadata` JSON (PEFT's `LoraConfig`, keys prefixed `transformer.`),
//!   else `alpha = r`, as diffusers does.
//! - official checkpoints: `net.<official module>.lora_A.default.weight` / `.lora_B.default.weight` (beside the
//!   base weights in a full checkpoint, or alone); `alpha = r` unless told.
//!
//! Module names are mapped to official names with the checkpoint name tables, and every adapter is checked
//! against the network's parameters: a key that targets no weight, a rank or shape mismatch, a lone `A` or `B`
//! is an error naming the key and the file.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use orrery_nn::checkpoint::names::{dit_diffusers_to_official, DitNaming, OFFICIAL_PREFIX};
use orrery_nn::checkpoint::{tensor_bytes, to_candle, write_safetensors, SafetensorsSource};
use orrery_nn::{Checkpoint, CheckpointError};

use crate::error::{DitError, Result};
use crate::DitConfig;

/// The safetensors metadata key under which diffusers stores the adapter's `LoraConfig` as JSON.
pub const LORA_METADATA_KEY: &str = "lora_adapter_metadata";
/// The prefix of the transformer's entries in diffusers' LoRA files and metadata.
const DIFFUSERS_PREFIX: &str = "transformer.";

/// Which half of a LoRA pair a key holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Half {
    /// `lora_A` / `lora.down`: (r, in).
    Down,
    /// `lora_B` / `lora.up`: (out, r).
    Up,
}

/// The key suffixes of every spelling accepted, longest first.
const SUFFIXES: &[(&str, Half)] = &[
    (".lora_A.default.weight", Half::Down),
    (".lora_B.default.weight", Half::Up),
    (".lora.down.weight", Half::Down),
    (".lora.up.weight", Half::Up),
    (".lora_A.weight", Half::Down),
    (".lora_B.weight", Half::Up),
];

/// Whether a checkpoint key is a LoRA tensor (of any accepted spelling).
pub fn is_lora_key(name: &str) -> bool {
    SUFFIXES.iter().any(|(s, _)| name.ends_with(s))
}

/// One adapted Linear.
#[derive(Debug, Clone)]
pub struct LoraLayer {
    /// The module as the file names it (`transformer.transformer_blocks.0.attn1.to_q`), for messages.
    pub module: String,
    /// `A`, float32 on the CPU: (r, in).
    pub down: Tensor,
    /// `B`, float32 on the CPU: (out, r).
    pub up: Tensor,
    pub alpha: f64,
    /// rsLoRA scales by `alpha / sqrt(r)` instead of `alpha / r`.
    pub use_rslora: bool,
}

impl LoraLayer {
    pub fn rank(&self) -> usize {
        self.down.dims()[0]
    }

    /// `alpha / r` (or `alpha / sqrt(r)` for rsLoRA).
    pub fn scaling(&self) -> f64 {
        let r = self.rank() as f64;
        if self.use_rslora {
            self.alpha / r.sqrt()
        } else {
            self.alpha / r
        }
    }

    /// `scale · scaling · B @ A` in float32 on `device`: (out, in).
    pub fn delta(&self, scale: f64, device: &Device) -> Result<Tensor> {
        let up = self.up.to_device(device)?; // (out, r)
        let down = self.down.to_device(device)?; // (r, in)
        Ok((up.matmul(&down)? * (scale * self.scaling()))?)
    }
}

/// A LoRA adapter read from a file: the adapted Linears by official weight name (no `net.` prefix,
/// e.g. `blocks.0.self_attn.q_proj.weight`).
#[derive(Debug, Clone)]
pub struct LoraAdapter {
    path: PathBuf,
    layers: BTreeMap<String, LoraLayer>,
}

/// The parts of PEFT's `LoraConfig` that change the result (`lora_adapter_metadata`).
#[derive(Debug, Default)]
struct AdapterMetadata {
    alpha: Option<f64>,
    use_rslora: bool,
    /// PEFT `alpha_pattern`: module-name pattern (diffusers names) -> alpha.
    alpha_pattern: Vec<(String, f64)>,
}

impl AdapterMetadata {
    fn parse(path: &Path, json: &str) -> Result<Self> {
        let error = |detail: String| DitError::Lora {
            path: path.to_owned(),
            detail: format!("header metadata `{LORA_METADATA_KEY}`: {detail}"),
        };
        let value: serde_json::Value =
            serde_json::from_str(json).map_err(|e| error(format!("not JSON: {e}")))?;
        let object = value
            .as_object()
            .ok_or_else(|| error("not a JSON object".into()))?;
        // diffusers prefixes each field with the component (`transformer.lora_alpha`); accept bare names too.
        let field = |name: &str| {
            object
                .get(&format!("{DIFFUSERS_PREFIX}{name}"))
                .or_else(|| object.get(name))
                .filter(|v| !v.is_null())
        };
        let alpha = match field("lora_alpha") {
            None => None,
            Some(v) => Some(
                v.as_f64()
                    .ok_or_else(|| error(format!("lora_alpha is {v}, expected a number")))?,
            ),
        };
        let flag = |name: &str| field(name).and_then(|v| v.as_bool()).unwrap_or(false);
        if flag("use_dora") {
            return Err(error(
                "DoRA adapters (use_dora = true) are not supported".into(),
            ));
        }
        let mut alpha_pattern = Vec::new();
        if let Some(patterns) = field("alpha_pattern").and_then(|v| v.as_object()) {
            for (pattern, v) in patterns {
                let a = v.as_f64().ok_or_else(|| {
                    error(format!(
                        "alpha_pattern[{pattern}] is {v}, expected a number"
                    ))
                })?;
                alpha_pattern.push((pattern.clone(), a));
            }
        }
        Ok(Self {
            alpha,
            use_rslora: flag("use_rslora"),
            alpha_pattern,
        })
    }

    /// The alpha of `module` (diffusers or official name as stored): an `alpha_pattern` entry whose pattern is
    /// the module name or a dotted suffix of it (PEFT matches `(.*\.)?pattern$`; patterns are taken literally),
    /// else `lora_alpha`, else the rank.
    fn alpha_for(&self, module: &str, rank: usize) -> f64 {
        self.alpha_pattern
            .iter()
            .find(|(p, _)| module == p || module.ends_with(&format!(".{p}")))
            .map(|(_, a)| *a)
            .or(self.alpha)
            .unwrap_or(rank as f64)
    }
}

impl LoraAdapter {
    /// Reads an adapter file: diffusers' `pytorch_lora_weights.safetensors` or an official checkpoint (`.pt` or
    /// safetensors) with `lora_A.default` / `lora_B.default` keys; other tensors of a full checkpoint (the base
    /// weights) are ignored. `alpha` overrides the file's alpha (metadata, else the rank).
    pub fn open(path: &Path, alpha: Option<f64>) -> Result<Self> {
        let checkpoint = Checkpoint::open(path)?;
        let adapter = Self::from_checkpoint(&checkpoint, alpha)?;
        // diffusers' files hold only LoRA keys (its loader requires it); official ones may carry the base too.
        let official_layout = checkpoint
            .tensors()
            .iter()
            .any(|t| t.name.ends_with(".default.weight") && is_lora_key(&t.name));
        if !adapter.layers.is_empty() && !official_layout {
            if let Some(other) = checkpoint.tensors().iter().find(|t| !is_lora_key(&t.name)) {
                return Err(DitError::Lora {
                    path: path.to_owned(),
                    detail: format!(
                        "key `{}` is not a LoRA tensor (a diffusers LoRA file holds only lora_A/lora_B or \
                         lora.down/lora.up keys)",
                        other.name
                    ),
                });
            }
        }
        if adapter.layers.is_empty() {
            let first = checkpoint.first_names(3);
            return Err(DitError::Lora {
                path: path.to_owned(),
                detail: format!(
                    "no LoRA tensors (expected keys ending in .lora_A.weight / .lora_B.weight, .lora.down.weight / \
                     .lora.up.weight or .lora_A.default.weight / .lora_B.default.weight; first keys: {first:?})"
                ),
            });
        }
        Ok(adapter)
    }

    /// The LoRA tensors of an opened checkpoint (none is an empty adapter); keys without `lora` (the base
    /// weights of a full checkpoint) are ignored, a `lora` key of an unknown spelling is an error.
    pub fn from_checkpoint(checkpoint: &Checkpoint, alpha: Option<f64>) -> Result<Self> {
        let path = checkpoint.path().to_owned();
        let error = |detail: String| DitError::Lora {
            path: path.clone(),
            detail,
        };
        let metadata = match checkpoint
            .safetensors_metadata()?
            .and_then(|mut m| m.remove(LORA_METADATA_KEY))
        {
            Some(json) => AdapterMetadata::parse(&path, &json)?,
            None => AdapterMetadata::default(),
        };
        // stored module name -> (A key, B key)
        let mut pairs: BTreeMap<String, (Option<String>, Option<String>)> = BTreeMap::new();
        let mut others = Vec::new();
        for entry in checkpoint.tensors() {
            let name = entry.name.as_str();
            let Some((suffix, half)) = SUFFIXES.iter().find(|(s, _)| name.ends_with(s)) else {
                others.push(name);
                continue;
            };
            let module = &name[..name.len() - suffix.len()];
            let slot = pairs.entry(module.to_owned()).or_default();
            let target = match half {
                Half::Down => &mut slot.0,
                Half::Up => &mut slot.1,
            };
            if let Some(previous) = target.replace(name.to_owned()) {
                return Err(error(format!(
                    "`{previous}` and `{name}` both give the {} matrix of `{module}`",
                    if *half == Half::Down {
                        "A (down)"
                    } else {
                        "B (up)"
                    }
                )));
            }
        }
        if let Some(other) = others.iter().find(|n| n.contains("lora")) {
            return Err(error(format!(
                "key `{other}` is not a LoRA spelling orrery reads (expected .lora_A.weight / .lora_B.weight, \
                 .lora.down.weight / .lora.up.weight or .lora_A.default.weight / .lora_B.default.weight; DoRA \
                 magnitudes and kohya-style .alpha keys are not supported)"
            )));
        }
        let mut layers = BTreeMap::new();
        for (module, (down_key, up_key)) in pairs {
            let (down_key, up_key) = match (down_key, up_key) {
                (Some(a), Some(b)) => (a, b),
                (Some(k), None) | (None, Some(k)) => {
                    return Err(error(format!(
                        "`{k}` has no partner: the LoRA of `{module}` needs both its A (lora_A / lora.down) and \
                         B (lora_B / lora.up) matrices"
                    )))
                }
                (None, None) => unreachable!("a module is recorded with at least one half"),
            };
            let down = checkpoint.load_as(&down_key, DType::F32, &Device::Cpu)?; // (r, in)
            let up = checkpoint.load_as(&up_key, DType::F32, &Device::Cpu)?; // (out, r)
            let (r, r_up) = match (down.dims(), up.dims()) {
                ([r, _], [_, r_up]) => (*r, *r_up),
                _ => {
                    return Err(error(format!(
                        "`{down_key}` {:?} and `{up_key}` {:?} must be matrices (A: (r, in), B: (out, r))",
                        down.dims(),
                        up.dims()
                    )))
                }
            };
            if r != r_up || r == 0 {
                return Err(error(format!(
                    "rank mismatch: `{down_key}` has shape {:?} (rank {r}), `{up_key}` has shape {:?} (rank \
                     {r_up}); A is (r, in) and B (out, r)",
                    down.dims(),
                    up.dims()
                )));
            }
            let layer = LoraLayer {
                module: module.clone(),
                down,
                up,
                alpha: alpha.unwrap_or_else(|| metadata.alpha_for(&module, r)),
                use_rslora: metadata.use_rslora,
            };
            let target = official_weight_name(&module);
            if let Some(previous) = layers.insert(target.clone(), layer) {
                return Err(error(format!(
                    "`{}` and `{module}` both adapt `{target}`",
                    previous.module
                )));
            }
        }
        Ok(Self { path, layers })
    }

    /// A hand-made adapter: official weight names (`blocks.0.mlp.layer1.weight`) -> layers.
    pub fn from_layers(path: PathBuf, layers: BTreeMap<String, LoraLayer>) -> Self {
        Self { path, layers }
    }

    /// The file it was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The adapted Linears by official weight name (no `net.` prefix).
    pub fn layers(&self) -> &BTreeMap<String, LoraLayer> {
        &self.layers
    }

    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }

    /// Checks every layer against the network's parameters: its target must be a Linear weight of `config`,
    /// A (r, in) and B (out, r) must fit its (out, in).
    pub fn check(&self, config: &DitConfig) -> Result<()> {
        let shapes: HashMap<String, Vec<usize>> = config.parameter_shapes().into_iter().collect();
        for (target, layer) in &self.layers {
            let error = |detail: String| DitError::Lora {
                path: self.path.clone(),
                detail: format!("LoRA key `{}.*` (for `{target}`): {detail}", layer.module),
            };
            let shape = shapes.get(target).ok_or_else(|| {
                error(
                    "it targets no weight of this DiT (is the module name right, and does the model have that \
                     many blocks?)"
                        .into(),
                )
            })?;
            let [out, inp] = shape[..] else {
                return Err(error(format!(
                    "the target has shape {shape:?}; LoRA adapts Linear weights (out, in)"
                )));
            };
            let (r, down_in) = layer.down.dims2()?;
            let (up_out, _) = layer.up.dims2()?;
            if down_in != inp || up_out != out {
                return Err(error(format!(
                    "A is ({r}, {down_in}) and B ({up_out}, {r}), the weight is ({out}, {inp}): A must be (r, {inp}) \
                     and B ({out}, r)"
                )));
            }
        }
        Ok(())
    }
}

/// Official weight name (no `net.`) of a stored LoRA module name of either naming, with or without the
/// `transformer.` / `net.` / PEFT `base_model.model.` prefix.
fn official_weight_name(module: &str) -> String {
    let mut m = module;
    for prefix in ["base_model.model.", DIFFUSERS_PREFIX, OFFICIAL_PREFIX] {
        m = m.strip_prefix(prefix).unwrap_or(m);
    }
    let official = match DitNaming::detect([m]) {
        Some(DitNaming::Diffusers) => dit_diffusers_to_official(m),
        _ if is_diffusers_top_level(m) => dit_diffusers_to_official(m),
        _ => m.to_owned(),
    };
    format!("{official}.weight")
}

/// Top-level diffusers modules that `DitNaming::detect` does not look at.
fn is_diffusers_top_level(module: &str) -> bool {
    ["time_embed.", "norm_out.", "proj_out"]
        .iter()
        .any(|p| module.starts_with(p))
}

/// An adapter with the factor its delta is multiplied by (`--lora FILE:SCALE`).
pub type ScaledLora = (LoraAdapter, f64);

/// `FILE[:SCALE]` as given on a command line (scale 1 when left out): a path and a scale, not yet read.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraSpec {
    pub path: PathBuf,
    pub scale: f64,
}

impl FromStr for LoraSpec {
    type Err = String;

    /// The text after the last `:` is the scale when it parses as a finite number; otherwise the whole text is
    /// the path (so `C:\file` or `a:b.safetensors` still name files).
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        if s.is_empty() {
            return Err("empty LoRA path".into());
        }
        if let Some((path, scale)) = s.rsplit_once(':') {
            if let Ok(scale) = scale.parse::<f64>() {
                if !scale.is_finite() {
                    return Err(format!("LoRA scale `{scale}` is not a finite number"));
                }
                if path.is_empty() {
                    return Err(format!("`{s}`: no LoRA path before the scale"));
                }
                return Ok(Self {
                    path: path.into(),
                    scale,
                });
            }
        }
        Ok(Self {
            path: s.into(),
            scale: 1.0,
        })
    }
}

impl LoraSpec {
    /// Reads the adapter (alpha from the file).
    pub fn open(&self) -> Result<ScaledLora> {
        Ok((LoraAdapter::open(&self.path, None)?, self.scale))
    }
}

/// Per official weight name, the (layer, scale) pairs to add to it.
type Deltas = HashMap<String, Vec<(LoraLayer, f64)>>;

/// Checks every adapter against `config` and gathers the deltas by target.
fn collect_deltas(config: &DitConfig, loras: &[ScaledLora]) -> Result<Deltas> {
    let mut deltas: Deltas = HashMap::new();
    for (adapter, scale) in loras {
        adapter.check(config)?;
        for (target, layer) in adapter.layers() {
            deltas
                .entry(target.clone())
                .or_default()
                .push((layer.clone(), *scale));
        }
    }
    Ok(deltas)
}

/// `W + Σ scale · scaling · B @ A`, computed in float32 on `device`, returned in float32.
fn fuse(base: &Tensor, deltas: &[(LoraLayer, f64)], device: &Device) -> Result<Tensor> {
    let mut w = base.to_dtype(DType::F32)?; // (out, in)
    for (layer, scale) in deltas {
        w = (w + layer.delta(*scale, device)?)?;
    }
    Ok(w)
}

/// A VarBuilder backend over a checkpoint that fuses LoRA deltas into the weights it hands out. Asked for by
/// official name (no prefix); the checkpoint's own naming is applied here.
struct FusingCheckpoint {
    checkpoint: Checkpoint,
    naming: DitNaming,
    deltas: Deltas,
    /// Blocks `0..host_blocks` are read into host memory whatever the device.
    host_blocks: usize,
}

impl FusingCheckpoint {
    /// The CPU for the tensors of the blocks kept in host memory, else `dev`.
    fn device_for<'a>(&self, name: &str, dev: &'a Device) -> &'a Device {
        static HOST: Device = Device::Cpu;
        match block_index(name) {
            Some(i) if i < self.host_blocks => &HOST,
            _ => dev,
        }
    }
}

/// `i` of a tensor `blocks.{i}.…` (official names).
fn block_index(name: &str) -> Option<usize> {
    name.strip_prefix("blocks.")?
        .split('.')
        .next()?
        .parse()
        .ok()
}

impl SimpleBackend for FusingCheckpoint {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let dev = self.device_for(name, dev);
        let stored = self.naming.stored_name(name);
        let Some(deltas) = self.deltas.get(name) else {
            return self
                .checkpoint
                .load_checked(&stored, s.dims(), dtype, dev)
                .map_err(to_candle);
        };
        let base = self
            .checkpoint
            .load_checked(&stored, s.dims(), DType::F32, dev)
            .map_err(to_candle)?;
        fuse(&base, deltas, dev)
            .map_err(|e| candle_core::Error::Msg(e.to_string()))?
            .to_dtype(dtype)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        let shape = self
            .checkpoint
            .get(&self.naming.stored_name(name))
            .map_err(to_candle)?
            .shape
            .clone();
        self.get(shape.into(), name, candle_nn::Init::Const(0.), dtype, dev)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.checkpoint.contains(&self.naming.stored_name(name))
    }
}

/// The adapters to apply to a checkpoint: those it carries itself (official `lora_A/B.default` keys, scale 1,
/// alpha = rank), then `loras`.
fn with_embedded(checkpoint: &Checkpoint, loras: &[ScaledLora]) -> Result<Vec<ScaledLora>> {
    let mut all = Vec::with_capacity(loras.len() + 1);
    if checkpoint.tensors().iter().any(|t| is_lora_key(&t.name)) {
        all.push((LoraAdapter::from_checkpoint(checkpoint, None)?, 1.0));
    }
    all.extend(loras.iter().cloned());
    Ok(all)
}

/// A VarBuilder over `checkpoint` (official names asked, `naming` stored) that fuses the adapters the
/// checkpoint carries (at scale 1) and `loras` into the weights it hands out, after checking them against
/// `config`.
pub(crate) fn fusing_var_builder(
    checkpoint: Checkpoint,
    naming: DitNaming,
    config: &DitConfig,
    loras: &[ScaledLora],
    dtype: DType,
    device: &Device,
    host_blocks: usize,
) -> Result<candle_nn::VarBuilder<'static>> {
    let all = with_embedded(&checkpoint, loras)?;
    let deltas = collect_deltas(config, &all)?;
    let backend = FusingCheckpoint {
        checkpoint,
        naming,
        deltas,
        host_blocks,
    };
    Ok(candle_nn::VarBuilder::from_backend(
        Box::new(backend),
        dtype,
        device.clone(),
    ))
}

/// The fused weights of a model as a safetensors source: every parameter of the configuration under its
/// official name with the `net.` prefix, in its stored element type, each computed when written.
struct FusedWeights {
    checkpoint: Checkpoint,
    naming: DitNaming,
    entries: Vec<(String, orrery_nn::DType, Vec<usize>)>,
    deltas: Deltas,
}

impl SafetensorsSource for FusedWeights {
    fn entries(&self) -> Vec<(String, orrery_nn::DType, Vec<usize>)> {
        self.entries.clone()
    }

    fn tensor_bytes(&self, name: &str) -> orrery_nn::checkpoint::Result<Cow<'_, [u8]>> {
        let official = name.strip_prefix(OFFICIAL_PREFIX).unwrap_or(name);
        let stored = self.naming.stored_name(official);
        let Some(deltas) = self.deltas.get(official) else {
            return self.checkpoint.bytes(&stored);
        };
        let entry = self.checkpoint.get(&stored)?;
        let tensor_error = |detail: String| CheckpointError::Tensor {
            name: name.to_owned(),
            detail,
        };
        let dtype = entry
            .dtype
            .to_candle()
            .ok_or_else(|| tensor_error(format!("element type {} cannot be fused", entry.dtype)))?;
        let base = self.checkpoint.load_as(&stored, DType::F32, &Device::Cpu)?;
        let fused = fuse(&base, deltas, &Device::Cpu)
            .map_err(|e| tensor_error(e.to_string()))?
            .to_dtype(dtype)?;
        let bytes = tensor_bytes(&fused)?;
        let _ = self.checkpoint.release(&stored);
        Ok(Cow::Owned(bytes))
    }
}

/// Writes every parameter of `config` from `checkpoint` with the adapters it carries (scale 1) and `loras`
/// fused in, to `out` as one safetensors file in official names (`net.` prefix), each tensor in its stored
/// element type; streamed tensor by tensor and atomic.
pub(crate) fn write_fused(
    checkpoint: Checkpoint,
    naming: DitNaming,
    config: &DitConfig,
    loras: &[ScaledLora],
    out: &Path,
) -> Result<()> {
    let all = with_embedded(&checkpoint, loras)?;
    let deltas = collect_deltas(config, &all)?;
    let entries = config
        .parameter_shapes()
        .into_iter()
        .map(|(name, shape)| {
            let dtype = checkpoint.get(&naming.stored_name(&name))?.dtype;
            Ok((format!("{OFFICIAL_PREFIX}{name}"), dtype, shape))
        })
        .collect::<Result<Vec<_>>>()?;
    let source = FusedWeights {
        checkpoint,
        naming,
        entries,
        deltas,
    };
    write_safetensors(&source, out, None)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_tensors_are_told_by_their_index() {
        assert_eq!(block_index("blocks.0.mlp.layer1.weight"), Some(0));
        assert_eq!(block_index("blocks.27.self_attn.q_norm.weight"), Some(27));
        assert_eq!(block_index("x_embedder.proj.1.weight"), None);
        assert_eq!(block_index("final_layer.linear.weight"), None);
    }

    #[test]
    fn lora_spec_parses_path_and_optional_scale() {
        let spec: LoraSpec = "a/b.safetensors:0.5".parse().unwrap();
        assert_eq!(spec.path, PathBuf::from("a/b.safetensors"));
        assert_eq!(spec.scale, 0.5);
        let spec: LoraSpec = "a/b.safetensors".parse().unwrap();
        assert_eq!(spec.scale, 1.0);
        let spec: LoraSpec = "x.pt:-1".parse().unwrap();
        assert_eq!(spec.scale, -1.0);
        let spec: LoraSpec = "dir:with:colon.safetensors".parse().unwrap();
        assert_eq!(spec.path, PathBuf::from("dir:with:colon.safetensors"));
        assert!("".parse::<LoraSpec>().is_err());
        assert!(":0.5".parse::<LoraSpec>().is_err());
        assert!("x:inf".parse::<LoraSpec>().is_err());
    }

    #[test]
    fn module_names_of_every_spelling_map_to_official_weights() {
        for (module, official) in [
            (
                "transformer.transformer_blocks.1.attn1.to_q",
                "blocks.1.self_attn.q_proj.weight",
            ),
            (
                "transformer_blocks.0.attn2.to_out.0",
                "blocks.0.cross_attn.output_proj.weight",
            ),
            (
                "transformer.transformer_blocks.0.ff.net.0.proj",
                "blocks.0.mlp.layer1.weight",
            ),
            ("net.blocks.3.mlp.layer2", "blocks.3.mlp.layer2.weight"),
            (
                "blocks.3.self_attn.k_proj",
                "blocks.3.self_attn.k_proj.weight",
            ),
            ("transformer.proj_out", "final_layer.linear.weight"),
        ] {
            assert_eq!(official_weight_name(module), official, "{module}");
        }
    }

    #[test]
    fn metadata_gives_alpha_rslora_and_patterns() {
        let json = r#"{"transformer.lora_alpha": 8, "transformer.r": 4, "transformer.use_rslora": false,
                       "transformer.alpha_pattern": {"attn1.to_q": 2.0}}"#;
        let m = AdapterMetadata::parse(Path::new("x"), json).unwrap();
        assert_eq!(m.alpha_for("transformer_blocks.0.attn1.to_q", 4), 2.0);
        assert_eq!(m.alpha_for("transformer_blocks.0.attn1.to_k", 4), 8.0);
        assert_eq!(AdapterMetadata::default().alpha_for("a", 16), 16.0);
        let dora = r#"{"transformer.use_dora": true}"#;
        assert!(AdapterMetadata::parse(Path::new("x"), dora).is_err());
        assert!(AdapterMetadata::parse(Path::new("x"), "[1]").is_err());
    }

    #[test]
    fn delta_is_scale_times_alpha_over_rank_times_b_a() -> Result<()> {
        let dev = Device::Cpu;
        // A: (2, 3), B: (2, 2) -> delta (2, 3)
        let down = Tensor::new(&[[1f32, 0., 2.], [0., 1., -1.]], &dev)?;
        let up = Tensor::new(&[[1f32, 2.], [3., 4.]], &dev)?;
        let layer = LoraLayer {
            module: "m".into(),
            down,
            up,
            alpha: 8.0,
            use_rslora: false,
        };
        let delta = layer.delta(0.5, &dev)?.to_vec2::<f32>()?;
        // B @ A = [[1, 2, 0], [3, 4, 2]]; x 0.5 x 8 / 2 = x 2
        assert_eq!(delta, vec![vec![2., 4., 0.], vec![6., 8., 4.]]);
        Ok(())
    }
}
