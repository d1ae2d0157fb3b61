//! Writing safetensors files atomically (temporary file in the same folder, then rename), streaming one tensor
//! at a time so that converting a large checkpoint never holds it all in memory.

use std::borrow::Cow;
use std::cell::RefCell;
use std::path::Path;

use super::error::{CheckpointError, Result};
use super::{Checkpoint, DType};

/// Anything that can hand out named tensors as contiguous little-endian bytes, one at a time.
pub trait SafetensorsSource {
    /// (name, dtype, shape) of every tensor, in the order they are written.
    fn entries(&self) -> Vec<(String, DType, Vec<usize>)>;
    fn tensor_bytes(&self, name: &str) -> Result<Cow<'_, [u8]>>;
}

impl SafetensorsSource for Checkpoint {
    fn entries(&self) -> Vec<(String, DType, Vec<usize>)> {
        self.tensors()
            .iter()
            .map(|t| (t.name.clone(), t.dtype, t.shape.clone()))
            .collect()
    }

    fn tensor_bytes(&self, name: &str) -> Result<Cow<'_, [u8]>> {
        self.bytes(name)
    }
}

/// A tensor whose bytes are fetched only when the serializer writes it.
struct LazyView<'a, S: SafetensorsSource + ?Sized> {
    source: &'a S,
    name: String,
    dtype: DType,
    shape: Vec<usize>,
    /// The first error any view of this file met. The serializer cannot be told that a tensor failed (`data()`
    /// returns bytes, and safetensors 0.8 writes an empty buffer as a short write into a pre-sized file and
    /// carries on), so the failure is kept here and [`write_safetensors`] refuses to commit the file.
    failed: &'a RefCell<Option<CheckpointError>>,
}

impl<S: SafetensorsSource + ?Sized> safetensors::View for LazyView<'_, S> {
    fn dtype(&self) -> safetensors::Dtype {
        self.dtype.to_safetensors()
    }

    fn shape(&self) -> &[usize] {
        &self.shape
    }

    fn data(&self) -> Cow<'_, [u8]> {
        // After a failure the rest of the file is garbage anyway: skip the work of the remaining tensors (a
        // computing source such as a merge would otherwise compute every one of them).
        if self.failed.borrow().is_some() {
            return Cow::Borrowed(&[]);
        }
        match self.source.tensor_bytes(&self.name) {
            Ok(bytes) if bytes.len() == self.data_len() => bytes,
            Ok(bytes) => {
                *self.failed.borrow_mut() = Some(CheckpointError::Tensor {
                    name: self.name.clone(),
                    detail: format!(
                        "the source gave {} bytes, its shape {:?} of {} needs {}",
                        bytes.len(),
                        self.shape,
                        self.dtype,
                        self.data_len()
                    ),
                });
                Cow::Borrowed(&[])
            }
            Err(e) => {
                *self.failed.borrow_mut() = Some(e);
                Cow::Borrowed(&[])
            }
        }
    }

    fn data_len(&self) -> usize {
        self.shape.iter().product::<usize>() * self.dtype.size_in_bytes()
    }
}

