//! safetensors files, folders of them, and Hugging Face sharded folders with an index.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use safetensors::SafeTensors;

use super::error::{CheckpointError, Result};
use super::{contiguous_strides, Blob, DType, Layout, Parts, TensorEntry};

const FORMAT: &str = "safetensors";

pub fn map_file(path: &Path) -> Result<Mmap> {
    let file = std::fs::File::open(path).map_err(|e| CheckpointError::io(path, e))?;
    // SAFETY: the map is read-only; a file changed by another process while mapped would show changed bytes but
    // cannot break memory safety of the byte slices we hand out (they are plain `u8`).
    unsafe { Mmap::map(&file) }.map_err(|e| CheckpointError::io(path, e))
}

/// Lists the tensors of one mapped safetensors file as entries pointing into map number `file`.
fn entries(path: &Path, map: &Mmap, file: usize) -> Result<Vec<TensorEntry>> {
    let st = SafeTensors::deserialize(map)
        .map_err(|e| CheckpointError::corrupt(path, FORMAT, e.to_string()))?;
    let base = map.as_ptr() as usize;
    st.tensors()
        .into_iter()
        .map(|(name, view)| {
            let dtype = DType::from_safetensors(view.dtype()).ok_or_else(|| {
                CheckpointError::Unsupported {
                    path: path.to_owned(),
                    what: format!("element type {:?} of tensor `{name}`", view.dtype()),
                }
            })?;
            let data = view.data();
            let shape = view.shape().to_vec();
            Ok(TensorEntry {
                name,
                dtype,
                layout: Layout {
                    blob: Blob::Mapped {
                        file,
                        start: data.as_ptr() as usize - base,
                        len: data.len(),
                    },
                    offset: 0,
                    strides: contiguous_strides(&shape),
                },
                shape,
            })
        })
        .collect()
}

fn open_files(paths: &[PathBuf]) -> Result<Parts> {
    let mut parts = Parts {
        maps: Vec::new(),
        owned: Vec::new(),
        tensors: Vec::new(),
        skipped: Vec::new(),
    };
    for path in paths {
        let map = map_file(path)?;
        let found = entries(path, &map, parts.maps.len())?;
        parts.tensors.extend(found);
        parts.maps.push(map);
    }
    Ok(parts)
}

pub fn open_file(path: &Path) -> Result<Parts> {
    open_files(&[path.to_owned()])
}

pub fn open_folder(dir: &Path) -> Result<Parts> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| CheckpointError::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    files.sort();
    open_files(&files)
}

#[derive(serde::Deserialize)]
struct ShardIndex {
    weight_map: BTreeMap<String, String>,
}

/// Opens the shards named by a `*.safetensors.index.json` (given directly or found in `path` as a folder) and
/// checks that every tensor the index lists is in the shard it names.
pub fn open_sharded(path: &Path) -> Result<Parts> {
    let index_path = if path.is_dir() {
        find_index(path)?
    } else {
        path.to_owned()
    };
    let dir = index_path.parent().unwrap_or(Path::new("."));
    let text =
        std::fs::read_to_string(&index_path).map_err(|e| CheckpointError::io(&index_path, e))?;
    let index: ShardIndex = serde_json::from_str(&text)
        .map_err(|e| CheckpointError::corrupt(&index_path, "shard index JSON", e.to_string()))?;
    let shard_names: BTreeSet<&String> = index.weight_map.values().collect();
    let mut shards = Vec::new();
    for name in &shard_names {
        if name.contains("..") || Path::new(name).is_absolute() {
            return Err(CheckpointError::corrupt(
                &index_path,
                "shard index JSON",
                format!("shard name `{name}` points outside the folder"),
            ));
        }
        shards.push(dir.join(name));
    }
    let parts = open_files(&shards)?;
    for (tensor, shard) in &index.weight_map {
        let shard_file = shard_names.iter().position(|s| *s == shard).unwrap_or(0);
        let found = parts.tensors.iter().any(|t| {
            &t.name == tensor
                && matches!(t.layout.blob, Blob::Mapped { file, .. } if file == shard_file)
        });
        if !found {
            return Err(CheckpointError::MissingTensor {
                name: tensor.clone(),
                path: dir.join(shard),
                hint: format!(" (listed in {})", index_path.display()),
            });
        }
    }
    Ok(parts)
}

fn find_index(dir: &Path) -> Result<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| CheckpointError::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".safetensors.index.json"))
        .collect();
    found.sort();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(CheckpointError::UnknownFormat {
            path: dir.to_owned(),
            found: "a folder without a .safetensors.index.json".into(),
        }),
        _ => Err(CheckpointError::Unsupported {
            path: dir.to_owned(),
            what: format!(
                "folder with several shard indexes ({}); open one of them directly",
                found
                    .iter()
                    .map(|p| p
                        .file_name()
                        .unwrap_or_default()
                        .to_string_lossy()
                        .into_owned())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }),
    }
}
