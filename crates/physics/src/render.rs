//! Anti-aliased 2D rendering of a simulated frame with tiny-skia: background, ground, ramp, objects (rotated),
//! the agent's paddle, and the occluding screen on top; in a manipulation scene the target zone, the wall and the
//! gripper (behind the objects).

use tiny_skia::{Color, FillRule, Paint, PathBuilder, Pixmap, Rect, Transform};

use crate::camera::Camera;
use crate::scene::{SceneSpec, Shape};
use crate::sim::Trajectory;

fn paint(rgb: [u8; 3]) -> Paint<'static> {
    let mut p = Paint::default();
    p.set_color(Color::from_rgba8(rgb[0], rgb[1], rgb[2], 255));
    p.anti_alias = true;
    p
}

/// A world-space rectangle (centre, half sizes, angle) as a filled path.
fn fill_box(
    pixmap: &mut Pixmap,
    cam: &Camera,
    center: [f32; 2],
    half: [f32; 2],
    angle: f32,
    rgb: [u8; 3],
) {
    let [cx, cy] = cam.to_pixel(center);
    let (hw, hh) = (half[0] * cam.scale, half[1] * cam.scale);
    if let Some(rect) = Rect::from_ltrb(-hw, -hh, hw, hh) {
        let path = PathBuilder::from_rect(rect);
        // World angles are counter-clockwise with y up; pixel y points down, so the rotation flips sign.
        let t = Transform::from_rotate(-angle.to_degrees()).post_translate(cx, cy);
        pixmap.fill_path(&path, &paint(rgb), FillRule::Winding, t, None);
    }
}

/// Renders frame `frame` of a simulated scene as RGB bytes (width x height x 3).
pub fn render_frame(scene: &SceneSpec, traj: &Trajectory, frame: usize, cam: &Camera) -> Vec<u8> {
    let mut pixmap = Pixmap::new(cam.width_px, cam.height_px).expect("non-zero size");
    let [r, g, b] = scene.background;
    pixmap.fill(Color::from_rgba8(r, g, b, 255));
    if scene.ground {
        let top = cam.to_pixel([0.0, 0.0])[1];
        if let Some(rect) = Rect::from_ltrb(0.0, top, cam.width_px as f32, cam.height_px as f32) {
            pixmap.fill_rect(
                rect,
                &paint(scene.ground_color),
                Transform::identity(),
                None,
            );
        }
    }
    if let Some(m) = &scene.manipulation {
        // The zone colours the floor under it; the wall stands on the floor in the ground's colour.
        let [x0, top] = cam.to_pixel([m.zone.x0, 0.0]);
        let x1 = cam.to_pixel([m.zone.x1, 0.0])[0];
        if let Some(rect) = Rect::from_ltrb(x0, top, x1, cam.height_px as f32) {
            pixmap.fill_rect(rect, &paint(m.zone.color), Transform::identity(), None);
        }
        if let Some(w) = m.wall {
            fill_box(
                &mut pixmap,
                cam,
                [w.center_x, w.height / 2.0],
                [w.half_width, w.height / 2.0],
                0.0,
                scene.ground_color,
            );
        }
    }
    if let Some(ramp) = scene.ramp {
        fill_box(
            &mut pixmap,
            cam,
            ramp.center,
            [ramp.half_length, ramp.half_thickness],
            ramp.angle,
            scene.ground_color,
        );
    }
    if let Some(p) = scene.pendulum {
        let a = cam.to_pixel(p.pivot);
        let o = cam.to_pixel(traj.states[frame][p.object].position);
        let mut pb = PathBuilder::new();
        pb.move_to(a[0], a[1]);
        pb.line_to(o[0], o[1]);
        if let Some(path) = pb.finish() {
            let stroke = tiny_skia::Stroke {
                width: (0.02 * cam.scale).max(1.0),
                ..Default::default()
            };
            pixmap.stroke_path(
                &path,
                &paint([90, 90, 90]),
                &stroke,
                Transform::identity(),
                None,
            );
        }
    }
    // The gripper is drawn behind the objects, so that it never hides them from a detector.
    if let (Some(m), Some(g)) = (&scene.manipulation, traj.gripper.get(frame)) {
        for (center, half, angle) in g.boxes(&m.gripper) {
            fill_box(&mut pixmap, cam, center, half, angle, m.gripper.color);
        }
    }
    for (o, s) in scene.objects.iter().zip(&traj.states[frame]) {
        match o.shape {
            Shape::Circle { radius } => {
                let [cx, cy] = cam.to_pixel(s.position);
                if let Some(path) = PathBuilder::from_circle(cx, cy, radius * cam.scale) {
                    pixmap.fill_path(
                        &path,
                        &paint(o.color),
                        FillRule::Winding,
                        Transform::identity(),
                        None,
                    );
                }
            }
            Shape::Box {
                half_width,
                half_height,
            } => {
                fill_box(
                    &mut pixmap,
                    cam,
                    s.position,
                    [half_width, half_height],
                    s.angle,
                    o.color,
                );
            }
        }
    }
    if let (Some(a), Some(pos)) = (&scene.agent, traj.agent.get(frame)) {
        fill_box(
            &mut pixmap,
            cam,
            *pos,
            [a.half_width, a.half_height],
            0.0,
            a.color,
        );
    }
    if let Some(occ) = scene.occluder {
        fill_box(
            &mut pixmap,
            cam,
            occ.center,
            [occ.half_width, occ.half_height],
            0.0,
            occ.color,
        );
    }
    pixmap
        .data()
        .chunks_exact(4)
        .flat_map(|px| [px[0], px[1], px[2]])
        .collect()
}
