//! Whether the events a caption tells (`orrery_physics::Event`: "the red ball lands on the floor", "the ball hits
//! the block", ...) happen in a video, judged from the frames alone by the objects' colours, so that a generated
//! world can be checked against its caption (the RL caption reward, Text2World). The frame an event happens in
//! is not asked for: a Text2World video tells the story at its own pace.
//!
//! Each event reads as a condition on the objects' pixel extents, with tolerances of a couple of pixels, since
//! small generated frames draw edges loosely:
//! - lands on the floor: the object's lowest pixel reaches the ground line;
//! - hits: the two objects' boxes touch;
//! - slides down the ramp: the object's centre moves down and sideways;
//! - the paddle (or the gripper) pushes: it touches the object, or the object moves;
//! - hits the wall: the object's box touches the wall's;
//! - the gripper picks up: the gripper touches the object and, still touching it, lifts it;
//! - the gripper lets go: the gripper touches the object, then the two are apart;
//! - leaves the frame: the object touches the border and is then gone (or the video ends);
//! - comes to rest: after moving, if only by settling, the object stays still for a few frames;
//! - falls over: the block's box changes its proportions or stops filling it (a tilted block), as a tilt past 45
//!   degrees does.

use orrery_media::RgbImage;
use orrery_physics::{Event, GroundTruth};

use crate::track::{matches, MIN_PIXELS};

/// Pixels two edges may be apart and still touch (a drawn object's anti-aliased edge is not its colour).
pub const CONTACT_PX: f64 = 3.0;
/// Displacement of the centre (pixels) that counts as moving.
pub const MOVE_PX: f64 = 3.0;
/// Displacement (pixels) before a rest that shows the object was moving (a settling stack moves about one).
pub const SETTLE_PX: f64 = 0.5;
/// Most frame-to-frame motion (pixels) of an object at rest.
pub const STILL_PX: f64 = 0.75;
/// Consecutive frames an object must stay still to have come to rest.
pub const STILL_FRAMES: usize = 4;
/// Change of a block's width/height ratio (as a factor) that shows it turned over.
pub const TURN_RATIO: f64 = 1.5;
/// Fraction of its box a tilted block fills at most (an upright one fills all of it).
pub const TILTED_FILL: f64 = 0.8;

/// Where an object's pixels are in one frame: their box (pixel edges) and centroid.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Extent {
    pub min: [f64; 2],
    pub max: [f64; 2],
    pub centre: [f64; 2],
    pub pixels: usize,
}

impl Extent {
    fn size(&self) -> [f64; 2] {
        [self.max[0] - self.min[0], self.max[1] - self.min[1]]
    }

    /// Fraction of the box the pixels fill.
    fn fill(&self) -> f64 {
        let [w, h] = self.size();
        self.pixels as f64 / (w * h)
    }

    /// Largest gap between the two boxes along x or y (<= 0 where they overlap).
    fn gap(&self, other: &Extent) -> f64 {
        let gx = (self.min[0] - other.max[0]).max(other.min[0] - self.max[0]);
        let gy = (self.min[1] - other.max[1]).max(other.min[1] - self.max[1]);
        gx.max(gy)
    }
}

/// The extent of the pixels of colour `rgb`; `None` when fewer than [`MIN_PIXELS`] match.
pub fn extent(frame: &RgbImage, rgb: [u8; 3]) -> Option<Extent> {
    let (mut min, mut max) = ([f64::MAX; 2], [f64::MIN; 2]);
    let (mut sum, mut n) = ([0.0; 2], 0usize);
    for (x, y, p) in frame.enumerate_pixels() {
        if matches(p, rgb) {
            let (x, y) = (x as f64, y as f64);
            min = [min[0].min(x), min[1].min(y)];
            max = [max[0].max(x + 1.0), max[1].max(y + 1.0)];
            sum = [sum[0] + x + 0.5, sum[1] + y + 0.5];
            n += 1;
        }
    }
    (n >= MIN_PIXELS).then(|| Extent {
        min,
        max,
        centre: [sum[0] / n as f64, sum[1] / n as f64],
        pixels: n,
    })
}

fn distance(a: [f64; 2], b: [f64; 2]) -> f64 {
    (a[0] - b[0]).hypot(a[1] - b[1])
}

