//! Simulator-grounded metrics on real simulated clips: the real frames score as physics says they should, and
//! predictions that break physics (a frozen frame, a world sunk into the ground) are caught.

use orrery_eval::baselines::copy_last_frame;
use orrery_eval::grounded::{fit_quadratic, score_grounded};
use orrery_media::{Rgb, RgbImage};
use orrery_physics::{make_clip, ClipSettings};

fn settings() -> ClipSettings {
    ClipSettings {
        frames: 33,
        width: 128,
        height: 128,
        fps: 16.0,
    }
}

#[test]
fn a_parabola_is_fitted_exactly() {
    let points: Vec<(f64, f64)> = (0..8)
        .map(|i| {
            let t = 0.1 * i as f64 + 2.0;
            (t, 3.0 - 1.5 * t - 4.905 * t * t)
        })
        .collect();
    let [a, b, c] = fit_quadratic(&points).unwrap();
    assert!(
        (a - 3.0).abs() < 1e-8 && (b + 1.5).abs() < 1e-8 && (c + 4.905).abs() < 1e-9,
        "{a} {b} {c}"
    );
    assert!(fit_quadratic(&points[..3]).is_none());
}

#[test]
fn falling_objects_in_real_frames_show_earth_gravity_and_a_frozen_frame_shows_none() {
    let mut fits = Vec::new();
    let mut frozen = Vec::new();
    for seed in 0..6 {
        let clip = make_clip("t", "fall", seed, &settings()).unwrap();
        let frames = clip.images();
        fits.extend(score_grounded(&frames, &frames, &clip.truth, 0).gravity);
        let still = copy_last_frame(&frames[..1], frames.len());
        frozen.extend(score_grounded(&frames, &still, &clip.truth, 0).gravity);
    }
    assert!(
        fits.len() >= 3,
        "too few free-fall stretches to fit: {}",
        fits.len()
    );
    let mean_err = fits.iter().map(|f| f.relative_error()).sum::<f64>() / fits.len() as f64;
    eprintln!(
        "gravity from real frames: {} fits, mean relative error {mean_err:.4}",
        fits.len()
    );
    assert!(mean_err < 0.05, "{fits:?}");
    assert!(
        frozen.iter().all(|f| f.fitted_gravity.abs() < 0.5),
        "{frozen:?}"
    );
}

#[test]
fn occluded_objects_reappear_in_real_frames_and_not_in_an_emptied_prediction() {
    let (mut reappearing, mut reappeared) = (0, 0);
    for seed in 0..12 {
        let clip = make_clip("t", "occlusion", seed, &settings()).unwrap();
        let frames = clip.images();
        let s = score_grounded(&frames, &frames, &clip.truth, 0);
        assert_eq!(s.reappeared, s.reappearing);
        assert_eq!(s.count_matches, s.frames);
        reappearing += s.reappearing;
        // A prediction that loses the object once it is hidden: background only from then on.
        let background = clip.truth.scene.background;
        let emptied: Vec<RgbImage> = frames
            .iter()
            .map(|f| RgbImage::from_pixel(f.width(), f.height(), Rgb(background)))
            .collect();
        reappeared += score_grounded(&frames, &emptied, &clip.truth, 0).reappeared;
    }
    assert!(
        reappearing > 0,
        "no object went behind the screen and came back"
    );
    assert_eq!(reappeared, 0);
}

#[test]
fn objects_shifted_into_the_ground_are_penetrating() {
    let clip = make_clip("t", "stack", 3, &settings()).unwrap();
    let frames = clip.images();
    let real = score_grounded(&frames, &frames, &clip.truth, 0);
    assert!(real.found > 0);
    assert_eq!(real.penetrating, 0, "real frames penetrate: {real:?}");
    // Move everything 6 pixels down: resting objects now sink below the ground line.
    let sunk: Vec<RgbImage> = frames
        .iter()
        .map(|f| {
            RgbImage::from_fn(f.width(), f.height(), |x, y| {
                *f.get_pixel(x, y.saturating_sub(6))
            })
        })
        .collect();
    let s = score_grounded(&frames, &sunk, &clip.truth, 0);
    assert!(
        s.penetrating > 0 && s.penetration_sum_px / s.penetrating as f64 > 3.0,
        "{s:?}"
    );
}
