//! Parity of the generative half against a reference folder laid out like `shared/fixtures/dit-setA`:
//! `ddt/` (RAE DiT^DH), `lightningdit/` (hustvl LightningDiT), `transport/` (RAE's Euclidean flow matching:
//! training targets and an Euler + CFG sampling run, with the DDT weights), `sphere/sphere_rfm.safetensors`
//! (float64 spherical RFM formulas). Configs, shapes, labels, times, shifts and scales are all read from the
//! folder (`config.json` and the tensors), so other seeds and sizes run unchanged.
//!
//! Criterion as in [`crate::verify`]: `max|ours - ref| <= tol * max(1, max|ref|)`, tol = 1e-4 for every
//! float32 model tensor. The spherical formulas are checked twice: our f32 tensor code (the one training and
//! sampling use) at 1e-4, and the f64 per-token formulas ([`crate::rfm::f64ref`]) at 1e-10.

use std::path::Path;

use burn::tensor::{Device, Int, Tensor, TensorData};

use super::{Check, Report, TOL};
use crate::error::{EngineError, Result};
use crate::model::dit::{Dit, DitArch, DitConfig, rope_values, sincos_pos_embed};
use crate::model::nn::Probe;
use crate::rfm::{self, f64ref};
use crate::sampler::{self, EuclidSamplerConfig, SphereStep};
use crate::tensor_file::{RawTensor, TensorMap, read_safetensors, read_safetensors_f64};
use crate::weights::LoadReport;

/// Tolerance of the float64 sphere formulas.
pub const TOL_F64: f64 = 1e-10;

fn check(report: &mut Report, name: String, ours: &[f64], reference: &[f64], shape: Vec<usize>, tol: f64) {
    let max_abs = if ours.len() != reference.len() || ours.iter().any(|v| v.is_nan()) {
        f64::INFINITY
    } else {
        ours.iter().zip(reference).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max)
    };
    let ref_max = reference.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let name = if ours.len() != reference.len() {
        format!("{name} (size {} vs reference {})", ours.len(), reference.len())
    } else {
        name
    };
    report.checks.push(Check { name, shape, max_abs, ref_max, tol });
}

fn check_raw(report: &mut Report, name: String, ours: &RawTensor, reference: &RawTensor) {
    let o: Vec<f64> = ours.data.iter().map(|&v| v as f64).collect();
    let r: Vec<f64> = reference.data.iter().map(|&v| v as f64).collect();
    let name = if ours.shape != reference.shape && ours.numel() == reference.numel() {
        name
    } else if ours.shape != reference.shape {
        format!("{name} (shape {:?} vs {:?})", ours.shape, reference.shape)
    } else {
        name
    };
    check(report, name, &o, &r, reference.shape.clone(), TOL);
}

fn check_t<const D: usize>(report: &mut Report, name: String, ours: &Tensor<D>, reference: &RawTensor) -> Result<()> {
    let o = RawTensor::from_tensor(ours.clone())?;
    check_raw(report, name, &o, reference);
    Ok(())
}

fn need<'a>(m: &'a TensorMap, k: &str, file: &str) -> Result<&'a RawTensor> {
    m.get(k).ok_or_else(|| EngineError::Checkpoint(format!("{file}: no tensor `{k}`")))
}

fn ints(t: &RawTensor, device: &Device) -> Tensor<1, Int> {
    let v: Vec<i64> = t.data.iter().map(|&x| x as i64).collect();
    Tensor::from_data(TensorData::new(v, vec![t.numel()]), device)
}

fn load_report_check(report: &mut Report, part: &str, rep: &LoadReport) {
    report.parts.push(format!("{part}: {}", rep.summary(8)));
    let bad = rep.missing.len() + rep.unexpected.len() + rep.mismatched.len() + rep.non_finite.len();
    report.checks.push(Check {
        name: format!("{part}:state_dict keys (missing+unexpected+mismatched = {bad})"),
        shape: vec![rep.loaded.len()],
        max_abs: if bad == 0 { 0.0 } else { f64::INFINITY },
        ref_max: 1.0,
        tol: TOL,
    });
}

