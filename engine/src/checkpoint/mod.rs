//! Reading checkpoints of every supported format into models, with a key report.
//!
//! Formats: Meta's official DINOv3 `.pth` (torch zip, parsed as data only) or its safetensors;
//! HF DINOv3 / DINOv2 `model.safetensors` (+ `config.json`); the official DINO-SAE state dict
//! (`dino_model.*` + `decoder.*`, possibly wrapped in `model.` / `module.` / `ema` / `state_dict`);
//! our own folder (`model.safetensors` + `config.json`).

pub mod convert;
pub mod decoder_keys;
pub mod onnx;
pub mod pickle;
pub mod remap;

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use serde_json::Value;

use crate::budget::Budget;
use crate::error::{EngineError, Result};
pub use decoder_keys::{decoder_config, guess_decoder};

use crate::model::decoder::{Decoder, DecoderConfig};
use crate::model::sae::{DinoSae, EmbedKind, PixelConfig, SaeConfig};
use crate::model::vit::{Family, Ffn, Vit, VitConfig};
use crate::tensor_file::{TensorMap, read_safetensors, safetensors_from_bytes};
use crate::weights::{LoadReport, WeightSource};

/// What a file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    OfficialDinov3,
    HfDinov3,
    HfDinov2,
    /// Official DINO-SAE state dict (or ours, which uses the same names).
    DinoSae,
    /// A bare `DCAE_Decoder` state dict.
    Decoder,
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Format::OfficialDinov3 => "official DINOv3 state dict",
            Format::HfDinov3 => "HF DINOv3ViTModel",
            Format::HfDinov2 => "HF Dinov2Model",
            Format::DinoSae => "DINO-SAE state dict",
            Format::Decoder => "DC-AE decoder state dict",
        })
    }
}

/// A checkpoint read from disk, unwrapped, in its source naming.
#[derive(Debug)]
pub struct SourceFile {
    pub path: PathBuf,
    pub tensors: TensorMap,
    /// `config.json` beside the weights, if any.
    pub config: Option<Value>,
    /// The wrapper prefix that was stripped (e.g. `ema.`, `module.`).
    pub unwrapped: String,
    pub format: Format,
}

/// Our config file beside `model.safetensors`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct OurConfig {
    pub kind: String,
    pub sae: SaeConfig,
}

fn read_bytes(path: &Path) -> Result<Vec<u8>> {
    let meta = std::fs::metadata(path).map_err(|e| EngineError::io(path, e))?;
    if meta.len() == 0 {
        return Err(EngineError::Checkpoint(format!("{} is empty", path.display())));
    }
    std::fs::read(path).map_err(|e| EngineError::io(path, e))
}

/// Read any supported file (or folder with `model.safetensors`), unwrap containers, detect the format.
pub fn read(path: impl AsRef<Path>) -> Result<SourceFile> {
    read_within(path, &Budget::from_env())
}

/// [`read`] within `budget`: a torch zip's tensors, all converted to f32, may hold at most that many bytes.
pub fn read_within(path: impl AsRef<Path>, budget: &Budget) -> Result<SourceFile> {
    let mut path = path.as_ref().to_path_buf();
    if path.is_dir() {
        path = path.join("model.safetensors");
    }
    let bytes = read_bytes(&path)?;
    let tensors = if bytes.starts_with(b"PK\x03\x04") {
        pickle::read_torch_zip(&bytes, budget.bytes)?
    } else if bytes.first() == Some(&0x80) && bytes.get(8) != Some(&b'{') {
        // a legacy torch file opens with pickle's PROTO opcode (0x80); a safetensors file opens with its header's
        // length (u64 LE, whose low byte may well be 0x80) and then the header's `{`
        return Err(EngineError::Checkpoint(
            "legacy (pre-1.6, non-zip) torch pickle files are not supported; re-save with torch.save".into(),
        ));
    } else {
        safetensors_from_bytes(&bytes).map_err(|e| {
            EngineError::Checkpoint(format!("{}: neither a torch zip nor safetensors ({e})", path.display()))
        })?
    };
    if tensors.is_empty() {
        return Err(EngineError::Checkpoint(format!("{} holds no tensors", path.display())));
    }
    let config = path
        .parent()
        .map(|d| d.join("config.json"))
        .filter(|p| p.exists())
        .map(|p| -> Result<Value> {
            let s = std::fs::read_to_string(&p).map_err(|e| EngineError::io(&p, e))?;
            serde_json::from_str(&s).map_err(|e| EngineError::Config(format!("{}: {e}", p.display())))
        })
        .transpose()?;
    let (tensors, unwrapped) = unwrap(tensors);
    let format = detect(&tensors)?;
    Ok(SourceFile { path, tensors, config, unwrapped, format })
}

