//! The action bench on hand-made predictors: a perfect one scores best on every clip (exact frames, zero latent
//! L2), a frozen one scores as the copy baseline, and a predictor of the wrong length is refused by name.

use orrery_eval::policy::bench::{
    run_action_bench, ActionBenchError, ActionPredictor, LatentSpace, COPY_FIRST_FRAME, SCORED_FROM,
};
use orrery_eval::policy::world::Never;
use orrery_media::RgbImage;
use orrery_physics::clip::{make_clip, Clip, ClipSettings};

fn clips(n: u64) -> Vec<Clip> {
    let settings = ClipSettings {
        frames: 9,
        width: 32,
        height: 32,
        fps: 16.0,
    };
    (0..n)
        .map(|i| make_clip(&format!("gripper-{i}"), "gripper", 40 + i, &settings).unwrap())
        .collect()
}

/// Returns the real clip (it was given them), or its first frame frozen, or one frame too few.
enum Hand {
    Perfect(Vec<Vec<RgbImage>>),
    Frozen,
    Short,
}

impl ActionPredictor for Hand {
    type Error = Never;

    fn name(&self) -> String {
        match self {
            Hand::Perfect(_) => "perfect".into(),
            Hand::Frozen => "frozen".into(),
            Hand::Short => "short".into(),
        }
    }

    fn prepare(&mut self, _: &[&str]) -> Result<(), Never> {
        Ok(())
    }

    fn predict(
        &mut self,
        caption: usize,
        first: &RgbImage,
        actions: &[Vec<f64>],
        _: u64,
    ) -> Result<Vec<RgbImage>, Never> {
        Ok(match self {
            Hand::Perfect(real) => real[caption].clone(),
            Hand::Frozen => vec![first.clone(); actions.len() + 1],
            Hand::Short => vec![first.clone(); actions.len()],
        })
    }
}

/// A stand-in VAE: latent frame 0 is frame 0, each later one the mean of two frames' pixels.
struct PairVae;

impl LatentSpace for PairVae {
    type Error = Never;

    fn latents(&mut self, frames: &[RgbImage]) -> Result<Vec<Vec<f32>>, Never> {
        let pixels = |f: &RgbImage| f.as_raw().iter().map(|&v| f32::from(v) / 255.0).collect();
        let mut out: Vec<Vec<f32>> = vec![pixels(&frames[0])];
        for pair in frames[1..].chunks(2) {
            let a: Vec<f32> = pixels(&pair[0]);
            let b: Vec<f32> = pixels(pair.last().unwrap());
            out.push(a.iter().zip(&b).map(|(x, y)| (x + y) / 2.0).collect());
        }
        Ok(out)
    }

    fn round_trip(&mut self, frames: &[RgbImage]) -> Result<Vec<RgbImage>, Never> {
        Ok(frames.to_vec())
    }
}

#[test]
fn a_perfect_prediction_wins_and_a_frozen_one_scores_as_copying() {
    let clips = clips(3);
    let mut perfect = Hand::Perfect(clips.iter().map(Clip::images).collect());
    let mut frozen = Hand::Frozen;
    let mut seen = Vec::new();
    let result = run_action_bench(
        &mut [&mut perfect, &mut frozen],
        &mut PairVae,
        &clips,
        1,
        8.0,
        |i, frames| {
            assert_eq!(frames.real.len(), 9 - SCORED_FROM);
            seen.push((i, frames.rows.len()));
            Ok(())
        },
        || {},
    )
    .unwrap();
    assert_eq!(seen, vec![(0, 5), (1, 5), (2, 5)]);
    let summaries = result.summaries();
    let row = |name: &str| {
        summaries
            .iter()
            .find(|(s, _)| s.method == name)
            .unwrap_or_else(|| panic!("no row {name}"))
    };
    let (p, p_latent) = row("perfect");
    assert_eq!(p.psnr, 100.0);
    assert_eq!(*p_latent, 0.0);
    assert_eq!(p.found_rate, 1.0);
    let (f, f_latent) = row("frozen");
    let (c, c_latent) = row(COPY_FIRST_FRAME);
    assert_eq!(f.psnr, c.psnr);
    assert_eq!(f_latent, c_latent);
    assert!(*f_latent > 0.0 && f.psnr < 60.0, "{f:?}");
    // The gripper moves from frame 0 in every clip, so the perfect row wins every clip against every other row
    // but the VAE ceiling (here exact too).
    for c in result.comparisons() {
        if c.other.starts_with("VAE") {
            assert_eq!((c.won, c.won_latent), (0, 0), "{}", c.other);
        } else {
            assert_eq!((c.won, c.won_latent), (3, 3), "{}", c.other);
        }
    }
    let json = result.to_json(Default::default());
    assert_eq!(json["clips"], 3);
    assert_eq!(json["clip_psnr"]["frozen"].as_array().unwrap().len(), 3);
    assert_eq!(json["first_row_against"]["frozen"]["clips_won_psnr"], 3);
    assert!(json["methods"][0]["latent_l2"].is_number());
    assert_eq!(result.gifs.len(), 1);
    let html = result.to_html("about");
    assert!(html.contains("latent L2") && html.contains("image/gif"));
    // The perfect row finds every object of every colour, in the JSON and in the report's by-colour table.
    let by_color = json["methods"][0]["found_rate_by_color"]
        .as_object()
        .unwrap();
    assert!(!by_color.is_empty() && by_color.values().all(|r| r == 1.0));
    assert!(html.contains("Objects found (%) by colour"));
}

#[test]
fn a_prediction_of_the_wrong_length_is_refused() {
    let clips = clips(1);
    let err = run_action_bench(
        &mut [&mut Hand::Short],
        &mut PairVae,
        &clips,
        0,
        8.0,
        |_, _| Ok(()),
        || {},
    )
    .err()
    .unwrap();
    assert!(matches!(err, ActionBenchError::Clip(_)));
    assert!(
        err.to_string().contains("short predicted 8 frames"),
        "{err}"
    );
}
