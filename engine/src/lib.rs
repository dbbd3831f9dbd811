//! DINO-SAE engine: DINO backbones (v2, v3), the HCPE stem, the DC-AE decoder, checkpoint loading,
//! spherical latent math, parity checks against the PyTorch reference. No GUI code lives here.

pub mod animation;
pub mod autoencoder;
pub mod backend;
pub mod budget;
pub mod checkpoint;
pub mod colormap;
pub mod data;
pub mod directions;
pub mod dirs;
pub mod error;
pub mod eval;
pub mod flops;
pub mod generate;
pub mod image_io;
pub mod inspect;
pub mod lpips;
pub mod metrics;
pub mod model;
pub mod preflight;
pub mod resize;
pub mod rfm;
pub mod sampler;
pub mod sphere;
pub mod steer;
pub mod tensor_file;
pub mod tiled;
pub mod train;
pub mod verify;
pub mod weights;
pub mod worker;

pub use autoencoder::Sae;
pub use error::{EngineError, Result};

/// The engine's version (recorded in the files the command line and the studio write).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The CPU device every test and the default app use.
pub fn cpu() -> burn::tensor::Device {
    burn::tensor::Device::flex()
}