const ANCHORS: [&str; 10] = [
    "dino_model.cls_token",
    "decoder.project_in.main.conv.weight",
    "decoder.project_in.conv.weight",
    "project_in.conv.weight",
    "embeddings.cls_token",
    "cls_token",
    "project_in.main.conv.weight",
    "blocks.0.norm1.weight",
    "layer.0.norm1.weight",
    "encoder.layer.0.norm1.weight",
];

/// Find the model inside a training checkpoint: prefer an EMA copy, then the shortest prefix.
fn unwrap(map: TensorMap) -> (TensorMap, String) {
    let mut prefixes: Vec<String> = Vec::new();
    for key in map.keys() {
        for a in ANCHORS {
            if let Some(p) = key.strip_suffix(a)
                && (p.is_empty() || p.ends_with('.'))
                && !prefixes.contains(&p.to_string())
            {
                prefixes.push(p.to_string());
            }
        }
    }
    // Drop prefixes that are just deeper views of another candidate's model (e.g. "dino_model." under "").
    let candidates: Vec<String> = prefixes
        .iter()
        .filter(|p| {
            !prefixes.iter().any(|q| q.len() < p.len() && p.starts_with(q.as_str()) && !is_wrapper(&p[q.len()..]))
        })
        .cloned()
        .collect();
    let best = candidates.iter().min_by_key(|p| (!p.contains("ema"), p.len())).cloned().unwrap_or_default();
    if best.is_empty() {
        return (map, best);
    }
    let out = map.into_iter().filter_map(|(k, v)| k.strip_prefix(best.as_str()).map(|s| (s.to_string(), v))).collect();
    (out, best)
}

fn is_wrapper(p: &str) -> bool {
    p.split('.').filter(|s| !s.is_empty()).all(|s| {
        matches!(
            s,
            "module"
                | "model"
                | "_orig_mod"
                | "ema"
                | "ema_model"
                | "model_ema"
                | "state_dict"
                | "ema_state_dict"
                | "net"
        )
    })
}

/// Decide the format from the key names.
pub fn detect(map: &TensorMap) -> Result<Format> {
    let has = |k: &str| map.contains_key(k);
    let any = |p: &str| map.keys().any(|k| k.starts_with(p));
    if any("dino_model.") {
        return Ok(Format::DinoSae);
    }
    if has("project_in.main.conv.weight") || (has("project_in.conv.weight") && any("project_out.")) {
        return Ok(Format::Decoder);
    }
    if has("embeddings.position_embeddings") {
        return Ok(Format::HfDinov2);
    }
    if has("embeddings.patch_embeddings.weight") || any("layer.0.attention.q_proj") || any("model.layer.0.") {
        return Ok(Format::HfDinov3);
    }
    if has("cls_token") && any("blocks.0.attn.qkv") && !has("pos_embed") {
        return Ok(Format::OfficialDinov3);
    }
    let sample: Vec<&String> = map.keys().take(6).collect();
    Err(EngineError::Checkpoint(format!(
        "unrecognised checkpoint: {} tensors, e.g. {sample:?} (expected DINOv3/DINOv2/DINO-SAE names)",
        map.len()
    )))
}

