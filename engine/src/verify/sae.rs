//! The autoencoder half of the fixtures: DINOv3 (HF and official layouts), DINOv2 (+ registers), the DINO-SAE
//! (HCPE stem + decoder), the decoder alone, the CnnPatchEmbed-vs-teacher chain, and the float64 sphere formulas.

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor};

use crate::checkpoint::{self, load_backbone, load_sae};
use crate::error::{EngineError, Result};
use crate::model::decoder::{Decoder, DecoderConfig};
use crate::model::nn::Probe;
use crate::model::sae::{PixelConfig, tokens_to_map};
use crate::model::vit::Vit;
use crate::resize::resize_bicubic;
use crate::sphere::{cosine_last, f64ref};
use crate::tensor_file::{RawTensor, TensorMap, read_safetensors, read_safetensors_f64};
use crate::weights::WeightSource;

use super::{Check, Report, TOL, TOL_BICUBIC, compare, compare_all};

fn need<'a>(io: &'a TensorMap, k: &str, part: &str) -> Result<&'a RawTensor> {
    io.get(k).ok_or_else(|| EngineError::Checkpoint(format!("{part}: io.safetensors has no `{k}`")))
}

/// Check our ImageNet preprocessing of the stored u8 image against the stored `pixel_values`.
fn check_preprocess(report: &mut Report, part: &str, io: &TensorMap, prefix: &str) {
    let (Some(u8img), Some(pv)) =
        (io.get(&format!("{prefix}input_image_u8")), io.get(&format!("{prefix}pixel_values")))
    else {
        return;
    };
    let [b, h, w, _] = [u8img.shape[0], u8img.shape[1], u8img.shape[2], u8img.shape[3]];
    let px = PixelConfig::default();
    let mut data = vec![0f32; b * 3 * h * w];
    for bi in 0..b {
        for c in 0..3 {
            for i in 0..h * w {
                let v = u8img.data[(bi * h * w + i) * 3 + c];
                data[(bi * 3 + c) * h * w + i] = (v / 255.0 - px.mean[c]) / px.std[c];
            }
        }
    }
    let ours = RawTensor { shape: vec![b, 3, h, w], data };
    compare(report, format!("{part}:{prefix}preprocess(input_image_u8) vs pixel_values"), &ours, pv, TOL);
}

fn run_vit(model: &Vit, pixels: &RawTensor, device: &Device) -> Result<TensorMap> {
    let x: Tensor<4> = pixels.to_tensor(device)?;
    let mut probe = Probe::on();
    let out = model.forward(x, &mut probe);
    probe.put("pooler_output", &out.cls());
    Ok(probe.out)
}

pub(super) fn dinov3_part(dir: &Path, report: &mut Report, device: &Device) -> Result<()> {
    let io = read_safetensors(dir.join("io.safetensors"))?;
    check_preprocess(report, "dinov3", &io, "");
    let pixels = need(&io, "pixel_values", "dinov3")?;
    for variant in ["hf", "official"] {
        let vdir = dir.join(variant);
        let file = ["model.safetensors", "model.pth"].iter().map(|f| vdir.join(f)).find(|p| p.exists());
        let Some(file) = file else { continue };
        let loaded = load_backbone(&file, device, false)?;
        let part = format!("dinov3/{variant}");
        report.parts.push(format!("{part}: {} ({})", loaded.format, loaded.report.summary(0)));
        let ours = run_vit(&loaded.model, pixels, device)?;
        // rope_periods is compared below, from the config's formula
        compare_all(report, &part, &ours, &io, "", TOL, &["pixel_values", "rope_periods"]);
        if let Some(p) = io.get("rope_periods") {
            let cfg = &loaded.model.cfg;
            let ours: Vec<f32> =
                crate::model::dinov3::rope_periods(cfg.head_dim(), cfg.rope_base).iter().map(|&v| v as f32).collect();
            compare(report, format!("{part}:rope_periods"), &RawTensor::new(vec![ours.len()], ours)?, p, TOL);
        }
        // The .pth copy of the official weights must load to the same model.
        let pth = vdir.join("model.pth");
        if variant == "official" && pth.exists() && file != pth {
            let l2 = load_backbone(&pth, device, false)?;
            let o2 = run_vit(&l2.model, pixels, device)?;
            compare_all(report, "dinov3/official(.pth)", &o2, &io, "last_hidden_state", TOL, &[]);
        }
    }
    Ok(())
}

