//! Keeping the observed pixels: where an Image2World or Video2World output does not change from its last
//! conditioning frame, the VAE's lossy reconstruction of that frame is put back to the frame itself.
//!
//! A latent model can only show what its decoder reconstructs, so a still background or a scene at rest comes back
//! blurred to the VAE's fidelity even when the prediction is "nothing changes". Compositing with the last observed
//! frame where the prediction is unchanged is the static-background mask of pixel-space video predictors (Finn et
//! al. 2016, "Unsupervised Learning for Physical Interaction through Video Prediction"): the model decides what
//! moves, the input supplies what stays.

use candle_core::{DType, Tensor};

use crate::error::{PipelineError, Result};

/// Where the observed pixels are kept: pixels whose largest channel change from the decoded last conditioning
/// frame is below `threshold` (in [-1, 1] units), and no nearer than `margin` pixels to one that changed more (so
/// the faint edges of what moves stay the model's).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KeepObserved {
    pub threshold: f64,
    pub margin: usize,
}

impl KeepObserved {
    /// The largest threshold that means anything: pixels span [-1, 1].
    pub const MAX_THRESHOLD: f64 = 2.0;
    /// The largest margin taken, in pixels.
    pub const MAX_MARGIN: usize = 64;

    /// `Some` when `threshold` is in [0, MAX_THRESHOLD] and `margin` at most MAX_MARGIN.
    pub fn checked(threshold: f64, margin: u64) -> Option<Self> {
        let margin = usize::try_from(margin).ok()?;
        ((0.0..=Self::MAX_THRESHOLD).contains(&threshold) && margin <= Self::MAX_MARGIN)
            .then_some(Self { threshold, margin })
    }

    /// `"THRESHOLD"` or `"THRESHOLD,MARGIN"` (margin 0 when left out), as `--keep-observed` takes it.
    pub fn parse(s: &str) -> std::result::Result<Self, String> {
        let (t, m) = s.split_once(',').unwrap_or((s, "0"));
        match (t.trim().parse::<f64>(), m.trim().parse::<u64>()) {
            (Ok(threshold), Ok(margin)) => Self::checked(threshold, margin),
            _ => None,
        }
        .ok_or_else(|| {
            format!(
                "{s}: expected THRESHOLD[,MARGIN], a change threshold in [0, {}] and a margin of at most {} pixels",
                Self::MAX_THRESHOLD,
                Self::MAX_MARGIN
            )
        })
    }

    /// `{"threshold": T, "margin": M}`, as `orrery_sampling.json` holds it.
    pub fn to_json(self) -> serde_json::Value {
        serde_json::json!({"threshold": self.threshold, "margin": self.margin})
    }

    /// [`Self::to_json`] read back (margin 0 when left out); `None` for anything else.
    pub fn from_json(v: &serde_json::Value) -> Option<Self> {
        let o = v.as_object()?;
        if o.keys().any(|k| k != "threshold" && k != "margin") {
            return None;
        }
        let threshold = o.get("threshold")?.as_f64()?;
        let margin = o.get("margin").map_or(Some(0), serde_json::Value::as_u64)?;
        Self::checked(threshold, margin)
    }
}

