//! Where the engine looks for what the fetch scripts download (teacher, LPIPS weights, photos): one cache folder,
//! `$DINO_SAE_CACHE`, else `$XDG_CACHE_HOME/dino-sae`, else `$HOME/.cache/dino-sae` (the scripts compute the same
//! `${DINO_SAE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dino-sae}`).
//! And where the embedded default model and its generator are found ([`default_model_dir`]).

use std::ffi::OsString;
use std::path::PathBuf;

/// Folder name of the DINOv2-S/14 teacher `scripts/fetch-teacher.sh` writes.
pub const TEACHER: &str = "teacher-dinov2-s14";
/// Folder name of the LPIPS-VGG weights `scripts/fetch-lpips.sh` writes.
pub const LPIPS: &str = "lpips-vgg";

/// The cache folder (see the module docs); empty variables count as unset, as the XDG spec and the shell's `:-` do.
pub fn cache_dir() -> PathBuf {
    cache_dir_from(|k| std::env::var_os(k))
}

/// [`cache_dir`] with the environment given as a lookup (tests).
pub fn cache_dir_from(env: impl Fn(&str) -> Option<OsString>) -> PathBuf {
    let var = |k: &str| env(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(d) = var("DINO_SAE_CACHE") {
        return d;
    }
    let base = var("XDG_CACHE_HOME").unwrap_or_else(|| var("HOME").unwrap_or_default().join(".cache"));
    base.join("dino-sae")
}

/// The user's data folder (what the user makes and keeps, e.g. the library of directions): `$DINO_SAE_DATA`, else
/// `$XDG_DATA_HOME/dino-sae`, else `$HOME/.local/share/dino-sae` (empty variables count as unset).
pub fn data_dir() -> PathBuf {
    data_dir_from(|k| std::env::var_os(k))
}

/// [`data_dir`] with the environment given as a lookup (tests).
pub fn data_dir_from(env: impl Fn(&str) -> Option<OsString>) -> PathBuf {
    let var = |k: &str| env(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(d) = var("DINO_SAE_DATA") {
        return d;
    }
    let base = var("XDG_DATA_HOME").unwrap_or_else(|| var("HOME").unwrap_or_default().join(".local/share"));
    base.join("dino-sae")
}

/// Where `scripts/fetch-teacher.sh` puts the teacher.
pub fn teacher_dir() -> PathBuf {
    cache_dir().join(TEACHER)
}

/// Where `scripts/fetch-lpips.sh` puts the LPIPS weights.
pub fn lpips_dir() -> PathBuf {
    cache_dir().join(LPIPS)
}

/// Where the default model is looked for, in order: `$DINO_SAE_DEFAULT_MODEL`, `assets/default-model` of the
/// source tree this binary was built from, and `assets/default-model` under the current directory (a binary
/// copied elsewhere, or built in a clone that is gone).
pub fn default_model_candidates() -> Vec<PathBuf> {
    let mut c = Vec::new();
    if let Some(p) = std::env::var_os("DINO_SAE_DEFAULT_MODEL") {
        c.push(PathBuf::from(p));
    }
    c.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../assets/default-model"));
    if let Ok(cwd) = std::env::current_dir() {
        c.push(cwd.join("assets/default-model"));
    }
    c
}

/// The default model folder: the first of [`default_model_candidates`] that holds a model.
pub fn default_model_dir() -> Option<PathBuf> {
    default_model_candidates().into_iter().find(|d| d.join("model.safetensors").exists())
}

/// [`default_model_dir`], or an error naming every place looked in.
pub fn require_default_model_dir() -> crate::error::Result<PathBuf> {
    default_model_dir().ok_or_else(|| {
        let looked: Vec<String> = default_model_candidates().iter().map(|p| p.display().to_string()).collect();
        crate::error::EngineError::Checkpoint(format!("no default model found (looked in {})", looked.join(", ")))
    })
}

/// The generator folder of the default model, if present.
pub fn default_dit_dir() -> Option<PathBuf> {
    default_model_dir().map(|d| d.join("dit")).filter(|d| d.join("model.safetensors").exists())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(pairs: &[(&str, &str)]) -> PathBuf {
        let pairs: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        cache_dir_from(move |k| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| OsString::from(v)))
    }

    /// The shell expression `${DINO_SAE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dino-sae}`, case by case.
    #[test]
    fn cache_dir_follows_the_shell_expression() {
        let all = [("DINO_SAE_CACHE", "/c"), ("XDG_CACHE_HOME", "/x"), ("HOME", "/h")];
        assert_eq!(with(&all), PathBuf::from("/c"));
        assert_eq!(with(&all[1..]), PathBuf::from("/x/dino-sae"));
        assert_eq!(with(&all[2..]), PathBuf::from("/h/.cache/dino-sae"));
        assert_eq!(
            with(&[("DINO_SAE_CACHE", ""), ("XDG_CACHE_HOME", ""), ("HOME", "/h")]),
            PathBuf::from("/h/.cache/dino-sae")
        );
    }

    #[test]
    fn data_dir_follows_the_xdg_rules() {
        let get = |pairs: &[(&str, &str)]| {
            let m: std::collections::HashMap<String, OsString> =
                pairs.iter().map(|(k, v)| (k.to_string(), OsString::from(v))).collect();
            data_dir_from(|k| m.get(k).cloned())
        };
        let all = [("DINO_SAE_DATA", "/d"), ("XDG_DATA_HOME", "/x"), ("HOME", "/h")];
        assert_eq!(get(&all), PathBuf::from("/d"));
        assert_eq!(get(&all[1..]), PathBuf::from("/x/dino-sae"));
        assert_eq!(get(&all[2..]), PathBuf::from("/h/.local/share/dino-sae"));
        assert_eq!(get(&[("XDG_DATA_HOME", ""), ("HOME", "/h")]), PathBuf::from("/h/.local/share/dino-sae"));
    }
}
