//! Host-side CPU kernels for DINO-SAE inference, on plain `f32` slices.
//!
//! burn's Flex backend runs element-wise maths as scalar loops on one thread and lowers every convolution to a
//! tiled im2col with one small matrix product per tile. These kernels do the parts around the matrix products
//! (activations, the im2col lowering, layout changes) vectorisably and on all cores; the products themselves stay
//! with burn (the `gemm` crate). The engine calls them only for inference on the CPU device (see
//! `engine::model::host`), never under autodiff or on a GPU.
//!
//! Safe Rust only; built with `opt-level = 3` in every profile (the workspace's `Cargo.toml`), since the whole
//! point is code LLVM can vectorise.

pub mod act;
pub mod im2col;
#[cfg(test)]
mod reference;
pub mod up2;

pub use act::{exp, gelu, gelu_inplace, silu, silu_inplace};
pub use im2col::{ConvGeom, im2col_kn, im2col_nk, nchw_to_nhwc, scatter_kn, scatter_nk};
pub use up2::{assemble_up2, fold_up2_weights};