/// Replaces the decoded conditioning frames by the observed ones, and in every later frame the pixels `keep`
/// selects by the last observed frame's.
///
/// `video` (1, 3, T, H, W) is the decoded output whose first P frames decode the conditioning frames, `observed`
/// (1, 3, P, H, W) those frames as given.
pub fn keep_observed_pixels(
    video: &Tensor,
    observed: &Tensor,
    keep: KeepObserved,
) -> Result<Tensor> {
    let (b, c, t, h, w) = video.dims5()?;
    let (ob, oc, p, oh, ow) = observed.dims5()?;
    if (ob, oc, oh, ow) != (b, c, h, w) || p == 0 || p > t {
        return Err(PipelineError::Input(format!(
            "observed frames {:?} do not fit the output {:?}",
            observed.dims(),
            video.dims()
        )));
    }
    let observed = observed.to_dtype(video.dtype())?;
    if p == t {
        return Ok(observed);
    }
    let later = video.narrow(2, p, t - p)?;
    let decoded_last = video.narrow(2, p - 1, 1)?;
    // (1, 1, T - P, H, W): each pixel's largest channel change, then the largest within `margin` of it.
    let change = later.broadcast_sub(&decoded_last)?.abs()?.max_keepdim(1)?;
    let change = widen(&change, keep.margin)?;
    let unchanged = change.lt(keep.threshold)?.to_dtype(DType::U8)?;
    let last = observed.narrow(2, p - 1, 1)?;
    let kept = unchanged
        .broadcast_as(later.shape())?
        .where_cond(&last.broadcast_as(later.shape())?.contiguous()?, &later)?;
    Ok(Tensor::cat(&[&observed, &kept], 2)?)
}

