//! Hierarchical convolutional patch embedding (HCPE), DINO-SAE's `CnnPatchEmbed`.
//!
//! Four bias-free stride-2 convs (k7, k3, k3, k3; padding (k-1)/2); whole-map RMSNorm2d + SiLU after the
//! first three. It replaces the backbone's one-shot patchify (stride 16 in total).

use burn::module::Module;
use burn::tensor::Tensor;

use super::host::silu;
use super::nn::{Conv2d, Probe, RmsNorm2d};
use crate::weights::WeightSource;

/// Channel widths of the first three layers (the fourth maps to the backbone width).
pub const STEM_WIDTHS: [usize; 3] = [64, 128, 256];

#[derive(Module, Debug)]
pub struct Stem {
    pub convs: Vec<Conv2d>,
    pub norms: Vec<RmsNorm2d>,
}

impl Stem {
    /// Keys `{p}.cnn.{i}.conv.weight`, `{p}.cnn.{i}.norm.weight` (official names).
    pub fn load(ws: &mut WeightSource, p: &str, dim: usize) -> Self {
        let chans = [3, STEM_WIDTHS[0], STEM_WIDTHS[1], STEM_WIDTHS[2], dim];
        let kernels = [7, 3, 3, 3];
        let convs = (0..4)
            .map(|i| Conv2d::load(ws, &format!("{p}.cnn.{i}.conv"), chans[i], chans[i + 1], kernels[i], 2, 1, false))
            .collect();
        let norms = (0..3).map(|i| RmsNorm2d::load(ws, &format!("{p}.cnn.{i}.norm.weight"), chans[i + 1])).collect();
        Self { convs, norms }
    }

    /// # Shapes
    /// - x: `[B, 3, H, W]` -> `[B, D, H/16, W/16]` (NCHW; the official module returns NHWC)
    pub fn forward(&self, x: Tensor<4>, probe: &mut Probe) -> Tensor<4> {
        let mut x = x;
        for (i, conv) in self.convs.iter().enumerate() {
            x = conv.forward(x);
            if let Some(n) = self.norms.get(i) {
                x = silu(n.forward(x));
            }
            probe.put(format!("stem.cnn.{i}_out"), &x);
        }
        if probe.enabled {
            probe.put("stem_out_nhwc", &x.clone().permute([0, 2, 3, 1]));
        }
        x
    }
}
