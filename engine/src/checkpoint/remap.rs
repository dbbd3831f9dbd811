//! Key-remap tables: one per checkpoint format, from the source's names to our internal names
//! (the official DINO naming: `cls_token`, `storage_tokens`, `pos_embed`, `patch_embed.proj`,
//! `blocks.{i}.attn.qkv`, `blocks.{i}.ls1.gamma`, `norm`, ...).
//!
//! `{i}` in a pattern matches a block index. Separate q/k/v projections are fused into `qkv`.

use std::collections::BTreeMap;

use crate::error::{EngineError, Result};
use crate::tensor_file::{RawTensor, TensorMap};

/// What a source key becomes.
#[derive(Clone, Copy, Debug)]
pub enum Target {
    To(&'static str),
    /// Part 0/1/2 (q/k/v) of the fused `qkv` tensor with this name.
    Qkv(usize, &'static str),
    /// Part 0/1 of a fused SwiGLU input (`weights_in` -> w1, w2).
    Split2(usize, &'static str, &'static str),
    /// Known, not needed at inference (mask tokens, RoPE periods, bias masks).
    Ignore,
}

pub type Table = &'static [(&'static str, Target)];

use Target::*;

/// Meta's official DINOv3 `.pth` (also the `dino_model.` part of DINO-SAE). Identity, plus the k-bias mask.
pub const OFFICIAL_DINOV3: Table = &[
    ("cls_token", To("cls_token")),
    ("storage_tokens", To("storage_tokens")),
    ("mask_token", Ignore),
    ("rope_embed.periods", Ignore),
    ("patch_embed.proj.weight", To("patch_embed.proj.weight")),
    ("patch_embed.proj.bias", To("patch_embed.proj.bias")),
    ("patch_embed.cnn.{i}.conv.weight", To("patch_embed.cnn.{i}.conv.weight")),
    ("patch_embed.cnn.{i}.norm.weight", To("patch_embed.cnn.{i}.norm.weight")),
    ("blocks.{i}.norm1.weight", To("blocks.{i}.norm1.weight")),
    ("blocks.{i}.norm1.bias", To("blocks.{i}.norm1.bias")),
    ("blocks.{i}.attn.qkv.weight", To("blocks.{i}.attn.qkv.weight")),
    ("blocks.{i}.attn.qkv.bias", To("blocks.{i}.attn.qkv.bias")),
    ("blocks.{i}.attn.qkv.bias_mask", Ignore),
    ("blocks.{i}.attn.proj.weight", To("blocks.{i}.attn.proj.weight")),
    ("blocks.{i}.attn.proj.bias", To("blocks.{i}.attn.proj.bias")),
    ("blocks.{i}.ls1.gamma", To("blocks.{i}.ls1.gamma")),
    ("blocks.{i}.ls2.gamma", To("blocks.{i}.ls2.gamma")),
    ("blocks.{i}.norm2.weight", To("blocks.{i}.norm2.weight")),
    ("blocks.{i}.norm2.bias", To("blocks.{i}.norm2.bias")),
    ("blocks.{i}.mlp.fc1.weight", To("blocks.{i}.mlp.fc1.weight")),
    ("blocks.{i}.mlp.fc1.bias", To("blocks.{i}.mlp.fc1.bias")),
    ("blocks.{i}.mlp.fc2.weight", To("blocks.{i}.mlp.fc2.weight")),
    ("blocks.{i}.mlp.fc2.bias", To("blocks.{i}.mlp.fc2.bias")),
    ("blocks.{i}.mlp.w1.weight", To("blocks.{i}.mlp.w1.weight")),
    ("blocks.{i}.mlp.w1.bias", To("blocks.{i}.mlp.w1.bias")),
    ("blocks.{i}.mlp.w2.weight", To("blocks.{i}.mlp.w2.weight")),
    ("blocks.{i}.mlp.w2.bias", To("blocks.{i}.mlp.w2.bias")),
    ("blocks.{i}.mlp.w3.weight", To("blocks.{i}.mlp.w3.weight")),
    ("blocks.{i}.mlp.w3.bias", To("blocks.{i}.mlp.w3.bias")),
    ("norm.weight", To("norm.weight")),
    ("norm.bias", To("norm.bias")),
    ("local_cls_norm.weight", Ignore),
    ("local_cls_norm.bias", Ignore),
];

