//! orrery-text: text encoders.
//!
//! The Cosmos-Reason1 prompt embedder ([`Reason1Embedder`]): a Qwen2 decoder ([`qwen::QwenModel`]) run on the
//! Cosmos chat template of a prompt padded to 512 tokens ([`tokenizer`]), every layer's hidden state normalised
//! per token and concatenated ([`cosmos_embed`]); and a prompt-embedding cache on disk ([`PromptCache`]).

pub mod cache;
pub mod config;
pub mod cosmos_embed;
pub mod encoder;
mod error;
pub mod qwen;
pub mod tokenizer;
pub mod weights;
pub mod word_encoder;

pub use cache::PromptCache;
pub use config::QwenConfig;
pub use encoder::Reason1Embedder;
pub use error::{Result, TextError};
pub use tokenizer::{Overflow, PromptTokenizer};
pub use weights::TextWeights;
pub use word_encoder::{WordEncoder, WordEncoderConfig};
