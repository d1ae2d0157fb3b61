use orrery_physics::families::{generate, FAMILIES};
use orrery_physics::{render_frame, simulate, Camera};
use std::hash::{Hash, Hasher};
#[test]
fn fingerprint() {
    let mut out = String::new();
    for family in FAMILIES {
        for seed in 0..4u64 {
            let s = generate(family, seed, 1.0, 33).unwrap();
            let t = simulate(&s, 33, 16.0);
            let cam = Camera::new(&s, 64, 64);
            let mut h = std::collections::hash_map::DefaultHasher::new();
            serde_json::to_string(&t).unwrap().hash(&mut h);
            serde_json::to_string(&s).unwrap().hash(&mut h);
            render_frame(&s, &t, 20, &cam).hash(&mut h);
            out.push_str(&format!("{family} {seed} {:x}\n", h.finish()));
        }
    }
    std::fs::write("/tmp/manip-fingerprint.txt", out).unwrap();
}
