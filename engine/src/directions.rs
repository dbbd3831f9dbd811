//! A library of named steering directions: a target saved once (a random seed, a pinned patch, a PCA axis of an
//! image, a class mean, the difference of two regions' mean directions) and applied to any image later.
//!
//! One file per direction in the library folder ([`crate::dirs::data_dir`]`/directions`): `NAME.safetensors` with
//! the vector as tensor `direction` `[C]` (for explicit directions) and what it is as JSON in the metadata key
//! `dino-sae:direction` (`{"name", "source", "kind", "seed"?, "created"}`). Export and import move that one file.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};
use crate::steer::SteerTarget;
use crate::tensor_file::{Precision, RawTensor, TensorMap};

/// Metadata key of the description.
pub const META_KEY: &str = "dino-sae:direction";
/// Longest name.
pub const MAX_NAME: usize = 64;

/// A saved steering target.
#[derive(Clone, Debug, PartialEq)]
pub struct SavedDirection {
    pub name: String,
    /// What it was made from, for people ("PCA 1+ of chelsea.png").
    pub source: String,
    /// [`SteerTarget::Direction`] or [`SteerTarget::Random`] (a patch of the image being steered has no meaning
    /// for another image: save its direction instead).
    pub target: SteerTarget,
    /// Seconds since the Unix epoch.
    pub created: u64,
}

#[derive(Serialize, Deserialize)]
struct Description {
    name: String,
    source: String,
    /// `direction` or `random`.
    kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    seed: Option<u64>,
    #[serde(default)]
    created: u64,
}

fn err(m: impl Into<String>) -> EngineError {
    EngineError::Config(m.into())
}

/// A name is 1-64 letters, digits, `-`, `_` or `.`, not starting with `.` (it is also the file's name).
pub fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(err(format!(
            "direction name {name:?}: use 1-{MAX_NAME} letters, digits, '-', '_' or '.' (not starting with '.')"
        )))
    }
}

impl SavedDirection {
    /// A named target made now.
    pub fn new(name: &str, source: &str, target: SteerTarget) -> Result<Self> {
        check_name(name)?;
        let created = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let d = Self { name: name.into(), source: source.into(), target, created };
        d.check()?;
        Ok(d)
    }

    fn check(&self) -> Result<()> {
        match &self.target {
            SteerTarget::Direction(v) => {
                if v.is_empty() || v.iter().any(|x| !x.is_finite()) {
                    return Err(err(format!("direction {:?}: the vector is empty or not finite", self.name)));
                }
                if v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>() < 1e-24 {
                    return Err(err(format!("direction {:?}: the vector is zero", self.name)));
                }
                Ok(())
            }
            SteerTarget::Random(_) => Ok(()),
            SteerTarget::Patch(_) => Err(err(
                "a patch of the image being steered means nothing for another image: save its direction instead",
            )),
        }
    }

    /// Length C of an explicit direction (`None` for a random target, which fits any model).
    pub fn channels(&self) -> Option<usize> {
        match &self.target {
            SteerTarget::Direction(v) => Some(v.len()),
            _ => None,
        }
    }

    /// "direction (384)" / "random (seed 7)".
    pub fn kind(&self) -> String {
        match &self.target {
            SteerTarget::Direction(v) => format!("direction ({})", v.len()),
            SteerTarget::Random(s) => format!("random (seed {s})"),
            SteerTarget::Patch(p) => format!("patch {p}"),
        }
    }

    /// Write this direction as one safetensors file.
    pub fn write(&self, path: &Path) -> Result<()> {
        self.check()?;
        let (kind, seed) = match &self.target {
            SteerTarget::Random(s) => ("random", Some(*s)),
            _ => ("direction", None),
        };
        let desc = Description {
            name: self.name.clone(),
            source: self.source.clone(),
            kind: kind.into(),
            seed,
            created: self.created,
        };
        let json = serde_json::to_string(&desc).map_err(|e| err(e.to_string()))?;
        let mut t = TensorMap::new();
        match &self.target {
            SteerTarget::Direction(v) => {
                t.insert("direction".into(), RawTensor::new(vec![v.len()], v.clone())?);
            }
            // safetensors needs a tensor: a random target stores its seed's place holder, one zero
            _ => {
                t.insert("seed".into(), RawTensor::zeros(vec![1]));
            }
        }
        let meta = [(META_KEY.to_string(), json)].into_iter().collect();
        crate::tensor_file::write_safetensors(path, &t, &meta, Precision::F32)
    }

    /// Read a direction file (ours; anything else is refused with the reason).
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| EngineError::io(path, e))?;
        let what = |m: String| err(format!("{}: {m}", path.display()));
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes)
            .map_err(|e| what(format!("not a safetensors file ({e})")))?;
        let json = meta
            .metadata()
            .as_ref()
            .and_then(|m| m.get(META_KEY))
            .ok_or_else(|| what(format!("no `{META_KEY}` metadata: not a saved direction")))?;
        let desc: Description = serde_json::from_str(json).map_err(|e| what(format!("bad description ({e})")))?;
        let target = match desc.kind.as_str() {
            "random" => {
                SteerTarget::Random(desc.seed.ok_or_else(|| what("a random direction without its seed".into()))?)
            }
            "direction" => {
                let t = crate::tensor_file::safetensors_from_bytes(&bytes)?;
                let v = t.get("direction").ok_or_else(|| what("no `direction` tensor".into()))?;
                if v.shape.len() != 1 {
                    return Err(what(format!("`direction` has shape {:?}, expected [C]", v.shape)));
                }
                SteerTarget::Direction(v.data.clone())
            }
            k => return Err(what(format!("unknown kind {k:?}"))),
        };
        check_name(&desc.name).map_err(|e| what(e.to_string()))?;
        let d = Self { name: desc.name, source: desc.source, target, created: desc.created };
        d.check().map_err(|e| what(e.to_string()))?;
        Ok(d)
    }
}