/// Source naming -> internal naming (backbone keys without prefix; DINO-SAE keeps `dino_model.` / `decoder.`).
pub fn to_internal(src: &SourceFile) -> Result<remap::Remapped> {
    let mut t = src.tensors.clone();
    match src.format {
        Format::OfficialDinov3 => {
            remap::apply_bias_masks(&mut t, "")?;
            remap::remap(t, &[remap::OFFICIAL_DINOV3], &[])
        }
        Format::HfDinov3 => {
            let t: TensorMap =
                t.into_iter().map(|(k, v)| (k.strip_prefix("model.").map(str::to_string).unwrap_or(k), v)).collect();
            let gated = t.keys().any(|k| k.contains("mlp.gate_proj"));
            let tables: Vec<remap::Table> =
                if gated { vec![remap::HF_DINOV3_GATED, remap::HF_DINOV3] } else { vec![remap::HF_DINOV3] };
            remap::remap(t, &tables, &[])
        }
        Format::HfDinov2 => remap::remap(t, &[remap::HF_DINOV2], &[]),
        Format::DinoSae => {
            remap::apply_bias_masks(&mut t, "dino_model.")?;
            // Backbone part through the official table, decoder passes through.
            let (bb, rest): (TensorMap, TensorMap) = t.into_iter().partition(|(k, _)| k.starts_with("dino_model."));
            let bb: TensorMap = bb.into_iter().map(|(k, v)| (k["dino_model.".len()..].to_string(), v)).collect();
            // Our own DINOv2-based models keep `pos_embed`.
            let mut r =
                remap::remap(bb, &[remap::OFFICIAL_DINOV3, &[("pos_embed", remap::Target::To("pos_embed"))]], &[])?;
            r.tensors = r.tensors.into_iter().map(|(k, v)| (format!("dino_model.{k}"), v)).collect();
            r.unexpected = r.unexpected.into_iter().map(|k| format!("dino_model.{k}")).collect();
            r.ignored = r.ignored.into_iter().map(|k| format!("dino_model.{k}")).collect();
            for (k, v) in rest {
                if k.starts_with("decoder.") {
                    r.tensors.insert(k, v);
                } else {
                    r.unexpected.push(k);
                }
            }
            Ok(r)
        }
        Format::Decoder => remap::remap(t, &[], &[""]),
    }
}

/// Size of axis `i` of a tensor whose layout a config is read from (a file may hold any shape).
fn axis(t: &crate::tensor_file::RawTensor, i: usize, what: &str) -> Result<usize> {
    t.shape
        .get(i)
        .copied()
        .ok_or_else(|| EngineError::Checkpoint(format!("{what} has shape {:?}: too few dimensions", t.shape)))
}

fn cfg_usize(cfg: Option<&Value>, key: &str) -> Option<usize> {
    cfg.and_then(|c| c.get(key)).and_then(Value::as_u64).map(|v| v as usize)
}

