//! Checkpoint I/O: read tensors by name from safetensors files (memory-mapped), sharded Hugging Face folders and
//! PyTorch zip checkpoints (`torch.save`), and write safetensors atomically.
//!
//! Tensor data is never copied at open time: safetensors files and the uncompressed storages of a PyTorch zip are
//! memory-mapped, and a tensor's bytes are borrowed from the map when asked for. A 29 GB checkpoint therefore costs
//! address space, not memory, until its tensors are loaded one by one.

mod dtype;
mod error;
mod format;
pub mod names;
pub mod pickle;
mod safetensors_file;
mod torch_zip;
mod var_backend;
mod write;

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use memmap2::Mmap;

pub use dtype::DType;
pub use error::{CheckpointError, Result};
pub use format::Format;
pub use var_backend::{to_candle, TrackedCheckpoint, UsedNames};
pub use write::{save_tensors, tensor_bytes, write_safetensors, SafetensorsSource, TensorSet};

/// One tensor of a checkpoint: its name, element type and shape, and where its bytes are.
#[derive(Debug, Clone)]
pub struct TensorEntry {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
    layout: Layout,
}

/// Bytes of one storage: a range of a memory-mapped file, or bytes read into memory (compressed zip entries).
#[derive(Debug, Clone)]
enum Blob {
    Mapped {
        file: usize,
        start: usize,
        len: usize,
    },
    Owned(usize),
}

/// A strided view (in elements) into a blob, as PyTorch stores tensors; safetensors tensors are contiguous views.
#[derive(Debug, Clone)]
struct Layout {
    blob: Blob,
    offset: usize,
    strides: Vec<usize>,
}

impl TensorEntry {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn size_in_bytes(&self) -> usize {
        self.numel() * self.dtype.size_in_bytes()
    }

    fn is_contiguous(&self) -> bool {
        let mut expected = 1usize;
        for (&dim, &stride) in self.shape.iter().zip(&self.layout.strides).rev() {
            if dim != 1 && stride != expected {
                return false;
            }
            expected *= dim;
        }
        true
    }
}

/// Options for [`Checkpoint::open_with`].
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    /// Read the tensors nested under this entry of a PyTorch checkpoint (`state_dict`, `model`, `a/b` for deeper
    /// levels); the prefix is removed from the names.
    pub key: Option<String>,
}

/// An opened checkpoint: the list of its tensors and read access to their bytes.
#[derive(Debug)]
pub struct Checkpoint {
    path: PathBuf,
    format: Format,
    maps: Vec<Mmap>,
    owned: Vec<Vec<u8>>,
    tensors: Vec<TensorEntry>,
    by_name: HashMap<String, usize>,
    skipped: Vec<String>,
}

