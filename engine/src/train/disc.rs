//! Stage 2's discriminator (METHOD.md section 3, RAE's design): a frozen DINO ViT (the teacher) read after four
//! blocks at the quarter depths, each read by a small per-token head of spectral-normalised 1-D convolutions over
//! the token sequence; hinge losses. The images it sees go through [`super::diffaug`] first.
//!
//! Spectral normalisation (Miyato et al.) as PyTorch's `spectral_norm` does it: one power iteration per training
//! step on the host with a persistent vector `u`, then `W / sigma` with `sigma = v^T W u` computed in the graph
//! (so gradients see the normalisation).

use burn::module::{Module, Param};
use burn::tensor::activation::{leaky_relu, relu};
use burn::tensor::{Device, Tensor, TensorData};

use crate::error::{EngineError, Result};
use crate::model::nn::Probe;
use crate::model::vit::Vit;
use crate::resize::resize_bicubic;
use crate::tensor_file::TensorMap;
use crate::weights::{Init, ParamNames, WeightSource, export};

/// A linear map (a 1-D convolution over tokens, flattened) with a spectrally normalised weight.
#[derive(Module, Debug)]
pub struct SnLinear {
    /// burn layout `[in, out]`.
    pub weight: Param<Tensor<2>>,
    pub bias: Param<Tensor<1>>,
}

impl SnLinear {
    fn load(ws: &mut WeightSource, key: &str, d_in: usize, d_out: usize) -> Self {
        Self {
            weight: ws.linear_weight(&format!("{key}.weight"), d_in, d_out),
            bias: ws.param(&format!("{key}.bias"), [d_out], Init::Zeros),
        }
    }

    /// # Shapes
    /// - x: `[B, N, in]` -> `[B, N, out]`; `uv` = the power-iteration vectors (`v`: in, `u`: out)
    fn forward(&self, x: Tensor<3>, uv: &(Vec<f32>, Vec<f32>)) -> Tensor<3> {
        let w = self.weight.val();
        let dev = w.device();
        let [di, dout] = w.dims();
        let v = Tensor::<2>::from_data(TensorData::new(uv.0.clone(), vec![di, 1]), &dev);
        let u = Tensor::<2>::from_data(TensorData::new(uv.1.clone(), vec![1, dout]), &dev);
        let sigma = (w.clone() * v.matmul(u)).sum().add_scalar(1e-12); // v^T W u
        let w = w / sigma.reshape([1, 1]);
        let [b, n, _] = x.dims();
        let y = x.reshape([b * n, di]).matmul(w) + self.bias.val().reshape([1, dout]);
        y.reshape([b, n, dout])
    }
}

/// One power iteration on `w` (`[in, out]`, row-major) from `u` (out): returns (v, u) normalised, as PyTorch's
/// `spectral_norm` (`v = normalize(W^T u)`, `u = normalize(W v)` in torch's `[out, in]` layout).
pub fn power_iteration(w: &[f32], d_in: usize, d_out: usize, u: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let norm = |x: Vec<f64>| {
        let n = x.iter().map(|a| a * a).sum::<f64>().sqrt().max(1e-12);
        x.into_iter().map(|a| (a / n) as f32).collect::<Vec<f32>>()
    };
    let v: Vec<f64> = (0..d_in).map(|i| (0..d_out).map(|o| w[i * d_out + o] as f64 * u[o] as f64).sum()).collect();
    let v = norm(v);
    let u2: Vec<f64> = (0..d_out).map(|o| (0..d_in).map(|i| w[i * d_out + o] as f64 * v[i] as f64).sum()).collect();
    (v, norm(u2))
}

/// Per-token head: SN 1x1 conv -> LeakyReLU, a residual SN conv of width 3 along the token sequence, SN 1x1 -> logit.
#[derive(Module, Debug)]
pub struct Head {
    pub inp: SnLinear,
    pub mix: SnLinear,
    pub out: SnLinear,
}

impl Head {
    fn layers(&self) -> [&SnLinear; 3] {
        [&self.inp, &self.mix, &self.out]
    }

