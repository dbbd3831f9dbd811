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

fn tmp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dino-sae-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn fixture_model() -> PathBuf {
    root().join("tests/fixtures/dinosae-setA/sae")
}

/// Run the CLI; returns (exit code, stdout, stderr, seconds). A death by signal (abort) fails the test.
fn dino_sae(args: &[&std::ffi::OsStr], envs: &[(&str, &str)]) -> (i32, String, String, f64) {
    let t0 = std::time::Instant::now();
    let mut c = Command::new(env!("CARGO_BIN_EXE_dino-sae"));
    c.args(args);
    for (k, v) in envs {
        c.env(k, v);
    }
    let o = c.output().expect("run dino-sae");
    let secs = t0.elapsed().as_secs_f64();
    let (stdout, stderr) =
        (String::from_utf8_lossy(&o.stdout).to_string(), String::from_utf8_lossy(&o.stderr).to_string());
    let code =
        o.status.code().unwrap_or_else(|| panic!("dino-sae died by a signal ({:?})\n{stdout}\n{stderr}", o.status));
    (code, stdout, stderr, secs)
}

/// A 6000x4000 camera-sized JPEG given to `reconstruct --whole` (one pass insisted on) is refused within seconds
/// with the estimate, the budget and the largest size that fits; nothing is written and the process exits with an
/// error code, not an abort. (Without `--whole` it goes to tiles: `camera_photo_goes_to_tiles_by_itself`.)
#[test]
fn reconstruct_whole_refuses_a_camera_photo_within_seconds() {
    let dir = tmp_dir("camera");
    let photo = dir.join("camera.jpg");
    let img =
        image::RgbImage::from_fn(6000, 4000, |x, y| image::Rgb([(x / 24) as u8, (y / 16) as u8, ((x + y) / 40) as u8]));
    img.save(&photo).expect("write the 6000x4000 JPEG");
    let out = dir.join("recon.png");
    let (code, stdout, stderr, secs) = dino_sae(
        &["reconstruct".as_ref(), photo.as_os_str(), "-o".as_ref(), out.as_os_str(), "--whole".as_ref()],
        // a fixed budget: whether the photo fits must not depend on this machine's free memory (the estimate is
        // about 7 GiB since attention no longer materialises its scores)
        &[
            ("DINO_SAE_DEFAULT_MODEL", root().join("assets/default-model").to_str().expect("utf-8")),
            ("DINO_SAE_MEMORY_BUDGET", "4GiB"),
        ],
    );
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    println!("refused in {secs:.1} s: {stderr}");
    for needle in ["reconstruct of 6000x4000", "needs about", "GiB of memory", "over the budget of", "at most", "tiled"]
    {
        assert!(stderr.contains(needle), "missing {needle:?} in: {stderr}");
    }
    // the size it names is a real size with the photo's aspect (3:2 within a patch)
    let at_most = stderr.split("at most ").nth(1).expect("at most");
    let nums: Vec<usize> = at_most
        .split(" x ")
        .take(2)
        .map(|s| s.trim().split(' ').next().unwrap_or("").replace(',', "").parse().unwrap_or(0))
        .collect();
    assert!(nums.len() == 2 && nums[0] >= 16 && nums[1] >= 16 && nums[0] < 6000, "{at_most}");
    assert!((nums[0] as f64 / nums[1] as f64 - 1.5).abs() < 0.15, "aspect of {nums:?}");
    assert!(secs < 30.0, "refusal took {secs:.1} s (model load + JPEG decode + preflight)");
    assert!(!out.exists(), "nothing is written");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Run the CLI with stderr read line by line as it comes; returns (exit code, stdout, stderr lines with the
/// seconds since the start at which each arrived).
fn dino_sae_timed(args: &[&std::ffi::OsStr], envs: &[(&str, &str)]) -> (i32, String, Vec<(f64, String)>) {
    use std::io::{BufRead, Read};
    let t0 = std::time::Instant::now();
    let mut c = Command::new(env!("CARGO_BIN_EXE_dino-sae"));
    c.args(args).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    for (k, v) in envs {
        c.env(k, v);
    }
    let mut child = c.spawn().expect("run dino-sae");
    let stderr = child.stderr.take().expect("stderr");
    let mut stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        // progress bars redraw with \r on a terminal; here (a pipe) they print lines
        std::io::BufReader::new(stderr)
            .split(b'\n')
            .map_while(|l| l.ok())
            .map(|l| (t0.elapsed().as_secs_f64(), String::from_utf8_lossy(&l).to_string()))
            .collect::<Vec<_>>()
    });
    let mut out = String::new();
    stdout.read_to_string(&mut out).expect("stdout");
    let status = child.wait().expect("wait");
    let lines = reader.join().expect("stderr reader");
    let code = status.code().unwrap_or_else(|| panic!("dino-sae died by a signal ({status:?})\n{out}\n{lines:?}"));
    (code, out, lines)
}