/// Whether `event` happens anywhere in `frames`, judged by the colours of `truth`'s objects.
pub fn happens(event: &Event, frames: &[RgbImage], truth: &GroundTruth) -> bool {
    let extents = |object: usize| -> Vec<Option<Extent>> {
        let rgb = truth.scene.objects[object].color;
        frames.iter().map(|f| extent(f, rgb)).collect()
    };
    let found = |e: &[Option<Extent>]| -> Vec<Extent> { e.iter().flatten().copied().collect() };
    match *event {
        Event::HitsGround { object, .. } => {
            let ground = truth.camera.to_pixel([0.0, 0.0])[1] as f64;
            truth.scene.ground
                && found(&extents(object))
                    .iter()
                    .any(|e| e.max[1] >= ground - CONTACT_PX)
        }
        Event::Collision { a, b, .. } => contacts(&extents(a), &extents(b)).contains(&true),
        Event::HitsRamp { object, .. } => match found(&extents(object))[..] {
            [first, .., last] => {
                last.centre[1] - first.centre[1] >= MOVE_PX
                    && (last.centre[0] - first.centre[0]).abs() >= MOVE_PX
            }
            _ => false,
        },
        Event::Pushed { object, .. } => {
            let own = extents(object);
            let touched = contacts(&own, &actor(frames, truth)).contains(&true);
            let seen = found(&own);
            touched
                || seen
                    .first()
                    .is_some_and(|f| seen.iter().any(|e| distance(e.centre, f.centre) >= MOVE_PX))
        }
        Event::HitsWall { object, .. } => {
            let Some(wall) = truth.scene.manipulation.as_ref().and_then(|m| m.wall) else {
                return false;
            };
            let [x0, top] = truth
                .camera
                .to_pixel([wall.center_x - wall.half_width, wall.height]);
            let [x1, bottom] = truth
                .camera
                .to_pixel([wall.center_x + wall.half_width, 0.0]);
            let wall = Extent {
                min: [x0 as f64, top as f64],
                max: [x1 as f64, bottom as f64],
                centre: [0.5 * (x0 + x1) as f64, 0.5 * (top + bottom) as f64],
                pixels: 0,
            };
            found(&extents(object))
                .iter()
                .any(|e| e.gap(&wall) <= CONTACT_PX)
        }
        Event::Grasped { object, .. } => {
            let own = extents(object);
            let touching = contacts(&own, &actor(frames, truth));
            (0..own.len()).any(|k| {
                let Some(at) = own[k].filter(|_| touching[k]) else {
                    return false;
                };
                (k + 1..own.len()).any(|l| {
                    touching[l] && own[l].is_some_and(|e| at.centre[1] - e.centre[1] >= MOVE_PX)
                })
            })
        }
        Event::Released { object, .. } => {
            let own = extents(object);
            let gripper = actor(frames, truth);
            let touching = contacts(&own, &gripper);
            let apart = (0..own.len()).map(|k| match (own[k], gripper[k]) {
                (Some(o), Some(g)) => o.gap(&g) > CONTACT_PX,
                _ => false,
            });
            let first_touch = touching.iter().position(|t| *t);
            first_touch.is_some_and(|t| apart.skip(t + 1).any(|a| a))
        }
        Event::LeavesFrame { object, .. } => {
            let e = extents(object);
            let (w, h) = (truth.camera.width_px as f64, truth.camera.height_px as f64);
            let at_border = |x: &Extent| {
                x.min[0] <= CONTACT_PX
                    || x.min[1] <= CONTACT_PX
                    || x.max[0] >= w - CONTACT_PX
                    || x.max[1] >= h - CONTACT_PX
            };
            let gone = e
                .windows(2)
                .any(|p| matches!(p, [Some(last), None] if at_border(last)));
            gone || e.last().is_some_and(|l| l.as_ref().is_some_and(at_border))
        }
        Event::Stops { object, .. } => comes_to_rest(&extents(object)),
        Event::FallsOver { object, .. } => {
            let seen = found(&extents(object));
            let Some(first) = seen.first() else {
                return false;
            };
            let ratio = |e: &Extent| e.size()[0] / e.size()[1];
            seen.iter().any(|e| {
                (ratio(e) / ratio(first)).ln().abs() >= TURN_RATIO.ln()
                    || (first.fill() > TILTED_FILL + 0.1 && e.fill() <= TILTED_FILL)
            })
        }
    }
}

/// The extents of what acts on objects: the paddle or the gripper (none in passive worlds).
fn actor(frames: &[RgbImage], truth: &GroundTruth) -> Vec<Option<Extent>> {
    let color = (truth.scene.agent.as_ref().map(|a| a.color))
        .or_else(|| truth.scene.manipulation.as_ref().map(|m| m.gripper.color));
    frames
        .iter()
        .map(|f| color.and_then(|c| extent(f, c)))
        .collect()
}

/// Per frame, whether both are seen and their boxes touch.
fn contacts(a: &[Option<Extent>], b: &[Option<Extent>]) -> Vec<bool> {
    a.iter()
        .zip(b)
        .map(|(a, b)| matches!((a, b), (Some(a), Some(b)) if a.gap(b) <= CONTACT_PX))
        .collect()
}

/// Moved [`SETTLE_PX`] from where it was first seen, then stayed within [`STILL_PX`] a frame for
/// [`STILL_FRAMES`] frames in a row.
fn comes_to_rest(extents: &[Option<Extent>]) -> bool {
    let Some(start) = extents.iter().flatten().next().map(|e| e.centre) else {
        return false;
    };
    let mut moved = false;
    let mut still = 0;
    for pair in extents.windows(2) {
        match pair {
            [Some(a), Some(b)] => {
                moved |= distance(a.centre, start) >= SETTLE_PX;
                still = if moved && distance(a.centre, b.centre) <= STILL_PX {
                    still + 1
                } else {
                    0
                };
                if still + 1 >= STILL_FRAMES {
                    return true;
                }
            }
            _ => still = 0,
        }
    }
    false
}

/// The events of `truth` that `caption` tells (its sentence for the event is in the caption), each once.
pub fn captioned_events<'a>(truth: &'a GroundTruth, caption: &str) -> Vec<&'a Event> {
    let caption = caption.to_lowercase();
    let mut told = std::collections::HashSet::new();
    truth
        .events
        .iter()
        .filter(|e| {
            orrery_physics::caption::event_sentence(&truth.scene, e)
                .is_some_and(|s| caption.contains(&s.to_lowercase()) && told.insert(s))
        })
        .collect()
}

/// Fraction of the events `caption` tells that happen in `frames`; `None` when it tells none.
pub fn captioned_events_shown(
    frames: &[RgbImage],
    truth: &GroundTruth,
    caption: &str,
) -> Option<f64> {
    let events = captioned_events(truth, caption);
    let shown = events.iter().filter(|e| happens(e, frames, truth)).count();
    (!events.is_empty()).then(|| shown as f64 / events.len() as f64)
}