pub(super) fn sae_part(dir: &Path, report: &mut Report, device: &Device) -> Result<()> {
    let io = read_safetensors(dir.join("io.safetensors"))?;
    let loaded = load_sae(dir.join("model.safetensors"), device, false)?;
    report.parts.push(format!("sae: {} ({})", loaded.format, loaded.report.summary(0)));
    let m = &loaded.model;
    let x: Tensor<4> = need(&io, "pixel_values", "sae")?.to_tensor(device)?;
    let mut probe = Probe::on();
    let out = m.encode_full(x, &mut probe)?;
    probe.put("patch_tokens", &out.patch_tokens());
    probe.put("cls_token", &out.cls());
    probe.put("storage_tokens", &out.registers());
    let z = tokens_to_map(out.patch_tokens(), out.grid);
    probe.put("decoder_input", &z);
    // Decode the reference latent, so decoder checks are independent of encoder error.
    let z_ref: Tensor<4> = io.get("decoder_input").map(|t| t.to_tensor(device)).transpose()?.unwrap_or(z);
    probe.prefix = "decoder.".into();
    let recon = m.decode_probed(z_ref, &mut probe)?;
    probe.prefix.clear();
    probe.put("recon", &recon);
    compare_all(report, "sae", &probe.out, &io, "", TOL, &["pixel_values"]);
    Ok(())
}

pub(super) fn sphere_part(file: &Path, report: &mut Report) -> Result<()> {
    let map = read_safetensors(file)?;
    let radii: Vec<String> = map.keys().filter_map(|k| k.strip_suffix(".radius").map(str::to_string)).collect();
    for p in radii {
        let g = |k: &str| read_safetensors_f64(file, &format!("{p}.{k}"));
        let (_, r) = g("radius")?;
        let r = r[0];
        let (s0, x0) = g("x0")?;
        let (_, x1) = g("x1")?;
        let (_, v) = g("v")?;
        let (_, t) = g("t")?;
        let (_, dt) = g("dt")?;
        let (n, d) = (s0[0], s0[1]);
        let row = |a: &[f64], i: usize| a[i * d..(i + 1) * d].to_vec();
        let mut outs: Vec<(&str, Vec<f64>)> = Vec::new();
        let mut collect = |name: &'static str, f: &dyn Fn(usize) -> Vec<f64>| {
            outs.push((name, (0..n).flat_map(f).collect()));
        };
        collect("theta", &|i| vec![f64ref::theta(&row(&x0, i), &row(&x1, i))]);
        collect("geodesic_dist", &|i| vec![r * f64ref::theta(&row(&x0, i), &row(&x1, i))]);
        collect("slerp", &|i| f64ref::slerp(&row(&x0, i), &row(&x1, i), t[i]));
        collect("log_x0_x1", &|i| f64ref::log(&row(&x0, i), &row(&x1, i), r));
        collect("exp_x0_t_log", &|i| {
            let l: Vec<f64> = f64ref::log(&row(&x0, i), &row(&x1, i), r).iter().map(|v| v * t[i]).collect();
            f64ref::exp(&row(&x0, i), &l, r)
        });
        collect("v_tan", &|i| f64ref::proj(&row(&x0, i), &row(&v, i), r));
        collect("exp_x0_vtan", &|i| f64ref::exp(&row(&x0, i), &f64ref::proj(&row(&x0, i), &row(&v, i), r), r));
        collect("euler_proj_step", &|i| f64ref::euler_proj_step(&row(&x0, i), &row(&v, i), dt[i], r));
        collect("exp_step", &|i| {
            let vt: Vec<f64> = f64ref::proj(&row(&x0, i), &row(&v, i), r).iter().map(|a| a * dt[i]).collect();
            f64ref::exp(&row(&x0, i), &vt, r)
        });
        for (name, ours) in outs {
            let key = format!("{p}.{name}");
            let Ok((_, reference)) = read_safetensors_f64(file, &key) else {
                report.skipped.push((format!("sphere:{key}"), "not in file".into()));
                continue;
            };
            let max_abs = ours.iter().zip(&reference).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
            let ref_max = reference.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            let max_abs = if ours.len() == reference.len() { max_abs } else { f64::INFINITY };
            report.checks.push(Check {
                name: format!("sphere(f64):{key}"),
                shape: vec![reference.len()],
                max_abs,
                ref_max,
                tol: 1e-10,
            });
        }
    }
    report.parts.push("sphere: float64 reference formulas".into());
    Ok(())
}

