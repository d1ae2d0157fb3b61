//! The rows of the physics bench: each a method of predicting a clip, named as the bench's JSON names it.

/// A way of predicting the frames of a held-out clip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Method {
    /// The model's Video2World prediction from the observed frames (its output as the user gets it).
    Video2WorldModel,
    /// The last observed frame, repeated.
    CopyLastFrame,
    /// Each object moved on at its last observed velocity over the last frame's background.
    ConstantVelocity,
    /// The real frames through the model's VAE: what a perfect latent prediction would score.
    VaeRoundTrip,
    /// The model's Image2World prediction from the first frame.
    Image2WorldModel,
    /// The first frame, repeated.
    CopyFirstFrame,
    /// [`Method::Video2WorldModel`] from the decoder's pixels alone (where the model keeps observed pixels).
    Video2WorldDecoderOnly,
    /// [`Method::Image2WorldModel`] from the decoder's pixels alone.
    Image2WorldDecoderOnly,
}

impl Method {
    /// The rows of a bench, in the order of its table; the decoder-only rows where the model keeps observed pixels.
    pub fn rows(keeps_observed: bool) -> Vec<Method> {
        let mut rows = vec![
            Method::Video2WorldModel,
            Method::CopyLastFrame,
            Method::ConstantVelocity,
            Method::VaeRoundTrip,
            Method::Image2WorldModel,
            Method::CopyFirstFrame,
        ];
        if keeps_observed {
            rows.extend([
                Method::Video2WorldDecoderOnly,
                Method::Image2WorldDecoderOnly,
            ]);
        }
        rows
    }

    /// The name in the bench's JSON and table.
    pub fn name(self) -> &'static str {
        match self {
            Method::Video2WorldModel => "video2world: model",
            Method::CopyLastFrame => "video2world: copy last frame",
            Method::ConstantVelocity => "video2world: constant velocity",
            Method::VaeRoundTrip => "video2world: VAE round trip (ceiling)",
            Method::Image2WorldModel => "image2world: model",
            Method::CopyFirstFrame => "image2world: copy first frame",
            Method::Video2WorldDecoderOnly => "video2world: model, decoder pixels only",
            Method::Image2WorldDecoderOnly => "image2world: model, decoder pixels only",
        }
    }

    /// Whether it predicts from the observed frames (Video2World) rather than the first frame alone.
    pub fn is_video2world(self) -> bool {
        !matches!(
            self,
            Method::Image2WorldModel | Method::CopyFirstFrame | Method::Image2WorldDecoderOnly
        )
    }

    /// The baselines each model row is compared with, clip by clip.
    pub fn head_to_head(rows: &[Method]) -> Vec<(Method, Method)> {
        let pairs = [
            (Method::Video2WorldModel, Method::CopyLastFrame),
            (Method::Video2WorldModel, Method::ConstantVelocity),
            (Method::Image2WorldModel, Method::CopyFirstFrame),
            (Method::Video2WorldDecoderOnly, Method::CopyLastFrame),
            (Method::Video2WorldDecoderOnly, Method::ConstantVelocity),
            (Method::Image2WorldDecoderOnly, Method::CopyFirstFrame),
        ];
        pairs
            .into_iter()
            .filter(|(a, b)| rows.contains(a) && rows.contains(b))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_and_pairs_follow_whether_observed_pixels_are_kept() {
        assert_eq!(Method::rows(false).len(), 6);
        assert_eq!(Method::rows(true).len(), 8);
        assert_eq!(Method::head_to_head(&Method::rows(false)).len(), 3);
        assert_eq!(Method::head_to_head(&Method::rows(true)).len(), 6);
        let names: std::collections::HashSet<_> =
            Method::rows(true).iter().map(|m| m.name()).collect();
        assert_eq!(names.len(), 8);
        assert!(!Method::CopyFirstFrame.is_video2world());
    }
}
