//! The physics bench's methodology, independent of any model: a [`WorldPredictor`] is asked for Video2World,
//! Image2World and Text2World predictions of held-out clips, and each is scored beside the baselines.
//!
//! - Video2World observes the first [`OBSERVED_FRAMES`] frames and is scored on the frames after them. The model
//!   conditions on the last observed frames its conditional latent frames take ([`Prediction::conditioning`]), so
//!   its output starts there: it is aligned by putting the observed frames before those back in front.
//! - Image2World observes frame 0 and is scored on the frames after it.
//! - Text2World gets the caption alone; a captioned object is shown when it is found (by colour) in at least half
//!   of the generated frames, a captioned event when [`crate::events::happens`] finds it anywhere in them.
//! - Seeds: clip i samples with seed i (Video2World and Image2World) and 1,000,000 + i (Text2World).

use std::collections::BTreeMap;

use orrery_media::{encode_gif, tile_clips, RgbImage};
use orrery_physics::clip::Clip;

use super::method::Method;
use super::score::{score_clip, tally, ClipScore};
use crate::baselines::{constant_velocity, copy_last_frame};
use crate::events::{captioned_events, happens};
use crate::track::locate;

/// Pixel frames the Video2World predictions observe.
pub const OBSERVED_FRAMES: usize = 5;

/// Seed offset of the Text2World samples (so they never share noise with the clip's other samples).
const TEXT2WORLD_SEED: u64 = 1_000_000;

/// A model's prediction of a whole clip.
#[derive(Debug, Clone)]
pub struct Prediction {
    /// The frames as the model outputs them; the first `conditioning` stand for the input frames it conditioned on.
    pub frames: Vec<RgbImage>,
    /// The decoder's pixels alone, where the model keeps the observed pixels in `frames`.
    pub decoder_frames: Option<Vec<RgbImage>>,
    /// Input frames the model conditioned on (the last of those it was given).
    pub conditioning: usize,
}

/// What the bench needs of a model.
pub trait WorldPredictor {
    type Error: std::error::Error + Send + Sync + 'static;

    /// Called once with every caption before any prediction (a model encodes them, then loads its networks).
    fn prepare(&mut self, captions: &[&str]) -> Result<(), Self::Error>;
    /// Whether predictions keep observed pixels (then the decoder's pixels are scored too).
    fn keeps_observed(&self) -> bool;
    /// Predicts the clip of caption `caption` (index into the prepared captions) from its first frames.
    fn video2world(
        &mut self,
        caption: usize,
        observed: &[RgbImage],
        seed: u64,
    ) -> Result<Prediction, Self::Error>;
    fn image2world(
        &mut self,
        caption: usize,
        first: &RgbImage,
        seed: u64,
    ) -> Result<Prediction, Self::Error>;
    fn text2world(&mut self, caption: usize, seed: u64) -> Result<Vec<RgbImage>, Self::Error>;
    /// The real frames through the model's VAE.
    fn round_trip(&mut self, real: &[RgbImage]) -> Result<Vec<RgbImage>, Self::Error>;
}

/// How much to run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BenchOptions {
    /// Clips scored on Video2World and Image2World (the first of the clips given).
    pub clips: usize,
    /// Clips generated from their caption alone (the first of the clips given).
    pub text_clips: usize,
    /// Side-by-side GIFs (real | model | constant velocity) kept for the report.
    pub gif_clips: usize,
    pub fps: f64,
}

/// The Video2World continuations of one clip (the frames after the observed ones).
pub struct Continuations<'a> {
    pub real: &'a [RgbImage],
    pub model: &'a [RgbImage],
    pub copy_last: &'a [RgbImage],
    pub constant_velocity: &'a [RgbImage],
}

/// What the bench hands its caller to keep as videos: a clip's Video2World continuations, or a Text2World
/// clip beside the real clip of its caption.
pub enum BenchVideos<'a> {
    Video2World(Continuations<'a>),
    Text2World {
        real: &'a [RgbImage],
        model: &'a [RgbImage],
    },
}

/// Wall-clock seconds the model spent on each clip per mode (its calls only, not the scoring), in clip order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelSeconds {
    pub video2world: Vec<f64>,
    pub image2world: Vec<f64>,
    pub text2world: Vec<f64>,
}

/// Runs `f`, appending its wall-clock seconds to `clips`.
fn timed<T>(clips: &mut Vec<f64>, f: impl FnOnce() -> T) -> T {
    let start = std::time::Instant::now();
    let out = f();
    clips.push(start.elapsed().as_secs_f64());
    out
}

