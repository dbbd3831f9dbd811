//! The transformer shared by DINOv2 and DINOv3: pre-norm block (attention + MLP/SwiGLU, LayerScale),
//! token assembly and the forward pass that returns every state the paper and the fixtures talk about.
//!
//! The config is in `vit_config.rs`, family-specific parts in `dinov3.rs` (axial RoPE) and `dinov2.rs` (learned,
//! interpolated positions).

use burn::module::{Module, Param};
use burn::tensor::Tensor;

use super::dinov2::PosTable;
use super::dinov3::Rope;
use super::host::{self, gelu, silu};
use super::hybrid::{HybridEmbed, resized_patchify};
use super::nn::{Conv2d, LayerNorm, Linear, Probe};
use super::stem::Stem;
pub use super::vit_config::{Family, Ffn, VitConfig};
use crate::weights::{Init, WeightSource};

/// Multi-head self-attention with a fused qkv projection.
#[derive(Module, Debug)]
pub struct Attention {
    pub qkv: Linear,
    pub proj: Linear,
    #[module(skip)]
    pub heads: usize,
}

/// fc1 -> GELU -> fc2.
#[derive(Module, Debug)]
pub struct Mlp {
    pub fc1: Linear,
    pub fc2: Linear,
}

/// w3(silu(w1 x) * w2 x).
#[derive(Module, Debug)]
pub struct SwiGlu {
    pub w1: Linear,
    pub w2: Linear,
    pub w3: Linear,
}

/// Feed-forward network.
#[derive(Module, Debug)]
pub enum FeedForward {
    Mlp(Mlp),
    Swiglu(SwiGlu),
}

/// Pre-norm transformer block with LayerScale.
#[derive(Module, Debug)]
pub struct Block {
    pub norm1: LayerNorm,
    pub attn: Attention,
    pub ls1: Option<Param<Tensor<1>>>,
    pub norm2: LayerNorm,
    pub mlp: FeedForward,
    pub ls2: Option<Param<Tensor<1>>>,
}

impl Block {
    /// Internal key names (official DINO naming): `{p}.norm1`, `{p}.attn.qkv`, `{p}.attn.proj`, `{p}.ls1.gamma`, ...
    pub fn load(ws: &mut WeightSource, p: &str, cfg: &VitConfig) -> Self {
        let d = cfg.dim;
        let f = cfg.ffn_hidden;
        let mlp = match cfg.ffn {
            Ffn::Mlp => FeedForward::Mlp(Mlp {
                fc1: Linear::load(ws, &format!("{p}.mlp.fc1"), d, f, true),
                fc2: Linear::load(ws, &format!("{p}.mlp.fc2"), f, d, true),
            }),
            Ffn::Swiglu => FeedForward::Swiglu(SwiGlu {
                w1: Linear::load(ws, &format!("{p}.mlp.w1"), d, f, true),
                w2: Linear::load(ws, &format!("{p}.mlp.w2"), d, f, true),
                w3: Linear::load(ws, &format!("{p}.mlp.w3"), f, d, true),
            }),
        };
        let ls = |ws: &mut WeightSource, k: &str| {
            cfg.layerscale.then(|| ws.param(&format!("{p}.{k}.gamma"), [d], Init::Const(1e-5)))
        };
        Self {
            norm1: LayerNorm::load(ws, &format!("{p}.norm1"), d, cfg.layer_norm_eps),
            attn: Attention {
                qkv: Linear::load(ws, &format!("{p}.attn.qkv"), d, 3 * d, cfg.qkv_bias),
                proj: Linear::load(ws, &format!("{p}.attn.proj"), d, d, true),
                heads: cfg.heads,
            },
            ls1: ls(ws, "ls1"),
            norm2: LayerNorm::load(ws, &format!("{p}.norm2"), d, cfg.layer_norm_eps),
            mlp,
            ls2: ls(ws, "ls2"),
        }
    }