/// HF `DINOv3ViTModel` hub names (`layer.N.`; transformers 5 may show `model.layer.N.`, stripped before).
pub const HF_DINOV3: Table = &[
    ("embeddings.cls_token", To("cls_token")),
    ("embeddings.register_tokens", To("storage_tokens")),
    ("embeddings.mask_token", Ignore),
    ("embeddings.patch_embeddings.weight", To("patch_embed.proj.weight")),
    ("embeddings.patch_embeddings.bias", To("patch_embed.proj.bias")),
    ("layer.{i}.norm1.weight", To("blocks.{i}.norm1.weight")),
    ("layer.{i}.norm1.bias", To("blocks.{i}.norm1.bias")),
    ("layer.{i}.attention.q_proj.weight", Qkv(0, "blocks.{i}.attn.qkv.weight")),
    ("layer.{i}.attention.k_proj.weight", Qkv(1, "blocks.{i}.attn.qkv.weight")),
    ("layer.{i}.attention.v_proj.weight", Qkv(2, "blocks.{i}.attn.qkv.weight")),
    ("layer.{i}.attention.q_proj.bias", Qkv(0, "blocks.{i}.attn.qkv.bias")),
    ("layer.{i}.attention.k_proj.bias", Qkv(1, "blocks.{i}.attn.qkv.bias")),
    ("layer.{i}.attention.v_proj.bias", Qkv(2, "blocks.{i}.attn.qkv.bias")),
    ("layer.{i}.attention.o_proj.weight", To("blocks.{i}.attn.proj.weight")),
    ("layer.{i}.attention.o_proj.bias", To("blocks.{i}.attn.proj.bias")),
    ("layer.{i}.layer_scale1.lambda1", To("blocks.{i}.ls1.gamma")),
    ("layer.{i}.layer_scale2.lambda1", To("blocks.{i}.ls2.gamma")),
    ("layer.{i}.norm2.weight", To("blocks.{i}.norm2.weight")),
    ("layer.{i}.norm2.bias", To("blocks.{i}.norm2.bias")),
    ("layer.{i}.mlp.up_proj.weight", To("blocks.{i}.mlp.fc1.weight")),
    ("layer.{i}.mlp.up_proj.bias", To("blocks.{i}.mlp.fc1.bias")),
    ("layer.{i}.mlp.down_proj.weight", To("blocks.{i}.mlp.fc2.weight")),
    ("layer.{i}.mlp.down_proj.bias", To("blocks.{i}.mlp.fc2.bias")),
    ("norm.weight", To("norm.weight")),
    ("norm.bias", To("norm.bias")),
];

/// Gated-MLP HF DINOv3 (S+, H+): gate/up/down -> w1/w2/w3. Applied instead of the up/down rows above.
pub const HF_DINOV3_GATED: Table = &[
    ("layer.{i}.mlp.gate_proj.weight", To("blocks.{i}.mlp.w1.weight")),
    ("layer.{i}.mlp.gate_proj.bias", To("blocks.{i}.mlp.w1.bias")),
    ("layer.{i}.mlp.up_proj.weight", To("blocks.{i}.mlp.w2.weight")),
    ("layer.{i}.mlp.up_proj.bias", To("blocks.{i}.mlp.w2.bias")),
    ("layer.{i}.mlp.down_proj.weight", To("blocks.{i}.mlp.w3.weight")),
    ("layer.{i}.mlp.down_proj.bias", To("blocks.{i}.mlp.w3.bias")),
];