pub(super) fn dinov2_part(dir: &Path, name: &str, report: &mut Report, device: &Device) -> Result<()> {
    let io = read_safetensors(dir.join("io.safetensors"))?;
    let mut loaded = load_backbone(dir.join("hf"), device, false)?;
    report.parts.push(format!("{name}: {} ({})", loaded.format, loaded.report.summary(0)));
    let m = loaded.model.cfg.pos_grid;
    for prefix in ["", "extra."] {
        let Some(px) = io.get(&format!("{prefix}pixel_values")) else { continue };
        check_preprocess(report, name, &io, prefix);
        let ps = loaded.model.cfg.patch_size;
        let interpolated = px.shape[2] / ps != m || px.shape[3] / ps != m;
        let tol = if interpolated { TOL_BICUBIC } else { TOL };
        let ours = run_vit(&loaded.model, px, device)?;
        let ours: TensorMap = ours.into_iter().map(|(k, v)| (format!("{prefix}{k}"), v)).collect();
        let skip: Vec<String> =
            // compared below: the official +0.1 variant, and the pretrained table itself
            ["pixel_values", "pos_embed_interp_official_offset0.1", "last_hidden_state_official_offset0.1", "pos_embed_pretrained"]
                .iter()
                .map(|s| format!("{prefix}{s}"))
                .collect();
        let skip: Vec<&str> = skip.iter().map(String::as_str).collect();
        let keys: TensorMap = io
            .iter()
            .filter(|(k, _)| if prefix.is_empty() { !k.starts_with("extra.") } else { k.starts_with(prefix) })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        compare_all(report, name, &ours, &keys, prefix, tol, &skip);
        if let Some(table) = io.get(&format!("{prefix}pos_embed_pretrained")) {
            let ours = RawTensor::from_tensor(
                loaded
                    .model
                    .pos
                    .as_ref()
                    .map(|p| p.table.val())
                    .ok_or_else(|| EngineError::Checkpoint(format!("{name}: model has no position table")))?,
            )?;
            compare(report, format!("{name}:{prefix}pos_embed_pretrained"), &ours, table, TOL);
        }
    }
    // The official torch.hub variant (+0.1 offset, scale_factor) with the same weights.
    if let (Some(px), Some(pos)) = (io.get("pixel_values"), loaded.model.pos.as_mut())
        && io.contains_key("last_hidden_state_official_offset0.1")
    {
        pos.offset = 0.1;
        pos.antialias = false;
        let ours = run_vit(&loaded.model, px, device)?;
        let ours: TensorMap = ours.into_iter().map(|(k, v)| (format!("{k}_official_offset0.1"), v)).collect();
        for k in ["pos_embed_interp_official_offset0.1", "last_hidden_state_official_offset0.1"] {
            if let (Some(o), Some(r)) = (ours.get(k), io.get(k)) {
                compare(report, format!("{name}:{k}"), o, r, TOL_BICUBIC);
            }
        }
    }
    Ok(())
}

pub(super) fn decoder_part(dir: &Path, report: &mut Report, device: &Device) -> Result<()> {
    let io = read_safetensors(dir.join("io.safetensors"))?;
    // the official DecoderConfig from config.json; without one, what the state dict's keys say
    let cfg = if dir.join("config.json").exists() {
        read_decoder_config(&dir.join("config.json"))?
    } else {
        checkpoint::guess_decoder(&read_safetensors(dir.join("model.safetensors"))?, "")?
    };
    let loaded = checkpoint::load_decoder(dir.join("model.safetensors"), &cfg, device)?;
    report.parts.push(format!(
        "decoder: {:?} blocks, {:?} ({})",
        cfg.block_type,
        cfg.upsample_block_type,
        loaded.report.summary(0)
    ));
    run_decoder(&loaded.model, &io, "decoder", report, device)
}

fn run_decoder(dec: &Decoder, io: &TensorMap, part: &str, report: &mut Report, device: &Device) -> Result<()> {
    for prefix in ["", "small."] {
        let Some(lat) = io.get(&format!("{prefix}latent")) else { continue };
        let mut probe = Probe::on();
        probe.prefix = prefix.into();
        let out = dec.forward(lat.to_tensor(device)?, &mut probe);
        probe.put("output", &out);
        let keys: TensorMap = io
            .iter()
            .filter(|(k, _)| if prefix.is_empty() { !k.starts_with("small.") } else { k.starts_with(prefix) })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let latent_key = format!("{prefix}latent");
        compare_all(report, part, &probe.out, &keys, prefix, TOL, &[latent_key.as_str()]);
    }
    Ok(())
}

