//! `dino-sae steer` / `inspect` and folder `reconstruct` as a user runs them (the built binary, the tiny fixture
//! model of set A). Latents are checked against float64 maths computed here from `dino-sae encode`'s latent, never
//! against the engine's own steering functions.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

#[path = "support/png_text.rs"]
mod png_text;
use png_text::png_text;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn model() -> PathBuf {
    root().join("tests/fixtures/dinosae-setA/sae")
}

fn tmp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dino-sae-steer-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Run the CLI with `--model` set to the fixture where the command takes one; (exit code, stdout, stderr).
fn dino_sae(args: &[&OsStr]) -> (i32, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_dino-sae")).args(args).output().expect("run dino-sae");
    let (out, err) = (String::from_utf8_lossy(&o.stdout).to_string(), String::from_utf8_lossy(&o.stderr).to_string());
    let code = o.status.code().unwrap_or_else(|| panic!("dino-sae died by a signal\n{out}\n{err}"));
    (code, out, err)
}

/// A 96 x 64 test picture (a 4 x 6 latent grid at 16 px per patch) with structure in every patch.
fn picture(dir: &Path, name: &str, seed: u32) -> PathBuf {
    let p = dir.join(name);
    image::RgbImage::from_fn(96, 64, |x, y| {
        let v = (x * 7 + y * 13 + seed * 31) ^ (x * y / 5);
        image::Rgb([(v % 251) as u8, ((x * 3 + seed * 17) % 256) as u8, ((y * 4 + x / 3) % 256) as u8])
    })
    .save(&p)
    .expect("write picture");
    p
}

/// The `latent` [1, C, h, w] of a safetensors file, as f64, with its shape.
fn latent(path: &Path) -> (Vec<usize>, Vec<f64>) {
    let t = engine::tensor_file::read_safetensors(path).expect("latent file");
    let z = t.get("latent").expect("key `latent`");
    (z.shape.clone(), z.data.iter().map(|v| *v as f64).collect())
}

fn encode(img: &Path, out: &Path) -> (Vec<usize>, Vec<f64>) {
    let (code, so, se) = dino_sae(&[
        "encode".as_ref(),
        img.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
        "-m".as_ref(),
        model().as_os_str(),
    ]);
    assert_eq!(code, 0, "{so}\n{se}");
    latent(out)
}

/// Patch `p` of a [1, C, h, w] latent.
fn column(z: &[f64], shape: &[usize], p: usize) -> Vec<f64> {
    let (c, n) = (shape[1], shape[2] * shape[3]);
    (0..c).map(|k| z[k * n + p]).collect()
}