/// Text2World: captioned objects and how many were shown, captioned events and how many happened
/// ([`crate::events`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectsShown {
    pub clips: usize,
    /// Per object colour name: [captioned objects, of which shown].
    pub by_color: BTreeMap<String, [usize; 2]>,
    pub events: usize,
    pub events_shown: usize,
}

impl ObjectsShown {
    /// Captioned objects, all colours.
    pub fn objects(&self) -> usize {
        self.by_color.values().map(|c| c[0]).sum()
    }

    /// Captioned objects shown, all colours.
    pub fn shown(&self) -> usize {
        self.by_color.values().map(|c| c[1]).sum()
    }

    pub fn rate(&self) -> f64 {
        self.shown() as f64 / self.objects().max(1) as f64
    }

    /// Objects shown / captioned, per colour name.
    pub fn rate_by_color(&self) -> BTreeMap<String, f64> {
        super::score::pooled_rates(self.by_color.iter())
    }

    pub fn events_rate(&self) -> f64 {
        self.events_shown as f64 / self.events.max(1) as f64
    }
}

/// Every score of a bench.
pub struct BenchResult {
    pub clips: usize,
    /// Rows in table order, each with its per-clip scores.
    pub scores: BTreeMap<Method, Vec<ClipScore>>,
    pub rows: Vec<Method>,
    pub text2world: ObjectsShown,
    pub seconds: ModelSeconds,
    /// (caption, GIF bytes) of the first clips.
    pub gifs: Vec<(String, Vec<u8>)>,
}

/// A Video2World output aligned with the real clip: the observed frames before those the model conditioned on,
/// then the model's frames, as long as the model's output.
pub fn align_video2world(
    observed: &[RgbImage],
    prediction: &[RgbImage],
    conditioning: usize,
) -> Vec<RgbImage> {
    let used = conditioning.min(observed.len());
    let mut video = observed[..observed.len() - used].to_vec();
    video.extend_from_slice(prediction);
    video.truncate(prediction.len());
    video
}

/// Whether `object_color` is found in at least half of `frames`.
pub fn object_shown(frames: &[RgbImage], object_color: [u8; 3]) -> bool {
    let seen = frames
        .iter()
        .filter(|f| locate(f, object_color).is_some())
        .count();
    2 * seen >= frames.len()
}

/// The caption a clip is generated from (every mode; Text2World's events are judged against it): the medium one.
fn bench_caption(clip: &Clip) -> &str {
    &clip.truth.captions.medium
}