    /// # Shapes
    /// - x: `[B, T, D]` -> `[B, T, D]`; `rope` rotates tokens `n_prefix..T`.
    pub fn forward(
        &self,
        x: Tensor<3>,
        rope: Option<&Rope>,
        n_prefix: usize,
        probe: &mut Probe,
        name: &str,
    ) -> Tensor<3> {
        let [b, t, d] = x.dims();
        let h = self.attn.heads;
        let dh = d / h;
        let n1 = self.norm1.forward(x.clone());
        probe.put(format!("{name}.norm1_out"), &n1);
        let qkv = self.attn.qkv.forward(n1); // [B, T, 3D]
        if probe.enabled {
            probe.put(format!("{name}.attn.q_proj_out"), &qkv.clone().narrow(2, 0, d));
            probe.put(format!("{name}.attn.k_proj_out"), &qkv.clone().narrow(2, d, d));
            probe.put(format!("{name}.attn.v_proj_out"), &qkv.clone().narrow(2, 2 * d, d));
        }
        let qkv = qkv.reshape([b, t, 3, h, dh]).permute([2, 0, 3, 1, 4]); // [3, B, H, T, Dh]
        let q = qkv.clone().narrow(0, 0, 1).reshape([b, h, t, dh]);
        let k = qkv.clone().narrow(0, 1, 1).reshape([b, h, t, dh]);
        let v = qkv.narrow(0, 2, 1).reshape([b, h, t, dh]);
        let (q, k) = match rope {
            Some(r) => (r.apply(q, n_prefix), r.apply(k, n_prefix)),
            None => (q, k),
        };
        probe.put(format!("{name}.attn.q_rope"), &q);
        probe.put(format!("{name}.attn.k_rope"), &k);
        let attn = host::attention(q, k, v); // [B, H, T, Dh]
        let attn = attn.swap_dims(1, 2).reshape([b, t, d]);
        probe.put(format!("{name}.attn.sdpa_out"), &attn);
        let o = self.attn.proj.forward(attn);
        probe.put(format!("{name}.attn.o_proj_out"), &o);
        let o = match &self.ls1 {
            Some(g) => o * g.val().reshape([1, 1, d]),
            None => o,
        };
        probe.put(format!("{name}.layer_scale1_out"), &o);
        let x = x + o;
        let n2 = self.norm2.forward(x.clone());
        probe.put(format!("{name}.norm2_out"), &n2);
        let m = match &self.mlp {
            FeedForward::Mlp(Mlp { fc1, fc2 }) => {
                let hdn = fc1.forward(n2);
                probe.put(format!("{name}.mlp.up_proj_out"), &hdn);
                probe.put(format!("{name}.mlp.fc1_out"), &hdn);
                fc2.forward(gelu(hdn))
            }
            FeedForward::Swiglu(SwiGlu { w1, w2, w3 }) => w3.forward(silu(w1.forward(n2.clone())) * w2.forward(n2)),
        };
        probe.put(format!("{name}.mlp_out"), &m);
        let m = match &self.ls2 {
            Some(g) => m * g.val().reshape([1, 1, d]),
            None => m,
        };
        probe.put(format!("{name}.layer_scale2_out"), &m);
        x + m
    }
}

/// What turns pixels into patch tokens.
#[derive(Module, Debug)]
pub enum PatchEmbed {
    /// The backbone's own one-shot patchify (conv k=p, s=p).
    Conv(Conv2d),
    /// DINO-SAE's hierarchical convolutional stem (stride 16).
    Stem(Stem),
    /// The backbone's own patchify on the image resized so that each 16-px patch becomes one `p`-px patch
    /// (bicubic, no antialias: the teacher's resize). Effective stride 16; the ablation without the stem.
    Resized(Conv2d),
    /// The resized patchify plus the stem as a residual branch ([`HybridEmbed`]).
    Hybrid(HybridEmbed),
}

impl PatchEmbed {
    pub fn stride(&self) -> usize {
        match self {
            PatchEmbed::Conv(c) => c.stride,
            PatchEmbed::Stem(_) | PatchEmbed::Resized(_) | PatchEmbed::Hybrid(_) => 16,
        }
    }

    /// # Shapes
    /// - x: `[B, 3, H, W]` -> `[B, D, H/s, W/s]`
    pub fn forward(&self, x: Tensor<4>, probe: &mut Probe) -> Tensor<4> {
        match self {
            PatchEmbed::Conv(c) => c.forward(x),
            PatchEmbed::Stem(s) => s.forward(x, probe),
            PatchEmbed::Resized(c) => resized_patchify(c, x),
            PatchEmbed::Hybrid(e) => e.forward(x, probe),
        }
    }
}

/// All states of one forward pass.
#[derive(Debug, Clone)]
pub struct VitOutput {
    /// Tokens entering block 0: `[B, T, D]`.
    pub tokens_in: Tensor<3>,
    /// Output of each block: `[B, T, D]` x depth (the last one is `prenorm`).
    pub hidden: Vec<Tensor<3>>,
    /// Final LayerNorm over all tokens: `[B, T, D]`.
    pub normed: Tensor<3>,
    /// Patch grid (h, w).
    pub grid: (usize, usize),
    /// Number of prefix tokens (CLS + registers).
    pub n_prefix: usize,
}

impl VitOutput {
    pub fn prenorm(&self) -> Tensor<3> {
        self.hidden.last().cloned().unwrap_or_else(|| self.tokens_in.clone())
    }
    /// Normed patch tokens `[B, N, D]` (row-major over the grid).
    pub fn patch_tokens(&self) -> Tensor<3> {
        let [b, t, d] = self.normed.dims();
        self.normed.clone().slice([0..b, self.n_prefix..t, 0..d])
    }
    /// Normed CLS `[B, D]`.
    pub fn cls(&self) -> Tensor<2> {
        let [b, _, d] = self.normed.dims();
        self.normed.clone().slice([0..b, 0..1, 0..d]).reshape([b, d])
    }
    /// Normed registers `[B, R, D]`.
    pub fn registers(&self) -> Tensor<3> {
        let [b, _, d] = self.normed.dims();
        self.normed.clone().slice([0..b, 1..self.n_prefix, 0..d])
    }
}

