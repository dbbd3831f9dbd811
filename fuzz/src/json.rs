//! JSON mutations (configs, safetensors headers) and the JSON targets: our config.json, the official
//! `decoder_config` layout, sessions.

use serde_json::Value as Json;

use crate::harness::Target;
use crate::mutate::{Rng, interesting, mutate_bytes};
use crate::tensors::{latent_target, tiny_sae_folder};
use crate::{MIB, read, repo, scratch};
use engine::error::Result;

pub(super) fn json_number(r: &mut Rng) -> Json {
    match r.below(6) {
        0 => Json::from(interesting(r)),
        1 => Json::from(-(r.below(1 << 20) as i64) - 1),
        2 => serde_json::Number::from_f64(*r.pick(&[0.0, -0.0, 0.5, 1e-300, 1e300, 1.7976931348623157e308, -1e9]))
            .map(Json::Number)
            .unwrap_or(Json::Null),
        3 => Json::from(r.below(8)),
        4 => Json::from(r.below(5000)),
        _ => Json::from(1u64 << r.below(64)),
    }
}

pub(super) const WORDS: [&str; 24] = [
    "F32",
    "F16",
    "BF16",
    "F64",
    "I64",
    "U8",
    "BOOL",
    "F8_E4M3",
    "C64",
    "ResBlock",
    "EViT_GLU",
    "ConvPixelShuffle",
    "InterpolateConv",
    "duplicating",
    "trms2d",
    "silu",
    "relu",
    "dinov2",
    "dinov3",
    "mlp",
    "swiglu",
    "dino_sae",
    "",
    "x",
];

pub(super) fn json_leaf(r: &mut Rng) -> Json {
    match r.below(5) {
        0 => Json::Null,
        1 => Json::Bool(r.chance(0.5)),
        2 => Json::String(r.pick(&WORDS).to_string()),
        3 => Json::String("\u{0}é\u{202e}".repeat(1 + r.below(4))),
        _ => json_number(r),
    }
}

/// All paths to nodes of `v` (object keys and array indices).
pub(super) fn json_paths(v: &Json, path: &mut Vec<JsonKey>, out: &mut Vec<Vec<JsonKey>>) {
    out.push(path.clone());
    if out.len() > 4096 || path.len() > 32 {
        return;
    }
    match v {
        Json::Object(m) => {
            for (k, c) in m {
                path.push(JsonKey::Key(k.clone()));
                json_paths(c, path, out);
                path.pop();
            }
        }
        Json::Array(a) => {
            for (i, c) in a.iter().enumerate() {
                path.push(JsonKey::Index(i));
                json_paths(c, path, out);
                path.pop();
            }
        }
        _ => {}
    }
}

#[derive(Clone, Debug)]
pub(super) enum JsonKey {
    Key(String),
    Index(usize),
}

pub(super) fn json_at<'a>(v: &'a mut Json, path: &[JsonKey]) -> Option<&'a mut Json> {
    let mut cur = v;
    for k in path {
        cur = match (cur, k) {
            (Json::Object(m), JsonKey::Key(s)) => m.get_mut(s)?,
            (Json::Array(a), JsonKey::Index(i)) => a.get_mut(*i)?,
            _ => return None,
        };
    }
    Some(cur)
}

/// Structure-aware JSON mutation: replace a node's value (boundary numbers, other types, words), resize arrays,
/// drop or add keys, wrap a node in deep nesting.
pub fn mutate_json(r: &mut Rng, v: &mut Json) {
    for _ in 0..1 + r.below(3) {
        let mut paths = Vec::new();
        json_paths(v, &mut Vec::new(), &mut paths);
        let path = r.pick(&paths).clone();
        let Some(node) = json_at(v, &path) else { continue };
        match r.below(8) {
            0 | 1 => {
                if node.is_number() || r.chance(0.3) {
                    *node = json_number(r);
                } else {
                    *node = json_leaf(r);
                }
            }
            2 => {
                if let Json::Array(a) = node {
                    match r.below(3) {
                        0 => a.clear(),
                        1 if !a.is_empty() => {
                            let x = a[r.below(a.len())].clone();
                            for _ in 0..1 + r.below(8) {
                                a.push(x.clone());
                            }
                        }
                        _ => {
                            let l = a.len();
                            a.truncate(r.below(l + 1));
                        }
                    }
                } else {
                    *node = Json::Array((0..r.below(6)).map(|_| json_number(r)).collect());
                }
            }
            3 => {
                if let Json::Object(m) = node {
                    let keys: Vec<String> = m.keys().cloned().collect();
                    if !keys.is_empty() {
                        m.remove(r.pick(&keys));
                    }
                }
            }
            4 => {
                if let Json::Object(m) = node {
                    m.insert(r.pick(&WORDS).to_string(), json_leaf(r));
                }
            }
            5 => {
                // nest: {"a": {"a": ... x}} or [[[x]]]
                let depth = if r.chance(0.2) { 1 + r.below(300) } else { 1 + r.below(8) };
                let mut x = node.take();
                for _ in 0..depth {
                    x = if r.chance(0.5) { Json::Array(vec![x]) } else { serde_json::json!({ "a": x }) };
                }
                *node = x;
            }
            6 => {
                if let Json::Object(m) = node {
                    let keys: Vec<String> = m.keys().cloned().collect();
                    if keys.len() >= 2 {
                        let (a, b) = (r.pick(&keys).clone(), r.pick(&keys).clone());
                        let va = m.get(&a).cloned();
                        let vb = m.get(&b).cloned();
                        if let (Some(va), Some(vb)) = (va, vb) {
                            m.insert(a, vb);
                            m.insert(b, va);
                        }
                    }
                }
            }
            _ => {
                if let Json::Number(n) = node {
                    let x = n.as_i64().unwrap_or(1);
                    *node = Json::from(
                        x.wrapping_mul(*r.pick(&[2i64, 16, 1 << 20, -1, 0])).wrapping_add(r.below(3) as i64 - 1),
                    );
                } else {
                    *node = json_leaf(r);
                }
            }
        }
    }
}