fn read_config(dir: &Path) -> Result<serde_json::Value> {
    let p = dir.join("config.json");
    let s = std::fs::read_to_string(&p).map_err(|e| EngineError::io(&p, e))?;
    serde_json::from_str(&s).map_err(|e| EngineError::Config(format!("{}: {e}", p.display())))
}

fn load_model(
    dir: &Path,
    cfg_json: &serde_json::Value,
    sub: &str,
    arch: DitArch,
    report: &mut Report,
    device: &Device,
) -> Result<Dit> {
    let v = cfg_json.get(sub).ok_or_else(|| EngineError::Config(format!("config.json has no `{sub}`")))?;
    let cfg = DitConfig::from_reference(arch, v)?;
    let sd = read_safetensors(dir.join(sub).join("state_dict.safetensors"))?;
    // The stored position and RoPE tables must equal what we regenerate for other grids.
    let g = cfg.input_size / cfg.patch_size;
    if let Some(pe) = sd.get("pos_embed") {
        let ours = RawTensor { shape: pe.shape.clone(), data: sincos_pos_embed(cfg.hidden_size, g, g) };
        check_raw(report, format!("{sub}:pos_embed (regenerated)"), &ours, pe);
    }
    let ropes: Vec<(&str, usize)> = match arch {
        DitArch::LightningDit => vec![("feat_rope", cfg.hidden_size / cfg.num_heads)],
        DitArch::Ddt => {
            let h = cfg.head.clone().unwrap_or(crate::model::dit::DdtHeadConfig {
                hidden_size: cfg.hidden_size,
                depth: 0,
                num_heads: cfg.num_heads,
            });
            vec![("enc_feat_rope", cfg.hidden_size / cfg.num_heads), ("dec_feat_rope", h.hidden_size / h.num_heads)]
        }
    };
    for (name, hd) in ropes {
        let (c, s) = rope_values(hd, g, g);
        for (part, vals) in [("freqs_cos", c), ("freqs_sin", s)] {
            if let Some(r) = sd.get(&format!("{name}.{part}")) {
                let ours = RawTensor { shape: r.shape.clone(), data: vals };
                check_raw(report, format!("{sub}:{name}.{part} (regenerated)"), &ours, r);
            }
        }
    }
    let (model, rep) = Dit::from_state_dict(sd, &cfg, device)?;
    load_report_check(report, sub, &rep);
    rep.check()?;
    Ok(model)
}

fn compare_probe(report: &mut Report, part: &str, ours: &TensorMap, refs: &TensorMap) {
    for (k, r) in refs {
        match ours.get(k) {
            Some(o) => check_raw(report, format!("{part}:{k}"), o, r),
            None => report.skipped.push((format!("{part}:{k}"), "not produced by our forward".into())),
        }
    }
}

fn model_part(
    dir: &Path,
    cfg: &serde_json::Value,
    sub: &str,
    arch: DitArch,
    report: &mut Report,
    device: &Device,
) -> Result<Dit> {
    let model = load_model(dir, cfg, sub, arch, report, device)?;
    let d = dir.join(sub);
    let inp = read_safetensors(d.join("inputs.safetensors"))?;
    let out = read_safetensors(d.join("outputs.safetensors"))?;
    let x: Tensor<4> = need(&inp, "x", sub)?.to_tensor(device)?;
    let t: Tensor<1> = need(&inp, "t", sub)?.to_tensor(device)?;
    let y = ints(need(&inp, "y", sub)?, device);
    let mut probe = Probe::on();
    let o = model.forward(x, t, y, &mut probe);
    let inter_path = d.join("intermediates.safetensors");
    if inter_path.exists() {
        compare_probe(report, sub, &probe.out, &read_safetensors(inter_path)?);
    }
    for key in ["out", "out_f64"] {
        if let Some(r) = out.get(key) {
            check_t(report, format!("{sub}:{key}"), &o, r)?;
        }
    }
    if let (Some(cx), Some(ct), Some(cy), Some(cs)) =
        (inp.get("cfg_x"), inp.get("cfg_t"), inp.get("cfg_y"), inp.get("cfg_scale"))
    {
        let cx: Tensor<4> = cx.to_tensor(device)?;
        let ct: Tensor<1> = ct.to_tensor(device)?;
        let cy = ints(cy, device);
        if let Some(r) = out.get("cfg_raw_out") {
            check_t(report, format!("{sub}:cfg_raw_out"), &model.velocity(cx.clone(), ct.clone(), cy.clone()), r)?;
        }
        if let Some(r) = out.get("cfg_out") {
            // hustvl's forward_with_cfg guides channels [:3] only; RAE's DDT guides all.
            let g = (arch == DitArch::LightningDit).then_some(3);
            let v = model.forward_with_cfg(cx, ct, cy, cs.data[0] as f64, g, (f64::NEG_INFINITY, f64::INFINITY));
            check_t(report, format!("{sub}:cfg_out"), &v, r)?;
        }
    }
    Ok(model)
}