impl Checkpoint {
    /// Opens a `.safetensors` file, a sharded folder (or its `*.safetensors.index.json`), a folder of
    /// `.safetensors` files, or a PyTorch zip checkpoint. The format is recognised by content, not by extension.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(path, &OpenOptions::default())
    }

    pub fn open_with(path: impl AsRef<Path>, options: &OpenOptions) -> Result<Self> {
        let path = path.as_ref();
        let format = format::detect(path)?;
        if options.key.is_some() && format != Format::TorchZip {
            return Err(CheckpointError::Unsupported {
                path: path.to_owned(),
                what: "--key for safetensors (its names are already flat)".into(),
            });
        }
        let parts = match format {
            Format::Safetensors => safetensors_file::open_file(path)?,
            Format::ShardedSafetensors => safetensors_file::open_sharded(path)?,
            Format::SafetensorsFolder => safetensors_file::open_folder(path)?,
            Format::TorchZip => torch_zip::open(path, options.key.as_deref())?,
        };
        let mut tensors = parts.tensors;
        tensors.sort_by(|a, b| a.name.cmp(&b.name));
        let mut by_name = HashMap::with_capacity(tensors.len());
        for (i, t) in tensors.iter().enumerate() {
            if by_name.insert(t.name.clone(), i).is_some() {
                return Err(CheckpointError::DuplicateTensor {
                    name: t.name.clone(),
                    path: path.to_owned(),
                });
            }
        }
        Ok(Self {
            path: path.to_owned(),
            format,
            maps: parts.maps,
            owned: parts.owned,
            tensors,
            by_name,
            skipped: parts.skipped,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn format(&self) -> Format {
        self.format
    }

    /// The string metadata of a single safetensors file's header (`__metadata__`: `format`, diffusers'
    /// `lora_adapter_metadata`, ...); `None` for other formats and files without metadata.
    pub fn safetensors_metadata(&self) -> Result<Option<HashMap<String, String>>> {
        if self.format != Format::Safetensors {
            return Ok(None);
        }
        let Some(map) = self.maps.first() else {
            return Ok(None);
        };
        let (_, metadata) = safetensors::SafeTensors::read_metadata(map)
            .map_err(|e| CheckpointError::corrupt(&self.path, "safetensors", e.to_string()))?;
        Ok(metadata.metadata().clone())
    }

    /// All tensors, sorted by name.
    pub fn tensors(&self) -> &[TensorEntry] {
        &self.tensors
    }

    /// The first `n` stored names, for errors that say what a file holds instead of what was expected.
    pub fn first_names(&self, n: usize) -> Vec<&str> {
        self.tensors
            .iter()
            .take(n)
            .map(|t| t.name.as_str())
            .collect()
    }

    /// Entries of a PyTorch checkpoint that are not tensors (counters, `_extra_state`, ...), which were skipped.
    pub fn skipped_entries(&self) -> &[String] {
        &self.skipped
    }

    pub fn contains(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    pub fn get(&self, name: &str) -> Result<&TensorEntry> {
        self.by_name
            .get(name)
            .map(|&i| &self.tensors[i])
            .ok_or_else(|| self.missing(name))
    }

    /// Total number of elements over all tensors.
    pub fn parameter_count(&self) -> u64 {
        self.tensors.iter().map(|t| t.numel() as u64).sum()
    }

    /// The tensor's elements as contiguous little-endian bytes; borrowed from the file map when the stored tensor
    /// is contiguous.
    pub fn bytes(&self, name: &str) -> Result<Cow<'_, [u8]>> {
        let entry = self.get(name)?;
        self.entry_bytes(entry)
    }

    /// Drops the tensor's memory-mapped pages from this process's resident memory. They stay in the kernel's page
    /// cache (a later read faults them back in from there, or from the file), so this changes nothing but the
    /// resident set: a pass that reads a checkpoint larger than memory tensor by tensor (a merge) calls it after
    /// each tensor, so that resident memory stays near one tensor instead of growing to the whole file. Tensors
    /// read into memory at open (compressed zip entries) are left as they are.
    pub fn release(&self, name: &str) -> Result<()> {
        let entry = self.get(name)?;
        if let Blob::Mapped { file, start, len } = entry.layout.blob {
            // SAFETY: the maps are read-only shared file mappings (`Mmap`), so dropping their pages loses nothing:
            // the next access reads the same bytes back from the page cache or the file. Borrowed slices stay
            // valid (the mapping itself is unchanged).
            unsafe {
                self.maps[file]
                    .unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, len)
                    .map_err(|e| CheckpointError::io(&self.path, e))?;
            }
        }
        Ok(())
    }

    fn blob(&self, blob: &Blob) -> &[u8] {
        match *blob {
            Blob::Mapped { file, start, len } => &self.maps[file][start..start + len],
            Blob::Owned(i) => &self.owned[i],
        }
    }

    fn entry_bytes<'a>(&'a self, entry: &TensorEntry) -> Result<Cow<'a, [u8]>> {
        let blob = self.blob(&entry.layout.blob);
        let elem = entry.dtype.size_in_bytes();
        if entry.is_contiguous() {
            let start = entry.layout.offset * elem;
            return Ok(Cow::Borrowed(&blob[start..start + entry.size_in_bytes()]));
        }
        Ok(Cow::Owned(gather_strided(
            blob,
            elem,
            entry.layout.offset,
            &entry.shape,
            &entry.layout.strides,
        )))
    }

    /// Loads a tensor in its stored element type.
    pub fn load(&self, name: &str, device: &Device) -> Result<Tensor> {
        let entry = self.get(name)?;
        let dtype = entry
            .dtype
            .to_candle()
            .ok_or_else(|| CheckpointError::Tensor {
                name: name.to_owned(),
                detail: format!("element type {} has no candle equivalent", entry.dtype),
            })?;
        let bytes = self.entry_bytes(entry)?;
        Ok(Tensor::from_raw_buffer(
            &bytes,
            dtype,
            &entry.shape,
            device,
        )?)
    }

    /// Loads a tensor and converts it to `dtype`.
    pub fn load_as(
        &self,
        name: &str,
        dtype: candle_core::DType,
        device: &Device,
    ) -> Result<Tensor> {
        let tensor = self.load(name, device)?;
        Ok(if tensor.dtype() == dtype {
            tensor
        } else {
            tensor.to_dtype(dtype)?
        })
    }

    /// Loads a tensor and checks its shape.
    pub fn load_checked(
        &self,
        name: &str,
        shape: &[usize],
        dtype: candle_core::DType,
        device: &Device,
    ) -> Result<Tensor> {
        let entry = self.get(name)?;
        if entry.shape != shape {
            return Err(CheckpointError::ShapeMismatch {
                name: name.to_owned(),
                expected: shape.to_vec(),
                found: entry.shape.clone(),
            });
        }
        self.load_as(name, dtype, device)
    }

    fn missing(&self, name: &str) -> CheckpointError {
        CheckpointError::MissingTensor {
            name: name.to_owned(),
            path: self.path.clone(),
            hint: self.similar_names_hint(name),
        }
    }

    /// Suggests stored names that share the requested name's last two components, so that a prefix or naming
    /// scheme mismatch (`net.` prefix, diffusers names) is obvious from the error.
    fn similar_names_hint(&self, name: &str) -> String {
        let suffix: Vec<&str> = name.rsplit('.').take(2).collect();
        let suffix = suffix.into_iter().rev().collect::<Vec<_>>().join(".");
        let similar: Vec<&str> = self
            .tensors
            .iter()
            .filter(|t| t.name.ends_with(&suffix))
            .take(3)
            .map(|t| t.name.as_str())
            .collect();
        if similar.is_empty() {
            format!(" ({} tensors there)", self.tensors.len())
        } else {
            format!(" (similar names there: {})", similar.join(", "))
        }
    }
}

