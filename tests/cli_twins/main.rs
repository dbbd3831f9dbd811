//! The studio's editing actions as a user runs them from a shell (the built `dino-sae` binary on the embedded
//! default model and its generator): one module per CLI twin.

mod animation;
mod directions;
mod inpaint;
#[path = "../support/png_text.rs"]
mod png_text;
mod transplant;

pub use png_text::png_text;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn tmp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dino-sae-twins-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Run the CLI; (exit code, stdout, stderr).
pub fn dino_sae(args: &[&OsStr]) -> (i32, String, String) {
    dino_sae_env(args, &[])
}

/// [`dino_sae`] with extra environment variables.
pub fn dino_sae_env(args: &[&OsStr], env: &[(&str, &OsStr)]) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dino-sae"));
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let o = cmd.output().expect("run dino-sae");
    let (out, err) = (String::from_utf8_lossy(&o.stdout).to_string(), String::from_utf8_lossy(&o.stderr).to_string());
    let code = o.status.code().unwrap_or_else(|| panic!("dino-sae died by a signal\n{out}\n{err}"));
    (code, out, err)
}

/// The `latent` of a safetensors file: shape and values.
pub fn latent(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let t = engine::tensor_file::read_safetensors(path).expect("latent file");
    let z = t.get("latent").expect("key `latent`");
    (z.shape.clone(), z.data.clone())
}
