//! `orrery media ...`: look at and convert images and videos.

use std::path::PathBuf;

use anyhow::{bail, Result};
use orrery_media::{
    read_image, read_video, resize, write_gif, write_mp4, write_png, Mp4Options, VideoReader,
};
use orrery_pipeline::Size;

#[derive(clap::Subcommand)]
pub enum MediaCommand {
    /// Print a video's size, frame rate and frame count (decodes every frame to check the file).
    Info { path: PathBuf },
    /// Re-encode a video or image as MP4 (H.264), GIF or PNG frames, optionally resized (cover + centre crop,
    /// as the reference prepares its inputs) and limited in frames.
    Transcode {
        input: PathBuf,
        /// .mp4, .gif, or a folder for PNG frames.
        output: PathBuf,
        /// WIDTHxHEIGHT.
        #[arg(long)]
        size: Option<Size>,
        /// Keep at most this many frames.
        #[arg(long)]
        frames: Option<usize>,
        /// Output frame rate (default: the input's; frames are resampled by time).
        #[arg(long)]
        fps: Option<f64>,
        /// H.264 quantiser, 0 (best) to 51.
        #[arg(long, default_value_t = Mp4Options::default().qp)]
        qp: u8,
    },
}

/// A transcode's output size: 1 to 8192 pixels a side.
fn checked_size(size: Size) -> Result<(u32, u32)> {
    let ok = |n: usize| (1..=8192).contains(&n);
    if !ok(size.width) || !ok(size.height) {
        bail!("size {size} is outside 1..8192 per side");
    }
    Ok((size.width as u32, size.height as u32))
}

pub fn run(cmd: MediaCommand) -> Result<()> {
    match cmd {
        MediaCommand::Info { path } => {
            let mut reader = VideoReader::open(&path)?;
            let info = reader.info().clone();
            let mut decoded = 0usize;
            while reader.next_frame()?.is_some() {
                decoded += 1;
            }
            println!(
                "{}: {}x{}, {:.3} fps, {} frames ({:.2} s), all decoded",
                path.display(),
                info.width,
                info.height,
                info.fps,
                decoded,
                decoded as f64 / info.fps
            );
            Ok(())
        }
        MediaCommand::Transcode {
            input,
            output,
            size,
            frames,
            fps,
            qp,
        } => {
            let is_video = input
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("mp4"));
            let mut video = if is_video {
                read_video(&input)?
            } else {
                orrery_media::Video {
                    frames: vec![read_image(&input)?],
                    fps: fps.unwrap_or(16.0),
                }
            };
            if let Some(target) = fps {
                let idx =
                    orrery_media::fps::resample_indices(video.frames.len(), video.fps, target)?;
                video.frames = idx.into_iter().map(|i| video.frames[i].clone()).collect();
                video.fps = target;
            }
            if let Some(n) = frames {
                video.frames.truncate(n.max(1));
            }
            if let Some(size) = size {
                let (w, h) = checked_size(size)?;
                video.frames = video
                    .frames
                    .iter()
                    .map(|f| resize::resize_to_cover_and_crop(f, w, h))
                    .collect::<Result<_, _>>()?;
            }
            let ext = output
                .extension()
                .map(|e| e.to_string_lossy().to_lowercase());
            match ext.as_deref() {
                Some("mp4") => write_mp4(
                    &output,
                    &video.frames,
                    video.fps,
                    Mp4Options {
                        qp,
                        ..Default::default()
                    },
                )?,
                Some("gif") => write_gif(&output, &video.frames, video.fps)?,
                Some(other) => bail!(
                    "{}: unknown output type .{other} (use .mp4, .gif or a folder)",
                    output.display()
                ),
                None => {
                    std::fs::create_dir_all(&output)?;
                    for (i, frame) in video.frames.iter().enumerate() {
                        write_png(&output.join(format!("frame_{i:05}.png")), frame)?;
                    }
                }
            }
            println!(
                "wrote {} frames to {}",
                video.frames.len(),
                output.display()
            );
            Ok(())
        }
    }
}