/// A DINO vision transformer (v2 or v3) with a replaceable patch embedding.
#[derive(Module, Debug)]
pub struct Vit {
    pub patch_embed: PatchEmbed,
    pub cls_token: Param<Tensor<3>>,
    pub registers: Option<Param<Tensor<3>>>,
    pub pos: Option<PosTable>,
    pub blocks: Vec<Block>,
    pub norm: LayerNorm,
    #[module(skip)]
    pub cfg: VitConfig,
}

impl Vit {
    /// Load with internal (official DINO) names under `prefix` (may be empty). With `stem = true` the patch
    /// embedding is DINO-SAE's CNN stem (`patch_embed.cnn.*`), else the backbone's conv (`patch_embed.proj.*`).
    pub fn load(ws: &mut WeightSource, prefix: &str, cfg: &VitConfig, stem: bool) -> Self {
        let k = |s: &str| if prefix.is_empty() { s.to_string() } else { format!("{prefix}.{s}") };
        let d = cfg.dim;
        let pe = if stem {
            PatchEmbed::Stem(Stem::load(ws, &k("patch_embed"), d))
        } else {
            // one-shot patchify: kernel = stride = patch size, no padding
            let conv = Conv2d::load(ws, &k("patch_embed.proj"), 3, d, cfg.patch_size, cfg.patch_size, 1, true);
            PatchEmbed::Conv(Conv2d { padding: 0, ..conv })
        };
        let cls_token = ws.param(&k("cls_token"), [1, 1, d], Init::Normal(0.02));
        let registers =
            (cfg.registers > 0).then(|| ws.param(&k("storage_tokens"), [1, cfg.registers, d], Init::Normal(0.02)));
        let pos = (cfg.family == Family::Dinov2).then(|| PosTable::load(ws, &k("pos_embed"), cfg));
        let blocks = (0..cfg.depth).map(|i| Block::load(ws, &k(&format!("blocks.{i}")), cfg)).collect();
        let norm = LayerNorm::load(ws, &k("norm"), d, cfg.layer_norm_eps);
        Self { patch_embed: pe, cls_token, registers, pos, blocks, norm, cfg: cfg.clone() }
    }

    /// Tokens entering block 0 plus the patch grid.
    ///
    /// # Shapes
    /// - x: `[B, 3, H, W]` -> `[B, 1+R+h*w, D]`
    pub fn embed(&self, x: Tensor<4>, probe: &mut Probe) -> (Tensor<3>, (usize, usize)) {
        let p = self.patch_embed.forward(x, probe); // [B, D, h, w]
        let [b, d, h, w] = p.dims();
        let patches = p.reshape([b, d, h * w]).swap_dims(1, 2); // [B, N, D]
        probe.put("patch_embed_out", &patches);
        let cls = self.cls_token.val().repeat_dim(0, b);
        let (cls, patches) = match &self.pos {
            Some(pos) => {
                let table = pos.for_grid(h, w); // [1, 1+N, D]
                probe.put("pos_embed_interp", &table);
                let pc = table.clone().narrow(1, 0, 1);
                let pp = table.narrow(1, 1, h * w);
                (cls + pc, patches + pp)
            }
            None => (cls, patches),
        };
        let mut parts = vec![cls];
        if let Some(r) = &self.registers {
            parts.push(r.val().repeat_dim(0, b));
        }
        parts.push(patches);
        (Tensor::cat(parts, 1), (h, w))
    }

    /// Full forward.
    ///
    /// # Shapes
    /// - x: `[B, 3, H, W]` (H, W multiples of the patch stride) -> [`VitOutput`]
    pub fn forward(&self, x: Tensor<4>, probe: &mut Probe) -> VitOutput {
        let (tokens, grid) = self.embed(x, probe);
        // a cancelled forward stops between blocks: the hidden states are then incomplete (callers check)
        probe.put("tokens_in", &tokens);
        probe.put("hidden_states.0", &tokens);
        let rope = (self.cfg.family == Family::Dinov3)
            .then(|| Rope::new(self.cfg.head_dim(), self.cfg.rope_base, grid, &tokens.device()));
        if let Some(r) = &rope {
            probe.put("rope_sin", &r.sin);
            probe.put("rope_cos", &r.cos);
        }
        let n_prefix = self.cfg.n_prefix();
        let mut hidden = Vec::with_capacity(self.blocks.len());
        let mut x = tokens.clone();
        for (i, blk) in self.blocks.iter().enumerate() {
            if probe.cancelled() {
                break;
            }
            x = blk.forward(x, rope.as_ref(), n_prefix, probe, &format!("layer{i}"));
            probe.put(format!("hidden_states.{}", i + 1), &x);
            hidden.push(x.clone());
        }
        probe.put("prenorm", &x);
        let normed = self.norm.forward(x);
        probe.put("last_hidden_state", &normed);
        VitOutput { tokens_in: tokens, hidden, normed, grid, n_prefix }
    }
}
