//! The simulator obeys the physics it claims: gravity, energy, momentum; the renderer puts objects where the
//! ground truth says; the same seed gives the same clip.

use orrery_physics::families::{generate, FAMILIES};
use orrery_physics::scene::{ObjectSpec, SceneSpec, Shape};
use orrery_physics::{render_frame, simulate, Camera, Trajectory};

fn ball(x: f32, y: f32, vx: f32, radius: f32, density: f32, restitution: f32) -> ObjectSpec {
    ObjectSpec {
        name: "red ball".into(),
        shape: Shape::Circle { radius },
        color: [220, 40, 40],
        color_name: "red".into(),
        density,
        restitution,
        friction: 0.0,
        position: [x, y],
        angle: 0.0,
        velocity: [vx, 0.0],
        angular_velocity: 0.0,
    }
}

fn empty_scene(gravity: f32, ground: bool) -> SceneSpec {
    SceneSpec {
        family: "test".into(),
        seed: 0,
        gravity,
        width: 4.0,
        height: 4.0,
        ground,
        ground_friction: 0.5,
        ground_restitution: 0.5,
        background: [30, 30, 38],
        ground_color: [120, 110, 100],
        objects: vec![],
        ramp: None,
        pendulum: None,
        occluder: None,
        agent: None,
        manipulation: None,
    }
}

/// Least-squares fit y = a t^2 / 2 + b t + c; returns a.
fn fitted_acceleration(ts: &[f64], ys: &[f64]) -> f64 {
    // Normal equations for [t^2/2, t, 1].
    let mut m = [[0f64; 3]; 3];
    let mut r = [0f64; 3];
    for (&t, &y) in ts.iter().zip(ys) {
        let f = [t * t / 2.0, t, 1.0];
        for i in 0..3 {
            for j in 0..3 {
                m[i][j] += f[i] * f[j];
            }
            r[i] += f[i] * y;
        }
    }
    // Cramer's rule for the first unknown.
    let det = |m: &[[f64; 3]; 3]| {
        m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
            - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
            + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
    };
    let mut ma = m;
    for i in 0..3 {
        ma[i][0] = r[i];
    }
    det(&ma) / det(&m)
}

#[test]
fn a_dropped_ball_falls_with_the_configured_gravity() {
    for g in [9.81f32, 3.7, 24.8] {
        let mut scene = empty_scene(g, false);
        scene.objects.push(ball(2.0, 3.5, 0.0, 0.1, 1.0, 0.5));
        let traj = simulate(&scene, 17, 16.0);
        let ts: Vec<f64> = (0..17).map(|i| i as f64 / 16.0).collect();
        let ys: Vec<f64> = traj
            .states
            .iter()
            .map(|s| s[0].position[1] as f64)
            .collect();
        let a = fitted_acceleration(&ts, &ys);
        assert!(
            (a + g as f64).abs() <= 0.02 * g as f64,
            "gravity {g}: fitted {a}"
        );
    }
}

fn mechanical_energy(scene: &SceneSpec, traj: &Trajectory, frame: usize) -> f64 {
    scene
        .objects
        .iter()
        .zip(&traj.states[frame])
        .map(|(o, s)| {
            let m = (o.shape.area() * o.density) as f64;
            let inertia = match o.shape {
                Shape::Circle { radius } => m * (radius as f64).powi(2) / 2.0,
                Shape::Box {
                    half_width,
                    half_height,
                } => {
                    m * (4.0 * (half_width as f64).powi(2) + 4.0 * (half_height as f64).powi(2))
                        / 12.0
                }
            };
            let v2 = (s.velocity[0] as f64).powi(2) + (s.velocity[1] as f64).powi(2);
            0.5 * m * v2
                + 0.5 * inertia * (s.angular_velocity as f64).powi(2)
                + m * scene.gravity as f64 * s.position[1] as f64
        })
        .sum()
}

