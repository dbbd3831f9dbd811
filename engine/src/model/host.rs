//! CPU fast paths for inference. On burn's Flex device without autodiff, the element-wise activations and the
//! lowering of convolutions to matrix products run on the tensors' host buffers through the `kernels` crate
//! (vectorised, on all cores); the matrix products stay with burn (the `gemm` crate). Flex itself runs activations as
//! scalar loops on one thread and convolutions as a tiled im2col with a small product per 512-pixel tile.
//!
//! Everywhere else (autodiff, wgpu, non-f32 tensors, `DINO_SAE_PLAIN_OPS=1`) the plain burn op runs. The same
//! maths either way: tests/parity.rs checks every path against the plain op, and the kernels crate against float64.

use burn::tensor::activation::softmax;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{DType, Tensor, TensorData};
use kernels::ConvGeom;

/// Floats per chunk of a column matrix (16 MiB): a large image is lowered a band of output rows at a time.
const COL_BUDGET: usize = 1 << 22;

pub use crate::budget::{fast_paths, fused_on};

/// Whether `x` is an inference tensor on the CPU device, where the host paths apply.
pub fn eligible<const D: usize>(x: &Tensor<D>) -> bool {
    x.dtype() == DType::F32 && fused_on(&x.device())
}

/// The tensor's values as a host vector (no copy when the tensor's buffer is not shared).
fn host_vec<const D: usize>(x: Tensor<D>) -> Vec<f32> {
    let data = x.into_data();
    match data.as_slice::<f32>() {
        Ok(_) => data.try_into_vec::<f32>().unwrap_or_default(),
        Err(_) => data.iter::<f32>().collect(),
    }
}

fn map_inplace<const D: usize>(x: Tensor<D>, f: fn(&mut [f32])) -> Tensor<D> {
    let device = x.device();
    let shape = x.shape();
    let mut v = host_vec(x);
    f(&mut v);
    Tensor::from_data(TensorData::new(v, shape), &device)
}

/// SiLU, `x * sigmoid(x)`.
///
/// # Shapes
/// - x: any -> same
pub fn silu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if eligible(&x) { map_inplace(x, kernels::silu_inplace) } else { burn::tensor::activation::silu(x) }
}

/// Exact (erf) GELU.
///
/// # Shapes
/// - x: any -> same
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if eligible(&x) { map_inplace(x, kernels::gelu_inplace) } else { burn::tensor::activation::gelu(x) }
}

/// Scaled dot-product attention, `softmax(q k^T / sqrt(Dh)) v` per batch and head. On the CPU device in inference it
/// is burn's fused attention op (Flex: per (batch, head) two products into one scratch score block, the softmax in
/// place, heads in parallel); elsewhere (autodiff, wgpu, `DINO_SAE_PLAIN_OPS=1`) the same maths as separate ops.
/// (Measured against batched products around a vectorised host softmax: equal or faster at the ViT's 257 tokens,
/// docs/PERFORMANCE.md.)
///
/// # Shapes
/// - q: `[B, H, T, Dh]`, k: `[B, H, S, Dh]`, v: `[B, H, S, Dv]` -> `[B, H, T, Dv]`
pub fn attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>) -> Tensor<4> {
    if eligible(&q) {
        return burn::tensor::module::attention(q, k, v, None, None, AttentionModuleOptions::default());
    }
    let dh = q.dims()[3];
    softmax(q.matmul(k.swap_dims(2, 3)).mul_scalar(1.0 / (dh as f64).sqrt()), 3).matmul(v)
}

/// Which lowering a convolution takes: pixels as rows (`[n, K] x [K, C_out]`) suits the matrix kernel when C_out
/// is small and the map large; channels as rows (`[C_out, K] x [K, n]`) otherwise. Measured on the default model's
/// shapes (docs/PERFORMANCE.md).
pub fn pixels_as_rows(c_in: usize, c_out: usize) -> bool {
    c_out <= 128 && c_in >= 8
}

/// The geometry of a groups-1 convolution when it takes the host path (`None`: use burn's conv2d).
pub fn conv_geom(x: &Tensor<4>, weight: &Tensor<4>, stride: usize, pad: usize) -> Option<ConvGeom> {
    let ([_, c, h, w], [_, c_w, k, k2]) = (x.dims(), weight.dims());
    if !eligible(x) || weight.dtype() != DType::F32 || c != c_w || k != k2 {
        return None;
    }
    ConvGeom::new(c, h, w, k, stride, pad)
}

