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
    tmp.commit(out).map_err(|e| CheckpointError::io(out, e))
}
