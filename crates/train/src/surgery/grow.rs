//! Depth growth: a DiT with k times the blocks of a trained one starts out computing what that one computes.
//! Block i of the source becomes block k·i; the blocks between start with zero attention and MLP output
//! projections, so each adds nothing to the residual stream (a gated residual of zero) until training moves
//! those projections away from zero. Their other weights keep the fresh initialisation.

/// The residual-branch output projections of a block: zero makes the block an identity.
const BRANCH_OUTPUTS: [&str; 3] = [
    "self_attn.output_proj.weight",
    "cross_attn.output_proj.weight",
    "mlp.layer2.weight",
];

/// How a parameter of the grown network starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrownInit {
    /// From this tensor of the source network.
    Source(String),
    /// Zero (a new block's branch output).
    Zero,
    /// Its fresh initialisation (a new block's other weights).
    Fresh,
}

/// Where the parameter `name` (official DiT naming, `blocks.J.…`) of a network with `factor` times the source's
/// blocks comes from.
pub fn grown_init(name: &str, factor: usize) -> GrownInit {
    let Some(rest) = name.strip_prefix("blocks.") else {
        return GrownInit::Source(name.to_owned());
    };
    let Some((index, param)) = rest.split_once('.') else {
        return GrownInit::Source(name.to_owned());
    };
    let Ok(j) = index.parse::<usize>() else {
        return GrownInit::Source(name.to_owned());
    };
    if j.is_multiple_of(factor) {
        GrownInit::Source(format!("blocks.{}.{param}", j / factor))
    } else if BRANCH_OUTPUTS.contains(&param) {
        GrownInit::Zero
    } else {
        GrownInit::Fresh
    }
}

/// The growth factor from `source` to `target` blocks: a whole number of at least 1.
pub fn growth_factor(source: usize, target: usize) -> Result<usize, String> {
    if source == 0 || target < source || !target.is_multiple_of(source) {
        return Err(format!(
            "a DiT of {target} blocks cannot grow from one of {source}: it needs a whole multiple of them"
        ));
    }
    Ok(target / source)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_blocks_spread_out_and_the_new_ones_start_as_identities() {
        let src = |s: &str| GrownInit::Source(s.to_owned());
        assert_eq!(
            grown_init("x_embedder.proj.1.weight", 2),
            src("x_embedder.proj.1.weight")
        );
        assert_eq!(
            grown_init("blocks.0.mlp.layer1.weight", 2),
            src("blocks.0.mlp.layer1.weight")
        );
        assert_eq!(
            grown_init("blocks.6.self_attn.q_proj.weight", 2),
            src("blocks.3.self_attn.q_proj.weight")
        );
        assert_eq!(grown_init("blocks.7.mlp.layer2.weight", 2), GrownInit::Zero);
        assert_eq!(
            grown_init("blocks.5.cross_attn.output_proj.weight", 2),
            GrownInit::Zero
        );
        assert_eq!(
            grown_init("blocks.1.self_attn.q_proj.weight", 2),
            GrownInit::Fresh
        );
        assert_eq!(
            grown_init("blocks.9.mlp.layer2.weight", 3),
            src("blocks.3.mlp.layer2.weight")
        );
        assert_eq!(growth_factor(4, 8), Ok(2));
        assert_eq!(growth_factor(4, 4), Ok(1));
        assert!(growth_factor(4, 6).is_err());
        assert!(growth_factor(4, 2).is_err());
        assert!(growth_factor(0, 2).is_err());
    }
}
