//! Parity against the PyTorch references: `verify-fixture` runs every reference tensor of a fixture folder
//! (outputs of the reference code) through our implementation and compares. [`sae`] checks the autoencoder half
//! (DINO backbones, HCPE stem, decoder, sphere maths), [`dit`] the generative half (DiTs, flow matching,
//! samplers). Verification only: production code never calls this module.
//!
//! Layouts understood (any seed, shapes and sizes; everything is read from the folder):
//! `dinov3/{hf,official}` + `dinov3/io.safetensors`, `sae/` (DINO-SAE state dict + io), `sphere/sphere.safetensors`,
//! `dinov2/`, `dinov2_reg/` (HF folders + io, with an optional `extra.` input), `decoder/` (DCAE_Decoder + io,
//! optional `small.` input), `chain/` (CnnPatchEmbed on DINOv2 vs the DINOv2 teacher, + decoder).
//!
//! Criterion per tensor: `max|ours - ref| <= tol * max(1, max|ref|)`; tol = 1e-4, or 2e-4 where bicubic
//! interpolation is involved (DINOv2 position tables at a new grid, the teacher's input resize).

pub mod dit;
pub mod sae;

use std::path::Path;

use burn::tensor::Device;

use crate::error::{EngineError, Result};
use crate::raw::{RawTensor, TensorMap};

pub use dit::{TOL_F64, verify_dit_dir};

pub const TOL: f64 = 1e-4;
pub const TOL_BICUBIC: f64 = 2e-4;

/// One comparison.
#[derive(Clone, Debug)]
pub struct Check {
    pub name: String,
    pub shape: Vec<usize>,
    pub max_abs: f64,
    pub ref_max: f64,
    pub tol: f64,
}

impl Check {
    pub fn rel(&self) -> f64 {
        self.max_abs / self.ref_max.max(1e-30)
    }
    pub fn ok(&self) -> bool {
        self.max_abs.is_finite() && self.max_abs <= self.tol * self.ref_max.max(1.0)
    }
}

/// Everything a fixture run found.
#[derive(Debug, Default)]
pub struct Report {
    pub checks: Vec<Check>,
    /// Reference tensors that were not compared, with the reason.
    pub skipped: Vec<(String, String)>,
    pub parts: Vec<String>,
}

impl Report {
    pub fn ok(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(Check::ok)
    }
    pub fn failures(&self) -> Vec<&Check> {
        self.checks.iter().filter(|c| !c.ok()).collect()
    }
    pub fn get(&self, name: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }
}

pub(crate) fn compare(report: &mut Report, name: String, ours: &RawTensor, reference: &RawTensor, tol: f64) {
    if ours.numel() != reference.numel() {
        report.checks.push(Check {
            name: format!("{name} (shape {:?} vs reference {:?})", ours.shape, reference.shape),
            shape: reference.shape.clone(),
            max_abs: f64::INFINITY,
            ref_max: 0.0,
            tol,
        });
        return;
    }
    let max_abs = ours.data.iter().zip(&reference.data).map(|(a, b)| (*a as f64 - *b as f64).abs()).fold(0.0, f64::max);
    let max_abs = if ours.data.iter().any(|v| v.is_nan()) { f64::INFINITY } else { max_abs };
    report.checks.push(Check {
        name,
        shape: reference.shape.clone(),
        max_abs,
        ref_max: reference.max_abs() as f64,
        tol,
    });
}

/// Compare every reference key (except inputs, f64 copies and `skip`) with what we produced.
pub(crate) fn compare_all(
    report: &mut Report,
    part: &str,
    ours: &TensorMap,
    io: &TensorMap,
    prefix: &str,
    tol: f64,
    skip: &[&str],
) {
    for (k, r) in io {
        if !k.starts_with(prefix) || k.contains("_f64") || k.ends_with("input_image_u8") || skip.contains(&k.as_str()) {
            continue;
        }
        match ours.get(k) {
            Some(o) => compare(report, format!("{part}:{k}"), o, r, tol),
            None => report.skipped.push((format!("{part}:{k}"), "not produced by this run".into())),
        }
    }
}

/// Run every part found in `dir`.
pub fn verify_dir(dir: impl AsRef<Path>, device: &Device) -> Result<Report> {
    let dir = dir.as_ref();
    if !dir.is_dir() {
        return Err(EngineError::Config(format!("{} is not a folder", dir.display())));
    }
    let mut report = Report::default();
    let mut found = false;
    if dir.join("dinov3/io.safetensors").exists() {
        found = true;
        sae::dinov3_part(&dir.join("dinov3"), &mut report, device)?;
    }
    if dir.join("sae/io.safetensors").exists() {
        found = true;
        sae::sae_part(&dir.join("sae"), &mut report, device)?;
    }
    if dir.join("sphere/sphere.safetensors").exists() {
        found = true;
        sae::sphere_part(&dir.join("sphere/sphere.safetensors"), &mut report)?;
    }
    for name in ["dinov2", "dinov2_reg"] {
        if dir.join(name).join("io.safetensors").exists() {
            found = true;
            sae::dinov2_part(&dir.join(name), name, &mut report, device)?;
        }
    }
    if dir.join("decoder/io.safetensors").exists() {
        found = true;
        sae::decoder_part(&dir.join("decoder"), &mut report, device)?;
    }
    if dir.join("chain/io.safetensors").exists() {
        found = true;
        sae::chain_part(&dir.join("chain"), &mut report, device)?;
    }
    if dir.join("ddt").exists() || dir.join("lightningdit").exists() {
        found = true;
        let dit = verify_dit_dir(dir, device)?;
        report.checks.extend(dit.checks);
        report.skipped.extend(dit.skipped);
        report.parts.extend(dit.parts);
    }
    if !found {
        return Err(EngineError::Config(format!(
            "{}: no known fixture layout (dinov3/, sae/, sphere/, dinov2/, dinov2_reg/, decoder/, chain/)",
            dir.display()
        )));
    }
    Ok(report)
}
