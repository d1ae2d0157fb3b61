//! orrery-media: images and videos in and out (PNG, JPEG, MP4/H.264, GIF), resizing and frame-rate resampling
//! as the reference prepares its inputs. No tensor library here: frames are 8-bit RGB images.

mod atomic;
mod error;
pub mod fps;
mod gif_write;
mod h264;
mod image_io;
mod mp4_boxes;
mod mp4_read;
mod mp4_write;
pub mod resize;
mod sniff;
mod tile;

pub use atomic::write_atomically;
pub use error::{MediaError, Result};
pub use gif_write::{encode_gif, write_gif};
pub use image::{Rgb, RgbImage};
pub use image_io::{read_image, write_png, MAX_IMAGE_SIDE};
pub use mp4_read::{read_video, VideoInfo, VideoReader};
pub use mp4_write::{write_mp4, Mp4Options, Mp4Stream};
pub use tile::tile_clips;

/// A decoded video: RGB frames of one size, and their rate.
#[derive(Debug, Clone)]
pub struct Video {
    pub frames: Vec<RgbImage>,
    pub fps: f64,
}

impl Video {
    pub fn width(&self) -> u32 {
        self.frames.first().map_or(0, |f| f.width())
    }

    pub fn height(&self) -> u32 {
        self.frames.first().map_or(0, |f| f.height())
    }
}
