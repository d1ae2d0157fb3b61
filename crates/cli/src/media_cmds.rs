//! `orrery media ...`: look at and convert images and videos.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use orrery_media::{
    read_image, read_video, resize, tile_clips, write_gif, write_mp4, write_png, Mp4Options,
    RgbImage, VideoReader,
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
    /// Put videos (or images) side by side, each resized to one tile, as MP4, GIF or PNG frames: e.g. the real
    /// clip beside a prediction. Shorter inputs hold their last frame.
    Tile {
        /// The inputs, left to right.
        #[arg(required = true, num_args = 2..)]
        inputs: Vec<PathBuf>,
        /// .mp4, .gif, or a folder for PNG frames.
        #[arg(long)]
        out: PathBuf,
        /// Tile size WIDTHxHEIGHT (default: the first input's size).
        #[arg(long)]
        size: Option<Size>,
        /// Output frame rate (default: the first input's).
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
            write_frames(&output, &video.frames, video.fps, qp)?;
            println!(
                "wrote {} frames to {}",
                video.frames.len(),
                output.display()
            );
            Ok(())
        }
        MediaCommand::Tile {
            inputs,
            out,
            size,
            fps,
            qp,
        } => tile(&inputs, &out, size, fps, qp),
    }
}

/// Reads a video, or an image as a one-frame video.
fn read_frames(path: &Path) -> Result<(Vec<RgbImage>, f64)> {
    match read_video(path) {
        Ok(v) => Ok((v.frames, v.fps)),
        Err(video_error) => match read_image(path) {
            Ok(image) => Ok((vec![image], 16.0)),
            Err(_) => {
                Err(anyhow::Error::from(video_error).context(format!("reading {}", path.display())))
            }
        },
    }
}

fn tile(
    inputs: &[PathBuf],
    out: &Path,
    size: Option<Size>,
    fps: Option<f64>,
    qp: u8,
) -> Result<()> {
    let mut clips = Vec::with_capacity(inputs.len());
    let mut first_fps = None;
    for path in inputs {
        let (frames, rate) = read_frames(path)?;
        first_fps.get_or_insert(rate);
        clips.push(frames);
    }
    let (w, h) = match size {
        Some(s) => checked_size(s)?,
        None => (clips[0][0].width(), clips[0][0].height()),
    };
    for clip in &mut clips {
        *clip = clip
            .iter()
            .map(|f| resize::resize_to_cover_and_crop(f, w, h))
            .collect::<Result<_, _>>()?;
    }
    let row: Vec<&[RgbImage]> = clips.iter().map(Vec::as_slice).collect();
    let tiled = tile_clips(&[row], w, h);
    write_frames(out, &tiled, fps.or(first_fps).unwrap_or(16.0), qp)?;
    println!(
        "wrote {} frames of {} inputs to {}",
        tiled.len(),
        inputs.len(),
        out.display()
    );
    Ok(())
}

/// Writes frames as `.mp4`, `.gif`, or PNG frames into a folder (no extension).
fn write_frames(output: &Path, frames: &[RgbImage], fps: f64, qp: u8) -> Result<()> {
    let ext = output
        .extension()
        .map(|e| e.to_string_lossy().to_lowercase());
    match ext.as_deref() {
        Some("mp4") => write_mp4(
            output,
            frames,
            fps,
            Mp4Options {
                qp,
                ..Default::default()
            },
        )?,
        Some("gif") => write_gif(output, frames, fps)?,
        Some(other) => bail!(
            "{}: unknown output type .{other} (use .mp4, .gif or a folder)",
            output.display()
        ),
        None => {
            std::fs::create_dir_all(output)?;
            for (i, frame) in frames.iter().enumerate() {
                write_png(&output.join(format!("frame_{i:05}.png")), frame)?;
            }
        }
    }
    Ok(())
}