/// HF `Dinov2Model` / `Dinov2WithRegistersModel` hub names (and the transformers-5 module names).
pub const HF_DINOV2: Table = &[
    ("embeddings.cls_token", To("cls_token")),
    ("embeddings.register_tokens", To("storage_tokens")),
    ("embeddings.mask_token", Ignore),
    ("embeddings.position_embeddings", To("pos_embed")),
    ("embeddings.patch_embeddings.projection.weight", To("patch_embed.proj.weight")),
    ("embeddings.patch_embeddings.projection.bias", To("patch_embed.proj.bias")),
    ("encoder.layer.{i}.norm1.weight", To("blocks.{i}.norm1.weight")),
    ("encoder.layer.{i}.norm1.bias", To("blocks.{i}.norm1.bias")),
    ("encoder.layer.{i}.attention.attention.query.weight", Qkv(0, "blocks.{i}.attn.qkv.weight")),
    ("encoder.layer.{i}.attention.attention.key.weight", Qkv(1, "blocks.{i}.attn.qkv.weight")),
    ("encoder.layer.{i}.attention.attention.value.weight", Qkv(2, "blocks.{i}.attn.qkv.weight")),
    ("encoder.layer.{i}.attention.attention.query.bias", Qkv(0, "blocks.{i}.attn.qkv.bias")),
    ("encoder.layer.{i}.attention.attention.key.bias", Qkv(1, "blocks.{i}.attn.qkv.bias")),
    ("encoder.layer.{i}.attention.attention.value.bias", Qkv(2, "blocks.{i}.attn.qkv.bias")),
    ("encoder.layer.{i}.attention.q_proj.weight", Qkv(0, "blocks.{i}.attn.qkv.weight")),
    ("encoder.layer.{i}.attention.k_proj.weight", Qkv(1, "blocks.{i}.attn.qkv.weight")),
    ("encoder.layer.{i}.attention.v_proj.weight", Qkv(2, "blocks.{i}.attn.qkv.weight")),
    ("encoder.layer.{i}.attention.q_proj.bias", Qkv(0, "blocks.{i}.attn.qkv.bias")),
    ("encoder.layer.{i}.attention.k_proj.bias", Qkv(1, "blocks.{i}.attn.qkv.bias")),
    ("encoder.layer.{i}.attention.v_proj.bias", Qkv(2, "blocks.{i}.attn.qkv.bias")),
    ("encoder.layer.{i}.attention.output.dense.weight", To("blocks.{i}.attn.proj.weight")),
    ("encoder.layer.{i}.attention.output.dense.bias", To("blocks.{i}.attn.proj.bias")),
    ("encoder.layer.{i}.attention.o_proj.weight", To("blocks.{i}.attn.proj.weight")),
    ("encoder.layer.{i}.attention.o_proj.bias", To("blocks.{i}.attn.proj.bias")),
    ("encoder.layer.{i}.layer_scale1.lambda1", To("blocks.{i}.ls1.gamma")),
    ("encoder.layer.{i}.layer_scale2.lambda1", To("blocks.{i}.ls2.gamma")),
    ("encoder.layer.{i}.norm2.weight", To("blocks.{i}.norm2.weight")),
    ("encoder.layer.{i}.norm2.bias", To("blocks.{i}.norm2.bias")),
    ("encoder.layer.{i}.mlp.fc1.weight", To("blocks.{i}.mlp.fc1.weight")),
    ("encoder.layer.{i}.mlp.fc1.bias", To("blocks.{i}.mlp.fc1.bias")),
    ("encoder.layer.{i}.mlp.fc2.weight", To("blocks.{i}.mlp.fc2.weight")),
    ("encoder.layer.{i}.mlp.fc2.bias", To("blocks.{i}.mlp.fc2.bias")),
    ("encoder.layer.{i}.mlp.weights_in.weight", Split2(0, "blocks.{i}.mlp.w1.weight", "blocks.{i}.mlp.w2.weight")),
    ("encoder.layer.{i}.mlp.weights_in.bias", Split2(0, "blocks.{i}.mlp.w1.bias", "blocks.{i}.mlp.w2.bias")),
    ("encoder.layer.{i}.mlp.weights_out.weight", To("blocks.{i}.mlp.w3.weight")),
    ("encoder.layer.{i}.mlp.weights_out.bias", To("blocks.{i}.mlp.w3.bias")),
    ("layernorm.weight", To("norm.weight")),
    ("layernorm.bias", To("norm.bias")),
];