/// Infer a backbone config from internal-named tensors under `prefix` (`""` or `"dino_model."`).
pub fn guess_vit(src: &SourceFile, t: &TensorMap, prefix: &str) -> Result<VitConfig> {
    let hint = src.config.as_ref();
    // our own format carries the full config
    if let Some(our) = hint.and_then(|c| serde_json::from_value::<OurConfig>(c.clone()).ok()) {
        return Ok(our.sae.encoder);
    }
    let get = |k: &str| t.get(&format!("{prefix}{k}"));
    let cls = get("cls_token").ok_or_else(|| EngineError::Checkpoint("no cls_token: not a DINO backbone".into()))?;
    let dim = *cls.shape.last().unwrap_or(&0);
    let depth = (0..).take_while(|i| get(&format!("blocks.{i}.norm1.weight")).is_some()).count();
    let registers = get("storage_tokens").map(|r| axis(r, 1, "storage_tokens")).transpose()?.unwrap_or(0);
    let family = if get("pos_embed").is_some() { Family::Dinov2 } else { Family::Dinov3 };
    let (ffn, ffn_hidden) = if let Some(w) = get("blocks.0.mlp.fc1.weight") {
        (Ffn::Mlp, axis(w, 0, "blocks.0.mlp.fc1.weight")?)
    } else if let Some(w) = get("blocks.0.mlp.w1.weight") {
        (Ffn::Swiglu, axis(w, 0, "blocks.0.mlp.w1.weight")?)
    } else {
        return Err(EngineError::Checkpoint("no MLP weights in block 0".into()));
    };
    // Heads: config, else the RoPE periods buffer (len = head_dim / 4), else head_dim 64 (all hub models).
    let periods = src.tensors.keys().find(|k| k.ends_with("rope_embed.periods")).and_then(|k| src.tensors.get(k));
    // the official DINO-SAE config.json keeps the backbone's kwargs in `teacher_kwargs`
    let teacher = hint.and_then(|c| c.get("teacher_kwargs"));
    let heads = cfg_usize(hint, "num_attention_heads")
        .or(cfg_usize(teacher, "num_heads"))
        .or_else(|| periods.map(|p| dim / (4 * p.numel()).max(1)))
        .unwrap_or((dim / 64).max(1));
    let patch_size = get("patch_embed.proj.weight")
        .map(|w| axis(w, 2, "patch_embed.proj.weight"))
        .transpose()?
        .or(cfg_usize(hint, "patch_size"))
        .or(cfg_usize(teacher, "patch_size"))
        .unwrap_or(16);
    let pos_grid = get("pos_embed")
        .map(|p| axis(p, 1, "pos_embed"))
        .transpose()?
        .map(|n| (n.saturating_sub(1) as f64).sqrt().round() as usize)
        .unwrap_or(0);
    let model_type = hint.and_then(|c| c.get("model_type")).and_then(Value::as_str).unwrap_or("");
    // official DINOv3 kwargs: `layernorm` is eps 1e-6, `layernormbf16` (the hub models) 1e-5
    let teacher_str = |k: &str| teacher.and_then(|c| c.get(k)).and_then(Value::as_str);
    let teacher_eps = match teacher_str("norm_layer") {
        None => None,
        Some("layernorm") => Some(1e-6),
        Some("layernormbf16") => Some(1e-5),
        Some(o) => return Err(EngineError::Config(format!("teacher_kwargs.norm_layer {o:?} is not supported"))),
    };
    if let Some(o) = teacher_str("pos_embed_rope_normalize_coords").filter(|&o| o != "separate") {
        return Err(EngineError::Config(format!(
            "teacher_kwargs.pos_embed_rope_normalize_coords {o:?} is not supported (separate)"
        )));
    }
    let eps =
        hint.and_then(|c| c.get("layer_norm_eps")).and_then(Value::as_f64).or(teacher_eps).unwrap_or(match family {
            Family::Dinov3 => 1e-5,
            Family::Dinov2 => 1e-6,
        });
    let cfg = VitConfig {
        family,
        dim,
        depth,
        heads,
        ffn,
        ffn_hidden,
        registers,
        patch_size,
        layer_norm_eps: eps,
        layerscale: get("blocks.0.ls1.gamma").is_some(),
        qkv_bias: get("blocks.0.attn.qkv.bias").is_some(),
        rope_base: hint
            .and_then(|c| c.get("rope_theta"))
            .or(teacher.and_then(|c| c.get("pos_embed_rope_base")))
            .and_then(Value::as_f64)
            .unwrap_or(100.0),
        pos_grid,
        pos_antialias: family == Family::Dinov2 && (model_type == "dinov2_with_registers" || registers > 0),
        pos_offset: 0.0,
    };
    cfg.validate()?;
    Ok(cfg)
}

/// A loaded model and what loading found.
pub struct Loaded<M> {
    pub model: M,
    pub report: LoadReport,
    pub format: Format,
}

fn finish_report(ws: WeightSource, r: &remap::Remapped) -> LoadReport {
    let mut report = ws.finish();
    report.unexpected.extend(r.unexpected.iter().cloned());
    report.ignored.extend(r.ignored.iter().cloned());
    report
}

/// Load a DINO backbone (official/HF DINOv3, HF DINOv2).
pub fn load_backbone(path: impl AsRef<Path>, device: &Device, allow_incomplete: bool) -> Result<Loaded<Vit>> {
    let src = read(path)?;
    let r = to_internal(&src)?;
    let (prefix, stem) = match src.format {
        Format::DinoSae => ("dino_model.", true),
        Format::Decoder => return Err(EngineError::Checkpoint("this is a decoder, not a DINO backbone".into())),
        _ => ("", false),
    };
    let cfg = guess_vit(&src, &r.tensors, prefix)?;
    let mut ws = WeightSource::from_map(r.tensors.clone(), device);
    let model = Vit::load(&mut ws, prefix.trim_end_matches('.'), &cfg, stem);
    let mut report = finish_report(ws, &r);
    if stem {
        // The decoder half of a DINO-SAE file is expected when only the backbone is asked for.
        report.unexpected.retain(|k| !k.starts_with("decoder."));
    }
    if !allow_incomplete {
        report.check()?;
    }
    Ok(Loaded { model, report, format: src.format })
}

