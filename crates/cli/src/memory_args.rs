//! `generate`'s device-memory flags: an 8-bit text encoder, DiT blocks kept in host memory, tiled VAE decoding.
//! Each trades speed or the last digits for memory; none is on by default.

use orrery_pipeline::MemoryOptions;
use orrery_text::TextWeights;
use orrery_vae::tiling::Tiling;

#[derive(clap::Args, Debug, Clone, Default)]
pub struct MemoryArgs {
    /// The text encoder's Linear weights in 8 bits (Q8_0): about half of bf16's memory (7 GB instead of 14 GB for
    /// Cosmos-Reason1-7B); the embeddings change slightly and are cached apart from the full encoder's.
    #[arg(long)]
    pub text_encoder_8bit: bool,
    /// Keep the first N DiT blocks (or all) in host memory and copy each to the device for its forward: less
    /// device memory for the cost of moving those weights once a network call. With `all`, the DiT holds almost
    /// nothing on the device while the VAE decodes.
    #[arg(long, value_name = "N|all", value_parser = parse_offload_blocks)]
    pub offload_blocks: Option<usize>,
    /// Decode in spatial tiles of this many latent pixels (overlapping by a quarter tile), to bound the VAE's
    /// memory; seams are blended, so pixels differ slightly from a whole-frame decode.
    #[arg(long, value_name = "LATENT_PIXELS", value_parser = clap::value_parser!(u64).range(2..=4096))]
    pub vae_tile: Option<u64>,
}

impl MemoryArgs {
    pub fn options(&self) -> MemoryOptions {
        MemoryOptions {
            text_weights: TextWeights::eight_bit(self.text_encoder_8bit),
            offload_blocks: self.offload_blocks.unwrap_or(0),
            vae_tiling: self.vae_tile.map(|t| tiling(t as usize)),
        }
    }
}

/// Tiles of `tile` latent pixels overlapping by a quarter tile (at least one pixel).
pub fn tiling(tile: usize) -> Tiling {
    Tiling {
        tile,
        overlap: (tile / 4).max(1),
    }
}

/// `all` (every block) or a count.
fn parse_offload_blocks(s: &str) -> Result<usize, String> {
    if s == "all" {
        return Ok(usize::MAX);
    }
    s.parse::<usize>()
        .map_err(|_| format!("expected a number of blocks or `all`, got `{s}`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offload_counts_parse() {
        assert_eq!(parse_offload_blocks("all"), Ok(usize::MAX));
        assert_eq!(parse_offload_blocks("12"), Ok(12));
        assert!(parse_offload_blocks("half").unwrap_err().contains("`all`"));
    }

    #[test]
    fn the_defaults_change_nothing() {
        assert_eq!(MemoryArgs::default().options(), MemoryOptions::default());
        assert_eq!(
            tiling(2),
            Tiling {
                tile: 2,
                overlap: 1
            }
        );
        assert_eq!(
            tiling(32),
            Tiling {
                tile: 32,
                overlap: 8
            }
        );
    }
}