#[test]
fn energy_never_rises_without_an_actuator() {
    for family in FAMILIES.iter().filter(|f| **f != "pusher") {
        for seed in 0..6 {
            let scene = generate(family, seed, 1.0, 49).unwrap();
            let traj = simulate(&scene, 49, 16.0);
            let e0 = mechanical_energy(&scene, &traj, 0);
            let scale = e0.abs().max(1e-3);
            let mut prev = e0;
            for f in 1..traj.states.len() {
                let e = mechanical_energy(&scene, &traj, f);
                assert!(
                    e <= prev + 0.01 * scale,
                    "{family} seed {seed}: energy rose at frame {f}: {prev} -> {e}"
                );
                prev = e;
            }
        }
    }
}

#[test]
fn an_elastic_collision_conserves_momentum() {
    let mut scene = empty_scene(0.0, false);
    scene.objects.push(ball(1.0, 2.0, 2.0, 0.2, 1.0, 1.0));
    scene.objects.push(ball(3.0, 2.0, -1.0, 0.3, 2.5, 1.0));
    let traj = simulate(&scene, 33, 16.0);
    let momentum = |f: usize| -> f64 {
        scene
            .objects
            .iter()
            .zip(&traj.states[f])
            .map(|(o, s)| (o.shape.area() * o.density * s.velocity[0]) as f64)
            .sum()
    };
    let collided = traj
        .events
        .iter()
        .any(|e| matches!(e, orrery_physics::Event::Collision { .. }));
    assert!(collided, "the balls must meet: {:?}", traj.events);
    let (before, after) = (momentum(0), momentum(32));
    assert!(
        (after - before).abs() <= 0.02 * before.abs(),
        "momentum {before} -> {after}"
    );
    // And they really exchanged momentum (the light ball bounced back).
    assert!(traj.states[32][0].velocity[0] < 0.0);
}

#[test]
fn rendered_centroids_match_the_ground_truth_pixels() {
    let mut scene = empty_scene(9.81, false);
    scene.objects.push(ball(1.3, 1.6, 1.5, 0.25, 1.0, 0.5));
    let traj = simulate(&scene, 9, 16.0);
    for (w, h) in [(64u32, 64u32), (160, 96)] {
        let cam = Camera::new(&scene, w, h);
        for frame in [0, 4, 8] {
            let rgb = render_frame(&scene, &traj, frame, &cam);
            // Coverage of the ball's colour against the background, per pixel, from the red channel.
            let (bg, fg) = (scene.background[0] as f32, scene.objects[0].color[0] as f32);
            let (mut sw, mut sx, mut sy) = (0f32, 0f32, 0f32);
            for (i, px) in rgb.chunks_exact(3).enumerate() {
                let a = ((px[0] as f32 - bg) / (fg - bg)).clamp(0.0, 1.0);
                let (x, y) = ((i as u32 % w) as f32 + 0.5, (i as u32 / w) as f32 + 0.5);
                sw += a;
                sx += a * x;
                sy += a * y;
            }
            let want = cam.to_pixel(traj.states[frame][0].position);
            let (dx, dy) = (sx / sw - want[0], sy / sw - want[1]);
            assert!(
                dx.hypot(dy) <= 1.0,
                "{w}x{h} frame {frame}: centroid off by ({dx}, {dy})"
            );
        }
    }
}

#[test]
fn the_same_seed_gives_the_same_clip() {
    for family in FAMILIES {
        let a = generate(family, 7, 1.0, 33).unwrap();
        let b = generate(family, 7, 1.0, 33).unwrap();
        assert_eq!(a, b);
        let (ta, tb) = (simulate(&a, 33, 16.0), simulate(&b, 33, 16.0));
        assert_eq!(ta, tb, "{family}");
        let cam = Camera::new(&a, 64, 64);
        assert_eq!(
            render_frame(&a, &ta, 20, &cam),
            render_frame(&b, &tb, 20, &cam)
        );
        assert_ne!(
            generate(family, 8, 1.0, 33).unwrap(),
            a,
            "{family}: the seed must matter"
        );
    }
    assert!(generate("unknown", 0, 1.0, 9).is_none());
}