/// Load a full DINO-SAE (official state dict, or our folder with `config.json`), within the environment's memory
/// budget ([`load_sae_within`] takes one).
pub fn load_sae(path: impl AsRef<Path>, device: &Device, allow_incomplete: bool) -> Result<Loaded<DinoSae>> {
    load_sae_within(path, device, allow_incomplete, &Budget::from_env())
}

/// [`load_sae`] within `budget`: the file is parsed within it, and a config that asks for far more parameters than
/// the weights hold (or than the budget) is refused before any tensor is built.
pub fn load_sae_within(
    path: impl AsRef<Path>,
    device: &Device,
    allow_incomplete: bool,
    budget: &Budget,
) -> Result<Loaded<DinoSae>> {
    let src = read_within(path, budget)?;
    if src.format != Format::DinoSae {
        return Err(EngineError::Checkpoint(format!(
            "{} is a {}, not a DINO-SAE checkpoint (dino_model.* + decoder.*)",
            src.path.display(),
            src.format
        )));
    }
    let r = to_internal(&src)?;
    let cfg = match src.config.as_ref().and_then(|c| serde_json::from_value::<OurConfig>(c.clone()).ok()) {
        Some(our) => our.sae,
        None => {
            let encoder = guess_vit(&src, &r.tensors, "dino_model.")?;
            // the official config.json (decoder_config) when it lies beside the weights, else the keys
            let decoder = decoder_config(src.config.as_ref(), &r.tensors, "decoder.")?;
            // the stem ablation stores the backbone's patchify instead of the CNN stem; the hybrid stores both
            let embed = EmbedKind::from_keys(
                r.tensors.keys().any(|k| k.starts_with("dino_model.patch_embed.cnn.")),
                r.tensors.contains_key("dino_model.patch_embed.proj.weight"),
            );
            SaeConfig { encoder, decoder, pixels: PixelConfig::default(), embed }
        }
    };
    cfg.validate()?;
    let file_numel: usize = r.tensors.values().map(crate::tensor_file::RawTensor::numel).sum();
    crate::preflight::check_weights_match("the config", crate::preflight::sae_numel(&cfg), file_numel, budget)?;
    let mut ws = WeightSource::from_map(r.tensors.clone(), device);
    let model = DinoSae::load(&mut ws, &cfg)?;
    let report = finish_report(ws, &r);
    if !allow_incomplete {
        report.check()?;
    }
    Ok(Loaded { model, report, format: src.format })
}

/// Load a bare decoder state dict with a given config.
pub fn load_decoder(path: impl AsRef<Path>, cfg: &DecoderConfig, device: &Device) -> Result<Loaded<Decoder>> {
    let t = read_safetensors(path.as_ref())?;
    let mut ws = WeightSource::from_map(t, device);
    let model = Decoder::load(&mut ws, "", cfg)?;
    let report = ws.finish();
    report.check()?;
    Ok(Loaded { model, report, format: Format::Decoder })
}

/// Save a DINO-SAE in our format: `dir/model.safetensors` + `dir/config.json`.
pub fn save_sae(model: &DinoSae, dir: impl AsRef<Path>, precision: crate::tensor_file::Precision) -> Result<()> {
    let dir = dir.as_ref();
    let tensors = crate::weights::export(model, &model.names)?;
    let cfg = OurConfig { kind: "dino_sae".into(), sae: model.cfg.clone() };
    let json = serde_json::to_string_pretty(&cfg).map_err(|e| EngineError::Config(e.to_string()))?;
    crate::tensor_file::write_safetensors(dir.join("model.safetensors"), &tensors, &Default::default(), precision)?;
    crate::tensor_file::atomic_write(&dir.join("config.json"), json.as_bytes())?;
    Ok(())
}
