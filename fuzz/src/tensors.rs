//! safetensors mutations (header JSON: dtypes, shapes, offsets, length) and the safetensors targets: the raw
//! reader, our checkpoint folder through the whole loader, latent files.

use serde_json::Value as Json;

use crate::harness::Target;
use crate::json::{WORDS, mutate_json};
use crate::mutate::{Rng, interesting, mutate_bytes};
use crate::{MIB, read, scratch};

/// Split a safetensors file into (header JSON, data).
pub fn split_safetensors(b: &[u8]) -> Option<(Json, &[u8])> {
    let n = u64::from_le_bytes(b.get(..8)?.try_into().ok()?) as usize;
    let h = b.get(8..8usize.checked_add(n)?)?;
    Some((serde_json::from_slice(h).ok()?, &b[8 + n..]))
}

/// Join a header and data into a safetensors file (`len_delta` skews the header length field).
pub fn join_safetensors(h: &Json, data: &[u8], len_delta: i64) -> Vec<u8> {
    let hb = serde_json::to_vec(h).unwrap_or_default();
    let mut out = ((hb.len() as i64 + len_delta) as u64).to_le_bytes().to_vec();
    out.extend(hb);
    out.extend(data);
    out
}

/// safetensors-aware: rewrite a tensor's dtype, shape or data offsets (boundary values, swapped, beyond the
/// file), the header length, nested metadata; else byte-level.
pub fn mutate_safetensors(r: &mut Rng, data: &[u8], seeds: &[Vec<u8>]) -> Vec<u8> {
    let Some((mut h, body)) = split_safetensors(data).filter(|_| r.chance(0.8)) else {
        return mutate_bytes(r, data, seeds);
    };
    let mut body = body.to_vec();
    if !h.is_object() {
        mutate_json(r, &mut h);
        return join_safetensors(&h, &body, 0);
    }
    let names: Vec<String> = h
        .as_object()
        .map(|m| m.iter().filter(|(k, v)| *k != "__metadata__" && v.is_object()).map(|(k, _)| k.clone()).collect())
        .unwrap_or_default();
    let mut delta = 0i64;
    let pick = |r: &mut Rng| if names.is_empty() { String::new() } else { r.pick(&names).clone() };
    match r.below(8) {
        0 if !names.is_empty() => {
            let n = pick(r);
            if let Some(t) = h.get_mut(&n).and_then(Json::as_object_mut) {
                t.insert("dtype".into(), Json::String(r.pick(&WORDS[..9]).to_string()));
            }
        }
        1 if !names.is_empty() => {
            let n = pick(r);
            if let Some(s) = h.get_mut(&n).and_then(|t| t.get_mut("shape")).and_then(Json::as_array_mut) {
                let dims: Vec<u64> = s.iter().filter_map(Json::as_u64).collect();
                match r.below(6) {
                    0 if !s.is_empty() => {
                        let i = r.below(s.len());
                        s[i] = Json::from(interesting(r));
                    }
                    1 => s.push(Json::from(interesting(r))),
                    2 => s.clear(),
                    // same element count, other layout: flattened, reversed, unit dims added or dropped
                    3 | 4 if dims.len() == s.len() => {
                        let mut d = dims.clone();
                        match r.below(4) {
                            0 => d = vec![dims.iter().fold(1u64, |a, &x| a.wrapping_mul(x))],
                            1 => d.reverse(),
                            2 => d.insert(r.below(d.len() + 1), 1),
                            _ => d.retain(|&x| x != 1),
                        }
                        *s = d.into_iter().map(Json::from).collect();
                    }
                    _ => {
                        // a product that overflows usize
                        *s = vec![Json::from(1u64 << 32), Json::from(1u64 << 32), Json::from(16u64)];
                    }
                }
            }
        }
        2 if !names.is_empty() => {
            let n = pick(r);
            let len = body.len() as u64;
            if let Some(o) = h.get_mut(&n).and_then(|t| t.get_mut("data_offsets")).and_then(Json::as_array_mut)
                && o.len() == 2
            {
                match r.below(4) {
                    0 => o.swap(0, 1),
                    1 => o[1] = Json::from(interesting(r)),
                    2 => o[0] = Json::from(interesting(r)),
                    _ => o[1] = Json::from(len + 1 + r.below(1 << 20) as u64),
                }
            }
        }
        3 => delta = *r.pick(&[-1i64, 1, -8, 8, 1 << 30, -(1 << 20)]),
        4 => {
            let mut nest = Json::String("x".into());
            for _ in 0..r.below(300) {
                nest = serde_json::json!({ "k": nest });
            }
            if let Some(m) = h.as_object_mut() {
                m.insert("__metadata__".into(), serde_json::json!({ "source": nest.to_string() }));
            }
        }
        5 => body.truncate(r.below(body.len() + 1)),
        6 if names.len() >= 2 => {
            // two tensors over the same bytes, or one over another's range
            let (a, b) = (pick(r), pick(r));
            let offsets = h.get(&b).and_then(|t| t.get("data_offsets")).cloned();
            if let (Some(o), Some(t)) = (offsets, h.get_mut(&a).and_then(Json::as_object_mut)) {
                t.insert("data_offsets".into(), o);
            }
        }
        _ => {
            mutate_json(r, &mut h);
        }
    }
    join_safetensors(&h, &body, delta)
}

