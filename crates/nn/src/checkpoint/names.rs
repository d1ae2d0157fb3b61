//! Name tables between the official Cosmos-Predict2.5 checkpoint keys (`net.blocks.0.self_attn.q_proj.weight`)
//! and the diffusers `CosmosTransformer3DModel` keys (`transformer_blocks.0.attn1.to_q.weight`).
//!
//! The rules are the ordered substring replacements of diffusers' `scripts/convert_cosmos_to_diffusers.py`
//! (`TRANSFORMER_KEYS_RENAME_DICT_COSMOS_2_0`), applied after removing the `net.` prefix; the reverse direction
//! applies the same rules backwards in reverse order. A test checks that every 2B key round-trips.

/// The official prefix of every network tensor in a released `.pt`.
pub const OFFICIAL_PREFIX: &str = "net.";

/// (official fragment, diffusers fragment), in the converter's order.
pub const DIT_OFFICIAL_TO_DIFFUSERS: &[(&str, &str)] = &[
    ("t_embedder.1", "time_embed.t_embedder"),
    ("t_embedding_norm", "time_embed.norm"),
    ("blocks", "transformer_blocks"),
    ("adaln_modulation_self_attn.1", "norm1.linear_1"),
    ("adaln_modulation_self_attn.2", "norm1.linear_2"),
    ("adaln_modulation_cross_attn.1", "norm2.linear_1"),
    ("adaln_modulation_cross_attn.2", "norm2.linear_2"),
    ("adaln_modulation_mlp.1", "norm3.linear_1"),
    ("adaln_modulation_mlp.2", "norm3.linear_2"),
    ("self_attn", "attn1"),
    ("cross_attn", "attn2"),
    ("q_proj", "to_q"),
    ("k_proj", "to_k"),
    ("v_proj", "to_v"),
    ("output_proj", "to_out.0"),
    ("q_norm", "norm_q"),
    ("k_norm", "norm_k"),
    ("mlp.layer1", "ff.net.0.proj"),
    ("mlp.layer2", "ff.net.2"),
    ("x_embedder.proj.1", "patch_embed.proj"),
    ("final_layer.adaln_modulation.1", "norm_out.linear_1"),
    ("final_layer.adaln_modulation.2", "norm_out.linear_2"),
    ("final_layer.linear", "proj_out"),
];

/// Buffers and bookkeeping entries of official checkpoints that are not network parameters (the converter
/// drops them; RoPE tables are recomputed).
pub const DIT_NON_PARAMETER_KEYS: &[&str] = &[
    "accum_video_sample_counter",
    "accum_image_sample_counter",
    "accum_iteration",
    "accum_train_in_hours",
    "pos_embedder.seq",
    "pos_embedder.dim_spatial_range",
    "pos_embedder.dim_temporal_range",
    "_extra_state",
];

/// Official name (with or without `net.`) -> diffusers name.
pub fn dit_official_to_diffusers(name: &str) -> String {
    let mut key = name
        .strip_prefix(OFFICIAL_PREFIX)
        .unwrap_or(name)
        .to_owned();
    for (official, diffusers) in DIT_OFFICIAL_TO_DIFFUSERS {
        key = key.replace(official, diffusers);
    }
    key
}

/// Diffusers name -> official name without the `net.` prefix.
pub fn dit_diffusers_to_official(name: &str) -> String {
    let mut key = name.to_owned();
    for (official, diffusers) in DIT_OFFICIAL_TO_DIFFUSERS.iter().rev() {
        key = key.replace(diffusers, official);
    }
    key
}

/// Whether an official key is bookkeeping rather than a parameter.
pub fn dit_is_non_parameter(name: &str) -> bool {
    DIT_NON_PARAMETER_KEYS.iter().any(|k| name.contains(k))
}

/// The naming scheme of a set of DiT tensor names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DitNaming {
    /// `net.blocks.0...` as in the released `.pt` files.
    OfficialPrefixed,
    /// `blocks.0...` (official names, prefix removed).
    Official,
    /// `transformer_blocks.0...` (diffusers).
    Diffusers,
}