    /// # Shapes
    /// - t: `[B, N, D]` tokens -> `[B, N]` logits
    fn forward(&self, t: Tensor<3>, uv: &[(Vec<f32>, Vec<f32>)]) -> Tensor<2> {
        let h = leaky_relu(self.inp.forward(t, &uv[0]), 0.2);
        let [b, n, c] = h.dims();
        // width-3 convolution along the sequence, zero padded: [h_{i-1}, h_i, h_{i+1}] -> c
        let z = Tensor::<3>::zeros([b, 1, c], &h.device());
        let prev = Tensor::cat(vec![z.clone(), h.clone().narrow(1, 0, n - 1)], 1);
        let next = Tensor::cat(vec![h.clone().narrow(1, 1, n - 1), z], 1);
        let m = leaky_relu(self.mix.forward(Tensor::cat(vec![prev, h.clone(), next], 2), &uv[1]), 0.2);
        let h = (h + m).mul_scalar(std::f64::consts::FRAC_1_SQRT_2);
        self.out.forward(h, &uv[2]).reshape([b, n])
    }
}

/// The trainable part of the discriminator (the heads); the backbone is held by [`Discriminator`].
#[derive(Module, Debug)]
pub struct DiscHeads {
    pub heads: Vec<Head>,
}

/// Frozen DINO backbone + trainable heads + spectral-norm state.
pub struct Discriminator {
    pub backbone: Vit,
    pub heads: DiscHeads,
    /// Blocks whose outputs the heads read (0-based).
    pub taps: Vec<usize>,
    pub names: ParamNames,
    /// Per head, per layer: (v, u).
    sn: Vec<Vec<(Vec<f32>, Vec<f32>)>>,
    mean: [f32; 3],
    std: [f32; 3],
}

/// Hidden width of the heads.
pub const HEAD_WIDTH: usize = 128;

impl Discriminator {
    /// `backbone` must already be frozen (no_grad). Heads are drawn with `seed`, or taken from `state`
    /// (a [`Discriminator::export`] map, spectral-norm vectors included) when given; `mean`/`std` = the backbone's
    /// input normalisation.
    pub fn new(
        backbone: Vit,
        seed: u64,
        state: Option<TensorMap>,
        mean: [f32; 3],
        std: [f32; 3],
        device: &Device,
    ) -> Result<Self> {
        let depth = backbone.cfg.depth;
        let d = backbone.cfg.dim;
        let taps: Vec<usize> = (1..=4).map(|k| (depth * k / 4).max(1) - 1).collect();
        let (mut ws, loading) = match &state {
            Some(m) => (WeightSource::from_map(m.clone(), device), true),
            None => (WeightSource::random(seed, device), false),
        };
        let heads: Vec<Head> = (0..taps.len())
            .map(|i| Head {
                inp: SnLinear::load(&mut ws, &format!("heads.{i}.inp"), d, HEAD_WIDTH),
                mix: SnLinear::load(&mut ws, &format!("heads.{i}.mix"), 3 * HEAD_WIDTH, HEAD_WIDTH),
                out: SnLinear::load(&mut ws, &format!("heads.{i}.out"), HEAD_WIDTH, 1),
            })
            .collect();
        let names = ws.names();
        let report = ws.finish();
        if loading && !report.is_complete() {
            return Err(EngineError::IncompleteWeights(format!("discriminator state: {}", report.summary(10))));
        }
        // u starts as a fixed unit vector per layer, or as saved (`sn_u.{head}.{layer}`)
        let mut sn: Vec<Vec<(Vec<f32>, Vec<f32>)>> = heads
            .iter()
            .map(|h| {
                h.layers()
                    .iter()
                    .map(|l| {
                        let [di, dout] = l.weight.val().dims();
                        (vec![0.0; di], vec![1.0 / (dout as f32).sqrt(); dout])
                    })
                    .collect()
            })
            .collect();
        if let Some(m) = &state {
            for (i, layers) in sn.iter_mut().enumerate() {
                for (j, uv) in layers.iter_mut().enumerate() {
                    if let Some(r) = m.get(&format!("sn_u.{i}.{j}")).filter(|r| r.data.len() == uv.1.len()) {
                        uv.1 = r.data.clone();
                    }
                }
            }
        }
        Ok(Self { backbone, heads: DiscHeads { heads }, taps, names, sn, mean, std })
    }

