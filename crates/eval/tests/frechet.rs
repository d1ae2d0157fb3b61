//! Frechet distances against fid-helper-pytorch's `compute_fid_score` (scipy.linalg.sqrtm), fixture from
//! tools/oracles/evalnets.py.

use orrery_eval::frechet::{frechet_distance, FeatureStats};

#[test]
fn frechet_distance_equals_the_reference_within_a_thousandth() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../testdata/evalnets/frechet.json"
    );
    let fixture: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let rows = |v: &serde_json::Value| -> Vec<Vec<f32>> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|r| {
                r.as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_f64().unwrap() as f32)
                    .collect()
            })
            .collect()
    };
    for case in fixture["cases"].as_array().unwrap() {
        let a = FeatureStats::from_rows(&rows(&case["a"])).unwrap();
        let b = FeatureStats::from_rows(&rows(&case["b"])).unwrap();
        let want = case["distance"].as_f64().unwrap();
        let got = frechet_distance(&a, &b).unwrap();
        let rel = (got - want).abs() / want.abs();
        eprintln!("frechet: orrery {got:.9} reference {want:.9} (relative difference {rel:.2e})");
        assert!(rel < 1e-3, "orrery {got} vs reference {want}");
    }
}