/// Match `key` against `pattern` (`{i}` = digits). Returns the captured index text.
fn matches(pattern: &str, key: &str) -> Option<Option<String>> {
    match pattern.find("{i}") {
        None => (pattern == key).then_some(None),
        Some(pos) => {
            let (pre, post) = (&pattern[..pos], &pattern[pos + 3..]);
            let mid = key.strip_prefix(pre)?.strip_suffix(post)?;
            (!mid.is_empty() && mid.bytes().all(|b| b.is_ascii_digit())).then(|| Some(mid.to_string()))
        }
    }
}

/// Result of remapping.
#[derive(Debug, Default)]
pub struct Remapped {
    pub tensors: TensorMap,
    /// Source keys no table row matched.
    pub unexpected: Vec<String>,
    /// Source keys deliberately dropped.
    pub ignored: Vec<String>,
}

/// Apply `tables` (first match wins) to `src`. Keys under `keep_prefix` pass through unchanged.
pub fn remap(src: TensorMap, tables: &[Table], passthrough_prefixes: &[&str]) -> Result<Remapped> {
    let mut out = Remapped::default();
    let mut parts: BTreeMap<String, [Option<RawTensor>; 3]> = BTreeMap::new();
    for (key, t) in src {
        if passthrough_prefixes.iter().any(|p| key.starts_with(p)) {
            out.tensors.insert(key, t);
            continue;
        }
        let hit = tables.iter().flat_map(|tb| tb.iter()).find_map(|(pat, tgt)| matches(pat, &key).map(|i| (i, *tgt)));
        let Some((idx, target)) = hit else {
            out.unexpected.push(key);
            continue;
        };
        let fill = |s: &str| match &idx {
            Some(i) => s.replace("{i}", i),
            None => s.to_string(),
        };
        match target {
            To(name) => {
                out.tensors.insert(fill(name), t);
            }
            Ignore => out.ignored.push(key),
            Qkv(part, name) => {
                parts.entry(fill(name)).or_default()[part] = Some(t);
            }
            Split2(_, a, b) => {
                let n = t.shape[0];
                if n % 2 != 0 {
                    return Err(EngineError::Checkpoint(format!("{key}: cannot split {n} rows in two")));
                }
                out.tensors.insert(fill(a), t.rows(0, n / 2)?);
                out.tensors.insert(fill(b), t.rows(n / 2, n)?);
            }
        }
    }
    for (name, [q, k, v]) in parts {
        // HF DINOv3 has no k bias (the official model masks it to zero).
        let k = match (k, &q) {
            (Some(k), _) => k,
            (None, Some(q)) if name.ends_with(".bias") => RawTensor::zeros(q.shape.clone()),
            _ => return Err(EngineError::Checkpoint(format!("{name}: missing the k projection"))),
        };
        let (Some(q), Some(v)) = (q, v) else {
            return Err(EngineError::Checkpoint(format!("{name}: missing the q or v projection")));
        };
        out.tensors.insert(name, RawTensor::cat_rows(&[&q, &k, &v])?);
    }
    Ok(out)
}

/// Multiply each `qkv.bias` by its `bias_mask` (official `LinearKMaskedBias`), in place.
pub fn apply_bias_masks(src: &mut TensorMap, prefix: &str) -> Result<()> {
    let keys: Vec<String> =
        src.keys().filter(|k| k.starts_with(prefix) && k.ends_with("attn.qkv.bias")).cloned().collect();
    for k in keys {
        let mk = format!("{k}_mask");
        if let Some(mask) = src.get(&mk).cloned() {
            let b = src.get_mut(&k).expect("listed");
            if mask.numel() != b.numel() {
                return Err(EngineError::Checkpoint(format!("{mk}: shape {:?} vs bias {:?}", mask.shape, b.shape)));
            }
            for (x, m) in b.data.iter_mut().zip(&mask.data) {
                // NaN masks are an uninitialised constructor buffer: treat them as "not set".
                if !m.is_nan() {
                    *x *= *m;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_matching() {
        assert_eq!(matches("blocks.{i}.norm1.weight", "blocks.12.norm1.weight"), Some(Some("12".into())));
        assert_eq!(matches("blocks.{i}.norm1.weight", "blocks.x.norm1.weight"), None);
        assert_eq!(matches("norm.weight", "norm.weight"), Some(None));
        assert_eq!(matches("norm.weight", "xnorm.weight"), None);
    }
}