    /// One power iteration per spectrally normalised layer (call once per training step, before the forwards).
    pub fn update_spectral_norms(&mut self) -> Result<()> {
        for (h, sn) in self.heads.heads.iter().zip(self.sn.iter_mut()) {
            for (l, uv) in h.layers().iter().zip(sn.iter_mut()) {
                let w = crate::tensor_file::RawTensor::from_tensor(l.weight.val())?;
                *uv = power_iteration(&w.data, w.shape[0], w.shape[1], &uv.1);
            }
        }
        Ok(())
    }

    /// The current spectral norm estimate of every layer (for tests and logs).
    pub fn sigmas(&self) -> Vec<f32> {
        let mut out = Vec::new();
        for (h, sn) in self.heads.heads.iter().zip(&self.sn) {
            for (l, (v, u)) in h.layers().iter().zip(sn) {
                let Ok(w) = crate::tensor_file::RawTensor::from_tensor(l.weight.val()) else { continue };
                let (di, dout, data) = (w.shape[0], w.shape[1], w.data);
                let s: f64 = (0..di)
                    .map(|i| (0..dout).map(|o| v[i] as f64 * data[i * dout + o] as f64 * u[o] as f64).sum::<f64>())
                    .sum();
                out.push(s as f32);
            }
        }
        out
    }

    /// Logits for images in [0, 1] (already augmented).
    ///
    /// # Shapes
    /// - x: `[B, 3, 16g_h, 16g_w]` -> `[B, taps * g_h * g_w]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let [_, _, h, w] = x.dims();
        let dev = x.device();
        let mean = Tensor::<1>::from_floats(self.mean.as_slice(), &dev).reshape([1, 3, 1, 1]);
        let std = Tensor::<1>::from_floats(self.std.as_slice(), &dev).reshape([1, 3, 1, 1]);
        let p = self.backbone.cfg.patch_size;
        let x = resize_bicubic((x - mean) / std, h / 16 * p, w / 16 * p, false, None);
        let out = self.backbone.forward(x, &mut Probe::default());
        let np = out.n_prefix;
        let logits: Vec<Tensor<2>> = self
            .taps
            .iter()
            .zip(self.heads.heads.iter().zip(&self.sn))
            .map(|(&t, (head, sn))| {
                let hs = out.hidden[t].clone();
                let [b, n, d] = hs.dims();
                head.forward(hs.slice([0..b, np..n, 0..d]), sn)
            })
            .collect();
        Tensor::cat(logits, 1)
    }

    /// Heads + spectral-norm vectors as a host map (saved with checkpoints).
    pub fn export(&self) -> Result<TensorMap> {
        let mut m = export(&self.heads, &self.names)?;
        for (i, sn) in self.sn.iter().enumerate() {
            for (j, (_, u)) in sn.iter().enumerate() {
                m.insert(
                    format!("sn_u.{i}.{j}"),
                    crate::tensor_file::RawTensor { shape: vec![u.len()], data: u.clone() },
                );
            }
        }
        Ok(m)
    }
}

/// Hinge loss of the discriminator: `mean(relu(1 - D(real))) + mean(relu(1 + D(fake)))`.
pub fn hinge_d_loss(real: Tensor<2>, fake: Tensor<2>) -> Tensor<1> {
    relu(real.neg().add_scalar(1.0)).mean() + relu(fake.add_scalar(1.0)).mean()
}

/// Generator side of the hinge GAN: `-mean(D(fake))`.
pub fn hinge_g_loss(fake: Tensor<2>) -> Tensor<1> {
    fake.mean().neg()
}