/// Runs the bench over `clips` (held-out: never trained or tuned on); `on_clip(i, videos)` sees each clip's
/// Video2World continuations and Text2World clips (to write them as videos), `on_progress` each clip done.
pub fn run_bench<P: WorldPredictor>(
    predictor: &mut P,
    clips: &[Clip],
    options: BenchOptions,
    mut on_clip: impl FnMut(usize, &BenchVideos) -> Result<(), P::Error>,
    mut on_progress: impl FnMut(),
) -> Result<BenchResult, P::Error> {
    let captions: Vec<&str> = clips
        .iter()
        .take(options.clips.max(options.text_clips))
        .map(bench_caption)
        .collect();
    predictor.prepare(&captions)?;
    let rows = Method::rows(predictor.keeps_observed());
    let mut scores: BTreeMap<Method, Vec<ClipScore>> =
        rows.iter().map(|&m| (m, Vec::new())).collect();
    let mut push = |m: Method, s: ClipScore| {
        if let Some(v) = scores.get_mut(&m) {
            v.push(s)
        }
    };
    let mut gifs = Vec::new();
    let mut seconds = ModelSeconds::default();
    for (i, clip) in clips.iter().take(options.clips).enumerate() {
        let real = clip.images();
        let truth = &clip.truth;
        let colors: Vec<[u8; 3]> = truth.scene.objects.iter().map(|o| o.color).collect();
        let observed = &real[..OBSERVED_FRAMES.min(real.len())];
        let future = &real[observed.len()..];
        let n = future.len();
        let start = observed.len();

        let v2w = timed(&mut seconds.video2world, || {
            predictor.video2world(i, observed, i as u64)
        })?;
        let aligned = align_video2world(observed, &v2w.frames, v2w.conditioning);
        let copy_last = copy_last_frame(observed, n);
        let cv = constant_velocity(observed, &colors, n);
        let continuations = Continuations {
            real: future,
            model: &aligned[start.min(aligned.len())..],
            copy_last: &copy_last,
            constant_velocity: &cv,
        };
        push(
            Method::Video2WorldModel,
            score_clip(future, continuations.model, truth, start),
        );
        push(
            Method::CopyLastFrame,
            score_clip(future, &copy_last, truth, start),
        );
        push(
            Method::ConstantVelocity,
            score_clip(future, &cv, truth, start),
        );
        let continuations = BenchVideos::Video2World(continuations);
        on_clip(i, &continuations)?;
        if i < options.gif_clips {
            // The baseline continues the observed frames: show them first, as the model's output does.
            let mut cv_video = observed.to_vec();
            cv_video.extend_from_slice(&cv);
            let (w, h) = (real[0].width(), real[0].height());
            let tiled = tile_clips(&[vec![&real[..], &aligned[..], &cv_video[..]]], w, h);
            if let Ok(gif) = encode_gif(&tiled, options.fps) {
                gifs.push((
                    format!(
                        "clip {i}: real | model | constant velocity ({})",
                        truth.captions.short
                    ),
                    gif,
                ));
            }
        }
        let round_trip = predictor.round_trip(&real)?;
        push(
            Method::VaeRoundTrip,
            score_clip(
                future,
                &round_trip[start.min(round_trip.len())..],
                truth,
                start,
            ),
        );
        if let Some(decoded) = &v2w.decoder_frames {
            let aligned = align_video2world(observed, decoded, v2w.conditioning);
            push(
                Method::Video2WorldDecoderOnly,
                score_clip(future, &aligned[start.min(aligned.len())..], truth, start),
            );
        }
        let i2w = timed(&mut seconds.image2world, || {
            predictor.image2world(i, &real[0], i as u64)
        })?;
        push(
            Method::Image2WorldModel,
            score_clip(&real[1..], after_first(&i2w.frames), truth, 1),
        );
        if let Some(decoded) = &i2w.decoder_frames {
            push(
                Method::Image2WorldDecoderOnly,
                score_clip(&real[1..], after_first(decoded), truth, 1),
            );
        }
        let copy_first = copy_last_frame(&real[..1], real.len() - 1);
        push(
            Method::CopyFirstFrame,
            score_clip(&real[1..], &copy_first, truth, 1),
        );
        on_progress();
    }
    let mut text2world = ObjectsShown {
        clips: options.text_clips.min(clips.len()),
        ..ObjectsShown::default()
    };
    for (i, clip) in clips.iter().take(options.text_clips).enumerate() {
        let frames = timed(&mut seconds.text2world, || {
            predictor.text2world(i, TEXT2WORLD_SEED + i as u64)
        })?;
        on_clip(
            i,
            &BenchVideos::Text2World {
                real: &clip.images(),
                model: &frames,
            },
        )?;
        for o in &clip.truth.scene.objects {
            tally(
                &mut text2world.by_color,
                &o.color_name,
                object_shown(&frames, o.color),
            );
        }
        for e in captioned_events(&clip.truth, bench_caption(clip)) {
            text2world.events += 1;
            text2world.events_shown += usize::from(happens(e, &frames, &clip.truth));
        }
        on_progress();
    }
    Ok(BenchResult {
        clips: options.clips.min(clips.len()),
        scores,
        rows,
        text2world,
        seconds,
        gifs,
    })
}

fn after_first(frames: &[RgbImage]) -> &[RgbImage] {
    &frames[1.min(frames.len())..]
}

#[cfg(test)]
mod tests {
    use super::*;
    use orrery_physics::clip::{make_clip, ClipSettings};
    use orrery_physics::families::FAMILIES;

    fn clips(n: usize) -> Vec<Clip> {
        let settings = ClipSettings {
            frames: 17,
            width: 64,
            height: 64,
            fps: 16.0,
        };
        (0..n)
            .map(|i| {
                let family = FAMILIES[i % FAMILIES.len()];
                make_clip(&format!("c{i}"), family, 4_000 + i as u64, &settings).unwrap()
            })
            .collect()
    }

    use crate::policy::world::Never;

    /// Predicts from the real clips it is handed (an oracle), conditioning on `conditioning` input frames, and
    /// records what it was shown.
    struct Oracle {
        clips: Vec<Vec<RgbImage>>,
        conditioning: usize,
        keeps: bool,
        blank_text: bool,
        seen_observed: Vec<usize>,
        seeds: Vec<u64>,
        captions: usize,
    }

