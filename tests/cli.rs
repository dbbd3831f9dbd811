//! The `dino-sae` command line as a user runs it (the built binary, in a folder of its own).

use std::path::PathBuf;
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `DINO_SAE_DEFAULT_MODEL` names the model used when no `--model` is given (first of the places looked in), from
/// any working directory; the reconstruction is written and its PSNR printed.
#[test]
fn default_model_can_be_named_by_the_environment() {
    let dir = std::env::temp_dir().join(format!("dino-sae-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let model = root().join("tests/fixtures/dinosae-setA/sae");
    let out = dir.join("recon.png");
    let o = Command::new(env!("CARGO_BIN_EXE_dino-sae"))
        .current_dir(&dir)
        .env("DINO_SAE_DEFAULT_MODEL", &model)
        .arg("reconstruct")
        .arg(root().join("assets/samples/chelsea.png"))
        .arg("-o")
        .arg(&out)
        .output()
        .expect("run dino-sae");
    let (stdout, stderr) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "exit {:?}\n{stdout}\n{stderr}", o.status);
    assert!(stderr.contains(&model.display().to_string()) && stderr.contains("missing 0"), "{stderr}");
    assert!(stdout.contains("PSNR"), "{stdout}");
    let img = image::open(&out).expect("reconstruction written");
    assert_eq!((img.width(), img.height()), (448, 288), "chelsea 451x300 cropped to multiples of 16");
    let _ = std::fs::remove_dir_all(&dir);
}
