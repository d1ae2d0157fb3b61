//! `--device`: where a command runs its networks.

use anyhow::{bail, Context, Result};
use candle_core::Device;

/// `--device`, flattened into every command that runs a network besides the trainers.
#[derive(clap::Args, Debug, Clone)]
pub struct DeviceArgs {
    /// Where the networks run: cpu, cuda (the first GPU) or cuda:N (cuda needs a build with the `cuda`
    /// feature). Inputs and outputs stay on the CPU; results are the same as on the CPU up to the device's
    /// arithmetic.
    #[arg(long, default_value = "cpu", value_name = "cpu|cuda|cuda:N")]
    pub device: String,
}

impl DeviceArgs {
    /// The device, or an error saying what `--device` takes or how to build CUDA support.
    pub fn device(&self) -> Result<Device> {
        parse_device(&self.device)
    }
}

/// `cpu`, `cuda` (the first GPU) or `cuda:N`.
pub fn parse_device(spec: &str) -> Result<Device> {
    let ordinal = match spec {
        "cpu" => return Ok(Device::Cpu),
        "cuda" => 0,
        _ => match spec.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(n)) => n,
            _ => bail!("--device {spec}: expected cpu, cuda or cuda:N"),
        },
    };
    if !candle_core::utils::cuda_is_available() {
        bail!(
            "--device {spec}: this orrery was built without CUDA (build it with `cargo build --release \
             --features cuda`)"
        );
    }
    Device::new_cuda(ordinal).with_context(|| format!("--device {spec}: no usable CUDA device"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_cpu_and_refuses_what_is_not_a_device() {
        assert!(parse_device("cpu").unwrap().is_cpu());
        for bad in ["gpu", "cuda:", "cuda:x", "CPU"] {
            let err = parse_device(bad).unwrap_err().to_string();
            assert!(err.contains("expected cpu, cuda or cuda:N"), "{bad}: {err}");
        }
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn asking_for_cuda_without_it_says_how_to_build_it() {
        let err = parse_device("cuda").unwrap_err().to_string();
        assert!(err.contains("--features cuda"), "{err}");
    }
}