/// A 6000x4000 camera JPEG given to plain `reconstruct` goes to tiles by itself: the preflight's plan says why on
/// stderr ("auto-tiling"), a progress line with an ETA arrives within 60 s of the start (the bound for any
/// camera-sized input: a result, a tiled job with progress, or a refusal), and the full-size reconstruction is
/// written. Fixture model (fast tiles) under a fixed 4 GiB budget.
#[test]
fn camera_photo_goes_to_tiles_by_itself() {
    let dir = tmp_dir("camera-auto");
    let photo = dir.join("camera.jpg");
    let img =
        image::RgbImage::from_fn(6000, 4000, |x, y| image::Rgb([(x / 24) as u8, (y / 16) as u8, ((x + y) / 40) as u8]));
    img.save(&photo).expect("write the 6000x4000 JPEG");
    let out = dir.join("recon.png");
    let model = fixture_model();
    let (code, stdout, lines) = dino_sae_timed(
        &["reconstruct".as_ref(), photo.as_os_str(), "-o".as_ref(), out.as_os_str(), "-m".as_ref(), model.as_os_str()],
        &[("DINO_SAE_MEMORY_BUDGET", "4GiB")],
    );
    let all: Vec<&str> = lines.iter().map(|(_, l)| l.as_str()).collect();
    assert_eq!(code, 0, "{stdout}\n{}", all.join("\n"));
    assert!(all.iter().any(|l| l.starts_with("auto-tiling:") && l.contains("6000x4000")), "{}", all.join("\n"));
    let first = lines.iter().find(|(_, l)| l.contains("tile") && l.contains("ETA")).expect("a progress line");
    assert!(first.0 < 60.0, "first progress line after {:.1} s", first.0);
    assert!(stdout.contains("PSNR") && stdout.contains("tiled"), "{stdout}");
    let rec = image::open(&out).expect("reconstruction");
    assert_eq!((rec.width(), rec.height()), (6000, 4000));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A latent with a 400x400 grid given to plain `decode` is decoded in tiles by itself (6400x6400 px), saying so.
#[test]
fn a_400x400_latent_decodes_in_tiles_by_itself() {
    let dir = tmp_dir("bigdec-auto");
    let lat = dir.join("big.safetensors");
    write_latent(&lat, 64, 400, 400);
    let out = dir.join("big.png");
    let model = fixture_model();
    let (code, stdout, lines) = dino_sae_timed(
        &["decode".as_ref(), lat.as_os_str(), "-o".as_ref(), out.as_os_str(), "-m".as_ref(), model.as_os_str()],
        &[("DINO_SAE_MEMORY_BUDGET", "2GiB")],
    );
    let all: Vec<&str> = lines.iter().map(|(_, l)| l.as_str()).collect();
    assert_eq!(code, 0, "{stdout}\n{}", all.join("\n"));
    assert!(all.iter().any(|l| l.starts_with("auto-tiling:") && l.contains("400x400 latent")), "{}", all.join("\n"));
    let first = lines.iter().find(|(_, l)| l.contains("tile") && l.contains("ETA")).expect("a progress line");
    assert!(first.0 < 60.0, "first progress line after {:.1} s", first.0);
    let img = image::open(&out).expect("decoded");
    assert_eq!((img.width(), img.height()), (6400, 6400));
    let _ = std::fs::remove_dir_all(&dir);
}

fn write_latent(path: &std::path::Path, c: usize, h: usize, w: usize) {
    let mut t = engine::tensor_file::TensorMap::new();
    let data: Vec<f32> = (0..c * h * w).map(|i| ((i % 97) as f32 / 97.0 - 0.5) * 0.2).collect();
    t.insert("latent".into(), engine::tensor_file::RawTensor::new(vec![1, c, h, w], data).expect("shape"));
    engine::tensor_file::write_safetensors(path, &t, &Default::default(), engine::tensor_file::Precision::F32)
        .expect("write latent");
}

/// `decode --whole` of a latent with a 400x400 grid is refused within seconds, saying which grid fits and pointing
/// to `--tiled` (without `--whole` it is decoded in tiles: `a_400x400_latent_decodes_in_tiles_by_itself`).
#[test]
fn decode_whole_refuses_a_400x400_latent_and_says_what_fits() {
    let dir = tmp_dir("bigdec");
    let lat = dir.join("big.safetensors");
    write_latent(&lat, 64, 400, 400);
    let out = dir.join("big.png");
    let model = fixture_model();
    let (code, stdout, stderr, secs) = dino_sae(
        &[
            "decode".as_ref(),
            lat.as_os_str(),
            "-o".as_ref(),
            out.as_os_str(),
            "-m".as_ref(),
            model.as_os_str(),
            "--whole".as_ref(),
        ],
        &[("DINO_SAE_MEMORY_BUDGET", "2GiB")],
    );
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    println!("refused in {secs:.1} s: {stderr}");
    for needle in [
        "decode of a 400x400 latent",
        "6400x6400 px",
        "over the budget of 2.0 GiB",
        "DINO_SAE_MEMORY_BUDGET=2GiB",
        "grid fits in one pass",
        "--tiled",
    ] {
        assert!(stderr.contains(needle), "missing {needle:?} in: {stderr}");
    }
    assert!(secs < 20.0, "refusal took {secs:.1} s");
    assert!(!out.exists());
    let _ = std::fs::remove_dir_all(&dir);
}

/// `decode --tiled` renders a latent larger than one tile with a progress line per tile on stderr, and the
/// full-size PNG comes out; the single-pass decode of the same latent agrees away from the seams.
#[test]
fn tiled_decode_reports_progress_and_writes_the_full_image() {
    let dir = tmp_dir("tiled");
    let lat = dir.join("l.safetensors");
    write_latent(&lat, 64, 40, 48);
    let model = fixture_model();
    let tiled = dir.join("tiled.png");
    let (code, stdout, stderr, _) = dino_sae(
        &[
            "decode".as_ref(),
            lat.as_os_str(),
            "-o".as_ref(),
            tiled.as_os_str(),
            "-m".as_ref(),
            model.as_os_str(),
            "--tiled".as_ref(),
        ],
        &[],
    );
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    // 40 x 48 patches in 32-patch tiles overlapping by 4: 2 x 2 tiles
    assert!(stderr.contains("decode: tile 1/4") && stderr.contains("tile 4/4 (100 %)"), "{stderr}");
    let a = image::open(&tiled).expect("tiled png").to_rgb8();
    assert_eq!(a.dimensions(), (768, 640));
    let single = dir.join("single.png");
    let (code, _, stderr, _) = dino_sae(
        &["decode".as_ref(), lat.as_os_str(), "-o".as_ref(), single.as_os_str(), "-m".as_ref(), model.as_os_str()],
        &[],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("preflight: decode of a 40x48 latent"), "{stderr}");
    let b = image::open(&single).expect("png").to_rgb8();
    // tiles start at patches (0, 8) down and (0, 16) across: the top-left 112 x 224 px are covered by the first
    // tile alone, far from its edges. The decoder is not exactly local (its norms see the whole map), so the two
    // agree closely there but not bit for bit; a misplaced or mis-blended tile would differ by far more.
    let (mut worst, mut sum, mut n) = (0i32, 0f64, 0f64);
    for y in 0..112 {
        for x in 0..224 {
            for c in 0..3 {
                let d = (a.get_pixel(x, y)[c] as i32 - b.get_pixel(x, y)[c] as i32).abs();
                worst = worst.max(d);
                sum += d as f64;
                n += 1.0;
            }
        }
    }
    // and the whole image: the blended seams stay close to the single pass too
    let whole = a
        .pixels()
        .zip(b.pixels())
        .map(|(p, q)| (0..3).map(|c| (p[c] as i32 - q[c] as i32).abs() as f64).sum::<f64>())
        .sum::<f64>()
        / (3.0 * 768.0 * 640.0);
    println!(
        "tiled vs single pass: inside the first tile max {worst}, mean {:.2} levels; whole image mean {whole:.2}",
        sum / n
    );
    assert!(worst <= 16 && sum / n <= 2.0, "inside the first tile: max {worst}, mean {:.2} levels", sum / n);
    assert!(whole <= 4.0, "whole image: mean {whole:.2} levels");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `reconstruct --tiled` goes through the tiled encode and decode with progress lines.
#[test]
fn tiled_reconstruct_runs_with_progress() {
    let dir = tmp_dir("tiledrec");
    let photo = dir.join("p.png");
    image::RgbImage::from_fn(600, 600, |x, y| image::Rgb([(x % 256) as u8, (y % 256) as u8, 90]))
        .save(&photo)
        .expect("png");
    let out = dir.join("r.png");
    let model = fixture_model();
    let (code, stdout, stderr, _) = dino_sae(
        &[
            "reconstruct".as_ref(),
            photo.as_os_str(),
            "-o".as_ref(),
            out.as_os_str(),
            "-m".as_ref(),
            model.as_os_str(),
            "--tiled".as_ref(),
        ],
        &[],
    );
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stderr.contains("encode: tile 4/4") && stderr.contains("decode: tile 4/4"), "{stderr}");
    assert!(stdout.contains("PSNR") && stdout.contains("tiled"), "{stdout}");
    assert_eq!(image::open(&out).expect("png").to_rgb8().dimensions(), (592, 592));
    let _ = std::fs::remove_dir_all(&dir);
}

/// `sample` consults the preflight before sampling: a batch far beyond the budget is refused at once, naming how
/// many fit.
#[test]
fn sample_refuses_a_batch_beyond_the_budget() {
    let dir = tmp_dir("sample");
    let out = dir.join("grid.png");
    let model = root().join("assets/default-model");
    let dit = model.join("dit");
    let (code, stdout, stderr, secs) = dino_sae(
        &[
            "sample".as_ref(),
            "--dit".as_ref(),
            dit.as_os_str(),
            "--sae".as_ref(),
            model.as_os_str(),
            "--n".as_ref(),
            "100000".as_ref(),
            "-o".as_ref(),
            out.as_os_str(),
        ],
        &[("DINO_SAE_MEMORY_BUDGET", "2GiB")],
    );
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(
        stderr.contains("sampling 100000 latents")
            && stderr.contains("over the budget of 2.0 GiB")
            && stderr.contains("at most --n"),
        "{stderr}"
    );
    assert!(secs < 20.0 && !out.exists(), "{secs:.1} s");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `dino-sae sample` with no model flags uses the default model and its generator; the same seed gives the same
/// PNG (sampling is deterministic per seed), another seed another one.
#[test]
fn sample_defaults_to_the_default_model_and_its_generator() {
    let dir = tmp_dir("sample-default");
    let run = |seed: &str, name: &str| {
        let out = dir.join(name);
        let flags = ["sample", "--class", "0", "--seed", seed, "--steps", "8", "-o"];
        let args: Vec<&std::ffi::OsStr> = flags.iter().map(|a| a.as_ref()).chain([out.as_os_str()]).collect();
        let (code, stdout, stderr, _) = dino_sae(&args, &[]);
        assert_eq!(code, 0, "{stdout}\n{stderr}");
        image::open(&out).expect("samples written").to_rgb8()
    };
    let (a, a2, b) = (run("7", "a.png"), run("7", "a2.png"), run("8", "b.png"));
    assert_eq!(a.dimensions(), (256, 256), "4 samples of 128 px tiled 2 x 2");
    assert_eq!(a, a2, "same seed, same samples");
    assert_ne!(a, b, "another seed, other samples");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `dino-sae interpolate` between two images consults the memory preflight: over a small budget it is refused with
/// what fits, before anything is written.
#[test]
fn interpolate_refuses_images_over_the_budget() {
    let dir = tmp_dir("interp-budget");
    let out = dir.join("frames");
    let (a, b, model) =
        (root().join("assets/samples/chelsea.png"), root().join("assets/samples/coffee.png"), fixture_model());
    let args: Vec<&std::ffi::OsStr> = vec![
        "interpolate".as_ref(),
        a.as_os_str(),
        b.as_os_str(),
        "--sae".as_ref(),
        model.as_os_str(),
        "--steps".as_ref(),
        "2".as_ref(),
        "-o".as_ref(),
        out.as_os_str(),
    ];
    let (code, _, stderr, _) = dino_sae(&args, &[("DINO_SAE_MEMORY_BUDGET", "24MiB")]);
    assert_ne!(code, 0, "refused");
    assert!(stderr.contains("encode of 448x288 (batch 2)") && stderr.contains("at most"), "{stderr}");
    assert!(!out.exists(), "nothing written");
    // the same with the budget the machine gives works
    let (code, _, stderr, _) = dino_sae(&args, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(out.join("frame_002.png").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every choice is a clap `ValueEnum`: a bad value is refused by the parser (exit code 2, nothing run) with the
/// valid values listed; aliases of the old hand-written parsers still work.
#[test]
fn a_bad_choice_is_refused_by_the_parser_with_the_valid_values() {
    let cases: [(&[&str], &str, &[&str]); 5] = [
        (&["reconstruct", "in.png", "-o", "out.png", "--fit", "stretch"], "stretch", &["crop", "pad", "resize"]),
        (&["train-dit", "--sae", "s", "--photos", "p", "-o", "o", "--arch", "unet"], "unet", &["lightningdit", "ddt"]),
        (&["sample", "-o", "s.png", "--sampler", "heun"], "heun", &["euler-proj", "exp-map"]),
        (&["bench", "--backend", "tpu"], "tpu", &["auto", "cpu", "wgpu"]),
        (
            &["train", "--teacher", "t", "--photos", "p", "-o", "o", "--schedule", "step"],
            "step",
            &["constant", "cosine"],
        ),
    ];
    for (args, bad, valid) in cases {
        let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_ref()).collect();
        let (code, stdout, stderr, secs) = dino_sae(&args, &[]);
        assert_eq!(code, 2, "{args:?}\n{stdout}\n{stderr}");
        assert!(stderr.contains(&format!("invalid value '{bad}'")), "{stderr}");
        for v in valid {
            assert!(stderr.contains(v), "{v} not listed: {stderr}");
        }
        assert!(secs < 10.0, "refused by the parser, nothing loaded ({secs:.1} s)");
    }
    // the engine's preset lists are the parser's
    let lists: [(&str, &[&str]); 2] =
        [("train-dit", engine::model::dit::PRESETS), ("train-preview", &engine::model::preview::PRESETS)];
    for (cmd, presets) in lists {
        let (code, stdout, _, _) = dino_sae(&[cmd.as_ref(), "--help".as_ref()], &[]);
        assert_eq!(code, 0);
        assert!(stdout.contains(&format!("[possible values: {}]", presets.join(", "))), "{cmd}: {stdout}");
    }
}

/// `dino-sae bench` with no model flags times the embedded default model (rows named `*_default`).
#[test]
fn bench_defaults_to_the_default_model() {
    let (code, stdout, stderr, secs) = dino_sae(&["bench".as_ref(), "--repeats".as_ref(), "1".as_ref()], &[]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let model = engine::dirs::default_model_dir().expect("default model");
    assert!(stdout.contains(&format!("model: the default model ({})", model.display())), "{stdout}");
    for row in ["encode_256_default", "decode_256_default", "preview_256_default", "dit_step_128_default"] {
        assert!(stdout.contains(row), "{row} missing: {stdout}");
    }
    eprintln!("bench --repeats 1 on the default model: {secs:.1} s");
}

/// `interpolate` between two seeds with no model flags samples with the default model's generator.
#[test]
fn interpolate_defaults_to_the_default_model_and_its_generator() {
    let dir = tmp_dir("interp-default");
    let out = dir.join("frames");
    let args: Vec<&std::ffi::OsStr> = ["interpolate", "seed:1", "seed:2", "--steps", "2", "--sample-steps", "4", "-o"]
        .iter()
        .map(|a| a.as_ref())
        .chain([out.as_os_str()])
        .collect();
    let (code, stdout, stderr, _) = dino_sae(&args, &[]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    for k in 0..=2 {
        assert!(out.join(format!("frame_{k:03}.png")).exists(), "frame {k}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `dino-sae eval` with no model named evaluates the default model against the cached teacher
/// (scripts/fetch-teacher.sh, which the README test command runs first).
#[test]
fn eval_defaults_to_the_default_model_and_the_cached_teacher() {
    assert!(engine::dirs::teacher_dir().exists(), "teacher missing: run scripts/fetch-teacher.sh");
    let photos = root().join("assets/samples");
    let args: [&std::ffi::OsStr; 5] =
        ["eval".as_ref(), "--photos".as_ref(), photos.as_os_str(), "--size".as_ref(), "64".as_ref()];
    let (code, stdout, stderr, _) = dino_sae(&args, &[]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("| default | 4 at 64x64 |"), "{stdout}");
}

/// `bench --profile` times the decoder's own forward between its probe points: one row per stage output, with the
/// shape the config gives (widths deepest first, side doubling per stage), and the output image last.
#[test]
fn bench_profile_times_the_decoders_own_stages() {
    let args = ["bench", "--preset", "small", "--repeats", "1", "--size", "64", "--profile"];
    let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_ref()).collect();
    let (code, stdout, stderr, _) = dino_sae(&args, &[]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let cfg = engine::model::sae::SaeConfig::small_dinov2().decoder;
    let s = cfg.width_list.len();
    let row = |name: &str| stdout.lines().find(|l| l.trim_start().starts_with(&format!("{name} "))).map(str::to_string);
    for k in 0..s {
        let stage_id = s - 1 - k;
        if cfg.depth_list[stage_id] == 0 {
            assert!(row(&format!("stages.{k}_out")).is_none(), "an empty stage has no row: {stdout}");
            continue;
        }
        let side = 4 << k;
        let line = row(&format!("stages.{k}_out")).unwrap_or_else(|| panic!("stages.{k}_out missing: {stdout}"));
        assert!(line.contains(&format!("[1, {}, {side}, {side}]", cfg.width_list[stage_id])), "{line}");
    }
    let last = row("project_out").unwrap_or_else(|| panic!("project_out missing: {stdout}"));
    assert!(last.contains("[1, 3, 64, 64]"), "{last}");
}

/// Rows `(step, loss)` of a training run's loss.csv.
fn loss_rows(run: &std::path::Path) -> Vec<(usize, f64)> {
    let text = std::fs::read_to_string(run.join("loss.csv")).expect("loss.csv");
    text.lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0].parse().expect("step"), f[1].parse().expect("loss"))
        })
        .collect()
}

/// scripts/gpu-train.sh as a user with a GPU runs it (here on lavapipe): a burst stops itself at its time limit
/// with a checkpoint, the same command resumes to the end, and the wgpu run's losses match a CPU run of the same
/// flags (same crops, same init) step for step. Skipped only where DINO_SAE_SKIP_WGPU=1 says there is no adapter.
#[test]
fn gpu_train_burst_stops_at_its_limit_resumes_and_matches_the_cpu() {
    if std::env::var("DINO_SAE_SKIP_WGPU").as_deref() == Ok("1") {
        eprintln!("DINO_SAE_SKIP_WGPU=1: gpu-train burst skipped");
        return;
    }
    let dir = tmp_dir("gpu-train");
    let burst = |run: &str, minutes: &str, backend: &str| {
        let o = Command::new("bash")
            .arg(root().join("scripts/gpu-train.sh"))
            .args(["--bin", env!("CARGO_BIN_EXE_dino-sae"), "--run"])
            .arg(dir.join(run))
            .arg("--teacher")
            .arg(root().join("tests/fixtures/dinosae-setA/dinov3/hf"))
            .arg("--photos")
            .arg(root().join("assets/samples"))
            .arg("--init")
            .arg(fixture_model())
            .args(["--minutes", minutes, "--backend", backend, "--steps", "12", "--batch", "2", "--crop", "32"])
            .args(["--lr", "1e-3"])
            .output()
            .expect("run gpu-train.sh");
        let (out, err) =
            (String::from_utf8_lossy(&o.stdout).to_string(), String::from_utf8_lossy(&o.stderr).to_string());
        assert!(o.status.success(), "gpu-train {run} {minutes} {backend}: {:?}\n{out}\n{err}", o.status);
        out + &err
    };
    // a zero-minute burst: stops at the first log row (step 10) with a checkpoint there
    let first = burst("gpu", "0", "wgpu");
    assert!(first.contains("wgpu: ") && first.contains("stopped at the time limit: checkpoint at step 10"), "{first}");
    assert_eq!(std::fs::read_to_string(dir.join("gpu/latest")).expect("latest").trim(), "ckpt-10");
    assert!(!dir.join("gpu/final").exists(), "a stopped burst has no final model");
    // the same command (with time) resumes at 10 and finishes
    let second = burst("gpu", "5", "wgpu");
    assert!(second.contains("done: "), "{second}");
    assert!(dir.join("gpu/final/model.safetensors").exists());
    // the CPU, same flags, one burst
    burst("cpu", "5", "cpu");
    let (g, c) = (loss_rows(&dir.join("gpu")), loss_rows(&dir.join("cpu")));
    let steps = |r: &[(usize, f64)]| r.iter().map(|x| x.0).collect::<Vec<_>>();
    assert_eq!(steps(&g), [10, 12]);
    assert_eq!(steps(&c), [10, 12]);
    for ((s, lg), (_, lc)) in g.iter().zip(&c) {
        assert!(((lg - lc) / lc).abs() < 2e-3, "step {s}: wgpu loss {lg} vs CPU {lc}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