fn transport_part(dir: &Path, cfg: &serde_json::Value, ddt: &Dit, report: &mut Report, device: &Device) -> Result<()> {
    let d = dir.join("transport");
    let tt = d.join("train_targets.safetensors");
    let mut shift = cfg.pointer("/transport/time_dist_shift").and_then(|v| v.as_f64()).unwrap_or(1.0);
    if tt.exists() {
        let m = read_safetensors(&tt)?;
        let f = "train_targets";
        if let Some(s) = m.get("time_dist_shift") {
            // The stored f32 copy agrees with config.json's value; config.json has full precision.
            check(report, "transport:time_dist_shift".into(), &[shift], &[s.data[0] as f64], vec![1], TOL);
        }
        let tb = need(&m, "t_base", f)?;
        let t_ours: Vec<f32> = tb.data.iter().map(|&v| rfm::shift_time(v as f64, shift) as f32).collect();
        let b = t_ours.len();
        let t = Tensor::<1>::from_data(TensorData::new(t_ours, vec![b]), device);
        check_t(report, "transport:t".into(), &t, need(&m, "t", f)?)?;
        let x1: Tensor<4> = need(&m, "x1_data", f)?.to_tensor(device)?;
        let x0: Tensor<4> = need(&m, "x0_noise", f)?.to_tensor(device)?;
        let (xt, ut) = rfm::linear_path(&x1, &x0, &t);
        check_t(report, "transport:xt".into(), &xt, need(&m, "xt", f)?)?;
        check_t(report, "transport:ut".into(), &ut, need(&m, "ut", f)?)?;
        let y = ints(need(&m, "y", f)?, device);
        let v = ddt.velocity(xt, t, y);
        check_t(report, "transport:model_out".into(), &v, need(&m, "model_out", f)?)?;
        check_t(
            report,
            "transport:loss_per_sample".into(),
            &rfm::per_sample_mse(&v, &ut),
            need(&m, "loss_per_sample", f)?,
        )?;
        if let (Some(r), rfm::TimeDist::LogitNormal { lo, hi, .. }) =
            (m.get("t_interval"), rfm::EuclidFm::default().time)
        {
            check(
                report,
                "transport:t_interval".into(),
                &[lo, hi],
                &r.data.iter().map(|&v| v as f64).collect::<Vec<_>>(),
                vec![2],
                TOL,
            );
        }
    }
    let sp = d.join("sample_euler_cfg.safetensors");
    if sp.exists() {
        let m = read_safetensors(&sp)?;
        let f = "sample_euler_cfg";
        if let Some(s) = read_safetensors(&tt).ok().and_then(|m| m.get("time_dist_shift").cloned())
            && cfg.pointer("/transport/time_dist_shift").is_none()
        {
            shift = s.data[0] as f64;
        }
        let tgrid = need(&m, "tgrid", f)?;
        let scale = need(&m, "cfg_scale", f)?.data[0] as f64;
        let points = tgrid.numel();
        let grid: Vec<f64> = sampler::euclid_time_grid(points, shift, 0.999);
        check(
            report,
            "transport:tgrid".into(),
            &grid,
            &tgrid.data.iter().map(|&v| v as f64).collect::<Vec<_>>(),
            vec![points],
            TOL,
        );
        let z: Tensor<4> = need(&m, "z", f)?.to_tensor(device)?;
        let n = z.dims()[0];
        let yall: Vec<i64> = need(&m, "y", f)?.data.iter().map(|&v| v as i64).collect();
        let scfg = EuclidSamplerConfig {
            points,
            shift,
            cfg_scale: scale,
            guided_channels: None,
            t_last: 0.999,
            final_radius: None,
        };
        let mut states = vec![z.clone()];
        let out = sampler::sample_euclid(ddt, z, &yall[..n], &scfg, &mut |_, s| {
            states.push(s.clone());
            true
        });
        let dup = |s: &Tensor<4>| Tensor::cat(vec![s.clone(), s.clone()], 0);
        let traj = Tensor::stack::<5>(states.iter().map(dup).collect(), 0);
        check_t(report, "transport:traj".into(), &traj, need(&m, "traj", f)?)?;
        let steps = points - 1;
        let step_x = Tensor::stack::<5>(states[..steps].iter().map(dup).collect(), 0);
        check_t(report, "transport:step_x".into(), &step_x, need(&m, "step_x", f)?)?;
        let st: Vec<f32> = (0..steps).flat_map(|k| vec![grid[k] as f32; 2 * n]).collect();
        let st = Tensor::<2>::from_data(TensorData::new(st, vec![steps, 2 * n]), device);
        check_t(report, "transport:step_t".into(), &st, need(&m, "step_t", f)?)?;
        check_t(report, "transport:samples".into(), &out.z, need(&m, "samples", f)?)?;
        // Per step on the reference inputs (no accumulated error): raw and guided model outputs.
        let rx = need(&m, "step_x", f)?;
        let rt = need(&m, "step_t", f)?;
        let per = rx.numel() / steps;
        let per_t = rt.numel() / steps;
        let mut raw_all = Vec::new();
        let mut cfg_all = Vec::new();
        let yy = ints(need(&m, "y", f)?, device);
        let mut shape = rx.shape.clone();
        shape.remove(0);
        for k in 0..steps {
            let xk = RawTensor { shape: shape.clone(), data: rx.data[k * per..(k + 1) * per].to_vec() };
            let xk: Tensor<4> = xk.to_tensor(device)?;
            let tk = Tensor::<1>::from_data(
                TensorData::new(rt.data[k * per_t..(k + 1) * per_t].to_vec(), vec![per_t]),
                device,
            );
            raw_all.push(ddt.velocity(xk.clone(), tk.clone(), yy.clone()));
            cfg_all.push(ddt.forward_with_cfg(xk, tk, yy.clone(), scale, None, (0.0, 1.0)));
        }
        check_t(report, "transport:step_v_raw".into(), &Tensor::stack::<5>(raw_all, 0), need(&m, "step_v_raw", f)?)?;
        check_t(report, "transport:step_v_cfg".into(), &Tensor::stack::<5>(cfg_all, 0), need(&m, "step_v_cfg", f)?)?;
    }
    Ok(())
}

