//! The memory allocator orrery's binaries use. Training and inference free and re-allocate activation buffers
//! of megabytes every step; glibc's malloc returns such blocks to the kernel and faults them in again (page
//! faults and TLB shootdowns were a fifth of a DiT training step), mimalloc keeps them for reuse.
//!
//! A binary declares it and tunes it first thing in `main`:
//! ```ignore
//! #[global_allocator]
//! static ALLOCATOR: orrery_nn::alloc::Allocator = orrery_nn::alloc::Allocator;
//! fn main() { orrery_nn::alloc::tune(); /* ... */ }
//! ```

pub use mimalloc::MiMalloc as Allocator;

/// mimalloc's `mi_option_purge_delay`, which the Rust binding does not name: the enum value before
/// `mi_option_use_numa_nodes` (15, in mimalloc v2 and v3 alike).
const PURGE_DELAY: libmimalloc_sys::mi_option_t = libmimalloc_sys::mi_option_use_numa_nodes - 1;

/// Keeps freed memory for ten seconds before returning it to the system. mimalloc's default (10 ms) is shorter than
/// a training step, so every step would fault its activations in again. At one second, 8 back-to-back VAE decodes
/// of 33 frames at 64x64 still faulted 10,000 to 15,000 pages in and took 15% more CPU time than at ten seconds
/// (250 faults, those of the first decode). An explicit `MIMALLOC_PURGE_DELAY` in the environment wins.
pub fn tune() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: setting an option is allowed at any time; it only changes when freed pages are purged.
        unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, 10_000) };
    }
}
