//! Official `WanVAE_` names (`tokenizer.pth`, `Wan2.1_VAE.pth`) -> diffusers `AutoencoderKLWan` names, following
//! diffusers' `convert_wan_vae_to_diffusers` layout.

/// Maps an official name to its diffusers name for a VAE with `num_res_blocks` residual blocks per stage.
pub fn official_to_diffusers(name: &str, num_res_blocks: usize) -> String {
    let parts: Vec<&str> = name.split('.').collect();
    let rest = |from: usize| parts[from..].join(".");
    let resnet = |tail: &str| -> String {
        // residual.{0,2,3,6} -> norm1, conv1, norm2, conv2; shortcut -> conv_shortcut
        let map = [
            ("residual.0.", "norm1."),
            ("residual.2.", "conv1."),
            ("residual.3.", "norm2."),
            ("residual.6.", "conv2."),
            ("shortcut.", "conv_shortcut."),
        ];
        map.iter()
            .find_map(|(o, d)| tail.strip_prefix(o).map(|t| format!("{d}{t}")))
            .unwrap_or_else(|| tail.to_owned())
    };
    let middle = |side: &str, idx: &str, tail: &str| match idx {
        "0" => format!("{side}.mid_block.resnets.0.{}", resnet(tail)),
        "1" => format!("{side}.mid_block.attentions.0.{tail}"),
        _ => format!("{side}.mid_block.resnets.1.{}", resnet(tail)),
    };
    match parts.as_slice() {
        ["conv1", ..] => format!("quant_conv.{}", rest(1)),
        ["conv2", ..] => format!("post_quant_conv.{}", rest(1)),
        [side, "conv1", ..] => format!("{side}.conv_in.{}", rest(2)),
        [side, "head", "0", ..] => format!("{side}.norm_out.{}", rest(3)),
        [side, "head", "2", ..] => format!("{side}.conv_out.{}", rest(3)),
        [side, "middle", idx, ..] => middle(side, idx, &rest(3)),
        ["encoder", "downsamples", idx, ..] => {
            format!("encoder.down_blocks.{idx}.{}", resnet(&rest(3)))
        }
        ["decoder", "upsamples", idx, ..] => {
            let k: usize = idx.parse().unwrap_or(0);
            let per_stage = num_res_blocks + 2;
            let (stage, j) = (k / per_stage, k % per_stage);
            if j <= num_res_blocks {
                format!("decoder.up_blocks.{stage}.resnets.{j}.{}", resnet(&rest(3)))
            } else {
                format!("decoder.up_blocks.{stage}.upsamplers.0.{}", rest(3))
            }
        }
        _ => name.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_pairs() {
        let cases = [
            ("encoder.conv1.weight", "encoder.conv_in.weight"),
            (
                "encoder.downsamples.3.shortcut.bias",
                "encoder.down_blocks.3.conv_shortcut.bias",
            ),
            (
                "encoder.downsamples.5.time_conv.weight",
                "encoder.down_blocks.5.time_conv.weight",
            ),
            (
                "encoder.downsamples.0.residual.0.gamma",
                "encoder.down_blocks.0.norm1.gamma",
            ),
            (
                "encoder.middle.1.to_qkv.weight",
                "encoder.mid_block.attentions.0.to_qkv.weight",
            ),
            (
                "encoder.middle.2.residual.6.bias",
                "encoder.mid_block.resnets.1.conv2.bias",
            ),
            ("encoder.head.2.weight", "encoder.conv_out.weight"),
            ("conv1.weight", "quant_conv.weight"),
            ("conv2.bias", "post_quant_conv.bias"),
            (
                "decoder.upsamples.3.time_conv.weight",
                "decoder.up_blocks.0.upsamplers.0.time_conv.weight",
            ),
            (
                "decoder.upsamples.11.resample.1.weight",
                "decoder.up_blocks.2.upsamplers.0.resample.1.weight",
            ),
            (
                "decoder.upsamples.14.residual.3.gamma",
                "decoder.up_blocks.3.resnets.2.norm2.gamma",
            ),
            (
                "decoder.upsamples.4.shortcut.weight",
                "decoder.up_blocks.1.resnets.0.conv_shortcut.weight",
            ),
            ("decoder.head.0.gamma", "decoder.norm_out.gamma"),
        ];
        for (official, diffusers) in cases {
            assert_eq!(official_to_diffusers(official, 2), diffusers, "{official}");
        }
    }
}