/// A groups-1 convolution with a square kernel, equal stride and zero padding on both axes (`g`, from
/// [`conv_geom`]), lowered to matrix products a band of output rows at a time.
///
/// # Shapes
/// - x: `[B, C, H, W]`, weight: `[C_out, C, k, k]`, bias: `[C_out]` -> `[B, C_out, H_out, W_out]`
pub fn conv2d(x: Tensor<4>, weight: Tensor<4>, bias: Option<Tensor<1>>, g: ConvGeom) -> Tensor<4> {
    conv2d_banded(x, weight, bias, g, COL_BUDGET)
}

/// [`conv2d`] with the column budget (floats per band) given: tests use small ones to cover the banding.
///
/// # Shapes
/// - as [`conv2d`]
pub fn conv2d_banded(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Option<Tensor<1>>,
    g: ConvGeom,
    budget: usize,
) -> Tensor<4> {
    let device = x.device();
    let [b, c, h, w] = x.dims();
    let c_out = weight.dims()[0];
    let (oh, ow, kl) = (g.out_h(), g.out_w(), g.patch_len());
    let n_total = oh * ow;
    let rows_per = g.rows_per_chunk(budget);
    let by_pixel = pixels_as_rows(c, c_out);
    // One band covering the whole single image in the channels-as-rows form: the product is the output.
    if b == 1 && rows_per == oh && !by_pixel {
        let cols = kernels::im2col_kn(&host_vec(x), &g, 0..oh);
        let y =
            weight.reshape([c_out, kl]).matmul(Tensor::<2>::from_data(TensorData::new(cols, [kl, n_total]), &device));
        let y = match bias {
            Some(bias) => y + bias.reshape([c_out, 1]),
            None => y,
        };
        return y.reshape([1, c_out, oh, ow]);
    }
    let wm = if by_pixel { weight.permute([2, 3, 1, 0]).reshape([kl, c_out]) } else { weight.reshape([c_out, kl]) };
    let bias = bias.map(host_vec);
    let xs = host_vec(x);
    let (chw, out_len) = (c * h * w, c_out * n_total);
    let mut out = vec![0.0f32; b * out_len];
    for i in 0..b {
        let img = &xs[i * chw..(i + 1) * chw];
        let nhwc = by_pixel.then(|| kernels::nchw_to_nhwc(img, c, h * w));
        let dst = &mut out[i * out_len..(i + 1) * out_len];
        let mut r0 = 0;
        while r0 < oh {
            let rows = r0..(r0 + rows_per).min(oh);
            let n = rows.len() * ow;
            let y = match &nhwc {
                Some(nhwc) => {
                    let cols = kernels::im2col_nk(nhwc, &g, rows.clone());
                    Tensor::<2>::from_data(TensorData::new(cols, [n, kl]), &device).matmul(wm.clone())
                }
                None => {
                    let cols = kernels::im2col_kn(img, &g, rows.clone());
                    wm.clone().matmul(Tensor::<2>::from_data(TensorData::new(cols, [kl, n]), &device))
                }
            };
            let y = host_vec(y);
            if by_pixel {
                kernels::scatter_nk(&y, dst, n_total, r0 * ow, bias.as_deref());
            } else {
                kernels::scatter_kn(&y, dst, n_total, r0 * ow, bias.as_deref());
            }
            r0 = rows.end;
        }
    }
    Tensor::from_data(TensorData::new(out, [b, c_out, oh, ow]), &device)
}

