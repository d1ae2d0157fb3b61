//! `orrery merge`: the flags become a typed [`MergeMethod`] (flags a method does not use are refused, not
//! ignored), and orrery-train's [`Merger`] does the rest.

use std::path::PathBuf;

use anyhow::{bail, Result};
use orrery_train::merge::{self, Dare, DareRescale, MergeMethod, MergeOptions, Merger};

#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
pub enum MethodArg {
    /// Weighted mean of the models, Σ w_i·θ_i / Σ w_i (no base).
    Soup,
    /// θ_b + λ·Σ w_i·(θ_i − θ_b).
    TaskArithmetic,
    /// TIES (arXiv 2306.01708): trim each task vector to its top density by magnitude, elect each entry's sign
    /// by the weighted sum, average the agreeing entries, θ_b + λ·that.
    Ties,
    /// DARE (arXiv 2311.03099) then task arithmetic: drop each task-vector entry with probability 1 − density,
    /// rescale the kept ones, θ_b + λ·Σ w_i·DARE(τ_i).
    DareLinear,
    /// DARE, then TIES's sign election and sum of the agreeing entries (not normalised).
    DareTies,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
pub enum RescaleArg {
    /// The DARE paper's: kept entries divided by the density.
    InverseDensity,
    /// mergekit's: kept entries scaled so that each tensor's L1 norm is unchanged.
    L1,
}

#[derive(clap::Args)]
pub struct MergeArgs {
    /// The merge method.
    #[arg(long, value_enum)]
    pub method: MethodArg,
    /// The model the others were fine-tuned from (task vectors are model − base). Required by every method but
    /// soup, which takes none.
    #[arg(long)]
    pub base: Option<PathBuf>,
    /// One weight per model, comma-separated (default: 1 each; the soup divides by their sum).
    #[arg(long, value_delimiter = ',', allow_negative_numbers = true)]
    pub weights: Option<Vec<f64>>,
    /// Fraction of each task vector kept, in (0, 1]: by magnitude for ties (default 0.2, the paper's top 20 %),
    /// at random for dare-linear and dare-ties (required: the DARE paper fixes none; its headline drop rate
    /// 0.9 is density 0.1).
    #[arg(long)]
    pub density: Option<f64>,
    /// Scale λ of the merged task vector (default 1; not for soup).
    #[arg(long = "lambda", allow_negative_numbers = true)]
    pub lambda: Option<f64>,
    /// Seed of DARE's random masks (default 0): the same seed gives the same file, byte for byte.
    #[arg(long)]
    pub seed: Option<u64>,
    /// How DARE rescales the entries it keeps (default inverse-density, the paper's).
    #[arg(long, value_enum)]
    pub rescale: Option<RescaleArg>,
    /// The output: a .safetensors file, or for model bundles a new folder (merged transformer/, and orrery word
    /// encoders where the fine-tunes trained them; the rest copied from the first model). Written to a temporary
    /// name first, then renamed.
    #[arg(long)]
    pub out: PathBuf,
    /// The models to merge: checkpoints in any format orrery reads (.safetensors, sharded folders, PyTorch
    /// .pt/.pth) or model bundles (folders with transformer/), all with the same tensors.
    #[arg(required = true)]
    pub models: Vec<PathBuf>,
}

/// The typed method from the flags; a flag the method does not use is an error (it would otherwise be silently
/// ignored, and the user would believe it applied).
fn method(args: &MergeArgs) -> Result<MergeMethod> {
    let unused = |flag: &str, given: bool, why: &str| -> Result<()> {
        if given {
            bail!(
                "--{flag} does not apply to --method {}: {why}",
                args.method.name()
            );
        }
        Ok(())
    };
    let not_dare = args.method != MethodArg::DareLinear && args.method != MethodArg::DareTies;
    if not_dare {
        unused("seed", args.seed.is_some(), "only DARE draws random masks")?;
        unused("rescale", args.rescale.is_some(), "only DARE rescales")?;
    }
    let lambda = args.lambda.unwrap_or(merge::LAMBDA);
    Ok(match args.method {
        MethodArg::Soup => {
            unused(
                "lambda",
                args.lambda.is_some(),
                "the soup has no task vector to scale",
            )?;
            unused(
                "density",
                args.density.is_some(),
                "the soup keeps every entry",
            )?;
            MergeMethod::Soup
        }
        MethodArg::TaskArithmetic => {
            unused(
                "density",
                args.density.is_some(),
                "task arithmetic keeps every entry (dare-linear drops some)",
            )?;
            MergeMethod::TaskArithmetic { lambda }
        }
        MethodArg::Ties => MergeMethod::Ties {
            density: args.density.unwrap_or(merge::TIES_DENSITY),
            lambda,
        },
        MethodArg::DareLinear | MethodArg::DareTies => {
            let Some(density) = args.density else {
                bail!(
                    "--method {} needs --density (the fraction of entries kept; the DARE paper fixes no default, \
                     its headline results drop 90 %: --density 0.1)",
                    args.method.name()
                );
            };
            let dare = Dare {
                density,
                lambda,
                seed: args.seed.unwrap_or(0),
                rescale: match args.rescale {
                    None | Some(RescaleArg::InverseDensity) => DareRescale::InverseDensity,
                    Some(RescaleArg::L1) => DareRescale::L1,
                },
            };
            if args.method == MethodArg::DareLinear {
                MergeMethod::DareLinear(dare)
            } else {
                MergeMethod::DareTies(dare)
            }
        }
    })
}

impl MethodArg {
    fn name(self) -> &'static str {
        match self {
            Self::Soup => "soup",
            Self::TaskArithmetic => "task-arithmetic",
            Self::Ties => "ties",
            Self::DareLinear => "dare-linear",
            Self::DareTies => "dare-ties",
        }
    }
}

pub fn merge(args: &MergeArgs) -> Result<()> {
    let options = MergeOptions {
        method: method(args)?,
        weights: args.weights.clone(),
    };
    let merger = Merger::open(args.base.as_deref(), &args.models, options)?;
    let bar = crate::progress_bar(
        merger.tensor_count(),
        "tensors",
        format!("merging ({})", merger.method().name()),
    )?;
    // The library's errors name the output path.
    merger.write(&args.out, &|_| bar.inc(1))?;
    bar.finish_and_clear();
    tracing::info!(
        "wrote {} ({} of {} models: {} tensors, {} parameters)",
        args.out.display(),
        merger.method().name(),
        args.models.len(),
        merger.tensor_count(),
        merger.parameter_count()
    );
    Ok(())
}