/// The mean unit direction of `a`'s patches minus that of `b`'s ("this region minus that region"), from a latent
/// `[1, C, h, w]`, in float64.
pub fn region_difference(latent: &RawTensor, a: &[usize], b: &[usize]) -> Result<Vec<f32>> {
    let (c, n) = match latent.shape.as_slice() {
        &[1, c, h, w] => (c, h * w),
        s => return Err(EngineError::Shape(format!("expected a latent [1, C, h, w], got {s:?}"))),
    };
    let mean = |sel: &[usize]| -> Result<Vec<f64>> {
        if sel.is_empty() {
            return Err(err("both regions need at least one patch"));
        }
        let mut m = vec![0f64; c];
        for &p in sel {
            if p >= n {
                return Err(err(format!("patch {p} is outside the grid of {n} patches")));
            }
            let norm = (0..c).map(|k| (latent.data[k * n + p] as f64).powi(2)).sum::<f64>().sqrt().max(1e-12);
            for (k, v) in m.iter_mut().enumerate() {
                *v += latent.data[k * n + p] as f64 / norm / sel.len() as f64;
            }
        }
        Ok(m)
    };
    let (ma, mb) = (mean(a)?, mean(b)?);
    Ok(ma.iter().zip(&mb).map(|(x, y)| (x - y) as f32).collect())
}

/// The library folder and what is in it.
#[derive(Clone, Debug)]
pub struct Library {
    dir: PathBuf,
}

impl Library {
    /// The library in `dir` (created on the first save).
    pub fn at(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The user's library: [`crate::dirs::data_dir`]`/directions`.
    pub fn user() -> Self {
        Self::at(crate::dirs::data_dir().join("directions"))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, name: &str) -> Result<PathBuf> {
        check_name(name)?;
        Ok(self.dir.join(format!("{name}.safetensors")))
    }

    /// Every readable direction, by name; and one line per file that could not be read (it stays where it is).
    pub fn list(&self) -> (Vec<SavedDirection>, Vec<String>) {
        let (mut ok, mut bad) = (Vec::new(), Vec::new());
        let Ok(rd) = std::fs::read_dir(&self.dir) else { return (ok, bad) };
        for e in rd.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "safetensors") {
                match SavedDirection::read(&p) {
                    Ok(d) => ok.push(d),
                    Err(e) => bad.push(e.to_string()),
                }
            }
        }
        ok.sort_by(|a, b| a.name.cmp(&b.name));
        bad.sort();
        (ok, bad)
    }

    pub fn get(&self, name: &str) -> Result<SavedDirection> {
        let p = self.path(name)?;
        if !p.exists() {
            return Err(err(format!("no direction named {name:?} in {}", self.dir.display())));
        }
        SavedDirection::read(&p)
    }

    /// Save `d` under its name; an existing one of that name is replaced only with `overwrite`.
    pub fn add(&self, d: &SavedDirection, overwrite: bool) -> Result<PathBuf> {
        let p = self.path(&d.name)?;
        if p.exists() && !overwrite {
            return Err(err(format!(
                "a direction named {:?} exists already (overwrite it, or pick another name)",
                d.name
            )));
        }
        d.write(&p)?;
        Ok(p)
    }

    pub fn remove(&self, name: &str) -> Result<()> {
        let p = self.path(name)?;
        self.get(name)?;
        std::fs::remove_file(&p).map_err(|e| EngineError::io(&p, e))
    }

    /// Rename `old` to `new` (refused when `new` exists).
    pub fn rename(&self, old: &str, new: &str) -> Result<()> {
        let mut d = self.get(old)?;
        check_name(new)?;
        if old == new {
            return Ok(());
        }
        d.name = new.into();
        self.add(&d, false)?;
        let p = self.path(old)?;
        std::fs::remove_file(&p).map_err(|e| EngineError::io(&p, e))
    }

    /// Write direction `name` to the file `to` (the library's own format: [`Library::import`] reads it).
    pub fn export(&self, name: &str, to: &Path) -> Result<()> {
        self.get(name)?.write(to)
    }

    /// Read a direction file into the library, under `name` or its own name.
    pub fn import(&self, from: &Path, name: Option<&str>, overwrite: bool) -> Result<SavedDirection> {
        let mut d = SavedDirection::read(from)?;
        if let Some(n) = name {
            check_name(n)?;
            d.name = n.into();
        }
        self.add(&d, overwrite)?;
        Ok(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_file_safe() {
        for good in ["smile", "pca1-plus", "sky_minus_sea", "v2.1"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", ".hidden", "a/b", "..", "a b", "x\\y", &"n".repeat(65), "ü"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}