/// `conv3x3(nearest_up2(x))` (stride 1, pad 1) at the input resolution: the weight folded into four 2x2 phase
/// kernels, one 2x2 convolution with 4 C_out outputs, the phases assembled (kernels::up2). Call where
/// [`eligible`] and the weight is `[C_out, C_in, 3, 3]`.
///
/// # Shapes
/// - x: `[B, C_in, H, W]`, weight: `[C_out, C_in, 3, 3]`, bias: `[C_out]` -> `[B, C_out, 2H, 2W]`
pub fn conv_up2(x: Tensor<4>, weight: Tensor<4>, bias: Option<Tensor<1>>) -> Tensor<4> {
    let device = x.device();
    let [b, c_in, h, w] = x.dims();
    let c_out = weight.dims()[0];
    let folded = kernels::fold_up2_weights(&host_vec(weight), c_out, c_in);
    let folded = Tensor::<4>::from_data(TensorData::new(folded, [4 * c_out, c_in, 2, 2]), &device);
    let bias = bias.map(|bb| {
        let v: Vec<f32> = host_vec(bb).iter().flat_map(|v| [*v; 4]).collect();
        Tensor::<1>::from_data(TensorData::new(v, [4 * c_out]), &device)
    });
    // a 2x2 kernel always fits a 1-padded map
    let phases = conv2d(x, folded, bias, ConvGeom { c: c_in, h, w, k: 2, stride: 1, pad: 1 });
    let ys = host_vec(phases);
    let per = 4 * c_out * (h + 1) * (w + 1);
    let out: Vec<f32> = (0..b).flat_map(|i| kernels::assemble_up2(&ys[i * per..(i + 1) * per], c_out, h, w)).collect();
    Tensor::from_data(TensorData::new(out, [b, c_out, 2 * h, 2 * w]), &device)
}

#[cfg(test)]
mod tests {
    use burn::tensor::activation::softmax;
    use burn::tensor::{Distribution, Tensor};

    use super::*;

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().iter::<f32>().collect()
    }

    /// `softmax(q k^T / sqrt(Dh)) v` in float64 on host vectors: q `[B, H, T, Dh]`, k `[B, H, S, Dh]`, v `[B, H, S, Dv]`.
    fn attention_f64(q: &[f32], k: &[f32], v: &[f32], [b, h, t, s, dh, dv]: [usize; 6]) -> Vec<f64> {
        let mut out = vec![0.0f64; b * h * t * dv];
        for bh in 0..b * h {
            for i in 0..t {
                let qi = &q[(bh * t + i) * dh..][..dh];
                let scores: Vec<f64> = (0..s)
                    .map(|j| {
                        let kj = &k[(bh * s + j) * dh..][..dh];
                        qi.iter().zip(kj).map(|(a, c)| *a as f64 * *c as f64).sum::<f64>() / (dh as f64).sqrt()
                    })
                    .collect();
                let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = scores.iter().map(|x| (x - m).exp()).collect();
                let z: f64 = e.iter().sum();
                for d in 0..dv {
                    out[(bh * t + i) * dv + d] = (0..s).map(|j| e[j] / z * v[(bh * s + j) * dv + d] as f64).sum();
                }
            }
        }
        out
    }

    /// The fused attention of the host path equals the float64 definition and burn's plain ops (matmul, softmax,
    /// matmul) on odd, non-square shapes (T != S, Dh != Dv, several batches and heads, large logits).
    /// Tolerance 1e-5 * max(1, max|ref|): float32 reassociation only.
    #[test]
    fn attention_equals_f64_and_burns_plain_ops() {
        let device = crate::cpu();
        for (dims, sd) in [([2, 3, 7, 11, 5, 6], 1.0), ([1, 2, 257, 257, 64, 64], 1.0), ([1, 1, 1, 3, 4, 2], 4.0)] {
            let [b, h, t, s, dh, dv] = dims;
            let q = Tensor::<4>::random([b, h, t, dh], Distribution::Normal(0.0, sd), &device);
            let k = Tensor::<4>::random([b, h, s, dh], Distribution::Normal(0.0, sd), &device);
            let v = Tensor::<4>::random([b, h, s, dv], Distribution::Normal(0.0, 1.0), &device);
            assert!(eligible(&q), "the CPU inference path is under test");
            let got = values(attention(q.clone(), k.clone(), v.clone()));
            let want = attention_f64(&values(q.clone()), &values(k.clone()), &values(v.clone()), dims);
            let scale = want.iter().fold(1.0f64, |m, x| m.max(x.abs()));
            let err = got.iter().zip(&want).fold(0.0f64, |m, (a, w)| m.max((*a as f64 - w).abs()));
            assert!(err <= 1e-5 * scale, "{dims:?} vs f64: err {err:e}");
            let plain = values(softmax(q.matmul(k.swap_dims(2, 3)).mul_scalar(1.0 / (dh as f64).sqrt()), 3).matmul(v));
            let err = got.iter().zip(&plain).fold(0.0f32, |m, (a, p)| m.max((a - p).abs()));
            assert!(err as f64 <= 1e-5 * scale, "{dims:?} vs burn's plain ops: err {err:e}");
        }
    }
}