impl DitNaming {
    pub fn detect<'a>(names: impl IntoIterator<Item = &'a str>) -> Option<Self> {
        for name in names {
            if name.starts_with("net.blocks.") || name.starts_with("net.x_embedder.") {
                return Some(Self::OfficialPrefixed);
            }
            if name.starts_with("blocks.") || name.starts_with("x_embedder.") {
                return Some(Self::Official);
            }
            if name.starts_with("transformer_blocks.") || name.starts_with("patch_embed.") {
                return Some(Self::Diffusers);
            }
        }
        None
    }

    /// The stored name of the tensor the model calls `official` (official name without prefix).
    pub fn stored_name(self, official: &str) -> String {
        match self {
            Self::OfficialPrefixed => format!("{OFFICIAL_PREFIX}{official}"),
            Self::Official => official.to_owned(),
            Self::Diffusers => dit_official_to_diffusers(official),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every parameter name of one official block and the top-level modules (spec section 7).
    fn official_2b_names() -> Vec<String> {
        let mut names: Vec<String> = [
            "x_embedder.proj.1.weight",
            "t_embedder.1.linear_1.weight",
            "t_embedder.1.linear_2.weight",
            "t_embedding_norm.weight",
            "crossattn_proj.0.weight",
            "crossattn_proj.0.bias",
            "final_layer.adaln_modulation.1.weight",
            "final_layer.adaln_modulation.2.weight",
            "final_layer.linear.weight",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for i in [0, 27] {
            for attn in ["self_attn", "cross_attn"] {
                for p in [
                    "q_proj",
                    "k_proj",
                    "v_proj",
                    "output_proj",
                    "q_norm",
                    "k_norm",
                ] {
                    names.push(format!("blocks.{i}.{attn}.{p}.weight"));
                }
            }
            for m in ["self_attn", "cross_attn", "mlp"] {
                for j in [1, 2] {
                    names.push(format!("blocks.{i}.adaln_modulation_{m}.{j}.weight"));
                }
            }
            names.push(format!("blocks.{i}.mlp.layer1.weight"));
            names.push(format!("blocks.{i}.mlp.layer2.weight"));
        }
        names
    }

    #[test]
    fn official_names_map_to_diffusers_and_back() {
        for name in official_2b_names() {
            let diffusers = dit_official_to_diffusers(&format!("net.{name}"));
            assert_eq!(
                dit_diffusers_to_official(&diffusers),
                name,
                "via {diffusers}"
            );
        }
    }

    #[test]
    fn known_pairs() {
        let cases = [
            (
                "net.blocks.3.self_attn.output_proj.weight",
                "transformer_blocks.3.attn1.to_out.0.weight",
            ),
            (
                "net.blocks.0.adaln_modulation_mlp.2.weight",
                "transformer_blocks.0.norm3.linear_2.weight",
            ),
            (
                "net.blocks.1.mlp.layer1.weight",
                "transformer_blocks.1.ff.net.0.proj.weight",
            ),
            (
                "net.t_embedder.1.linear_1.weight",
                "time_embed.t_embedder.linear_1.weight",
            ),
            ("net.t_embedding_norm.weight", "time_embed.norm.weight"),
            ("net.x_embedder.proj.1.weight", "patch_embed.proj.weight"),
            ("net.final_layer.linear.weight", "proj_out.weight"),
            ("net.crossattn_proj.0.bias", "crossattn_proj.0.bias"),
        ];
        for (official, diffusers) in cases {
            assert_eq!(dit_official_to_diffusers(official), diffusers);
        }
    }

    #[test]
    fn detects_naming() {
        assert_eq!(
            DitNaming::detect(["net.blocks.0.mlp.layer1.weight"]),
            Some(DitNaming::OfficialPrefixed)
        );
        assert_eq!(
            DitNaming::detect(["transformer_blocks.0.ff.net.2.weight"]),
            Some(DitNaming::Diffusers)
        );
        assert_eq!(DitNaming::detect(["something.else"]), None);
        assert!(dit_is_non_parameter(
            "net.blocks.0.self_attn.q_norm._extra_state"
        ));
    }
}