/// A tiny DINO-SAE in our folder format (config.json + model.safetensors bytes), fast to load.
pub fn tiny_sae_folder() -> (Vec<u8>, Vec<u8>) {
    let dir = scratch("tiny-sae-seed");
    let cfg = tiny_sae_config();
    let device = engine::cpu();
    if let Ok((m, _)) = engine::model::sae::DinoSae::random(&cfg, 0, &device) {
        let _ = engine::checkpoint::save_sae(&m, &dir, engine::tensor_file::Precision::F16);
    }
    (
        std::fs::read(dir.join("config.json")).unwrap_or_default(),
        std::fs::read(dir.join("model.safetensors")).unwrap_or_default(),
    )
}

/// The config of [`tiny_sae_folder`]: a DINOv2-style ViT of dim 16 with one block and the patchify embedding; a five-stage (x16) ResBlock
/// decoder of widths 8-16.
pub fn tiny_sae_config() -> engine::model::sae::SaeConfig {
    let mut cfg = engine::model::sae::SaeConfig::small_dinov2();
    cfg.encoder.dim = 16;
    cfg.encoder.depth = 1;
    cfg.encoder.heads = 2;
    cfg.encoder.ffn_hidden = 32;
    cfg.encoder.registers = 1;
    cfg.encoder.pos_grid = 2;
    // the resized patchify instead of the stem: a file of a few hundred kB that loads in milliseconds
    cfg.embed = engine::model::sae::EmbedKind::Patchify;
    cfg.decoder = engine::model::decoder::DecoderConfig::small(16);
    cfg.decoder.width_list = vec![8, 8, 16, 16, 16];
    cfg.decoder.depth_list = vec![0, 1, 1, 1, 1];
    cfg.decoder.block_type = vec![engine::model::decoder::BlockType::ResBlock];
    cfg
}

pub(super) fn safetensors_target() -> Target {
    let mut seeds = vec![read("tests/fixtures/dinosae-setA/dinov3/hf/model.safetensors")];
    let mut t = engine::tensor_file::TensorMap::new();
    t.insert("a".into(), engine::tensor_file::RawTensor { shape: vec![2, 3], data: vec![1.0; 6] });
    t.insert("b".into(), engine::tensor_file::RawTensor { shape: vec![4], data: vec![0.5; 4] });
    for p in [engine::tensor_file::Precision::F32, engine::tensor_file::Precision::F16] {
        let f = scratch("st-seed").join("s.safetensors");
        if engine::tensor_file::write_safetensors(
            &f,
            &t,
            &[("k".to_string(), "v".to_string())].into_iter().collect(),
            p,
        )
        .is_ok()
        {
            seeds.push(std::fs::read(&f).unwrap_or_default());
        }
    }
    Target {
        name: "safetensors",
        seeds: seeds.into_iter().filter(|s| !s.is_empty()).collect(),
        mutate: Box::new(mutate_safetensors),
        run: Box::new(|b| engine::tensor_file::safetensors_from_bytes(b).map(|_| ())),
        // every dtype becomes f32: at most 4 x (u8 / bool), plus the header
        cap: |n| 16 * MIB + 6 * n,
    }
}

pub(super) fn checkpoint_target() -> Target {
    let (_, tiny) = tiny_sae_folder();
    let seeds = vec![tiny, read("tests/fixtures/dinosae-setA/dinov3/hf/model.safetensors")];
    Target {
        name: "checkpoint",
        seeds: seeds.into_iter().filter(|s| !s.is_empty()).collect(),
        mutate: Box::new(mutate_safetensors),
        run: Box::new(|b| {
            let p = scratch("checkpoint").join("model.safetensors");
            std::fs::write(&p, b).map_err(|e| engine::EngineError::io(&p, e))?;
            let src = engine::checkpoint::read(&p)?;
            match src.format {
                engine::checkpoint::Format::DinoSae => {
                    engine::checkpoint::load_sae(&p, &engine::cpu(), false).map(|_| ())
                }
                engine::checkpoint::Format::Decoder => {
                    engine::checkpoint::guess_decoder(&engine::checkpoint::to_internal(&src)?.tensors, "").map(|_| ())
                }
                _ => engine::checkpoint::load_backbone(&p, &engine::cpu(), false).map(|_| ()),
            }
        }),
        cap: |n| 64 * MIB + 16 * n,
    }
}

pub(super) fn latent_target() -> Target {
    let mut t = engine::tensor_file::TensorMap::new();
    t.insert(
        "latent".into(),
        engine::tensor_file::RawTensor { shape: vec![1, 16, 3, 4], data: (0..192).map(|i| (i as f32).sin()).collect() },
    );
    t.insert("cls".into(), engine::tensor_file::RawTensor { shape: vec![1, 16], data: vec![0.1; 16] });
    let f = scratch("latent-seed").join("l.safetensors");
    let mut seeds = Vec::new();
    for p in [engine::tensor_file::Precision::F32, engine::tensor_file::Precision::F16] {
        if engine::tensor_file::write_safetensors(&f, &t, &Default::default(), p).is_ok() {
            seeds.push(std::fs::read(&f).unwrap_or_default());
        }
    }
    Target {
        name: "latent",
        seeds,
        mutate: Box::new(mutate_safetensors),
        run: Box::new(|b| {
            let z = engine::tensor_file::latent_from_bytes(b, Some(16))?;
            let cfg = tiny_sae_config();
            engine::preflight::check_decode(
                &cfg,
                z.shape[0],
                z.shape[2],
                z.shape[3],
                &engine::preflight::Budget::bytes(256 << 20),
            )?;
            Ok(())
        }),
        cap: |n| 16 * MIB + 6 * n,
    }
}