fn read_decoder_config(path: &Path) -> Result<DecoderConfig> {
    let s = std::fs::read_to_string(path).map_err(|e| EngineError::io(path, e))?;
    let v: serde_json::Value =
        serde_json::from_str(&s).map_err(|e| EngineError::Config(format!("{}: {e}", path.display())))?;
    let dc = v.get("decoder_config").cloned().unwrap_or(v);
    serde_json::from_value(dc).map_err(|e| EngineError::Config(format!("{}: decoder_config: {e}", path.display())))
}

/// Resolve a config reference like `"../dinov2/hf (Dinov2Model)"` relative to `dir`.
fn config_path(dir: &Path, v: Option<&serde_json::Value>, default: &str) -> PathBuf {
    let s = v.and_then(|v| v.as_str()).unwrap_or(default);
    dir.join(s.split_whitespace().next().unwrap_or(default))
}

pub(super) fn chain_part(dir: &Path, report: &mut Report, device: &Device) -> Result<()> {
    let io = read_safetensors(dir.join("io.safetensors"))?;
    let cfg_s =
        std::fs::read_to_string(dir.join("config.json")).map_err(|e| EngineError::io(dir.join("config.json"), e))?;
    let cfg: serde_json::Value = serde_json::from_str(&cfg_s).map_err(|e| EngineError::Config(e.to_string()))?;
    let teacher_dir = config_path(dir, cfg.get("teacher"), "../dinov2/hf");
    let decoder_dir = config_path(dir, cfg.get("decoder"), "../decoder");
    // Teacher: the unmodified DINOv2.
    let teacher = load_backbone(&teacher_dir, device, false)?;
    // Student: the same DINOv2 with the stem as patch embedding.
    let src = checkpoint::read(&teacher_dir)?;
    let mut internal = checkpoint::to_internal(&src)?.tensors;
    internal.retain(|k, _| !k.starts_with("patch_embed.proj"));
    for (k, v) in read_safetensors(dir.join("stem.safetensors"))? {
        internal.insert(format!("patch_embed.{k}"), v);
    }
    let mut ws = WeightSource::from_map(internal, device);
    let student = Vit::load(&mut ws, "", &teacher.model.cfg, true);
    let rep = ws.finish();
    rep.check()?;
    report.parts.push(format!("chain: student = stem + {} ({}); teacher = unmodified", teacher.format, rep.summary(0)));

    let px: Tensor<4> = need(&io, "pixel_values", "chain")?.to_tensor(device)?;
    let mut sp = Probe::on();
    let s_out = student.forward(px.clone(), &mut sp);
    let mut ours = TensorMap::new();
    for (k, v) in sp.out {
        let name = match k.strip_prefix("hidden_states.") {
            Some(i) => format!("student_hidden_states.{i}"),
            None if k == "last_hidden_state" => "student_last_hidden_state".into(),
            None => k,
        };
        ours.insert(name, v);
    }
    let (gh, gw) = s_out.grid;
    let ps = teacher.model.cfg.patch_size;
    let tpx = resize_bicubic(px, ps * gh, ps * gw, false, None);
    ours.insert("teacher_pixel_values".into(), RawTensor::from_tensor(tpx.clone())?);
    let mut tp = Probe::on();
    let t_out = teacher.model.forward(tpx, &mut tp);
    for (k, v) in tp.out {
        if let Some(i) = k.strip_prefix("hidden_states.") {
            ours.insert(format!("teacher_hidden_states.{i}"), v);
        } else if k == "last_hidden_state" {
            ours.insert("teacher_last_hidden_state".into(), v);
        }
    }
    let cos = cosine_last(s_out.patch_tokens(), t_out.patch_tokens());
    ours.insert("cos_patch".into(), RawTensor::from_tensor(cos)?);
    let cls = cosine_last(s_out.cls().unsqueeze_dim(1), t_out.cls().unsqueeze_dim(1));
    ours.insert("cos_cls".into(), RawTensor::from_tensor(cls.flatten::<1>(0, 1))?);
    let z = tokens_to_map(s_out.patch_tokens(), s_out.grid);
    ours.insert("decoder_input".into(), RawTensor::from_tensor(z.clone())?);
    let dcfg = read_decoder_config(&decoder_dir.join("config.json"))?;
    let dec = checkpoint::load_decoder(decoder_dir.join("model.safetensors"), &dcfg, device)?;
    ours.insert("recon".into(), RawTensor::from_tensor(dec.model.forward(z, &mut Probe::default()))?);
    // the chain always goes through the teacher's bicubic input resize
    let tol = TOL_BICUBIC;
    check_preprocess(report, "chain", &io, "");
    compare_all(report, "chain", &ours, &io, "", tol, &["pixel_values"]);
    Ok(())
}
