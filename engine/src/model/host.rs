//! CPU fast paths for inference. On burn's Flex device without autodiff, the element-wise activations and the
//! lowering of convolutions to matrix products run on the tensors' host buffers through the `kernels` crate
//! (vectorised, on all cores); the matrix products stay with burn (the `gemm` crate). Flex itself runs activations as
//! scalar loops on one thread and convolutions as a tiled im2col with a small product per 512-pixel tile.
//!
//! Everywhere else (autodiff, wgpu, non-f32 tensors, `DINO_SAE_PLAIN_OPS=1`) the plain burn op runs. The same
//! maths either way: tests/parity.rs checks every path against the plain op, and the kernels crate against float64.

use std::sync::OnceLock;

use burn::tensor::{DType, Device, Tensor, TensorData};
use kernels::ConvGeom;

use super::nn::fast_paths;

/// Floats per chunk of a column matrix (16 MiB): a large image is lowered a band of output rows at a time.
const COL_BUDGET: usize = 1 << 22;

/// Whether `x` is an inference tensor on the CPU device, where the host paths apply.
pub fn eligible<const D: usize>(x: &Tensor<D>) -> bool {
    static FLEX: OnceLock<Device> = OnceLock::new();
    if !fast_paths() || x.dtype() != DType::F32 {
        return false;
    }
    let d = x.device();
    !d.is_autodiff() && &d == FLEX.get_or_init(Device::flex)
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