    impl Oracle {
        fn new(clips: &[Clip], conditioning: usize) -> Self {
            Self {
                clips: clips.iter().map(Clip::images).collect(),
                conditioning,
                keeps: false,
                blank_text: false,
                seen_observed: Vec::new(),
                seeds: Vec::new(),
                captions: 0,
            }
        }
    }

    impl WorldPredictor for Oracle {
        type Error = Never;
        fn prepare(&mut self, captions: &[&str]) -> Result<(), Never> {
            self.captions = captions.len();
            Ok(())
        }
        fn keeps_observed(&self) -> bool {
            self.keeps
        }
        fn video2world(
            &mut self,
            i: usize,
            observed: &[RgbImage],
            seed: u64,
        ) -> Result<Prediction, Never> {
            let real = self.clips[i].clone();
            assert_eq!(
                observed,
                &real[..OBSERVED_FRAMES],
                "the observed frames are the clip's first"
            );
            self.seen_observed.push(observed.len());
            self.seeds.push(seed);
            // The model's output starts at the first conditioning frame and is as long as the clip.
            let start = OBSERVED_FRAMES - self.conditioning;
            let mut frames = real[start..].to_vec();
            frames.extend(std::iter::repeat_n(real[real.len() - 1].clone(), start));
            let decoder_frames = self.keeps.then(|| frames.iter().map(dim).collect());
            Ok(Prediction {
                frames,
                decoder_frames,
                conditioning: self.conditioning,
            })
        }
        fn image2world(&mut self, i: usize, first: &RgbImage, _: u64) -> Result<Prediction, Never> {
            let real = self.clips[i].clone();
            assert_eq!(first, &real[0]);
            Ok(Prediction {
                frames: real,
                decoder_frames: None,
                conditioning: 1,
            })
        }
        fn text2world(&mut self, i: usize, seed: u64) -> Result<Vec<RgbImage>, Never> {
            self.seeds.push(seed);
            let real = self.clips[i].clone();
            Ok(if self.blank_text {
                real.iter().map(blank).collect()
            } else {
                real
            })
        }
        fn round_trip(&mut self, real: &[RgbImage]) -> Result<Vec<RgbImage>, Never> {
            Ok(real.iter().map(dim).collect())
        }
    }

    fn dim(f: &RgbImage) -> RgbImage {
        let mut out = f.clone();
        out.pixels_mut().for_each(|p| p.0 = p.0.map(|c| c / 2));
        out
    }

    fn blank(f: &RgbImage) -> RgbImage {
        RgbImage::new(f.width(), f.height())
    }

    fn options(clips: usize, text_clips: usize) -> BenchOptions {
        BenchOptions {
            clips,
            text_clips,
            gif_clips: 1,
            fps: 16.0,
        }
    }

    #[test]
    fn an_exact_prediction_is_aligned_and_scores_the_cap_whatever_it_conditioned_on() {
        let clips = clips(3);
        for conditioning in [1, 2, 3, 5] {
            let mut oracle = Oracle::new(&clips, conditioning);
            let result =
                run_bench(&mut oracle, &clips, options(3, 0), |_, _| Ok(()), || {}).unwrap();
            assert_eq!(oracle.seen_observed, vec![OBSERVED_FRAMES; 3]);
            assert_eq!(oracle.seeds, vec![0, 1, 2], "clip i samples with seed i");
            for s in &result.scores[&Method::Video2WorldModel] {
                assert_eq!(
                    s.capped_psnr(),
                    crate::metrics::PSNR_CAP_DB,
                    "conditioning {conditioning}"
                );
                assert_eq!(s.psnr_per_frame.len(), 17 - OBSERVED_FRAMES);
            }
            for s in &result.scores[&Method::Image2WorldModel] {
                assert_eq!(s.capped_psnr(), crate::metrics::PSNR_CAP_DB);
            }
            assert!(result.scores[&Method::VaeRoundTrip][0].psnr < 40.0);
            // The exact prediction finds every object of every colour; the blanked round trip finds none.
            let (headers, rows) = result.found_by_color_table();
            assert!(headers.len() > 1 && headers[0] == "method");
            let row = |m: Method| rows.iter().find(|r| r[0] == m.name()).unwrap();
            assert!(row(Method::Video2WorldModel)[1..]
                .iter()
                .all(|c| c == "100.0"));
            assert!(row(Method::VaeRoundTrip)[1..].iter().all(|c| c == "0.0"));
            assert_eq!(result.gifs.len(), 1);
            assert_eq!(result.rows.len(), 6);
        }
    }

