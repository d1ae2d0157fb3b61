//! How far apart a VAE's encoder keeps the object colours: the normalised latent codes of cells one colour covers,
//! pooled per colour, with each colour's spread and the distances between colours' mean codes. A decoder can only
//! draw two colours apart when their codes are further apart than the codes of one colour vary.

use std::collections::BTreeMap;

use orrery_media::RgbImage;
use serde::Serialize;

use crate::track::matches;

/// The latent codes of cells covered by one colour, pooled over frames.
#[derive(Debug, Clone, Default)]
pub struct ColourCodes {
    /// Per colour name: one code (a latent channel vector) per cell at least half covered by that colour.
    codes: BTreeMap<String, Vec<Vec<f32>>>,
}

/// A latent frame `[channels][height][width]` (row-major, channel first).
#[derive(Debug, Clone, Copy)]
pub struct LatentFrame<'a> {
    pub values: &'a [f32],
    pub channels: usize,
    pub height: usize,
    pub width: usize,
}

impl ColourCodes {
    /// Adds the codes of `latent`'s cells that one of `colours` covers at least half of in `frame` (the pixel
    /// frame the latent frame encodes; its size a whole multiple of the latent's).
    pub fn add(&mut self, frame: &RgbImage, latent: LatentFrame, colours: &[(&str, [u8; 3])]) {
        let LatentFrame {
            values,
            channels,
            height,
            width,
        } = latent;
        if height == 0 || width == 0 || values.len() != channels * height * width {
            return;
        }
        let (fy, fx) = (
            frame.height() as usize / height,
            frame.width() as usize / width,
        );
        if fy == 0 || fx == 0 {
            return;
        }
        for cy in 0..height {
            for cx in 0..width {
                let covering = colours.iter().find(|(_, rgb)| {
                    let hits = (0..fy)
                        .flat_map(|y| (0..fx).map(move |x| (x, y)))
                        .filter(|&(x, y)| {
                            matches(
                                frame.get_pixel((cx * fx + x) as u32, (cy * fy + y) as u32),
                                *rgb,
                            )
                        })
                        .count();
                    2 * hits >= fx * fy
                });
                if let Some((name, _)) = covering {
                    let code = (0..channels)
                        .map(|c| values[(c * height + cy) * width + cx])
                        .collect();
                    self.codes.entry((*name).to_owned()).or_default().push(code);
                }
            }
        }
    }

    /// Each colour's spread and the distances between colours.
    pub fn separation(&self) -> CodeSeparation {
        let stats: Vec<ColourStats> = self
            .codes
            .iter()
            .filter(|(_, codes)| !codes.is_empty())
            .map(|(name, codes)| ColourStats::of(name, codes))
            .collect();
        let distances = stats
            .iter()
            .map(|a| {
                stats
                    .iter()
                    .map(|b| squared_distance(&a.mean, b.mean.iter().copied()).sqrt())
                    .collect()
            })
            .collect();
        CodeSeparation {
            colours: stats.iter().map(|s| s.name.clone()).collect(),
            cells: stats.iter().map(|s| s.cells).collect(),
            spread: stats.iter().map(|s| s.spread).collect(),
            distances,
        }
    }
}

/// One colour's pooled codes: their mean, their spread about it and how many there are.
struct ColourStats {
    name: String,
    mean: Vec<f64>,
    spread: f64,
    cells: usize,
}

impl ColourStats {
    /// The statistics of `codes` (at least one).
    fn of(name: &str, codes: &[Vec<f32>]) -> Self {
        let n = codes.len() as f64;
        let mut mean = vec![0.0; codes[0].len()];
        for code in codes {
            for (m, &v) in mean.iter_mut().zip(code) {
                *m += v as f64 / n;
            }
        }
        let spread = (codes
            .iter()
            .map(|code| squared_distance(&mean, code.iter().map(|&v| v as f64)))
            .sum::<f64>()
            / n)
            .sqrt();
        Self {
            name: name.to_owned(),
            mean,
            spread,
            cells: codes.len(),
        }
    }
}

