//! The distilled student as a model bundle, and the sample GIFs of a distillation run.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use orrery_dit::DitModelDir;
use orrery_pipeline::distilled::DISTILLED_STEPS;
use orrery_pipeline::{BundleDefaults, Engine, Mode, ModeSampling, SamplerKind, WorldInput};

use crate::distill::config::Dmd2;
use crate::distill::trainer::DistillTrainer;
use crate::error::{Result, TrainError};
use crate::trainer::bundle_files::{link_or_copy_folder, write_bundle_rest, write_transformer};
use crate::trainer::data::sample_clips;
use crate::trainer::samples::{sample, sample_options, video_and_text_samples, write_sample_grid};

/// The folder of an exported bundle that holds the teacher's DiT for the modes `dmd.teacher_modes` names.
pub const TEACHER_TRANSFORMER: &str = "teacher_transformer";

/// The student's sampling defaults: the teacher bundle's sizes, rates and conditioning, with the distilled
/// sampler at its four steps (or the run's `dmd.export_steps` in a mode) and no guidance in every mode, except
/// that the modes `dmd.teacher_modes` names keep the teacher's sampler, steps and guidance and sample with the
/// teacher's DiT from [`TEACHER_TRANSFORMER`].
pub fn student_defaults(teacher: &BundleDefaults, dmd: &Dmd2) -> BundleDefaults {
    let mut d = BundleDefaults {
        sampler: SamplerKind::Distilled,
        steps: DISTILLED_STEPS,
        guidance: 0.0,
        mode_transformers: Default::default(),
        ..teacher.clone()
    };
    for mode in Mode::ALL {
        let own = &mut d.per_mode[mode as usize];
        if dmd.teacher_samples(mode) {
            *own = teacher.resolved_mode(mode);
            d.mode_transformers[mode as usize] = Some(TEACHER_TRANSFORMER.to_owned());
            continue;
        }
        let mode_steps = dmd.export_steps.of(mode);
        *own = ModeSampling {
            steps: (mode_steps != DISTILLED_STEPS).then_some(mode_steps),
            conditional_frames: own.conditional_frames,
            ..ModeSampling::default()
        };
    }
    d
}

/// Writes `dir`: the student's EMA DiT as `transformer/`, the teacher's word encoder and VAE, the teacher's DiT
/// as [`TEACHER_TRANSFORMER`] where some mode samples with it, the student's sampling defaults, and the run's
/// config.
pub fn export_bundle(trainer: &DistillTrainer, dir: &Path) -> Result<()> {
    write_transformer(dir, trainer.student_weights()?, &trainer.model)?;
    let dmd = &trainer.config.dmd;
    let teacher_copy = dir.join(TEACHER_TRANSFORMER);
    if Mode::ALL.into_iter().any(|m| dmd.teacher_samples(m)) {
        link_or_copy_folder(&trainer.config.teacher.join("transformer"), &teacher_copy)?;
    } else if teacher_copy.is_dir() {
        // An earlier export into the same folder routed some mode to the teacher; nothing names it now.
        std::fs::remove_dir_all(&teacher_copy).map_err(TrainError::io(&teacher_copy))?;
    }
    write_bundle_rest(
        dir,
        &trainer.config.teacher,
        &student_defaults(&trainer.teacher_defaults, dmd),
        &trainer.config,
    )
}

/// `samples/step-NNNNNNN.gif`: for a few held-out clips, the real clip, the student's Video2World and
/// Text2World, and the teacher's Text2World at its own steps.
pub fn write_samples(trainer: &DistillTrainer) -> Result<PathBuf> {
    let options = sample_options();
    let out_dir = &trainer.config.run.out_dir;
    // The sample rows show the student in every mode, whatever the bundle samples with the teacher.
    let student_only = Dmd2 {
        teacher_modes: Vec::new(),
        ..trainer.config.dmd.clone()
    };
    let student = Engine::for_models(
        out_dir,
        student_defaults(&trainer.teacher_defaults, &student_only),
        Some(""),
        options.clone(),
    )?
    .with_models(trainer.ema_student()?, trainer.vae.clone())?;
    // Samples run on the CPU like the exported bundle; the run's teacher may sit on a GPU, so it is read again.
    let teacher_dit = DitModelDir::open(&trainer.config.teacher.join("transformer"))?
        .load(DType::F32, &Device::Cpu)?;
    let teacher = Engine::for_models(
        &trainer.config.teacher,
        trainer.teacher_defaults.clone(),
        Some(""),
        options,
    )?
    .with_models(teacher_dit, trainer.vae.clone())?;
    let d = &trainer.config.data;
    let mut rows = Vec::new();
    for (i, (real, caption)) in sample_clips(d, 3)?.into_iter().enumerate() {
        let seed = i as u64;
        let mut row = vec![real.clone()];
        row.extend(video_and_text_samples(
            &student,
            &trainer.text,
            &real,
            &caption,
            seed,
        )?);
        row.push(sample(
            &teacher,
            &trainer.text,
            &WorldInput::Text,
            &caption,
            seed,
        )?);
        rows.push(row);
    }
    let size = (d.width as usize, d.height as usize);
    write_sample_grid(out_dir, trainer.session.step(), &rows, size, d.fps as f64)
}