/// Mutate JSON text: structure-aware when it parses (3 in 4), byte-level otherwise.
pub fn mutate_json_text(r: &mut Rng, data: &[u8], seeds: &[Vec<u8>]) -> Vec<u8> {
    if r.chance(0.75)
        && let Ok(mut v) = serde_json::from_slice::<Json>(data)
    {
        mutate_json(r, &mut v);
        return serde_json::to_vec_pretty(&v).unwrap_or_default();
    }
    mutate_bytes(r, data, seeds)
}

pub(super) fn config_target() -> Target {
    let (cfg, model) = tiny_sae_folder();
    let dir = scratch("config-target");
    let _ = std::fs::write(dir.join("model.safetensors"), &model);
    Target {
        name: "config",
        seeds: vec![cfg],
        mutate: Box::new(mutate_json_text),
        run: Box::new(move |b| {
            let dir = scratch("config-target");
            if !dir.join("model.safetensors").exists() {
                let _ = std::fs::write(dir.join("model.safetensors"), &model);
            }
            let p = dir.join("config.json");
            std::fs::write(&p, b).map_err(|e| engine::EngineError::io(&p, e))?;
            engine::checkpoint::load_sae(&dir, &engine::cpu(), false).map(|_| ())
        }),
        cap: |n| 64 * MIB + 64 * n,
    }
}

pub(super) fn decoder_config_target() -> Target {
    let seeds = vec![
        read("tests/fixtures/dinov2-evit-setA/decoder/config.json"),
        read("tests/fixtures/dinosae-setA/sae/config.json"),
    ];
    let weights =
        engine::tensor_file::read_safetensors(repo().join("tests/fixtures/dinov2-evit-setA/decoder/model.safetensors"))
            .unwrap_or_default();
    let numel: usize = weights.values().map(|t| t.numel()).sum();
    Target {
        name: "decoder-config",
        seeds: seeds.into_iter().filter(|s| !s.is_empty()).collect(),
        mutate: Box::new(mutate_json_text),
        run: Box::new(move |b| {
            let cfg = decoder_config_from_json(b)?;
            engine::preflight::check_weights_match(
                "decoder_config",
                engine::preflight::decoder_numel(&cfg),
                numel,
                &engine::preflight::Budget::from_env(),
            )?;
            let mut ws = engine::weights::WeightSource::from_map(weights.clone(), &engine::cpu());
            engine::model::decoder::Decoder::load(&mut ws, "", &cfg)?;
            // the config is what is fuzzed: a report of missing / mismatched weights is a fine outcome
            let _report = ws.finish();
            Ok(())
        }),
        cap: |n| 96 * MIB + 64 * n,
    }
}

/// The official layout: `{"decoder_config": {...}, ...}` (or the bare config), as the fixtures and released
/// checkpoints write it; validated.
pub fn decoder_config_from_json(b: &[u8]) -> Result<engine::model::decoder::DecoderConfig> {
    let bad = |e: String| engine::EngineError::Config(format!("decoder_config: {e}"));
    let v: Json = serde_json::from_slice(b).map_err(|e| bad(e.to_string()))?;
    let dc = v.get("decoder_config").cloned().unwrap_or(v);
    let cfg: engine::model::decoder::DecoderConfig = serde_json::from_value(dc).map_err(|e| bad(e.to_string()))?;
    cfg.validate()?;
    Ok(cfg)
}

pub(super) fn session_target() -> Target {
    let mut s = engine::worker::session::Session {
        image: Some("photo.jpg".into()),
        latents: Some("s.latents.safetensors".into()),
        ..Default::default()
    };
    s.edit.patches = vec![1, 2, 3];
    s.ui = serde_json::json!({ "tab": "steer", "zoom": 1.5 });
    let seed = serde_json::to_vec_pretty(&s).unwrap_or_default();
    let plain = serde_json::to_vec_pretty(&engine::worker::session::Session::default()).unwrap_or_default();
    let latents = latent_target().seeds.first().cloned().unwrap_or_default();
    Target {
        name: "session",
        seeds: vec![seed, plain],
        mutate: Box::new(mutate_json_text),
        run: Box::new(move |b| {
            let dir = scratch("session");
            let _ = std::fs::write(dir.join("s.latents.safetensors"), &latents);
            let p = dir.join("s.json");
            std::fs::write(&p, b).map_err(|e| engine::EngineError::io(&p, e))?;
            engine::worker::session::Session::load(&p).map(|_| ())
        }),
        cap: |n| 16 * MIB + 64 * n,
    }
}
