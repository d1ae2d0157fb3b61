//! PyTorch checkpoints as `torch.save` writes them: a zip holding `<archive>/data.pkl` (the pickled object) and
//! `<archive>/data/<key>` (one raw little-endian storage per key, stored uncompressed and 64-byte aligned).

use std::collections::HashMap;
use std::io::{Cursor, Read};
use std::path::Path;

use super::error::{CheckpointError, Result};
use super::pickle::{self, Pickle, TensorRef, Value, ValueId};
use super::safetensors_file::map_file;
use super::{Blob, Layout, Parts, TensorEntry};

const FORMAT: &str = "PyTorch zip";
/// Nesting depth beyond which a pickled object is not a state dict (and may be a reference cycle).
const MAX_DEPTH: usize = 32;

pub fn open(path: &Path, key: Option<&str>) -> Result<Parts> {
    let map = map_file(path)?;
    let corrupt = |detail: String| CheckpointError::corrupt(path, FORMAT, detail);
    let mut archive =
        zip::ZipArchive::new(Cursor::new(&map[..])).map_err(|e| corrupt(e.to_string()))?;

    let names: Vec<String> = archive
        .file_names()
        .map(|n| n.map(|n| n.into_owned()))
        .collect::<Result<_, _>>()
        .map_err(|e| corrupt(e.to_string()))?;
    let pickle_name = names
        .iter()
        .filter(|n| n.ends_with("data.pkl") && n.matches('/').count() <= 1)
        .min_by_key(|n| n.len())
        .ok_or_else(|| CheckpointError::UnknownFormat {
            path: path.to_owned(),
            found: "a zip archive without data.pkl (not written by torch.save)".into(),
        })?
        .clone();
    let prefix = pickle_name.trim_end_matches("data.pkl").to_owned();

    if let Ok(mut f) = archive.by_name(&format!("{prefix}byteorder")) {
        let mut order = String::new();
        f.read_to_string(&mut order)
            .map_err(|e| corrupt(e.to_string()))?;
        if order.trim() != "little" {
            return Err(CheckpointError::Unsupported {
                path: path.to_owned(),
                what: format!("byte order `{}`", order.trim()),
            });
        }
    }

    let mut pickle_bytes = Vec::new();
    archive
        .by_name(&pickle_name)
        .and_then(|mut f| f.read_to_end(&mut pickle_bytes).map_err(Into::into))
        .map_err(|e| corrupt(format!("{pickle_name}: {e}")))?;
    let pickle =
        pickle::parse(&pickle_bytes).map_err(|e| corrupt(format!("{pickle_name}: {e}")))?;

    let mut root = pickle.root;
    if let Some(key) = key {
        for part in key.split('/') {
            root = child(&pickle, root, part).ok_or_else(|| CheckpointError::MissingKey {
                path: path.to_owned(),
                key: key.to_owned(),
                available: top_level_keys(&pickle, root),
            })?;
        }
    }
    let mut found = Vec::new();
    let mut skipped = Vec::new();
    flatten(&pickle, root, String::new(), 0, &mut found, &mut skipped);

    let mut owned = Vec::new();
    let mut blobs: HashMap<String, Blob> = HashMap::new();
    let mut tensors = Vec::with_capacity(found.len());
    for (name, tensor) in found {
        if !blobs.contains_key(&tensor.storage_key) {
            let entry_name = format!("{prefix}data/{}", tensor.storage_key);
            let blob =
                storage_blob(&mut archive, &entry_name, &mut owned, map.len()).map_err(corrupt)?;
            blobs.insert(tensor.storage_key.clone(), blob);
        }
        let blob = blobs[&tensor.storage_key].clone();
        let blob_len = match blob {
            Blob::Mapped { len, .. } => len,
            Blob::Owned(i) => owned[i].len(),
        };
        check_view(&name, &tensor, blob_len).map_err(corrupt)?;
        tensors.push(TensorEntry {
            name,
            dtype: tensor.dtype,
            shape: tensor.shape,
            layout: Layout {
                blob,
                offset: tensor.offset,
                strides: tensor.strides,
            },
        });
    }
    drop(archive);
    Ok(Parts {
        maps: vec![map],
        owned,
        tensors,
        skipped,
    })
}

