//! Datasets in the webdataset layout the reference trains from: tar shards of `{key}.mp4`, `{key}.json` (the
//! ground truth) and `{key}.txt` (the medium caption). Shards are byte-identical for the same seed and
//! settings: entries are written in clip order with fixed metadata, and every clip depends only on its seed.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use orrery_media::{write_mp4, Mp4Options};

use crate::clip::{make_clip, Clip, ClipSettings};
use crate::error::{PhysicsError, Result};
use crate::families::{all_families, is_family};

/// What to generate.
#[derive(Debug, Clone)]
pub struct DatasetSpec {
    pub clips: usize,
    pub clips_per_shard: usize,
    pub families: Vec<String>,
    pub seed: u64,
    pub settings: ClipSettings,
    pub workers: usize,
}

impl DatasetSpec {
    pub fn validate(&self) -> Result<()> {
        if self.clips == 0 {
            return Err(PhysicsError::Settings("--clips must be at least 1".into()));
        }
        if self.clips_per_shard == 0 {
            return Err(PhysicsError::Settings(
                "clips per shard must be at least 1".into(),
            ));
        }
        if self.families.is_empty() {
            return Err(PhysicsError::Settings("no families given".into()));
        }
        for f in &self.families {
            if !is_family(f) {
                return Err(PhysicsError::Settings(format!(
                    "unknown family {f:?} (known: {})",
                    all_families()
                )));
            }
        }
        self.settings.validate()
    }

    /// Family, seed and key of clip `i`: families in turn, seeds mixed from the base seed and the index.
    pub fn clip_id(&self, i: usize) -> (String, u64, String) {
        let family = self.families[i % self.families.len()].clone();
        let mut z = self.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15)
            ^ (i as u64).wrapping_add(0x632b_e59b_d9b4_e019);
        z = (z ^ (z >> 31)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        let seed = z ^ (z >> 29);
        let key = format!("{family}_{i:07}");
        (family, seed, key)
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PhysicsError + '_ {
    move |cause| PhysicsError::Io {
        path: path.to_owned(),
        cause,
    }
}

/// H.264 MP4 bytes of a clip (encoded through a temporary file in `scratch`).
fn mp4_bytes(clip: &Clip, settings: &ClipSettings, scratch: &Path) -> Result<Vec<u8>> {
    let path = scratch.join(format!(".{}.mp4", clip.truth.key));
    write_mp4(
        &path,
        &clip.images(),
        settings.fps as f64,
        Mp4Options::default(),
    )
    .map_err(|e| PhysicsError::Settings(format!("encoding {}: {e}", clip.truth.key)))?;
    let bytes = std::fs::read(&path).map_err(io(&path))?;
    std::fs::remove_file(&path).map_err(io(&path))?;
    Ok(bytes)
}

fn append(
    builder: &mut tar::Builder<impl Write>,
    name: &str,
    data: &[u8],
    path: &Path,
) -> Result<()> {
    let mut header = tar::Header::new_ustar();
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header.set_cksum();
    builder
        .append_data(&mut header, name, data)
        .map_err(io(path))
}

/// Makes clips `range` on `workers` threads, in order.
fn make_clips(spec: &DatasetSpec, range: std::ops::Range<usize>) -> Result<Vec<Clip>> {
    let indices: Vec<usize> = range.collect();
    let per = indices.len().div_ceil(spec.workers.max(1));
    let mut results: Vec<Result<Vec<Clip>>> = Vec::new();
    std::thread::scope(|s| {
        let handles: Vec<_> = indices
            .chunks(per.max(1))
            .map(|chunk| {
                s.spawn(move || {
                    chunk
                        .iter()
                        .map(|&i| {
                            let (family, seed, key) = spec.clip_id(i);
                            make_clip(&key, &family, seed, &spec.settings)
                        })
                        .collect::<Result<Vec<_>>>()
                })
            })
            .collect();
        results = handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(PhysicsError::Settings("a worker panicked".into())))
            })
            .collect();
    });
    let mut out = Vec::new();
    for r in results {
        out.extend(r?);
    }
    Ok(out)
}

/// Writes the dataset into `dir` as `shard-000000.tar`, ...; `on_clip` is called after every clip. Each shard
/// is written to a temporary name and renamed when complete. Returns the shard paths.
pub fn write_dataset(
    spec: &DatasetSpec,
    dir: &Path,
    mut on_clip: impl FnMut(),
) -> Result<Vec<PathBuf>> {
    spec.validate()?;
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let mut shards = Vec::new();
    let mut start = 0;
    while start < spec.clips {
        let end = (start + spec.clips_per_shard).min(spec.clips);
        let path = dir.join(format!("shard-{:06}.tar", shards.len()));
        let tmp = dir.join(format!(".shard-{:06}.tar.tmp", shards.len()));
        let file = std::fs::File::create(&tmp).map_err(io(&tmp))?;
        let mut builder = tar::Builder::new(std::io::BufWriter::new(file));
        for clip in make_clips(spec, start..end)? {
            let key = clip.truth.key.clone();
            let json = serde_json::to_vec(&clip.truth)
                .map_err(|e| PhysicsError::Settings(e.to_string()))?;
            append(
                &mut builder,
                &format!("{key}.mp4"),
                &mp4_bytes(&clip, &spec.settings, dir)?,
                &tmp,
            )?;
            append(&mut builder, &format!("{key}.json"), &json, &tmp)?;
            append(
                &mut builder,
                &format!("{key}.txt"),
                clip.truth.captions.medium.as_bytes(),
                &tmp,
            )?;
            on_clip();
        }
        let mut writer = builder.into_inner().map_err(io(&tmp))?;
        writer.flush().map_err(io(&tmp))?;
        drop(writer);
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        shards.push(path);
        start = end;
    }
    Ok(shards)
}

/// One sample of a shard.
#[derive(Debug, Clone)]
pub struct Sample {
    pub key: String,
    pub mp4: Vec<u8>,
    pub json: serde_json::Value,
    pub caption: String,
}

impl Sample {
    /// The clip's ground truth, typed (with a manipulation clip's actions and states).
    pub fn truth(&self) -> Result<crate::clip::GroundTruth> {
        serde_json::from_value(self.json.clone())
            .map_err(|e| PhysicsError::Settings(format!("{}.json: {e}", self.key)))
    }
}

/// Reads a shard back, grouping its entries by key.
pub fn read_shard(path: &Path) -> Result<Vec<Sample>> {
    let file = std::fs::File::open(path).map_err(io(path))?;
    let mut archive = tar::Archive::new(file);
    let mut samples: Vec<Sample> = Vec::new();
    for entry in archive.entries().map_err(io(path))? {
        let mut entry = entry.map_err(io(path))?;
        let name = entry
            .path()
            .map_err(io(path))?
            .to_string_lossy()
            .into_owned();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).map_err(io(path))?;
        let Some((key, ext)) = name.rsplit_once('.') else {
            continue;
        };
        if samples.last().is_none_or(|s| s.key != key) {
            samples.push(Sample {
                key: key.to_owned(),
                mp4: Vec::new(),
                json: serde_json::Value::Null,
                caption: String::new(),
            });
        }
        let s = samples.last_mut().expect("just pushed");
        match ext {
            "mp4" => s.mp4 = data,
            "json" => {
                s.json = serde_json::from_slice(&data)
                    .map_err(|e| PhysicsError::Settings(format!("{name}: {e}")))?
            }
            "txt" => s.caption = String::from_utf8_lossy(&data).into_owned(),
            _ => {}
        }
    }
    Ok(samples)
}