/// What a format reader hands back: tensors and the byte sources they point into.
pub(crate) struct Parts {
    pub maps: Vec<Mmap>,
    pub owned: Vec<Vec<u8>>,
    pub tensors: Vec<TensorEntry>,
    pub skipped: Vec<String>,
}

pub(crate) fn contiguous_strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![1usize; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * shape[i + 1];
    }
    strides
}

/// Copies a strided view into contiguous bytes (row-major), element by element.
fn gather_strided(
    blob: &[u8],
    elem: usize,
    offset: usize,
    shape: &[usize],
    strides: &[usize],
) -> Vec<u8> {
    let numel: usize = shape.iter().product();
    let mut out = Vec::with_capacity(numel * elem);
    if numel == 0 {
        return out;
    }
    let mut index = vec![0usize; shape.len()];
    for _ in 0..numel {
        let at: usize = offset + index.iter().zip(strides).map(|(i, s)| i * s).sum::<usize>();
        out.extend_from_slice(&blob[at * elem..(at + 1) * elem]);
        for d in (0..shape.len()).rev() {
            index[d] += 1;
            if index[d] < shape[d] {
                break;
            }
            index[d] = 0;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strides_of_contiguous_shapes() {
        assert_eq!(contiguous_strides(&[2, 3, 4]), vec![12, 4, 1]);
        assert_eq!(contiguous_strides(&[]), Vec::<usize>::new());
    }

    #[test]
    fn gather_transposed_view() {
        // A 2x3 matrix stored row-major, viewed transposed (3x2, strides (1, 3)).
        let blob: Vec<u8> = (0u8..6).collect();
        let out = gather_strided(&blob, 1, 0, &[3, 2], &[1, 3]);
        assert_eq!(out, vec![0, 3, 1, 4, 2, 5]);
    }
}
