//! `orrery inspect` and `orrery convert`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use orrery_nn::checkpoint::write_safetensors;
use orrery_nn::{Checkpoint, OpenOptions};

#[derive(clap::Args)]
pub struct InspectArgs {
    /// A .safetensors file, a sharded folder or its index, or a PyTorch .pt/.pth checkpoint.
    pub path: PathBuf,
    /// Read the tensors nested under this entry of a PyTorch checkpoint (`state_dict`, `a/b`).
    #[arg(long)]
    pub key: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args)]
pub struct ConvertArgs {
    /// The checkpoint to read.
    pub input: PathBuf,
    /// The safetensors file to write (written to a temporary file first, then renamed).
    pub output: PathBuf,
    /// Read the tensors nested under this entry of a PyTorch checkpoint.
    #[arg(long)]
    pub key: Option<String>,
    /// Keep only tensors whose name starts with this prefix, and remove it (`net.` for official DiT weights).
    #[arg(long)]
    pub strip_prefix: Option<String>,
}

fn open(path: &std::path::Path, key: &Option<String>) -> Result<Checkpoint> {
    Ok(Checkpoint::open_with(
        path,
        &OpenOptions { key: key.clone() },
    )?)
}

fn human_count(n: u64) -> String {
    match n {
        n if n >= 1_000_000_000 => format!("{:.2}B", n as f64 / 1e9),
        n if n >= 1_000_000 => format!("{:.2}M", n as f64 / 1e6),
        n if n >= 1_000 => format!("{:.1}k", n as f64 / 1e3),
        n => n.to_string(),
    }
}

pub fn inspect(args: &InspectArgs) -> Result<()> {
    let ckpt = open(&args.path, &args.key)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        let tensors: Vec<_> = ckpt
            .tensors()
            .iter()
            .map(|t| serde_json::json!({"name": t.name, "dtype": t.dtype.torch_name(), "shape": t.shape}))
            .collect();
        let doc = serde_json::json!({
            "format": ckpt.format().to_string(),
            "tensors": tensors,
            "parameters": ckpt.parameter_count(),
            "skipped": ckpt.skipped_entries(),
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
        return Ok(());
    }
    let width = ckpt
        .tensors()
        .iter()
        .map(|t| t.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    writeln!(out, "{:width$}  {:8}  shape", "name", "dtype")?;
    for t in ckpt.tensors() {
        writeln!(
            out,
            "{:width$}  {:8}  {:?}",
            t.name,
            t.dtype.torch_name(),
            t.shape
        )?;
    }
    let bytes: u64 = ckpt
        .tensors()
        .iter()
        .map(|t| t.size_in_bytes() as u64)
        .sum();
    writeln!(
        out,
        "{} tensors, {} parameters ({}), {:.1} MiB, {}",
        ckpt.tensors().len(),
        ckpt.parameter_count(),
        human_count(ckpt.parameter_count()),
        bytes as f64 / (1 << 20) as f64,
        ckpt.format()
    )?;
    if !ckpt.skipped_entries().is_empty() {
        writeln!(
            out,
            "skipped {} non-tensor entries:",
            ckpt.skipped_entries().len()
        )?;
        for s in ckpt.skipped_entries() {
            writeln!(out, "  {s}")?;
        }
    }
    Ok(())
}

/// A checkpoint seen through a name filter: only names under a prefix, with the prefix removed.
struct Renamed<'a> {
    ckpt: &'a Checkpoint,
    prefix: &'a str,
}

impl orrery_nn::checkpoint::SafetensorsSource for Renamed<'_> {
    fn entries(&self) -> Vec<(String, orrery_nn::DType, Vec<usize>)> {
        self.ckpt
            .tensors()
            .iter()
            .filter_map(|t| {
                t.name
                    .strip_prefix(self.prefix)
                    .map(|n| (n.to_owned(), t.dtype, t.shape.clone()))
            })
            .collect()
    }

    fn tensor_bytes(
        &self,
        name: &str,
    ) -> orrery_nn::checkpoint::Result<std::borrow::Cow<'_, [u8]>> {
        self.ckpt.bytes(&format!("{}{name}", self.prefix))
    }
}

pub fn convert(args: &ConvertArgs) -> Result<()> {
    if args.output.extension().is_none_or(|e| e != "safetensors") {
        bail!(
            "{}: the output must be a .safetensors file",
            args.output.display()
        );
    }
    let ckpt = open(&args.input, &args.key)?;
    let prefix = args.strip_prefix.as_deref().unwrap_or("");
    let source = Renamed {
        ckpt: &ckpt,
        prefix,
    };
    let count = orrery_nn::checkpoint::SafetensorsSource::entries(&source).len();
    if count == 0 {
        bail!(
            "{}: no tensor names start with `{prefix}`",
            args.input.display()
        );
    }
    let metadata = [("format".to_string(), "pt".to_string())]
        .into_iter()
        .collect();
    write_safetensors(&source, &args.output, Some(metadata))
        .with_context(|| format!("converting {}", args.input.display()))?;
    tracing::info!(
        "wrote {} tensors ({} skipped entries left out) to {}",
        count,
        ckpt.skipped_entries().len(),
        args.output.display()
    );
    Ok(())
}