/// Finds a storage file in the archive: uncompressed entries are referenced in place, others are inflated.
fn storage_blob(
    archive: &mut zip::ZipArchive<Cursor<&[u8]>>,
    name: &str,
    owned: &mut Vec<Vec<u8>>,
    archive_len: usize,
) -> std::result::Result<Blob, String> {
    let mut file = archive
        .by_name(name)
        .map_err(|e| format!("storage `{name}` is missing: {e}"))?;
    if file.compression() == zip::CompressionMethod::Stored {
        let start = file
            .data_start()
            .ok_or_else(|| format!("storage `{name}` has no data offset"))?;
        let start =
            usize::try_from(start).map_err(|_| format!("storage `{name}` offset overflows"))?;
        let len =
            usize::try_from(file.size()).map_err(|_| format!("storage `{name}` size overflows"))?;
        if start.checked_add(len).is_none_or(|end| end > archive_len) {
            return Err(format!(
                "storage `{name}` claims bytes {start}..{} but the file has {archive_len}",
                start.saturating_add(len)
            ));
        }
        return Ok(Blob::Mapped {
            file: 0,
            start,
            len,
        });
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(|e| format!("storage `{name}`: {e}"))?;
    owned.push(bytes);
    Ok(Blob::Owned(owned.len() - 1))
}

/// Checks that a strided view stays inside its storage, so reading it can never go out of bounds.
fn check_view(name: &str, t: &TensorRef, blob_len: usize) -> std::result::Result<(), String> {
    let elem = t.dtype.size_in_bytes();
    let storage_bytes = t
        .storage_numel
        .checked_mul(elem)
        .ok_or_else(|| format!("tensor `{name}`: storage size overflows"))?;
    if blob_len < storage_bytes {
        return Err(format!(
            "tensor `{name}`: storage `{}` holds {blob_len} bytes, expected {storage_bytes} ({} x {})",
            t.storage_key, t.storage_numel, t.dtype
        ));
    }
    let mut numel = 1usize;
    for &d in &t.shape {
        numel = numel
            .checked_mul(d)
            .ok_or_else(|| format!("tensor `{name}`: shape {:?} overflows", t.shape))?;
    }
    if numel == 0 {
        return Ok(());
    }
    let mut last = t.offset;
    for (&d, &s) in t.shape.iter().zip(&t.strides) {
        last = (d - 1)
            .checked_mul(s)
            .and_then(|x| x.checked_add(last))
            .ok_or_else(|| format!("tensor `{name}`: view overflows"))?;
    }
    if last >= t.storage_numel {
        return Err(format!(
            "tensor `{name}`: view (offset {}, shape {:?}, strides {:?}) reaches element {last} of a storage of {}",
            t.offset, t.shape, t.strides, t.storage_numel
        ));
    }
    Ok(())
}

fn key_text(pickle: &Pickle, id: ValueId) -> Option<String> {
    match pickle.get(id) {
        Value::Str(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

fn child(pickle: &Pickle, id: ValueId, key: &str) -> Option<ValueId> {
    match pickle.get(id) {
        Value::Dict(items) => items
            .iter()
            .find(|(k, _)| key_text(pickle, *k).as_deref() == Some(key))
            .map(|(_, v)| *v),
        Value::List(items) | Value::Tuple(items) => key
            .parse::<usize>()
            .ok()
            .and_then(|i| items.get(i).copied()),
        _ => None,
    }
}

fn top_level_keys(pickle: &Pickle, id: ValueId) -> String {
    match pickle.get(id) {
        Value::Dict(items) => {
            let keys: Vec<String> = items
                .iter()
                .filter_map(|(k, _)| key_text(pickle, *k))
                .take(20)
                .collect();
            if keys.is_empty() {
                "none".into()
            } else {
                keys.join(", ")
            }
        }
        _ => "none: it is not a dict".into(),
    }
}

fn join(prefix: &str, part: &str) -> String {
    if prefix.is_empty() {
        part.to_owned()
    } else {
        format!("{prefix}.{part}")
    }
}

/// Walks nested dicts, lists and tuples, naming tensors by their dotted path (`a.b.0.weight`); everything else
/// is recorded as skipped.
fn flatten(
    pickle: &Pickle,
    id: ValueId,
    name: String,
    depth: usize,
    tensors: &mut Vec<(String, TensorRef)>,
    skipped: &mut Vec<String>,
) {
    if depth > MAX_DEPTH {
        skipped.push(format!("{name} (nested too deeply)"));
        return;
    }
    match pickle.get(id) {
        Value::Tensor(t) => tensors.push((name, t.clone())),
        Value::Dict(items) => {
            for (k, v) in items {
                match key_text(pickle, *k) {
                    Some(k) => flatten(pickle, *v, join(&name, &k), depth + 1, tensors, skipped),
                    None => skipped.push(format!("{name}[non-string key]")),
                }
            }
        }
        Value::List(items) | Value::Tuple(items) => {
            for (i, v) in items.iter().enumerate() {
                flatten(
                    pickle,
                    *v,
                    join(&name, &i.to_string()),
                    depth + 1,
                    tensors,
                    skipped,
                );
            }
        }
        other => skipped.push(format!("{name} ({})", describe(other))),
    }
}

fn describe(value: &Value) -> String {
    match value {
        Value::None => "None".into(),
        Value::Bool(_) => "bool".into(),
        Value::Int(_) | Value::BigInt => "int".into(),
        Value::Float(_) => "float".into(),
        Value::Str(_) => "str".into(),
        Value::Bytes(_) => "bytes".into(),
        Value::Set => "set".into(),
        Value::Global { module, name } => format!("{module}.{name}"),
        Value::Storage { .. } => "bare storage".into(),
        Value::Object { class } => class.clone(),
        Value::Tensor(_) | Value::Dict(_) | Value::List(_) | Value::Tuple(_) => "container".into(),
    }
}
