//! The hybrid patch embedding (ours, issue 26): the backbone's pretrained one-shot patchify on the image resized
//! by p/16, plus DINO-SAE's HCPE stem as a residual branch.
//!
//! tokens = patchify(resize(x)) + stem(x). The stem's last convolution starts at zero, so an untrained student
//! *is* the teacher on the resized image (the target of stage 1), and the stem learns only what the 14-px
//! patchify of a resized 16-px patch loses. Keys: `{p}.proj.*` (the patchify, official DINO names) and
//! `{p}.cnn.*` (the stem, official DINO-SAE names): both halves load from their usual checkpoints.

use burn::module::Module;
use burn::tensor::Tensor;

use super::nn::{Conv2d, Probe};
use super::stem::Stem;

/// The stem key whose weights start at zero in a fresh hybrid (the residual branch's last convolution).
pub const ZERO_INIT_KEY: &str = "cnn.3.conv.weight";

#[derive(Module, Debug)]
pub struct HybridEmbed {
    /// The backbone's patchify (kernel = stride = p), applied to the image resized by p/16.
    pub patchify: Conv2d,
    /// The HCPE stem (stride 16), added to the patchify's tokens.
    pub stem: Stem,
}

/// The backbone's patchify `c` on the image resized so that each 16-px patch becomes one `p`-px patch (bicubic,
/// no antialias: the teacher's resize).
///
/// # Shapes
/// - x: `[B, 3, H, W]` -> `[B, D, H/16, W/16]`
pub fn resized_patchify(c: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let [_, _, h, w] = x.dims();
    let p = c.stride;
    c.forward(crate::resize::resize_bicubic(x, h / 16 * p, w / 16 * p, false, None))
}

impl HybridEmbed {
    /// # Shapes
    /// - x: `[B, 3, H, W]` -> `[B, D, H/16, W/16]`
    pub fn forward(&self, x: Tensor<4>, probe: &mut Probe) -> Tensor<4> {
        let base = resized_patchify(&self.patchify, x.clone());
        probe.put("hybrid.patchify_out", &base);
        let residual = self.stem.forward(x, probe);
        base + residual
    }
}