    #[test]
    fn decoder_only_rows_appear_when_observed_pixels_are_kept() {
        let clips = clips(2);
        let mut oracle = Oracle::new(&clips, 3);
        oracle.keeps = true;
        let mut seen = Vec::new();
        let result = run_bench(
            &mut oracle,
            &clips,
            options(2, 0),
            |i, videos| {
                if let BenchVideos::Video2World(c) = videos {
                    seen.push((i, c.real.len(), c.model.len(), c.copy_last.len()));
                }
                Ok(())
            },
            || {},
        )
        .unwrap();
        assert_eq!(result.rows, Method::rows(true));
        assert_eq!(result.scores[&Method::Video2WorldDecoderOnly].len(), 2);
        assert!(
            result.scores[&Method::Video2WorldDecoderOnly][0].psnr < 40.0,
            "the dimmed decoder frames score"
        );
        assert!(
            result.scores[&Method::Image2WorldDecoderOnly].is_empty(),
            "image2world kept nothing"
        );
        assert_eq!(seen, vec![(0, 12, 12, 12), (1, 12, 12, 12)]);
    }

    #[test]
    fn objects_count_as_shown_when_found_in_half_the_frames() {
        let clips = clips(4);
        let mut oracle = Oracle::new(&clips, 2);
        let mut text_clips = Vec::new();
        let result = run_bench(
            &mut oracle,
            &clips,
            options(0, 4),
            |i, videos| {
                if let BenchVideos::Text2World { real, model } = videos {
                    text_clips.push((i, real.len(), model.len()));
                }
                Ok(())
            },
            || {},
        )
        .unwrap();
        // Each Text2World clip is handed over beside its real clip, and its time is counted.
        assert_eq!(
            text_clips.iter().map(|c| c.0).collect::<Vec<_>>(),
            [0, 1, 2, 3]
        );
        assert!(text_clips.iter().all(|&(_, r, m)| r == 17 && m == 17));
        assert!(result.seconds.video2world.is_empty());
        assert_eq!(result.seconds.text2world.len(), result.text2world.clips);
        assert!(result.seconds.text2world.iter().all(|&s| s > 0.0));
        let objects: usize = clips.iter().map(|c| c.truth.scene.objects.len()).sum();
        assert_eq!(result.text2world.objects(), objects);
        assert_eq!(
            oracle.seeds,
            vec![1_000_000, 1_000_001, 1_000_002, 1_000_003]
        );
        // The real frames show most objects (an occluded or off-screen one may not be shown).
        assert!(result.text2world.rate() > 0.7, "{:?}", result.text2world);
        oracle.blank_text = true;
        let result = run_bench(&mut oracle, &clips, options(0, 4), |_, _| Ok(()), || {}).unwrap();
        assert_eq!(result.text2world.shown(), 0);
        assert!(result
            .text2world
            .rate_by_color()
            .values()
            .all(|r| *r == 0.0));
        let (_, rows) = result.found_by_color_table();
        let shown = rows.last().unwrap();
        assert_eq!(shown[0], "text2world: captioned objects shown");
        assert!(shown[1..].iter().all(|c| c == "0.0" || c == "-"));

        let frames = clips[0].images();
        let color = clips[0].truth.scene.objects[0].color;
        let half = frames.len().div_ceil(2);
        let mut some: Vec<RgbImage> = frames.iter().map(blank).collect();
        some[..half].clone_from_slice(&frames[..half]);
        let found = frames[..half]
            .iter()
            .filter(|f| locate(f, color).is_some())
            .count();
        assert_eq!(object_shown(&some, color), 2 * found >= frames.len());
    }

    #[test]
    fn alignment_puts_the_unconditioned_observed_frames_in_front() {
        let frames: Vec<RgbImage> = (0..9u8)
            .map(|v| RgbImage::from_pixel(2, 2, image_rgb(v)))
            .collect();
        let observed = &frames[..5];
        // The model conditioned on observed frames 2..5 and output 9 frames starting there.
        let prediction = frames[2..].to_vec();
        let mut prediction = prediction;
        prediction.extend([frames[8].clone(), frames[8].clone()]);
        let aligned = align_video2world(observed, &prediction, 3);
        assert_eq!(aligned.len(), 9);
        assert_eq!(&aligned[..], &frames[..]);
    }

    fn image_rgb(v: u8) -> orrery_media::Rgb<u8> {
        orrery_media::Rgb([v, v, v])
    }
}