/// Writes every tensor of `source` to `out` as one safetensors file. The file appears only when complete: a
/// tensor the source fails to give is reported with its name, and nothing is left at `out`.
///
/// Each tensor's bytes are asked for once, while the file is written (a source may compute them: a merge).
pub fn write_safetensors<S: SafetensorsSource + ?Sized>(
    source: &S,
    out: &Path,
    metadata: Option<std::collections::HashMap<String, String>>,
) -> Result<()> {
    let tmp = orrery_io::AtomicFile::create(out).map_err(|e| CheckpointError::io(out, e))?;
    // safetensors writes through its own private (0600) temporary file renamed over ours: keep the mode an
    // ordinary new file gets, which ours has.
    let mode = std::fs::metadata(tmp.path())
        .map_err(|e| CheckpointError::io(out, e))?
        .permissions();
    let failed = RefCell::new(None);
    let views: Vec<(String, LazyView<'_, S>)> = source
        .entries()
        .into_iter()
        .map(|(name, dtype, shape)| {
            let view = LazyView {
                source,
                name: name.clone(),
                dtype,
                shape,
                failed: &failed,
            };
            (name, view)
        })
        .collect();
    safetensors::serialize_to_file(views, metadata, tmp.path()).map_err(|e| {
        CheckpointError::Tensor {
            name: out.display().to_string(),
            detail: format!("writing safetensors failed: {e}"),
        }
    })?;
    if let Some(e) = failed.into_inner() {
        return Err(e); // `tmp` is dropped: the partial file is removed
    }
    std::fs::set_permissions(tmp.path(), mode).map_err(|e| CheckpointError::io(out, e))?;
    tmp.commit(out).map_err(|e| CheckpointError::io(out, e))
}

/// Candle tensors by name, as a [`SafetensorsSource`] (the CLI's and trainers' outputs).
pub struct TensorSet {
    tensors: Vec<(String, candle_core::Tensor, DType, Vec<u8>)>,
}

impl TensorSet {
    /// Copies each tensor's bytes out once (in its own element type).
    pub fn new(tensors: Vec<(String, candle_core::Tensor)>) -> Result<Self> {
        let tensors = tensors
            .into_iter()
            .map(|(name, t)| {
                let dtype =
                    DType::from_candle(t.dtype()).ok_or_else(|| CheckpointError::Tensor {
                        name: name.clone(),
                        detail: format!("cannot write tensors of type {:?}", t.dtype()),
                    })?;
                let bytes = tensor_bytes(&t).map_err(|e| CheckpointError::Tensor {
                    name: name.clone(),
                    detail: e.to_string(),
                })?;
                Ok((name, t, dtype, bytes))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { tensors })
    }
}

impl SafetensorsSource for TensorSet {
    fn entries(&self) -> Vec<(String, DType, Vec<usize>)> {
        self.tensors
            .iter()
            .map(|(name, t, dtype, _)| (name.clone(), *dtype, t.dims().to_vec()))
            .collect()
    }

    fn tensor_bytes(&self, name: &str) -> Result<Cow<'_, [u8]>> {
        self.tensors
            .iter()
            .find(|(n, ..)| n == name)
            .map(|(.., bytes)| Cow::Borrowed(bytes.as_slice()))
            .ok_or_else(|| CheckpointError::Tensor {
                name: name.to_owned(),
                detail: "not in the set".into(),
            })
    }
}

/// Little-endian bytes of a tensor in its element type (what safetensors stores).
pub fn tensor_bytes(t: &candle_core::Tensor) -> candle_core::Result<Vec<u8>> {
    use candle_core::DType as C;
    let flat = t.flatten_all()?.to_device(&candle_core::Device::Cpu)?;
    fn le<T: Copy, const N: usize>(v: Vec<T>, f: impl Fn(T) -> [u8; N]) -> Vec<u8> {
        v.into_iter().flat_map(f).collect()
    }
    Ok(match t.dtype() {
        C::U8 => flat.to_vec1::<u8>()?,
        C::I16 => le(flat.to_vec1::<i16>()?, i16::to_le_bytes),
        C::I32 => le(flat.to_vec1::<i32>()?, i32::to_le_bytes),
        C::I64 => le(flat.to_vec1::<i64>()?, i64::to_le_bytes),
        C::BF16 => le(flat.to_vec1::<half::bf16>()?, half::bf16::to_le_bytes),
        C::F16 => le(flat.to_vec1::<half::f16>()?, half::f16::to_le_bytes),
        C::F32 => le(flat.to_vec1::<f32>()?, f32::to_le_bytes),
        C::F64 => le(flat.to_vec1::<f64>()?, f64::to_le_bytes),
        other => candle_core::bail!("cannot write tensors of type {other:?}"),
    })
}

/// Writes candle tensors to a safetensors file atomically.
pub fn save_tensors(out: &Path, tensors: Vec<(String, candle_core::Tensor)>) -> Result<()> {
    write_safetensors(&TensorSet::new(tensors)?, out, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two tensors; the second fails (`Err`) or has the wrong length (`short`).
    struct Failing {
        short: bool,
    }

    impl SafetensorsSource for Failing {
        fn entries(&self) -> Vec<(String, DType, Vec<usize>)> {
            vec![
                ("a".into(), DType::F32, vec![2]),
                ("b".into(), DType::F32, vec![2]),
            ]
        }

        fn tensor_bytes(&self, name: &str) -> Result<Cow<'_, [u8]>> {
            match (name, self.short) {
                ("a", _) => Ok(Cow::Owned(vec![0; 8])),
                (_, true) => Ok(Cow::Owned(vec![0; 4])),
                (_, false) => Err(CheckpointError::Tensor {
                    name: name.into(),
                    detail: "broken".into(),
                }),
            }
        }
    }

    #[test]
    fn a_failing_tensor_is_named_and_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out.safetensors");
        for short in [false, true] {
            let err = write_safetensors(&Failing { short }, &out, None).unwrap_err();
            assert!(err.to_string().contains("tensor `b`"), "{err}");
            assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        }
    }
}
