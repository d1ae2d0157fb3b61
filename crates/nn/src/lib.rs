//! orrery-nn: tensor layers over candle and checkpoint I/O.

pub mod alloc;
pub mod bench_flags;
pub mod checkpoint;
pub mod compare;
pub mod frozen_matmul;

pub use checkpoint::{Checkpoint, CheckpointError, DType, Format, OpenOptions, TensorEntry};
pub mod gradcheck;
pub mod init;
pub mod kernels;
pub mod layers;
pub mod ops;
pub mod quantized;
pub mod trainable;

pub use trainable::SeededVarMap;
