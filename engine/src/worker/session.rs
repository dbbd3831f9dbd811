//! Studio sessions on disk: a small JSON file (what was open and how it was edited) plus the latents as
//! safetensors beside it. Loading is defensive: the JSON is size-limited, unknown fields are ignored, missing
//! ones take defaults, and every value is range-checked before anything uses it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};
use crate::generate::SampleSpec;
use crate::image_io::Fit;
use crate::steer::SteerEdit;
use crate::tensor_file::TensorMap;
use crate::worker::ModelSource;

/// Largest session JSON accepted.
pub const MAX_JSON_BYTES: u64 = 4 * 1024 * 1024;
/// Current format version.
pub const VERSION: u32 = 1;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Session {
    pub version: u32,
    /// The image that was open (its full-resolution original).
    pub image: Option<PathBuf>,
    /// Longest side of the working copy, pixels.
    pub working_side: u32,
    pub fit: Fit,
    pub model: Option<ModelSource>,
    pub compare: Vec<PathBuf>,
    pub teacher: Option<PathBuf>,
    pub generator: Option<PathBuf>,
    /// The steering edit on the working copy's grid (its `patches` are the selection).
    pub edit: SteerEdit,
    pub sample: SampleSpec,
    /// The latents file beside the session (relative to it), when latents were saved.
    pub latents: Option<String>,
    /// The studio's own view state (tab, target kind, heatmap, ...); opaque to the engine.
    pub ui: serde_json::Value,
}

impl Default for Session {
    fn default() -> Self {
        Self {
            version: VERSION,
            image: None,
            working_side: 384,
            fit: Fit::Crop,
            model: None,
            compare: Vec::new(),
            teacher: None,
            generator: None,
            edit: SteerEdit::default(),
            sample: SampleSpec::default(),
            latents: None,
            ui: serde_json::Value::Null,
        }
    }
}

impl Session {
    /// Parse and validate session JSON.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        if bytes.len() as u64 > MAX_JSON_BYTES {
            return Err(EngineError::Config(format!(
                "session file is {} bytes, over the limit of {MAX_JSON_BYTES}",
                bytes.len()
            )));
        }
        let s: Session = serde_json::from_slice(bytes).map_err(|e| EngineError::Config(format!("session: {e}")))?;
        s.validate()?;
        Ok(s)
    }

    fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(EngineError::Config(format!("session: {m}")));
        if self.version > VERSION {
            return bad(format!("format version {} is newer than this build's {VERSION}", self.version));
        }
        if !(16..=crate::image_io::MAX_SIDE).contains(&self.working_side) {
            return bad(format!("working side {} outside 16..={}", self.working_side, crate::image_io::MAX_SIDE));
        }
        let e = &self.edit;
        if !(e.angle_deg.is_finite() && e.magnitude_scale.is_finite() && e.noise_deg.is_finite()) {
            return bad("steering values must be finite".into());
        }
        if e.patches.len() > 1 << 20 {
            return bad(format!("{} selected patches", e.patches.len()));
        }
        if let crate::steer::SteerTarget::Direction(d) = &e.target
            && (d.len() > 1 << 16 || d.iter().any(|v| !v.is_finite()))
        {
            return bad("target direction too long or not finite".into());
        }
        let s = &self.sample;
        if s.count > 256 || s.steps > 10_000 || !s.cfg_scale.is_finite() || s.s_vae.is_some_and(|v| !v.is_finite()) {
            return bad("sampler settings out of range".into());
        }
        if let Some(l) = &self.latents {
            let p = Path::new(l);
            if p.is_absolute()
                || p.components().any(|c| matches!(c, std::path::Component::ParentDir))
                || p.file_name().is_none()
            {
                return bad(format!("latents file {l:?} must be a file name beside the session"));
            }
        }
        Ok(())
    }

    /// The latents file of a session saved at `path`.
    pub fn latents_path(path: &Path) -> PathBuf {
        let stem = path.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_else(|| "session".into());
        path.with_file_name(format!("{stem}.latents.safetensors"))
    }

    /// Write the session (atomically) and, when given, its latents beside it (else `latents` is kept as set:
    /// the studio has the engine write them).
    pub fn save(&self, path: &Path, latents: Option<&TensorMap>) -> Result<()> {
        let mut s = self.clone();
        s.version = VERSION;
        if let Some(map) = latents.filter(|m| !m.is_empty()) {
            let lp = Self::latents_path(path);
            crate::tensor_file::write_safetensors(&lp, map, &Default::default(), crate::tensor_file::Precision::F32)?;
            s.latents = lp.file_name().map(|f| f.to_string_lossy().to_string());
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| EngineError::io(dir, e))?;
        }
        let json = serde_json::to_vec_pretty(&s).map_err(|e| EngineError::Config(format!("session: {e}")))?;
        crate::tensor_file::atomic_write(path, &json)
    }

    /// Read a session and its latents (None when it saved none or they are gone; an unreadable latents file is
    /// an error).
    pub fn load(path: &Path) -> Result<(Self, Option<TensorMap>)> {
        let meta = std::fs::metadata(path).map_err(|e| EngineError::io(path, e))?;
        if meta.len() > MAX_JSON_BYTES {
            return Err(EngineError::Config(format!(
                "{}: {} bytes, over the session limit of {MAX_JSON_BYTES}",
                path.display(),
                meta.len()
            )));
        }
        let bytes = std::fs::read(path).map_err(|e| EngineError::io(path, e))?;
        let s = Self::parse(&bytes).map_err(|e| EngineError::Config(format!("{}: {e}", path.display())))?;
        let latents = match &s.latents {
            Some(name) => {
                let lp = path.with_file_name(name);
                if lp.exists() { Some(crate::tensor_file::read_safetensors(&lp)?) } else { None }
            }
            None => None,
        };
        Ok((s, latents))
    }

    /// Whether `path` names a session file (by its JSON extension) rather than an image.
    pub fn is_session_path(path: &Path) -> bool {
        path.extension().is_some_and(|e| e.eq_ignore_ascii_case("json"))
    }
}
