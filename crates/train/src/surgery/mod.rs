//! Model surgery: a larger network that starts out computing what a trained smaller one computes, so training
//! it continues from the smaller one's quality. The DiT grows in depth ([`grow`]) or width ([`grow_width`]), the
//! VAE decoder in width ([`widen`], which also holds the tensor helpers both widths use). Depends only on the
//! crate's errors; the trainers call it when they start from a smaller model.

pub mod grow;
pub mod grow_width;
pub mod widen;
