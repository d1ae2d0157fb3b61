//! Frame-rate resampling: which source frames make up a clip at another frame rate.

use crate::error::{MediaError, Result};

/// Indices of the source frames shown at each tick of `dst_fps` (the latest frame at or before each output
/// time), covering the source's duration: 30 fps -> 16 fps keeps frames 0, 1, 3, 5, 7, 9, 11, 13, 15, 16, ...
pub fn resample_indices(n_frames: usize, src_fps: f64, dst_fps: f64) -> Result<Vec<usize>> {
    if !(src_fps.is_finite() && src_fps > 0.0 && dst_fps.is_finite() && dst_fps > 0.0) {
        return Err(MediaError::invalid(
            "frame rate",
            format!("{src_fps} -> {dst_fps} fps (both must be positive)"),
        ));
    }
    let duration = n_frames as f64 / src_fps;
    let count = (duration * dst_fps - 1e-9).ceil().max(0.0) as usize;
    Ok((0..count)
        .map(|k| (((k as f64 / dst_fps) * src_fps + 1e-9).floor() as usize).min(n_frames - 1))
        .collect())
}

/// The integer frame strides the reference's training loader accepts for a clip of `n_target` frames out of
/// `n_frames` at `fps` (`get_frame_indices_w_lowered_fps`): strides whose resulting rate lies in
/// `[min_fps, max_fps]` and that fit the video, smallest first. The loader picks the largest with probability
/// 0.99.
pub fn valid_strides(
    n_frames: usize,
    fps: f64,
    n_target: usize,
    min_fps: f64,
    max_fps: f64,
) -> Result<Vec<usize>> {
    if n_target < 2 || n_frames < n_target {
        return Err(MediaError::invalid(
            "clip length",
            format!("{n_target} frames out of a video of {n_frames} (need 2 <= clip <= video)"),
        ));
    }
    let max_stride = (n_frames - 1) / (n_target - 1);
    let strides: Vec<usize> = (1..=max_stride)
        .filter(|&s| n_frames > s * (n_target - 1))
        .filter(|&s| (min_fps..=max_fps).contains(&(fps / s as f64)))
        .collect();
    if strides.is_empty() {
        return Err(MediaError::invalid(
            "frame rate",
            format!("no stride turns {fps} fps into {min_fps}..{max_fps} fps with {n_target} of {n_frames} frames"),
        ));
    }
    Ok(strides)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thirty_to_sixteen() {
        let idx = resample_indices(30, 30.0, 16.0).unwrap();
        assert_eq!(idx.len(), 16);
        assert_eq!(&idx[..6], &[0, 1, 3, 5, 7, 9]);
        assert_eq!(
            resample_indices(10, 16.0, 16.0).unwrap(),
            (0..10).collect::<Vec<_>>()
        );
        assert!(resample_indices(10, 0.0, 16.0).is_err());
    }

    #[test]
    fn strides_like_the_reference_loader() {
        // 60 fps, 93-frame clips from 400 frames, 10..30 fps accepted: strides 2..4 (30, 20, 15 fps).
        assert_eq!(
            valid_strides(400, 60.0, 93, 10.0, 30.0).unwrap(),
            vec![2, 3, 4]
        );
        assert!(valid_strides(50, 60.0, 93, 10.0, 30.0).is_err());
        assert!(valid_strides(400, 5.0, 93, 10.0, 30.0).is_err());
    }
}
