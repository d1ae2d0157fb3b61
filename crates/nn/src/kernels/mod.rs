//! Fused, multi-threaded CPU kernels with analytic backward passes, as candle custom ops.
//!
//! candle 0.11 runs element-wise and reduction work in single-threaded scalar loops and differentiates composed
//! ops through long graphs; these kernels do each op in one pass over rows split across rayon's pool, with the
//! inner loops compiled a second time for AVX2+FMA (picked at run time, so the binary still runs on any x86-64
//! CPU). Every forward is a `CustomOp` whose `bwd` is one more fused kernel (never differentiated again).
//!
//! The kernels take contiguous float32 CPU tensors; [`crate::ops`] converts, and falls back to the composed
//! candle ops on other devices.

mod activation;
mod attention;
mod channel_norm;
mod conv;
mod gemm;
mod math;
mod modulate;
mod norm;
mod rope;
mod softmax;
mod storage;
mod upsample;

pub use activation::{gelu_erf, gelu_tanh, silu};
pub use attention::flash_attention;
pub use channel_norm::channel_rms_norm;
pub use conv::{conv3d, conv3d_with, Conv3d};
pub use modulate::{gated_residual, modulate};
pub use norm::{layer_norm, rms_norm};
pub use rope::rotate_half_rope;
pub use softmax::softmax_last_dim;
pub use storage::with_f32;
pub use upsample::upsample_nearest_2x;
