//! The decoder's two block types: ResBlock and EViT_GLU (LiteMLA + GLUMBConv).

use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::activation::relu;

use super::layers::{Act, Norm2d, NormKind};
use crate::model::nn::{Conv2d, Probe};
use crate::weights::WeightSource;

/// `x + norm(conv3x3_nobias(act(conv3x3_bias(x))))`
#[derive(Module, Debug)]
pub struct ResBlock {
    pub conv1: Conv2d,
    pub conv2: Conv2d,
    pub norm: Norm2d,
    #[module(skip)]
    pub act: Act,
}

impl ResBlock {
    pub(super) fn load(ws: &mut WeightSource, p: &str, c: usize, norm: NormKind, act: Act) -> Self {
        Self {
            conv1: Conv2d::load(ws, &format!("{p}.main.conv1.conv"), c, c, 3, 1, 1, true),
            conv2: Conv2d::load(ws, &format!("{p}.main.conv2.conv"), c, c, 3, 1, 1, false),
            norm: Norm2d::load(ws, &format!("{p}.main.conv2.norm"), norm, c),
            act,
        }
    }

    /// # Shapes
    /// - x: `[B, C, H, W]` -> same
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let y = self.norm.forward(self.conv2.forward(self.act.forward(self.conv1.forward(x.clone()))));
        x + y
    }
}

/// EfficientViT block: `x + LiteMLA(x)` then `x + GLUMBConv(x)`; norms only where efficientvit builds them
/// (`proj` and `point_conv`, for a stage norm of bn2d / ln2d; none for trms2d, the official quirk).
#[derive(Module, Debug)]
pub struct EvitBlock {
    pub qkv: Conv2d,
    pub proj: Conv2d,
    pub proj_norm: Norm2d,
    pub inverted: Conv2d,
    pub depth: Conv2d,
    pub point: Conv2d,
    pub point_norm: Norm2d,
    #[module(skip)]
    pub heads: usize,
    #[module(skip)]
    pub act: Act,
}

/// Head dim of LiteMLA and the linear-vs-quadratic threshold (`H*W > 32` takes the linear branch).
pub const EVIT_DIM: usize = 32;
const EVIT_EPS: f64 = 1e-15;

impl EvitBlock {
    pub(super) fn load(ws: &mut WeightSource, p: &str, c: usize, norm: NormKind, act: Act) -> Self {
        let heads = c / EVIT_DIM;
        let td = heads * EVIT_DIM;
        let mid = 4 * c;
        Self {
            qkv: Conv2d::load(ws, &format!("{p}.context_module.main.qkv.conv"), c, 3 * td, 1, 1, 1, false),
            proj: Conv2d::load(ws, &format!("{p}.context_module.main.proj.conv"), td, c, 1, 1, 1, false),
            proj_norm: Norm2d::load(ws, &format!("{p}.context_module.main.proj.norm"), norm, c),
            inverted: Conv2d::load(ws, &format!("{p}.local_module.main.inverted_conv.conv"), c, 2 * mid, 1, 1, 1, true),
            depth: Conv2d::load(
                ws,
                &format!("{p}.local_module.main.depth_conv.conv"),
                2 * mid,
                2 * mid,
                3,
                1,
                2 * mid,
                true,
            ),
            point: Conv2d::load(ws, &format!("{p}.local_module.main.point_conv.conv"), mid, c, 1, 1, 1, false),
            point_norm: Norm2d::load(ws, &format!("{p}.local_module.main.point_conv.norm"), norm, c),
            heads,
            act,
        }
    }

    /// ReLU linear attention (quadratic form when `H*W <= 32`, as the reference).
    ///
    /// # Shapes
    /// - x: `[B, C, H, W]` -> `[B, heads*32, H, W]` (before proj)
    pub fn attention(&self, x: Tensor<4>, probe: &mut Probe, name: &str) -> Tensor<4> {
        let [b, _, h, w] = x.dims();
        let n = h * w;
        let hd = self.heads;
        let qkv = self.qkv.forward(x);
        probe.put(format!("{name}.qkv_out"), &qkv);
        let qkv = qkv.reshape([b, hd, 3 * EVIT_DIM, n]); // per head [q | k | v]
        let q = relu(qkv.clone().narrow(2, 0, EVIT_DIM));
        let k = relu(qkv.clone().narrow(2, EVIT_DIM, EVIT_DIM));
        let v = qkv.narrow(2, 2 * EVIT_DIM, EVIT_DIM);
        let out = if n > EVIT_DIM {
            let ones = Tensor::<4>::ones([b, hd, 1, n], &v.device());
            let vp = Tensor::cat(vec![v, ones], 2); // [B, h, 33, N]
            let vk = vp.matmul(k.swap_dims(2, 3)); // [B, h, 33, 32]
            let o = vk.matmul(q); // [B, h, 33, N]
            let num = o.clone().narrow(2, 0, EVIT_DIM);
            let den = o.narrow(2, EVIT_DIM, 1).add_scalar(EVIT_EPS);
            num / den
        } else {
            let a = k.swap_dims(2, 3).matmul(q); // [B, h, N(keys), N(queries)]
            let s = a.clone().sum_dim(2).add_scalar(EVIT_EPS);
            v.matmul(a / s)
        };
        let out = out.reshape([b, hd * EVIT_DIM, h, w]);
        probe.put(format!("{name}.attn_out_pre_proj"), &out);
        out
    }

    /// # Shapes
    /// - x: `[B, C, H, W]` -> same
    pub fn forward(&self, x: Tensor<4>, probe: &mut Probe, name: &str) -> Tensor<4> {
        let a = self.proj_norm.forward(self.proj.forward(self.attention(x.clone(), probe, name)));
        let x = x + a;
        probe.put(format!("{name}.context_module_out"), &x);
        let y = self.depth.forward(self.act.forward(self.inverted.forward(x.clone())));
        let mid = y.dims()[1] / 2;
        let gated = y.clone().narrow(1, 0, mid) * self.act.forward(y.narrow(1, mid, mid));
        probe.put(format!("{name}.glu.gated"), &gated);
        x + self.point_norm.forward(self.point.forward(gated))
    }
}

// Built once per model; boxing the larger variant would only add an indirection to every forward.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum DecBlock {
    Res(ResBlock),
    Evit(EvitBlock),
}
