//! Small building blocks shared by the models: Linear, Conv2d, LayerNorm, RMSNorm2d, pixel shuffle.
//!
//! Weights are kept in the layouts burn's functional ops want (Linear: [in, out]).

use burn::module::{Module, Param};
use burn::tensor::module::{conv2d, layer_norm, linear};
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Tensor, TensorData};

use super::host::{self, fast_paths};
use crate::tensor_file::{RawTensor, TensorMap};
use crate::weights::{Init, WeightSource};

/// y = x W + b, W stored [in, out].
#[derive(Module, Debug)]
pub struct Linear {
    pub weight: Param<Tensor<2>>,
    pub bias: Option<Param<Tensor<1>>>,
}

impl Linear {
    /// Load `{key}.weight` (torch layout [out, in]) and optionally `{key}.bias`.
    pub fn load(ws: &mut WeightSource, key: &str, d_in: usize, d_out: usize, bias: bool) -> Self {
        let weight = ws.linear_weight(&format!("{key}.weight"), d_in, d_out);
        let bias = bias.then(|| ws.param(&format!("{key}.bias"), [d_out], Init::Zeros));
        Self { weight, bias }
    }

    /// # Shapes
    /// - x: `[..., in]` -> `[..., out]`
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        linear(x, self.weight.val(), self.bias.as_ref().map(|b| b.val()))
    }
}

/// 2D convolution with square kernel, stride and padding.
#[derive(Module, Debug)]
pub struct Conv2d {
    pub weight: Param<Tensor<4>>,
    pub bias: Option<Param<Tensor<1>>>,
    #[module(skip)]
    pub stride: usize,
    #[module(skip)]
    pub padding: usize,
    #[module(skip)]
    pub groups: usize,
}

impl Conv2d {
    /// Load `{key}.weight` [out, in/groups, k, k] (+ `{key}.bias`). Padding is `(k-1)/2` unless given.
    #[allow(clippy::too_many_arguments)]
    pub fn load(
        ws: &mut WeightSource,
        key: &str,
        c_in: usize,
        c_out: usize,
        k: usize,
        stride: usize,
        groups: usize,
        bias: bool,
    ) -> Self {
        let fan_in = c_in / groups * k * k;
        let weight = ws.param(&format!("{key}.weight"), [c_out, c_in / groups, k, k], Init::FanIn(fan_in));
        let bias = bias.then(|| ws.param(&format!("{key}.bias"), [c_out], Init::Zeros));
        Self { weight, bias, stride, padding: (k - 1) / 2, groups }
    }

    pub fn out_channels(&self) -> usize {
        self.weight.dims()[0]
    }

    /// # Shapes
    /// - x: `[B, C_in, H, W]` -> `[B, C_out, H/stride, W/stride]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [c_out, _, k, _] = self.weight.dims();
        if k == 1 && self.stride == 1 && self.groups == 1 && fast_paths() {
            // A 1x1 convolution is a matrix product over channels; skipping the convolution machinery is
            // faster on the CPU backend (see docs/PERFORMANCE.md).
            let [b, c_in, h, w] = x.dims();
            let wm = self.weight.val().reshape([1, c_out, c_in]).expand([b, c_out, c_in]);
            let mut y = wm.matmul(x.reshape([b, c_in, h * w]));
            if let Some(bias) = &self.bias {
                y = y + bias.val().reshape([1, c_out, 1]);
            }
            return y.reshape([b, c_out, h, w]);
        }
        let bias = self.bias.as_ref().map(|b| b.val());
        if self.groups == 1
            && k > 1
            && let Some(g) = host::conv_geom(&x, &self.weight.val(), self.stride, self.padding)
        {
            return host::conv2d(x, self.weight.val(), bias, g);
        }
        let opts = ConvOptions::new([self.stride; 2], [self.padding; 2], [1, 1], self.groups);
        conv2d(x, self.weight.val(), bias, opts)
    }

    /// `conv3x3(nearest_up2(x))`, computed at the input resolution: each of the four output phases (a, b) sees
    /// only two distinct input rows and columns, so its 3x3 kernel folds into a 2x2 one (row taps
    /// a=0: [W0, W1+W2] at offsets -1, 0; a=1: [W0+W1, W2] at offsets 0, +1; columns alike). One 2x2
    /// convolution with 4*C_out outputs over the 1-padded input, a crop per phase and a pixel shuffle give the
    /// same result with 16/36 of the multiply-adds. Exact up to float rounding.
    ///
    /// # Shapes
    /// - x: `[B, C_in, H, W]` -> `[B, C_out, 2H, 2W]`
    pub fn forward_up2(&self, x: Tensor<4>) -> Tensor<4> {
        let [c_out, c_in, k, _] = self.weight.dims();
        if k != 3 || self.stride != 1 || self.groups != 1 || !fast_paths() {
            return self.forward(nearest_up2(x));
        }
        if host::eligible(&x) && self.weight.val().dtype() == burn::tensor::DType::F32 {
            return host::conv_up2(x, self.weight.val(), self.bias.as_ref().map(|b| b.val()));
        }
        let [b, _, h, w] = x.dims();
        let wt = self.weight.val();
        // fold along one spatial dim: phase 0 -> [W0, W1+W2], phase 1 -> [W0+W1, W2]
        let fold = |t: Tensor<4>, dim: usize| {
            let (t0, t1, t2) = (t.clone().narrow(dim, 0, 1), t.clone().narrow(dim, 1, 1), t.narrow(dim, 2, 1));
            [Tensor::cat(vec![t0.clone(), t1.clone() + t2.clone()], dim), Tensor::cat(vec![t0 + t1, t2], dim)]
        };
        let mut phases = Vec::with_capacity(4);
        for rows in fold(wt, 2) {
            for k2 in fold(rows, 3) {
                phases.push(k2.reshape([c_out, 1, c_in, 2, 2]));
            }
        }
        // channel 4c + 2a + b, the order pixel_shuffle2 reads
        let kernel = Tensor::cat(phases, 1).reshape([4 * c_out, c_in, 2, 2]);
        let bias = self.bias.as_ref().map(|bb| bb.val().reshape([c_out, 1]).expand([c_out, 4]).reshape([4 * c_out]));
        let y = conv2d(x, kernel, bias, ConvOptions::new([1, 1], [1, 1], [1, 1], 1)); // [B, 4Co, H+1, W+1]
        let y = y.reshape([b, c_out, 2, 2, h + 1, w + 1]);
        let mut rows = Vec::with_capacity(2);
        for a in 0..2 {
            let mut cols = Vec::with_capacity(2);
            for bb in 0..2 {
                let ph = y.clone().narrow(2, a, 1).narrow(3, bb, 1).narrow(4, a, h).narrow(5, bb, w); // [B,Co,1,1,H,W]
                cols.push(ph);
            }
            rows.push(Tensor::cat(cols, 3));
        }
        let y = Tensor::cat(rows, 2); // [B, Co, 2(a), 2(b), H, W]
        y.permute([0, 1, 4, 2, 5, 3]).reshape([b, c_out, 2 * h, 2 * w])
    }
}

