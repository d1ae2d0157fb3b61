//! Writing safetensors files atomically (temporary file in the same folder, then rename), streaming one tensor
//! at a time so that converting a large checkpoint never holds it all in memory.

use std::borrow::Cow;
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
}

impl<S: SafetensorsSource + ?Sized> safetensors::View for LazyView<'_, S> {
    fn dtype(&self) -> safetensors::Dtype {
        self.dtype.to_safetensors()
    }

    fn shape(&self) -> &[usize] {
        &self.shape
    }

    fn data(&self) -> Cow<'_, [u8]> {
        // The names come from `entries()`, so a failure here means the source changed under us; an empty buffer
        // makes the serializer fail with a length error instead of panicking.
        self.source
            .tensor_bytes(&self.name)
            .unwrap_or(Cow::Borrowed(&[]))
    }

    fn data_len(&self) -> usize {
        self.shape.iter().product::<usize>() * self.dtype.size_in_bytes()
    }
}

/// Writes every tensor of `source` to `out` as one safetensors file. The file appears only when complete.
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
    // Fail early on a tensor that cannot be read, with its name, rather than inside the serializer.
    for (name, ..) in source.entries() {
        source.tensor_bytes(&name)?;
    }
    let views: Vec<(String, LazyView<'_, S>)> = source
        .entries()
        .into_iter()
        .map(|(name, dtype, shape)| {
            let view = LazyView {
                source,
                name: name.clone(),
                dtype,
                shape,
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

/// Little-endian bytes of a tensor in its element type.
fn tensor_bytes(t: &candle_core::Tensor) -> candle_core::Result<Vec<u8>> {
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