fn squared_distance(a: &[f64], b: impl Iterator<Item = f64>) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// The colours' codes summarised.
#[derive(Debug, Clone, Serialize)]
pub struct CodeSeparation {
    pub colours: Vec<String>,
    /// Cells pooled per colour.
    pub cells: Vec<usize>,
    /// Root-mean-square distance of a colour's codes from their mean.
    pub spread: Vec<f64>,
    /// Distance between the mean codes of colours i and j.
    pub distances: Vec<Vec<f64>>,
}

impl CodeSeparation {
    /// Per colour: the nearest other colour and the distance to it, `None` with one colour.
    pub fn nearest(&self) -> Vec<Option<(&str, f64)>> {
        self.distances
            .iter()
            .enumerate()
            .map(|(i, row)| {
                row.iter()
                    .enumerate()
                    .filter(|&(j, _)| j != i)
                    .min_by(|a, b| a.1.total_cmp(b.1))
                    .map(|(j, &d)| (self.colours[j].as_str(), d))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use orrery_media::Rgb;

    const RED: [u8; 3] = [220, 40, 40];
    const BLUE: [u8; 3] = [40, 80, 230];

    /// An 8x4 frame: its left 4x4 half red, its right half blue but for one pixel.
    fn frame() -> RgbImage {
        let mut f = RgbImage::from_pixel(8, 4, Rgb(BLUE));
        for y in 0..4 {
            for x in 0..4 {
                f.put_pixel(x, y, Rgb(RED));
            }
        }
        f.put_pixel(7, 3, Rgb([0, 0, 0]));
        f
    }

    #[test]
    fn cells_are_pooled_by_the_colour_covering_them() {
        // Latent 2 channels x 2 x 4 (factor 2): red cells code (1, 0) and (3, 0); blue cells (0, 2).
        let mut values = vec![0.0f32; 16];
        for cy in 0..2 {
            for cx in 0..4 {
                let (c0, c1) = if cx < 2 {
                    (if cy == 0 { 1.0 } else { 3.0 }, 0.0)
                } else {
                    (0.0, 2.0)
                };
                values[cy * 4 + cx] = c0;
                values[8 + cy * 4 + cx] = c1;
            }
        }
        let mut codes = ColourCodes::default();
        let latent = LatentFrame {
            values: &values,
            channels: 2,
            height: 2,
            width: 4,
        };
        codes.add(&frame(), latent, &[("red", RED), ("blue", BLUE)]);
        let s = codes.separation();
        assert_eq!(s.colours, ["blue", "red"]);
        // The blue cell with one black pixel is still at least half blue.
        assert_eq!(s.cells, [4, 4]);
        assert!(s.spread[0].abs() < 1e-9);
        assert!((s.spread[1] - 1.0).abs() < 1e-9, "{:?}", s.spread);
        // Means (0, 2) and (2, 0).
        assert!((s.distances[0][1] - 8f64.sqrt()).abs() < 1e-9);
        assert_eq!(s.distances[1][1], 0.0);
        assert_eq!(s.nearest()[1].unwrap().0, "blue");
    }

    #[test]
    fn a_colour_covering_under_half_a_cell_is_not_pooled_and_bad_shapes_add_nothing() {
        let mut codes = ColourCodes::default();
        let values = vec![1.0f32; 2];
        // One cell of 8x4 pixels: blue is one pixel short of half, red covers exactly half.
        codes.add(
            &frame(),
            LatentFrame {
                values: &values,
                channels: 2,
                height: 1,
                width: 1,
            },
            &[("blue", BLUE), ("red", RED)],
        );
        assert_eq!(codes.separation().colours, ["red"]);
        let mut none = ColourCodes::default();
        none.add(
            &frame(),
            LatentFrame {
                values: &values,
                channels: 3,
                height: 1,
                width: 1,
            },
            &[("red", RED)],
        );
        assert!(none.separation().colours.is_empty());
        assert!(none.separation().nearest().is_empty());
    }
}