/// LayerNorm over the last dim with affine weight and bias.
#[derive(Module, Debug)]
pub struct LayerNorm {
    pub weight: Param<Tensor<1>>,
    pub bias: Param<Tensor<1>>,
    #[module(skip)]
    pub eps: f64,
}

impl LayerNorm {
    pub fn load(ws: &mut WeightSource, key: &str, d: usize, eps: f64) -> Self {
        Self {
            weight: ws.param(&format!("{key}.weight"), [d], Init::Ones),
            bias: ws.param(&format!("{key}.bias"), [d], Init::Zeros),
            eps,
        }
    }

    /// # Shapes
    /// - x: `[..., d]` -> `[..., d]`
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        layer_norm(x, self.weight.val(), Some(self.bias.val()), self.eps)
    }
}

/// DINO-SAE's `RMSNorm2d`: ONE rms per sample over (C, H, W) together, weight (1,C,1,1), no bias, eps 1e-6.
#[derive(Module, Debug)]
pub struct RmsNorm2d {
    pub weight: Param<Tensor<4>>,
}

pub const RMS2D_EPS: f64 = 1e-6;

impl RmsNorm2d {
    pub fn load(ws: &mut WeightSource, key: &str, c: usize) -> Self {
        Self { weight: ws.param(key, [1, c, 1, 1], Init::Ones) }
    }

    /// # Shapes
    /// - x: `[B, C, H, W]` -> `[B, C, H, W]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        // Mean over W, then H, then C: the same value (equal group sizes), but each f32 sum runs over at most one
        // axis instead of all C*H*W values (over a million at 256 px, where a single running sum loses ~1e-3).
        let ms = x.clone().square().mean_dim(3).mean_dim(2).mean_dim(1);
        x * ms.add_scalar(RMS2D_EPS).sqrt().recip() * self.weight.val()
    }
}

/// `pixel_shuffle(2)`: out[b, c, 2h+i, 2w+j] = in[b, 4c+2i+j, h, w].
///
/// # Shapes
/// - x: `[B, 4C, H, W]` -> `[B, C, 2H, 2W]`
pub fn pixel_shuffle2(x: Tensor<4>) -> Tensor<4> {
    let [b, c4, h, w] = x.dims();
    let c = c4 / 4;
    x.reshape([b, c, 2, 2, h, w]).permute([0, 1, 4, 2, 5, 3]).reshape([b, c, 2 * h, 2 * w])
}

/// `repeat_interleave(r, dim=1)`: each channel repeated r times in place.
///
/// # Shapes
/// - x: `[B, C, H, W]` -> `[B, C*r, H, W]`
pub fn repeat_interleave_channels(x: Tensor<4>, r: usize) -> Tensor<4> {
    if r == 1 {
        return x;
    }
    let [b, c, h, w] = x.dims();
    x.reshape([b, c, 1, h, w]).repeat_dim(2, r).reshape([b, c * r, h, w])
}

