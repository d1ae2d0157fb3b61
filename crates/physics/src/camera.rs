//! The mapping from world metres to pixels: x in [0, width] fills the image width; y from `-ground_margin` to
//! `height - ground_margin` fills it from bottom to top, so a strip of ground shows at the bottom.

use serde::{Deserialize, Serialize};

use crate::scene::SceneSpec;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Camera {
    /// Pixels per metre.
    pub scale: f32,
    /// World y shown at the bottom row.
    pub y_bottom: f32,
    pub width_px: u32,
    pub height_px: u32,
}

impl Camera {
    pub fn new(scene: &SceneSpec, width_px: u32, height_px: u32) -> Self {
        let scale = width_px as f32 / scene.width;
        Self {
            scale,
            y_bottom: -0.1 * height_px as f32 / scale,
            width_px,
            height_px,
        }
    }

    /// World point -> pixel coordinates (x right, y down; pixel centres at .5).
    pub fn to_pixel(&self, p: [f32; 2]) -> [f32; 2] {
        [
            p[0] * self.scale,
            self.height_px as f32 - (p[1] - self.y_bottom) * self.scale,
        ]
    }

    /// Pixel coordinates -> world point (the inverse of [`Self::to_pixel`]).
    pub fn to_world(&self, px: [f32; 2]) -> [f32; 2] {
        [
            px[0] / self.scale,
            (self.height_px as f32 - px[1]) / self.scale + self.y_bottom,
        ]
    }

    /// Height of the visible world in metres.
    pub fn world_height(&self) -> f32 {
        self.height_px as f32 / self.scale
    }
}