fn norm(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

fn steer(img: &Path, out: &Path, extra: &[&str]) -> (i32, String, String) {
    let m = model();
    let mut args: Vec<&OsStr> = vec!["steer".as_ref(), img.as_os_str(), "-o".as_ref(), out.as_os_str()];
    args.extend(["-m".as_ref(), m.as_os_str()]);
    args.extend(extra.iter().map(|s| OsStr::new(*s)));
    dino_sae(&args)
}

/// `--angle 0` leaves every patch as `encode` wrote it (tolerance 1e-6 of max |z|: the same encode, no rotation).
#[test]
fn steer_by_zero_degrees_gives_the_encoded_latent() {
    let dir = tmp_dir("zero");
    let img = picture(&dir, "pic.png", 1);
    let (shape, z) = encode(&img, &dir.join("z.safetensors"));
    let out = dir.join("s.png");
    let (code, so, se) = steer(&img, &out, &["--all", "--towards", "random:5", "--angle", "0"]);
    assert_eq!(code, 0, "{so}\n{se}");
    let (s_shape, s) = latent(&dir.join("s.safetensors"));
    assert_eq!(s_shape, shape);
    let max = z.iter().fold(0f64, |m, v| m.max(v.abs()));
    let err = z.iter().zip(&s).fold(0f64, |m, (a, b)| m.max((a - b).abs()));
    assert!(err <= 1e-6 * max, "max |steered - encoded| = {err:.3e} (max |z| {max:.3})");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--all --towards patch:R,C --angle 90 --scale 1`: every patch q lands at the point 90 degrees along the great
/// circle from z_q towards z_target, at radius |z_q|: an f64 slerp of the unit directions with parameter
/// (pi/2) / theta_q, times |z_q| (tolerance 2e-4 of |z_q|: f32 maths). The PNG's text chunks hold the command, the
/// model, the engine version and the edit.
#[test]
fn steer_ninety_degrees_towards_a_patch_lands_on_the_great_circle() {
    let dir = tmp_dir("ninety");
    let img = picture(&dir, "pic.png", 2);
    let (shape, z) = encode(&img, &dir.join("z.safetensors"));
    let (gh, gw) = (shape[2], shape[3]);
    assert_eq!((gh, gw), (4, 6));
    let (r, c) = (1, 2);
    let tp = r * gw + c;
    let out = dir.join("s.png");
    let (code, so, se) = steer(&img, &out, &["--all", "--towards", "patch:1,2", "--angle", "90", "--scale", "1"]);
    assert_eq!(code, 0, "{so}\n{se}");
    assert!(so.contains("steered 24 of 24 patches"), "{so}");
    let (_, s) = latent(&dir.join("s.safetensors"));
    let t = column(&z, &shape, tp);
    let th = t.iter().map(|v| v / norm(&t)).collect::<Vec<_>>();
    let mut checked = 0;
    for q in 0..gh * gw {
        let x = column(&z, &shape, q);
        let got = column(&s, &shape, q);
        let rq = norm(&x);
        assert!((norm(&got) - rq).abs() <= 2e-4 * rq, "patch {q}: radius {} vs {rq}", norm(&got));
        let xh: Vec<f64> = x.iter().map(|v| v / rq).collect();
        let cos = xh.iter().zip(&th).map(|(a, b)| a * b).sum::<f64>().clamp(-1.0, 1.0);
        let theta = cos.acos();
        if q == tp || !(1e-2..=std::f64::consts::PI - 1e-2).contains(&theta) {
            continue; // the target itself (and parallel pairs) have no unique great circle
        }
        let u = std::f64::consts::FRAC_PI_2 / theta;
        let want: Vec<f64> = xh
            .iter()
            .zip(&th)
            .map(|(a, b)| rq * (((1.0 - u) * theta).sin() * a + (u * theta).sin() * b) / theta.sin())
            .collect();
        let err = want.iter().zip(&got).fold(0f64, |m, (a, b)| m.max((a - b).abs()));
        assert!(err <= 2e-4 * rq, "patch {q} (theta {theta:.3}): max error {err:.3e}, |z| {rq:.3}");
        checked += 1;
    }
    assert!(checked >= 20, "only {checked} patches checked");
    let text = png_text(&out);
    let get = |k: &str| text.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone()).unwrap_or_default();
    assert!(
        get("dino-sae:command").contains("--towards patch:1,2") && get("dino-sae:command").contains("--angle 90"),
        "{text:?}"
    );
    assert!(get("dino-sae:model").contains("dinosae-setA"), "{text:?}");
    assert!(!get("dino-sae:engine-version").is_empty(), "{text:?}");
    assert!(get("dino-sae:steer").contains("\"angle_deg\":90"), "{text:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Only the listed patches change; a box selects the patches whose centres it holds; bad selections and specs are
/// clear errors (clap's usage error for a malformed spec, the engine's for an index out of the grid).
#[test]
fn steer_selections_and_their_errors() {
    let dir = tmp_dir("select");
    let img = picture(&dir, "pic.png", 3);
    let (shape, z) = encode(&img, &dir.join("z.safetensors"));
    let n = shape[2] * shape[3];
    let out = dir.join("s.png");
    // box 0,0 .. 30,20 holds the centres (8, 8), (24, 8) -> patches 0, 1
    let (code, so, se) = steer(&img, &out, &["--box", "0,0,30,20", "--towards", "pca:1+", "--angle", "30"]);
    assert_eq!(code, 0, "{so}\n{se}");
    let (_, s) = latent(&dir.join("s.safetensors"));
    for q in 0..n {
        let same = column(&z, &shape, q) == column(&s, &shape, q);
        assert_eq!(same, q != 0 && q != 1, "patch {q}");
    }
    let (code, so, se) = steer(&img, &out, &["--patches", "3,24", "--towards", "random:1", "--angle", "10"]);
    assert_eq!(code, 1, "{so}\n{se}");
    assert!(se.contains("patch 24") && se.contains("4x6"), "{se}");
    let (code, _, se) = steer(&img, &out, &["--box", "0,0,5,5", "--towards", "random:1", "--angle", "10"]);
    assert_eq!(code, 1);
    assert!(se.contains("holds no patch"), "{se}");
    let (code, _, se) = steer(&img, &out, &["--all", "--towards", "patch:9,0", "--angle", "10"]);
    assert_eq!(code, 1);
    assert!(se.contains("outside the 4x6"), "{se}");
    for bad in ["pca:4+", "pca:1", "nowhere:1", "patch:1", "random:x"] {
        let (code, _, se) = steer(&img, &out, &["--all", "--towards", bad, "--angle", "10"]);
        assert_eq!(code, 2, "{bad}: {se}");
        assert!(se.contains(bad), "{bad}: {se}");
    }
    let (code, _, se) = steer(&img, &out, &["--towards", "random:1", "--angle", "10"]);
    assert_eq!(code, 2, "a selection is required: {se}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `inspect` writes a PNG and a CSV per map; the |z| CSV holds the f64 norms of `encode`'s latent (one line per
/// patch row; relative tolerance 1e-5), the cosine map is 1 at the chosen patch; with a teacher, its map too.
#[test]
fn inspect_writes_maps_whose_values_match_the_latent() {
    let dir = tmp_dir("inspect");
    let img = picture(&dir, "pic.png", 4);
    let (shape, z) = encode(&img, &dir.join("z.safetensors"));
    let (gh, gw) = (shape[2], shape[3]);
    let out = dir.join("maps");
    let teacher = root().join("tests/fixtures/dinosae-setA/dinov3/hf");
    let (code, so, se) = dino_sae(&[
        "inspect".as_ref(),
        img.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
        "-m".as_ref(),
        model().as_os_str(),
        "--patch".as_ref(),
        "2,5".as_ref(),
        "--teacher".as_ref(),
        teacher.as_os_str(),
    ]);
    assert_eq!(code, 0, "{so}\n{se}");
    for map in ["magnitude", "pca", "cosine", "teacher"] {
        assert!(so.lines().any(|l| l.starts_with(&format!("{map}:"))), "{map}: {so}");
        let png = image::open(out.join(format!("{map}.png"))).expect("map png");
        assert_eq!(png.width(), 96);
        if map != "pca" {
            assert!(png.height() > 64, "{map}: a colour bar under the 96x64 map");
        }
    }
    let csv = |name: &str| -> Vec<Vec<f64>> {
        std::fs::read_to_string(out.join(format!("{name}.csv")))
            .expect("csv")
            .lines()
            .map(|l| l.split(',').map(|v| v.parse::<f64>().expect("number")).collect())
            .collect()
    };
    let mag = csv("magnitude");
    assert_eq!((mag.len(), mag[0].len()), (gh, gw));
    for (r, row) in mag.iter().enumerate() {
        for (c, got) in row.iter().enumerate() {
            let want = norm(&column(&z, &shape, r * gw + c));
            assert!((got - want).abs() <= 1e-5 * want, "|z| at {r},{c}: {got} vs {want}");
        }
    }
    let cos = csv("cosine");
    assert!((cos[2][5] - 1.0).abs() < 1e-5, "cosine of the chosen patch to itself: {}", cos[2][5]);
    let t = csv("teacher");
    assert!(t.iter().flatten().all(|v| (-1.0..=1.0).contains(v)), "{t:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `reconstruct FOLDER -o OUTDIR`: one row per image, a corrupt file reported and skipped, exit code 1 at the end.
#[test]
fn folder_reconstruct_prints_a_row_per_image_and_survives_a_corrupt_file() {
    let dir = tmp_dir("folder");
    let photos = dir.join("photos");
    std::fs::create_dir_all(&photos).expect("photos dir");
    picture(&photos, "a.png", 5);
    picture(&photos, "b.png", 6);
    std::fs::write(photos.join("broken.png"), b"\x89PNG\r\n\x1a\nnot really a png").expect("corrupt file");
    let out = dir.join("recons");
    let (code, so, se) = dino_sae(&[
        "reconstruct".as_ref(),
        photos.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
        "-m".as_ref(),
        model().as_os_str(),
    ]);
    assert_eq!(code, 1, "one file failed: {so}\n{se}");
    let rows: Vec<&str> = so.lines().filter(|l| l.contains("PSNR")).collect();
    assert_eq!(rows.len(), 2, "{so}");
    assert!(rows[0].starts_with("a.png") && rows[1].starts_with("b.png"), "{so}");
    assert!(so.contains("broken.png") || se.contains("broken.png"), "{so}\n{se}");
    assert!(out.join("a.png").exists() && out.join("b.png").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

/// `eval --photos FOLDER`: one row per readable image on stdout (name, size, PSNR, ...), the table, and exit code 1
/// naming the corrupt file (the fixture model and its DINOv3 teacher at 64 px).
#[test]
fn eval_prints_a_row_per_image_and_reports_a_corrupt_file() {
    let dir = tmp_dir("eval");
    let photos = dir.join("photos");
    std::fs::create_dir_all(&photos).expect("photos dir");
    picture(&photos, "a.png", 7);
    picture(&photos, "b.png", 8);
    std::fs::write(photos.join("broken.jpg"), b"\xff\xd8\xff not a jpeg").expect("corrupt file");
    let spec = format!("fx={}", model().display());
    let teacher = root().join("tests/fixtures/dinosae-setA/dinov3/hf");
    let (code, so, se) = dino_sae(&[
        "eval".as_ref(),
        spec.as_ref(),
        "--teacher".as_ref(),
        teacher.as_os_str(),
        "--photos".as_ref(),
        photos.as_os_str(),
        "--size".as_ref(),
        "64".as_ref(),
    ]);
    assert_eq!(code, 1, "{so}\n{se}");
    let rows: Vec<&str> = so.lines().filter(|l| l.starts_with("fx ") && l.contains("PSNR")).collect();
    assert_eq!(rows.len(), 2, "{so}");
    assert!(rows[0].contains("a.png") && rows[0].contains("96x64") && rows[1].contains("b.png"), "{so}");
    assert!(so.contains("| fx |"), "the table still comes: {so}");
    assert!(se.contains("broken.jpg"), "{se}");
    let _ = std::fs::remove_dir_all(&dir);
}