/// Nearest-neighbour x2 upsampling (each pixel repeated 2x2), exact.
///
/// # Shapes
/// - x: `[B, C, H, W]` -> `[B, C, 2H, 2W]`
pub fn nearest_up2(x: Tensor<4>) -> Tensor<4> {
    let [b, c, h, w] = x.dims();
    x.reshape([b, c, h, 1, w, 1]).repeat_dim(3, 2).repeat_dim(5, 2).reshape([b, c, 2 * h, 2 * w])
}

/// Collects named intermediate tensors for parity checks (disabled probes cost nothing), carries the
/// cooperative cancel flag that forwards check between blocks and stages, and with a [`Clock`] times the forward
/// between its probe points.
#[derive(Default)]
pub struct Probe {
    pub enabled: bool,
    /// Prepended to every name (e.g. `decoder.`).
    pub prefix: String,
    pub out: TensorMap,
    /// Set from another thread to stop a forward at the next block / stage boundary; the forward then returns
    /// early with a meaningless tensor and the caller reports [`crate::EngineError::Cancelled`].
    pub cancel: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
    /// Per-part timing (profiling): every probe point becomes a [`Clock`] mark.
    pub clock: Option<Clock>,
}

/// Wall-clock marks at a forward's probe points: each mark is the time since the previous one, taken after
/// reading one value of the point's tensor (so the work that made it has finished, on any backend).
#[derive(Debug)]
pub struct Clock {
    last: std::time::Instant,
    /// (probe name, shape, milliseconds since the previous mark), in forward order.
    pub marks: Vec<(String, Vec<usize>, f64)>,
}

impl Clock {
    pub fn start() -> Self {
        Self { last: std::time::Instant::now(), marks: Vec::new() }
    }

    /// Mark `name`: the time since the previous mark, once `t` is computed.
    pub fn mark<const D: usize>(&mut self, name: String, t: &Tensor<D>) {
        let _ = t.clone().flatten::<1>(0, D - 1).slice(0..1).into_data();
        let now = std::time::Instant::now();
        self.marks.push((name, t.dims().to_vec(), (now - self.last).as_secs_f64() * 1e3));
        self.last = now;
    }
}

/// Median time per probe point of `repeats` timed runs of `run` (after one warm-up run): (name, shape, median
/// milliseconds) in forward order. `run` is a forward (or several) with the probe it is given; mark its output
/// with [`Probe::mark`] to time the work after the last probe point.
pub fn time_parts(repeats: usize, mut run: impl FnMut(&mut Probe)) -> Vec<(String, Vec<usize>, f64)> {
    let mut rows: Vec<(String, Vec<usize>, Vec<f64>)> = Vec::new();
    for pass in 0..=repeats.max(1) {
        let mut probe = Probe::timed();
        run(&mut probe);
        let marks = probe.clock.map(|c| c.marks).unwrap_or_default();
        if pass == 0 {
            rows = marks.into_iter().map(|(n, s, _)| (n, s, Vec::new())).collect();
        } else {
            for (row, (_, _, ms)) in rows.iter_mut().zip(marks) {
                row.2.push(ms);
            }
        }
    }
    rows.into_iter()
        .map(|(n, s, mut v)| {
            v.sort_by(f64::total_cmp);
            let med = v.get(v.len() / 2).copied().unwrap_or(f64::NAN);
            (n, s, med)
        })
        .collect()
}

impl Probe {
    pub fn on() -> Self {
        Self { enabled: true, ..Default::default() }
    }

    /// A disabled probe that only carries a cancel flag.
    pub fn cancellable(cancel: std::sync::Arc<std::sync::atomic::AtomicBool>) -> Self {
        Self { cancel: Some(cancel), ..Default::default() }
    }

    /// A disabled probe that times the forward between its probe points (see [`Clock`]).
    pub fn timed() -> Self {
        Self { clock: Some(Clock::start()), ..Default::default() }
    }

    /// A timing mark at `name` (no-op without a clock), e.g. on a forward's output.
    pub fn mark<const D: usize>(&mut self, name: impl Into<String>, t: &Tensor<D>) {
        if let Some(c) = &mut self.clock {
            c.mark(format!("{}{}", self.prefix, name.into()), t);
        }
    }

    /// Whether the job was cancelled.
    pub fn cancelled(&self) -> bool {
        self.cancel.as_ref().is_some_and(|c| c.load(std::sync::atomic::Ordering::Relaxed))
    }

    pub fn put<const D: usize>(&mut self, name: impl Into<String>, t: &Tensor<D>) {
        if !self.enabled && self.clock.is_none() {
            return;
        }
        let name = name.into();
        if self.clock.is_some() {
            self.mark(name.clone(), t);
        }
        if self.enabled
            && let Ok(raw) = RawTensor::from_tensor(t.clone())
        {
            self.out.insert(format!("{}{}", self.prefix, name), raw);
        }
    }
}

/// Build a tensor from a host vector.
pub fn tensor_from<const D: usize>(data: Vec<f32>, shape: [usize; D], device: &burn::tensor::Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(data, shape.to_vec()), device)
}