/// The largest value of a non-negative (1, 1, T, H, W) map within `margin` pixels (a square window), per frame.
fn widen(map: &Tensor, margin: usize) -> Result<Tensor> {
    if margin == 0 {
        return Ok(map.clone());
    }
    let (_, _, t, h, w) = map.dims5()?;
    // Zero padding never wins the maximum of a non-negative map.
    let padded = map
        .reshape((t, 1, h, w))?
        .pad_with_zeros(2, margin, margin)?
        .pad_with_zeros(3, margin, margin)?;
    Ok(padded
        .max_pool2d_with_stride(2 * margin + 1, 1)?
        .reshape((1, 1, t, h, w))?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// (1, 3, T, 2, 2) from per-frame, per-pixel values (the same in every channel).
    fn clip(frames: &[[f32; 4]]) -> Tensor {
        let t = frames.len();
        let mut data = vec![0f32; 3 * t * 4];
        for c in 0..3 {
            for (ti, f) in frames.iter().enumerate() {
                data[(c * t + ti) * 4..(c * t + ti + 1) * 4].copy_from_slice(f);
            }
        }
        Tensor::from_vec(data, (1, 3, t, 2, 2), &Device::Cpu).unwrap()
    }

    fn keep(threshold: f64, margin: usize) -> KeepObserved {
        KeepObserved { threshold, margin }
    }

    fn frames(video: &Tensor) -> Vec<Vec<f32>> {
        let v = video
            .narrow(1, 0, 1)
            .unwrap()
            .squeeze(1)
            .unwrap()
            .squeeze(0)
            .unwrap();
        v.flatten_from(1).unwrap().to_vec2().unwrap()
    }

    #[test]
    fn unchanged_pixels_come_from_the_last_observed_frame_and_changed_ones_from_the_decoder() {
        // Two conditioning frames decoded blurred (0.25 off the observed ones), then a frame where pixel 3 moves by
        // 0.75 and pixel 2 by 0.125, then one where pixel 0 moves by exactly the threshold, 0.25.
        let observed = clip(&[[0.375; 4], [0.625; 4]]);
        let decoded = clip(&[
            [0.125; 4],
            [0.25; 4],
            [0.25, 0.25, 0.375, 1.0],
            [0.5, 0.25, 0.25, 0.25],
        ]);
        let f = frames(&keep_observed_pixels(&decoded, &observed, keep(0.25, 0)).unwrap());
        assert_eq!(f[0], [0.375; 4]);
        assert_eq!(f[1], [0.625; 4]);
        assert_eq!(f[2], [0.625, 0.625, 0.625, 1.0]);
        assert_eq!(
            f[3],
            [0.5, 0.625, 0.625, 0.625],
            "a change of the threshold is a change"
        );
        let f = frames(&keep_observed_pixels(&decoded, &observed, keep(0.3, 0)).unwrap());
        assert_eq!(f[3], [0.625; 4]);
        // Threshold 0 keeps nothing but the conditioning frames.
        let f = frames(&keep_observed_pixels(&decoded, &observed, keep(0.0, 0)).unwrap());
        assert_eq!(f[1], [0.625; 4]);
        assert_eq!(f[2], [0.25, 0.25, 0.375, 1.0]);
    }

    #[test]
    fn one_changed_channel_is_a_change() {
        let observed =
            Tensor::zeros((1, 3, 1, 1, 1), candle_core::DType::F32, &Device::Cpu).unwrap();
        // Decoded last conditioning frame 0; the next frame moves only the blue channel.
        let decoded = Tensor::from_vec(
            vec![0f32, 0.0, 0.0, 0.0, 0.0, 0.9],
            (1, 3, 2, 1, 1),
            &Device::Cpu,
        )
        .unwrap();
        let out = keep_observed_pixels(&decoded, &observed, keep(0.5, 0)).unwrap();
        assert_eq!(
            out.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            [0.0, 0.0, 0.0, 0.0, 0.0, 0.9]
        );
    }

    #[test]
    fn a_margin_keeps_the_neighbours_of_a_change_from_the_decoder() {
        // 1 x 5 frames: only pixel 0 of the predicted frame changes.
        let row = |v: [f32; 5]| {
            Tensor::from_vec(v.repeat(3).to_vec(), (1, 3, 1, 1, 5), &Device::Cpu).unwrap()
        };
        let observed = row([0.5; 5]);
        let decoded = Tensor::cat(&[&row([0.0; 5]), &row([1.0, 0.0, 0.0, 0.0, 0.0])], 2).unwrap();
        let later = |margin| {
            let out = keep_observed_pixels(&decoded, &observed, keep(0.5, margin)).unwrap();
            let f = out.narrow(1, 0, 1).unwrap().narrow(2, 1, 1).unwrap();
            f.flatten_all().unwrap().to_vec1::<f32>().unwrap()
        };
        assert_eq!(later(0), [1.0, 0.5, 0.5, 0.5, 0.5]);
        assert_eq!(later(1), [1.0, 0.0, 0.5, 0.5, 0.5]);
        assert_eq!(later(2), [1.0, 0.0, 0.0, 0.5, 0.5]);
    }

    #[test]
    fn settings_parse_and_round_trip() {
        assert_eq!(KeepObserved::parse("0.3,2"), Ok(keep(0.3, 2)));
        assert_eq!(KeepObserved::parse("0.25"), Ok(keep(0.25, 0)));
        for bad in ["", "-0.1", "3", "0.3,x", "0.3,-1", "0.3,100", "nan"] {
            assert!(KeepObserved::parse(bad).is_err(), "{bad}");
        }
        let k = keep(0.3, 2);
        assert_eq!(KeepObserved::from_json(&k.to_json()), Some(k));
        let json = |s: &str| serde_json::from_str::<serde_json::Value>(s).unwrap();
        assert_eq!(
            KeepObserved::from_json(&json(r#"{"threshold": 0.1}"#)),
            Some(keep(0.1, 0))
        );
        for bad in [
            r#"{"threshold": 5}"#,
            r#"{"margin": 2}"#,
            r#"{"threshold": 0.1, "radius": 2}"#,
            "0.3",
        ] {
            assert_eq!(KeepObserved::from_json(&json(bad)), None, "{bad}");
        }
    }

    #[test]
    fn observed_frames_that_do_not_fit_are_refused() {
        let video = Tensor::zeros((1, 3, 3, 2, 2), candle_core::DType::F32, &Device::Cpu).unwrap();
        for bad in [(1, 3, 4, 2, 2), (1, 3, 1, 2, 4), (1, 3, 0, 2, 2)] {
            let observed = Tensor::zeros(bad, candle_core::DType::F32, &Device::Cpu).unwrap();
            let err = keep_observed_pixels(&video, &observed, keep(0.1, 0))
                .unwrap_err()
                .to_string();
            assert!(err.contains("do not fit"), "{bad:?}: {err}");
        }
    }
}
