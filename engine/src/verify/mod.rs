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
//! interpolation is involved (DINOv2 position tables at a new grid, the teacher's input resize). A float64
//! reference (`NAME_f64`, the same model re-run in float64) is compared with our float32 `NAME` at the same
//! tolerance: float32 rounding against the exact value is of the order of the float32 reference's own.
//!
//! Completeness: every reference tensor of a folder is compared, or is an input, or is named in [`ALLOWED_SKIPS`]
//! with its reason; anything else not compared is an *unexpected skip*, and the report is not ok (a renamed probe
//! key must not shrink the check silently). A `manifest.json` beside the fixtures (file, bytes, sha256) is checked
//! first: a changed or truncated fixture file is a failed check of its own.

pub mod dit;
pub mod sae;

use std::path::Path;

use burn::tensor::Device;

use crate::error::{EngineError, Result};
use crate::tensor_file::{RawTensor, TensorMap};

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

/// Reference tensors that are not compared, on purpose: (part:key pattern, reason). A pattern matches a skipped
/// name that contains it.
pub const ALLOWED_SKIPS: &[(&str, &str)] = &[];

/// Everything a fixture run found.
#[derive(Debug, Default)]
pub struct Report {
    pub checks: Vec<Check>,
    /// Reference tensors that were not compared, with the reason.
    pub skipped: Vec<(String, String)>,
    pub parts: Vec<String>,
}

impl Report {
    /// Every check passed, at least one ran, and nothing was skipped that [`ALLOWED_SKIPS`] does not name.
    pub fn ok(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(Check::ok) && self.unexpected_skips().is_empty()
    }
    /// Skipped reference tensors that no entry of [`ALLOWED_SKIPS`] explains.
    pub fn unexpected_skips(&self) -> Vec<&(String, String)> {
        self.skipped.iter().filter(|(k, _)| allowed_skip(k).is_none()).collect()
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

/// The reason [`ALLOWED_SKIPS`] gives for a skipped name, if any.
pub fn allowed_skip(name: &str) -> Option<&'static str> {
    ALLOWED_SKIPS.iter().find(|(pat, _)| name.contains(pat)).map(|(_, why)| *why)
}

/// Compare every reference key (except inputs and `skip`) with what we produced; a float64 reference `K_f64`
/// (or `K_f64.x`) with our `K` (`K.x`).
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
        if !k.starts_with(prefix) || k.ends_with("input_image_u8") || skip.contains(&k.as_str()) {
            continue;
        }
        // a float64 reference: `K_f64` (the float64 re-run), `K_exact_f64` (the same maths done in float64 where
        // the reference code itself runs float32), `K_f64run` (what the float64 re-run used)
        let ours_key = ["_exact_f64", "_f64run", "_f64"]
            .iter()
            .find(|s| k.contains(*s))
            .map_or_else(|| k.clone(), |s| k.replacen(s, "", 1));
        if ours_key != *k && skip.contains(&ours_key.as_str()) {
            continue;
        }
        match ours.get(&ours_key) {
            Some(o) if ours_key != *k => compare(report, format!("{part}:{k} (ours f32 vs float64)"), o, r, tol),
            Some(o) => compare(report, format!("{part}:{k}"), o, r, tol),
            None => report.skipped.push((format!("{part}:{k}"), "not produced by this run".into())),
        }
    }
}

/// Check `dir/manifest.json` (a list of `{file, bytes, sha256}`) against the files: one check per file (a missing,
/// truncated or changed file fails). Nothing when there is no manifest.
pub(crate) fn check_manifest(dir: &Path, report: &mut Report) -> Result<()> {
    use sha2::Digest;
    let path = dir.join("manifest.json");
    if !path.exists() {
        return Ok(());
    }
    let text = std::fs::read_to_string(&path).map_err(|e| EngineError::io(&path, e))?;
    let entries: Vec<serde_json::Value> =
        serde_json::from_str(&text).map_err(|e| EngineError::Config(format!("{}: {e}", path.display())))?;
    let mut n = 0;
    for e in &entries {
        let (Some(file), Some(sha)) =
            (e.get("file").and_then(|v| v.as_str()), e.get("sha256").and_then(|v| v.as_str()))
        else {
            return Err(EngineError::Config(format!("{}: an entry without file/sha256: {e}", path.display())));
        };
        let bytes = e.get("bytes").and_then(|v| v.as_u64());
        let why = match std::fs::read(dir.join(file)) {
            Err(err) => Some(format!("unreadable: {err}")),
            Ok(data) if bytes.is_some_and(|b| b != data.len() as u64) => {
                Some(format!("{} bytes, manifest says {}", data.len(), bytes.unwrap_or(0)))
            }
            Ok(data) => {
                let got: String = sha2::Sha256::digest(&data).iter().map(|b| format!("{b:02x}")).collect();
                (got != sha.to_ascii_lowercase()).then(|| format!("sha256 {got}, manifest says {sha}"))
            }
        };
        let name = match &why {
            None => format!("manifest:{file}"),
            Some(w) => format!("manifest:{file} ({w})"),
        };
        let max_abs = if why.is_none() { 0.0 } else { f64::INFINITY };
        report.checks.push(Check { name, shape: Vec::new(), max_abs, ref_max: 0.0, tol: 0.0 });
        n += 1;
    }
    report.parts.push(format!("manifest: {n} files, sha256 checked"));
    Ok(())
}

/// Run every part found in `dir`.
pub fn verify_dir(dir: impl AsRef<Path>, device: &Device) -> Result<Report> {
    let dir = dir.as_ref();
    if !dir.is_dir() {
        return Err(EngineError::Config(format!("{} is not a folder", dir.display())));
    }
    let mut report = Report::default();
    check_manifest(dir, &mut report)?;
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
