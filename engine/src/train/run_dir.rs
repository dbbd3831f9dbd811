//! A training run's folder, the same for every trainer (autoencoder, preview decoder, generator): checkpoints
//! `ckpt-N/`, each written whole into `.ckpt-N.tmp/` and then renamed into place, `latest` naming the newest (the
//! two newest are kept), `loss.csv`, `loss.png`, `final/`. A run killed mid-write leaves only temporary entries,
//! removed when the folder is opened again; the run then resumes from `latest`.

use std::path::{Path, PathBuf};

use crate::error::{EngineError, Result};

/// An open run folder.
#[derive(Clone, Debug)]
pub struct RunDir {
    dir: PathBuf,
}

impl RunDir {
    /// Create `dir` if needed and remove what a killed writer left there ([`crate::tensor_file::remove_stale_tmp`]).
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| EngineError::io(dir, e))?;
        crate::tensor_file::remove_stale_tmp(dir);
        Ok(Self { dir: dir.to_path_buf() })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The checkpoint `latest` names, as `(step, folder)`, when that folder holds every file of `required`.
    pub fn latest(&self, required: &[&str]) -> Option<(usize, PathBuf)> {
        let s = std::fs::read_to_string(self.dir.join("latest")).ok()?;
        let name = s.trim();
        let step = name.strip_prefix("ckpt-")?.parse().ok()?;
        let p = self.dir.join(name);
        required.iter().all(|f| p.join(f).exists()).then_some((step, p))
    }

    /// An empty temporary folder for checkpoint `step`: fill it, then [`Self::publish`] it.
    pub fn checkpoint_tmp(&self, step: usize) -> Result<PathBuf> {
        let tmp = self.dir.join(format!(".ckpt-{step}.tmp"));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(|e| EngineError::io(&tmp, e))?;
        Ok(tmp)
    }

    /// Make a fully written temporary checkpoint folder `tmp` the run's `ckpt-{step}`: rename it into place, point
    /// `latest` at it (atomically), and keep only the newest two checkpoints.
    pub fn publish(&self, tmp: &Path, step: usize) -> Result<()> {
        let out = &self.dir;
        let fin = out.join(format!("ckpt-{step}"));
        let _ = std::fs::remove_dir_all(&fin);
        std::fs::rename(tmp, &fin).map_err(|e| EngineError::io(&fin, e))?;
        crate::tensor_file::atomic_write(&out.join("latest"), format!("ckpt-{step}").as_bytes())?;
        if let Ok(rd) = std::fs::read_dir(out) {
            let mut olds: Vec<usize> = rd
                .filter_map(|e| e.ok()?.file_name().to_str()?.strip_prefix("ckpt-")?.parse().ok())
                .filter(|&s| s < step)
                .collect();
            olds.sort();
            olds.pop();
            for s in olds {
                let _ = std::fs::remove_dir_all(out.join(format!("ckpt-{s}")));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The life of a run folder: stale temporaries removed on open, `latest` only when complete, two kept.
    #[test]
    fn checkpoints_publish_atomically_and_keep_the_newest_two() {
        let dir = std::env::temp_dir().join(format!("dino-sae-run-dir-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join(".ckpt-9.tmp")).unwrap();
        std::fs::write(dir.join(".latest.tmp123"), b"x").unwrap();
        let run = RunDir::open(&dir).unwrap();
        assert!(!dir.join(".ckpt-9.tmp").exists() && !dir.join(".latest.tmp123").exists());
        assert_eq!(run.latest(&[]), None);
        for step in [10, 20, 30] {
            let tmp = run.checkpoint_tmp(step).unwrap();
            std::fs::write(tmp.join("model.safetensors"), b"m").unwrap();
            run.publish(&tmp, step).unwrap();
        }
        assert_eq!(run.latest(&["model.safetensors"]), Some((30, dir.join("ckpt-30"))));
        assert_eq!(run.latest(&["model.safetensors", "state.json"]), None, "an incomplete checkpoint is not resumed");
        assert!(!dir.join("ckpt-10").exists() && dir.join("ckpt-20").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