/// Host [B, C, H, W] f64 array -> per-token vectors (b, h, w) over C.
struct Tokens {
    c: usize,
    hw: usize,
}

impl Tokens {
    fn get(&self, a: &[f64], b: usize, p: usize) -> Vec<f64> {
        (0..self.c).map(|c| a[(b * self.c + c) * self.hw + p]).collect()
    }
    fn put(&self, out: &mut [f64], b: usize, p: usize, v: &[f64]) {
        for (c, x) in v.iter().enumerate() {
            out[(b * self.c + c) * self.hw + p] = *x;
        }
    }
}

fn sphere_part(file: &Path, report: &mut Report, device: &Device) -> Result<()> {
    let g = |k: &str| read_safetensors_f64(file, k);
    let (xs, x) = g("x")?;
    let (_, e) = g("e")?;
    let r_ref = g("R")?.1[0];
    let a = g("a")?.1[0];
    let lam = g("lam")?.1[0];
    let (_, n) = g("logitnormal_draw")?;
    let (_, v) = g("v")?;
    let (_, dt) = g("dt")?;
    let (b, c, h, w) = (xs[0], xs[1], xs[2], xs[3]);
    let r = rfm::radius(c);
    let tk = Tokens { c, hw: h * w };
    let full = b * c * h * w;
    let scal = b * h * w;
    let mut o: std::collections::BTreeMap<&str, Vec<f64>> = std::collections::BTreeMap::new();
    let put_full =
        |o: &mut std::collections::BTreeMap<&str, Vec<f64>>, k: &'static str, bi: usize, p: usize, val: &[f64]| {
            let e = o.entry(k).or_insert_with(|| vec![0.0; full]);
            tk.put(e, bi, p, val);
        };
    // ---- float64 per-token formulas ----
    let t_base: Vec<f64> = n.iter().map(|v| 1.0 / (1.0 + (-v).exp())).collect();
    let t: Vec<f64> = t_base.iter().map(|&v| rfm::shift_time(v, a)).collect();
    let (mut mse_tan, mut mse_rad) = (0.0, 0.0);
    for bi in 0..b {
        for p in 0..h * w {
            let tok = f64ref::path(&tk.get(&x, bi, p), &tk.get(&e, bi, p), t[bi], r);
            let vv = tk.get(&v, bi, p);
            let (coef, v_rad, v_tan, u_tan) = f64ref::decompose(&vv, &tok.zt, &tok.ut);
            let zh = f64ref::scale(&tok.zt, 1.0 / crate::sphere::f64ref::norm(&tok.zt));
            mse_tan += f64ref::sub(&v_tan, &u_tan).iter().map(|d| d * d).sum::<f64>();
            mse_rad += v_rad.iter().map(|d| d * d).sum::<f64>();
            let (theta, vhat, pre, post) = f64ref::exp_step(&tok.zt, &v_tan, dt[bi], r);
            let si = bi * h * w + p;
            for (k, val) in [
                ("cos_omega", tok.cos_omega),
                ("omega", tok.omega),
                ("v_rad_coef", coef),
                ("theta", theta),
                ("v_tan_norm", crate::sphere::f64ref::norm(&v_tan)),
            ] {
                o.entry(k).or_insert_with(|| vec![0.0; scal])[si] = val;
            }
            put_full(&mut o, "z0", bi, p, &tok.z0);
            put_full(&mut o, "z1", bi, p, &tok.z1);
            put_full(&mut o, "zt", bi, p, &tok.zt);
            put_full(&mut o, "ut", bi, p, &tok.ut);
            put_full(&mut o, "zt_hat", bi, p, &zh);
            put_full(&mut o, "v_rad", bi, p, &v_rad);
            put_full(&mut o, "v_tan", bi, p, &v_tan);
            put_full(&mut o, "u_tan", bi, p, &u_tan);
            put_full(&mut o, "z_euler_tan", bi, p, &f64ref::euler_proj(&tok.zt, &v_tan, dt[bi], r));
            put_full(&mut o, "z_euler_raw", bi, p, &f64ref::euler_proj(&tok.zt, &vv, dt[bi], r));
            put_full(&mut o, "vhat", bi, p, &vhat);
            put_full(&mut o, "z_exp_pre", bi, p, &pre);
            put_full(&mut o, "z_exp", bi, p, &post);
        }
    }
    let (mt, mr) = (mse_tan / full as f64, mse_rad / full as f64);
    let tokens = scal as f64;
    o.insert("R", vec![r]);
    o.insert("t_base", t_base.clone());
    o.insert("t", t.clone());
    o.insert("mse_tan", vec![mt]);
    o.insert("mse_rad", vec![mr]);
    o.insert("loss", vec![mt + lam * mr]);
    o.insert("tok_mse_tan", vec![mse_tan / tokens]);
    o.insert("tok_mse_rad", vec![mse_rad / tokens]);
    o.insert("loss_tok", vec![(mse_tan + lam * mse_rad) / tokens]);
    if let Ok((_, tb)) = g("shift_t_base") {
        o.insert("shift_t", tb.iter().map(|&v| rfm::shift_time(v, a)).collect());
    }
    let _ = r_ref;
    for (k, ours) in &o {
        match g(k) {
            Ok((shape, reference)) => check(report, format!("sphere_rfm(f64):{k}"), ours, &reference, shape, TOL_F64),
            Err(_) => report.skipped.push((format!("sphere_rfm(f64):{k}"), "not in file".into())),
        }
    }
    // ---- the f32 tensor code used by training and sampling ----
    let m = read_safetensors(file)?;
    let f = "sphere_rfm";
    let xt: Tensor<4> = need(&m, "x", f)?.to_tensor(device)?;
    let et: Tensor<4> = need(&m, "e", f)?.to_tensor(device)?;
    let vt: Tensor<4> = need(&m, "v", f)?.to_tensor(device)?;
    let t32 = Tensor::<1>::from_data(TensorData::new(t.iter().map(|&v| v as f32).collect::<Vec<_>>(), vec![b]), device);
    let dt32 =
        Tensor::<1>::from_data(TensorData::new(dt.iter().map(|&v| v as f32).collect::<Vec<_>>(), vec![b]), device);
    let path = rfm::sphere_path(&xt, &et, &t32);
    let parts = rfm::sphere_loss_parts(&vt, &path.zt, &path.ut, lam);
    let mut ours: Vec<(&str, RawTensor)> = vec![
        ("z0", RawTensor::from_tensor(path.z0.clone())?),
        ("z1", RawTensor::from_tensor(path.z1.clone())?),
        ("cos_omega", RawTensor::from_tensor(path.cos_omega.clone())?),
        ("omega", RawTensor::from_tensor(path.omega.clone())?),
        ("zt", RawTensor::from_tensor(path.zt.clone())?),
        ("ut", RawTensor::from_tensor(path.ut.clone())?),
        ("zt_hat", RawTensor::from_tensor(parts.zt_hat.clone())?),
        ("v_rad_coef", RawTensor::from_tensor(parts.v_rad_coef.clone())?),
        ("v_rad", RawTensor::from_tensor(parts.v_rad.clone())?),
        ("v_tan", RawTensor::from_tensor(parts.v_tan.clone())?),
        ("u_tan", RawTensor::from_tensor(parts.u_tan.clone())?),
        ("mse_tan", RawTensor::from_tensor(parts.mse_tan.clone())?),
        ("mse_rad", RawTensor::from_tensor(parts.mse_rad.clone())?),
        ("loss", RawTensor::from_tensor(parts.loss.clone())?),
    ];
    // Sampler steps from z_t: tangent Euler + projection, raw Euler + projection, exp map.
    ours.push((
        "z_euler_tan",
        RawTensor::from_tensor(sampler::sphere_step_per_sample(&path.zt, &vt, &dt32, r, SphereStep::EulerProj))?,
    ));
    let raw_step = path.zt.clone() + vt.clone() * dt32.clone().reshape([b, 1, 1, 1]);
    ours.push(("z_euler_raw", RawTensor::from_tensor(crate::sphere::project_to_radius(&raw_step, r))?));
    ours.push((
        "z_exp",
        RawTensor::from_tensor(sampler::sphere_step_per_sample(&path.zt, &vt, &dt32, r, SphereStep::ExpMap))?,
    ));
    for (k, o32) in ours {
        let reference = RawTensor { shape: need(&m, k, f)?.shape.clone(), data: need(&m, k, f)?.data.clone() };
        // float32 tensors vs float64 references: f32 tolerance.
        check_raw(report, format!("sphere_rfm(f32):{k}"), &o32, &reference);
    }
    report.parts.push(format!(
        "sphere_rfm: {b}x{c}x{h}x{w}, R = {r:.6}, a = {a}, lambda = {lam} (f64 at {TOL_F64:e}, f32 at {TOL:e})"
    ));
    Ok(())
}

/// Compare every reference tensor of a dit-setA-like folder. See the module docs.
pub fn verify_dit_dir(dir: &Path, device: &Device) -> Result<Report> {
    let mut report = Report::default();
    let cfg = read_config(dir)?;
    let mut ddt = None;
    if dir.join("ddt/state_dict.safetensors").exists() {
        ddt = Some(model_part(dir, &cfg, "ddt", DitArch::Ddt, &mut report, device)?);
    }
    if dir.join("lightningdit/state_dict.safetensors").exists() {
        model_part(dir, &cfg, "lightningdit", DitArch::LightningDit, &mut report, device)?;
    }
    if dir.join("transport").is_dir() {
        let model = match ddt {
            Some(m) => m,
            None => return Err(EngineError::Config("transport/ needs the DDT weights in ddt/".into())),
        };
        transport_part(dir, &cfg, &model, &mut report, device)?;
        report.parts.push("transport: RAE linear flow matching targets + Euler/CFG sampling with the DDT".into());
    }
    let sp = dir.join("sphere/sphere_rfm.safetensors");
    if sp.exists() {
        sphere_part(&sp, &mut report, device)?;
    }
    Ok(report)
}
