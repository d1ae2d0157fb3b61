//! The official <-> diffusers DiT name tables agree with the real module names of diffusers'
//! `CosmosTransformer3DModel` (fixture from `tools/oracles/dit.py`).

use std::path::Path;

use orrery_nn::checkpoint::names::{
    dit_diffusers_to_official, dit_official_to_diffusers, DitNaming,
};
use orrery_nn::Checkpoint;

fn names(file: &str) -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/dit_tiny")
        .join(file);
    Checkpoint::open(path)
        .unwrap()
        .tensors()
        .iter()
        .map(|t| t.name.clone())
        .collect()
}

#[test]
fn every_diffusers_key_maps_to_its_official_key_and_back() {
    let diffusers = names("diffusion_pytorch_model.safetensors");
    let official = names("official.safetensors");
    assert_eq!(diffusers.len(), 49);
    let mut mapped: Vec<String> = diffusers
        .iter()
        .map(|n| format!("net.{}", dit_diffusers_to_official(n)))
        .collect();
    mapped.sort();
    assert_eq!(mapped, official);
    let mut back: Vec<String> = official
        .iter()
        .map(|n| dit_official_to_diffusers(n))
        .collect();
    back.sort();
    assert_eq!(back, diffusers);
    assert_eq!(
        DitNaming::detect(official.iter().map(String::as_str)),
        Some(DitNaming::OfficialPrefixed)
    );
    assert_eq!(
        DitNaming::detect(diffusers.iter().map(String::as_str)),
        Some(DitNaming::Diffusers)
    );
}
