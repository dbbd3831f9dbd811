//! The preview decoder (issue 17): its forward against an independent float64 implementation of its maths (1x1 /
//! 3x3 convolutions, ReLU, residual blocks, nearest x2 upsampling, pixel shuffle), shapes on non-square latents,
//! the folder format (round trip, f16, missing keys refused, unexpected keys reported), and the distillation
//! trainer (the loss falls; a run interrupted and resumed ends with the uninterrupted run's weights).

use std::path::{Path, PathBuf};

use burn::tensor::{Tensor, TensorData};
use engine::model::preview::{PRESETS, PreviewArch, PreviewConfig, PreviewDecoder, pixel_shuffle};
use engine::tensor_file::{Precision, RawTensor, TensorMap, read_safetensors, write_safetensors};
use engine::train::preview::{PreviewEvent, PreviewTrainConfig, train_preview};
use rand::{Rng, SeedableRng, rngs::StdRng};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn fresh_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("dino-sae-preview-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

// ------------------------------------------------------------------------------------------------
// float64 reference: NCHW arrays as (shape, values)

#[derive(Clone)]
struct A {
    c: usize,
    h: usize,
    w: usize,
    v: Vec<f64>,
}

impl A {
    fn at(&self, c: usize, y: isize, x: isize) -> f64 {
        if y < 0 || x < 0 || y as usize >= self.h || x as usize >= self.w {
            0.0
        } else {
            self.v[(c * self.h + y as usize) * self.w + x as usize]
        }
    }
}

/// Zero-padded, stride-1 convolution with a k x k kernel (k odd), weight `[co, ci, k, k]`.
fn conv_ref(x: &A, w: &RawTensor, b: &RawTensor) -> A {
    let (co, ci, k) = (w.shape[0], w.shape[1], w.shape[2]);
    assert_eq!(ci, x.c);
    let p = (k / 2) as isize;
    let mut v = vec![0.0; co * x.h * x.w];
    for o in 0..co {
        for y in 0..x.h {
            for xx in 0..x.w {
                let mut s = b.data[o] as f64;
                for i in 0..ci {
                    for ky in 0..k {
                        for kx in 0..k {
                            let wv = w.data[((o * ci + i) * k + ky) * k + kx] as f64;
                            s += wv * x.at(i, y as isize + ky as isize - p, xx as isize + kx as isize - p);
                        }
                    }
                }
                v[(o * x.h + y) * x.w + xx] = s;
            }
        }
    }
    A { c: co, h: x.h, w: x.w, v }
}

fn relu_ref(mut x: A) -> A {
    x.v.iter_mut().for_each(|v| *v = v.max(0.0));
    x
}

fn add_ref(mut a: A, b: &A) -> A {
    a.v.iter_mut().zip(&b.v).for_each(|(x, y)| *x += y);
    a
}

fn up2_ref(x: &A) -> A {
    let (h, w) = (2 * x.h, 2 * x.w);
    let mut v = vec![0.0; x.c * h * w];
    for c in 0..x.c {
        for y in 0..h {
            for xx in 0..w {
                v[(c * h + y) * w + xx] = x.at(c, (y / 2) as isize, (xx / 2) as isize);
            }
        }
    }
    A { c: x.c, h, w, v }
}

/// out[c, s*y+i, s*x+j] = in[c*s*s + i*s + j, y, x]
fn shuffle_ref(x: &A, s: usize) -> A {
    let c = x.c / (s * s);
    let (h, w) = (x.h * s, x.w * s);
    let mut v = vec![0.0; c * h * w];
    for ch in 0..c {
        for y in 0..h {
            for xx in 0..w {
                let src = ch * s * s + (y % s) * s + xx % s;
                v[(ch * h + y) * w + xx] = x.at(src, (y / s) as isize, (xx / s) as isize);
            }
        }
    }
    A { c, h, w, v }
}

fn preview_ref(cfg: &PreviewConfig, sd: &TensorMap, z: &A) -> A {
    let conv = |x: &A, key: &str| conv_ref(x, &sd[&format!("{key}.weight")], &sd[&format!("{key}.bias")]);
    let s = cfg.shuffle();
    if cfg.arch == PreviewArch::Linear {
        return shuffle_ref(&conv(z, "input"), s);
    }
    let mut x = relu_ref(conv(z, "input"));
    for i in 0..cfg.widths.len() {
        if i > 0 {
            x = relu_ref(conv(&up2_ref(&x), &format!("levels.{i}.up")));
        }
        for j in 0..cfg.depths[i] {
            let y = conv(&x, &format!("levels.{i}.blocks.{j}"));
            x = relu_ref(add_ref(x, &y));
        }
    }
    shuffle_ref(&conv(&x, "out"), s)
}

fn random_latent(b: usize, c: usize, h: usize, w: usize, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..b * c * h * w).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

fn small_cfg(arch: PreviewArch) -> PreviewConfig {
    PreviewConfig { arch, latent_channels: 7, widths: vec![6, 5, 4], depths: vec![2, 1, 0], pixels: Default::default() }
}

#[test]
fn forward_matches_a_float64_reference_of_its_maths() {
    let device = engine::cpu();
    for arch in [PreviewArch::Conv, PreviewArch::Linear] {
        let cfg = small_cfg(arch);
        let (m, report) = PreviewDecoder::random(&cfg, 3, &device).expect("build");
        assert!(report.random);
        let sd = m.state_dict().expect("state dict");
        // batch 2, non-square 3x2 grid
        let (b, c, h, w) = (2, 7, 3, 2);
        let zv = random_latent(b, c, h, w, 11);
        let z = Tensor::<4>::from_data(TensorData::new(zv.clone(), vec![b, c, h, w]), &device);
        let y = m.forward(z);
        assert_eq!(y.dims(), [b, 3, 16 * h, 16 * w]);
        let got: Vec<f32> = y.into_data().convert::<f32>().try_to_vec::<f32>().expect("host");
        let per = 3 * 16 * h * 16 * w;
        let mut worst = 0.0f64;
        let mut scale = 0.0f64;
        for bi in 0..b {
            let za = A { c, h, w, v: zv[bi * c * h * w..(bi + 1) * c * h * w].iter().map(|&v| v as f64).collect() };
            let r = preview_ref(&cfg, &sd, &za);
            assert_eq!((r.c, r.h, r.w), (3, 16 * h, 16 * w));
            for (g, e) in got[bi * per..(bi + 1) * per].iter().zip(&r.v) {
                worst = worst.max((*g as f64 - e).abs());
                scale = scale.max(e.abs());
            }
        }
        eprintln!("{arch:?}: max abs err {worst:.3e} (max |ref| {scale:.3})");
        assert!(scale > 1e-3, "degenerate reference");
        assert!(worst <= 1e-5 * scale.max(1.0), "{arch:?}: max abs err {worst:e}");
    }
}

#[test]
fn pixel_shuffle_matches_its_definition() {
    let device = engine::cpu();
    let v: Vec<f32> = (0..2 * 3 * 16 * 2 * 3).map(|i| i as f32).collect();
    let x = Tensor::<4>::from_data(TensorData::new(v.clone(), vec![2, 3 * 16, 2, 3]), &device);
    let y: Vec<f32> = pixel_shuffle(x, 4).into_data().convert::<f32>().try_to_vec::<f32>().expect("host");
    for b in 0..2 {
        let a = A { c: 48, h: 2, w: 3, v: v[b * 288..(b + 1) * 288].iter().map(|&q| q as f64).collect() };
        let r = shuffle_ref(&a, 4);
        for (g, e) in y[b * 288..(b + 1) * 288].iter().zip(&r.v) {
            assert_eq!(*g as f64, *e);
        }
    }
}

#[test]
fn every_preset_maps_non_square_latents_to_16x_pixels() {
    let device = engine::cpu();
    for name in PRESETS {
        let cfg = PreviewConfig::preset(name, 384).expect("preset");
        let (m, _) = PreviewDecoder::random(&cfg, 0, &device).expect("build");
        for (h, w) in [(3, 5), (1, 2), (4, 1)] {
            let z = Tensor::<4>::zeros([1, 384, h, w], &device);
            assert_eq!(m.decode(z).expect("decode").dims(), [1, 3, 16 * h, 16 * w], "{name} at {h}x{w}");
        }
        // <= 1.5 GFLOP at 256x256 and <= 10 MB in f16
        let f = engine::flops::preview(&cfg, 16, 16);
        assert!(f <= 2.0e9, "{name}: {f}");
        assert!(cfg.param_count() * 2 <= 10_000_000, "{name}: {} params", cfg.param_count());
    }
    // wrong channel count is an error, not a panic
    let (m, _) =
        PreviewDecoder::random(&PreviewConfig::preset("tiny", 384).expect("preset"), 0, &device).expect("build");
    assert!(m.decode(Tensor::<4>::zeros([1, 64, 2, 2], &device)).is_err());
}

fn forward_vec(m: &PreviewDecoder, zv: &[f32], shape: [usize; 4]) -> Vec<f32> {
    let device = engine::cpu();
    let z = Tensor::<4>::from_data(TensorData::new(zv.to_vec(), shape.to_vec()), &device);
    m.forward(z).into_data().convert::<f32>().try_to_vec::<f32>().expect("host")
}

#[test]
fn folder_round_trip_f32_f16_and_bad_weights() {
    let device = engine::cpu();
    let cfg = small_cfg(PreviewArch::Conv);
    let (m, _) = PreviewDecoder::random(&cfg, 5, &device).expect("build");
    let zv = random_latent(1, 7, 2, 3, 2);
    let want = forward_vec(&m, &zv, [1, 7, 2, 3]);
    let dir = fresh_dir("roundtrip");

    m.save(dir.join("f32"), Precision::F32, 42, "fp").expect("save");
    assert!(engine::model::preview::is_preview_dir(&dir.join("f32")));
    let (back, report) = PreviewDecoder::load(dir.join("f32"), &device).expect("load");
    assert!(report.is_complete() && report.unexpected.is_empty(), "{}", report.summary(5));
    assert_eq!(back.cfg, cfg);
    assert_eq!(engine::model::preview::read_meta(&dir.join("f32")).expect("meta").steps, 42);
    assert_eq!(forward_vec(&back, &zv, [1, 7, 2, 3]), want, "f32 round trip is exact");
    // a path to the weights file works too
    PreviewDecoder::load(dir.join("f32/model.safetensors"), &device).expect("load by file");

    m.save(dir.join("f16"), Precision::F16, 0, "").expect("save f16");
    let (h, _) = PreviewDecoder::load(dir.join("f16"), &device).expect("load f16");
    let got = forward_vec(&h, &zv, [1, 7, 2, 3]);
    let err = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    let scale = want.iter().map(|v| v.abs()).fold(0.0f32, f32::max);
    assert!(err <= 1e-2 * scale.max(1.0), "f16 error {err}");

    // a missing key is refused, naming the key
    let mut sd: TensorMap = read_safetensors(dir.join("f32/model.safetensors")).expect("read");
    std::fs::create_dir_all(dir.join("missing")).expect("mkdir");
    std::fs::copy(dir.join("f32/config.json"), dir.join("missing/config.json")).expect("copy");
    let removed = sd.remove("levels.1.up.weight").expect("key");
    write_safetensors(dir.join("missing/model.safetensors"), &sd, &Default::default(), Precision::F32).expect("write");
    let e = PreviewDecoder::load(dir.join("missing"), &device).expect_err("missing key must be refused");
    assert!(e.to_string().contains("levels.1.up.weight"), "{e}");

    // an unexpected key is reported; a mis-shaped one refused
    sd.insert("levels.1.up.weight".into(), removed.clone());
    sd.insert("extra.weight".into(), RawTensor::new(vec![2], vec![1.0, 2.0]).expect("raw"));
    write_safetensors(dir.join("missing/model.safetensors"), &sd, &Default::default(), Precision::F32).expect("write");
    let (_, r) = PreviewDecoder::load(dir.join("missing"), &device).expect("unexpected keys are allowed");
    assert_eq!(r.unexpected, vec!["extra.weight".to_string()]);
    sd.insert("out.bias".into(), RawTensor::new(vec![5], vec![0.0; 5]).expect("raw"));
    write_safetensors(dir.join("missing/model.safetensors"), &sd, &Default::default(), Precision::F32).expect("write");
    assert!(PreviewDecoder::load(dir.join("missing"), &device).is_err(), "mis-shaped key must be refused");

    // a folder of another kind is refused
    std::fs::write(dir.join("missing/config.json"), r#"{"kind":"dino_sae","preview":{}}"#).expect("write");
    assert!(PreviewDecoder::load(dir.join("missing"), &device).is_err());
    let _ = std::fs::remove_dir_all(&dir);
}

fn tiny_train_cfg(steps: usize) -> PreviewTrainConfig {
    PreviewTrainConfig {
        preset: "tiny".into(),
        steps,
        batch: 4,
        crop: 32,
        crops_per_photo: 3,
        min_crop_frac: 0.1,
        noise_variants: 1,
        noise_max_deg: 20.0,
        lr: 3e-3,
        warmup: 2,
        checkpoint_every: 5,
        log_every: 1,
        seed: 7,
        ..Default::default()
    }
}

fn max_diff(a: &Path, b: &Path) -> f32 {
    let (a, b) = (read_safetensors(a).expect("a"), read_safetensors(b).expect("b"));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    a.iter()
        .map(|(k, t)| t.data.iter().zip(&b[k].data).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max))
        .fold(0.0, f32::max)
}

/// Distils the tiny fixture SAE's decoder on the sample photos: the loss falls; a run stopped at step 8 and resumed
/// ends with exactly the weights of the uninterrupted run; the cache is reused on resume.
#[test]
fn trainer_loss_falls_and_resume_is_exact() {
    // AdamW's saved moments load through burn's default device (a wgpu adapter: scripts/test.sh installs lavapipe;
    // or BURN_DEVICE=flex), see engine::train::optim_state; without one they restart and the resume is not exact.
    let sae = root().join("tests/fixtures/dinosae-setA/sae");
    let photos = root().join("assets/samples");
    let steps = 20;
    let straight = fresh_dir("straight");
    let mut losses = Vec::new();
    let r = train_preview(&sae, &photos, &straight, &tiny_train_cfg(steps), &mut |e| {
        if let PreviewEvent::Log(row) = e {
            losses.push(row.loss);
        }
        true
    })
    .expect("train");
    assert_eq!(r.steps, steps);
    assert_eq!(losses.len(), steps);
    let first: f64 = losses[..4].iter().sum::<f64>() / 4.0;
    let last: f64 = losses[steps - 4..].iter().sum::<f64>() / 4.0;
    eprintln!("loss first 4 steps {first:.4}, last 4 {last:.4}");
    assert!(last < 0.8 * first, "loss did not fall: {first} -> {last}");
    assert!(straight.join("loss.png").exists() && straight.join("final/config.json").exists());
    let (m, _) = PreviewDecoder::load(straight.join("final"), &engine::cpu()).expect("final loads");
    assert_eq!(m.cfg.latent_channels, 64);

    let resumed = fresh_dir("resumed");
    let stop_at = 8;
    let e = train_preview(
        &sae,
        &photos,
        &resumed,
        &tiny_train_cfg(steps),
        &mut |e| !matches!(e, PreviewEvent::Log(r) if r.step == stop_at),
    );
    assert!(matches!(e, Err(engine::EngineError::Cancelled)), "stopped run should report Cancelled");
    assert!(resumed.join(format!("ckpt-{stop_at}/model.safetensors")).exists());
    let mut reused = None;
    let mut first_logged = None;
    train_preview(&sae, &photos, &resumed, &tiny_train_cfg(steps), &mut |e| {
        match e {
            PreviewEvent::Cached { reused: r, .. } => reused = Some(r),
            PreviewEvent::Log(r) if first_logged.is_none() => first_logged = Some(r.step),
            _ => {}
        }
        true
    })
    .expect("resume");
    assert_eq!(reused, Some(true), "the decode-once cache is reused");
    assert_eq!(first_logged, Some(stop_at + 1));
    let d = max_diff(
        &straight.join(format!("ckpt-{steps}/model.safetensors")),
        &resumed.join(format!("ckpt-{steps}/model.safetensors")),
    );
    eprintln!("max |w_resumed - w_straight| = {d:e}");
    assert_eq!(d, 0.0, "a resumed run must end with the uninterrupted run's weights");
    let rows = std::fs::read_to_string(resumed.join("loss.csv")).expect("csv").lines().count();
    assert_eq!(rows, steps + 1, "one csv row per step, no repeats");
    let _ = std::fs::remove_dir_all(&straight);
    let _ = std::fs::remove_dir_all(&resumed);
}

/// The default model ships its preview decoder (assets/default-model/preview): it loads completely, fits the issue's
/// budgets (<= 10 MB, <= 1.5 GFLOP at 256x256), previews the sample photos close to the full decoder, and the CLI
/// twins (`reconstruct --preview`, `decode --preview`, `inspect-checkpoint`) work on it.
#[test]
fn the_default_model_ships_a_preview_decoder() {
    let device = engine::cpu();
    let dir = engine::model::preview::default_preview_dir().expect("assets/default-model/preview");
    let bytes = std::fs::metadata(dir.join("model.safetensors")).expect("weights").len();
    assert!(bytes <= 10_000_000, "{bytes} bytes");
    let (p, report) = PreviewDecoder::load(&dir, &device).expect("loads");
    assert!(report.is_complete() && report.unexpected.is_empty(), "{}", report.summary(5));
    assert!(engine::flops::preview(&p.cfg, 16, 16) <= 1.5e9);
    let model = engine::dirs::default_model_dir().expect("default model");
    let sae = engine::checkpoint::load_sae(&model, &device, false).expect("sae").model;
    assert_eq!(p.cfg.latent_channels, sae.cfg.decoder.latent_channels);
    let photos = engine::data::PhotoSet::load(&root().join("assets/samples"), 1024).expect("photos");
    let rows = engine::train::preview::evaluate_preview(&sae, &p, &photos, 128).expect("eval");
    let mean = rows.iter().map(|r| r.preview_vs_full).sum::<f64>() / rows.len() as f64;
    eprintln!("{}", engine::train::preview::eval_markdown(&rows, 128));
    assert!(mean > 22.0, "preview vs full decode {mean:.2} dB");

    let bin = env!("CARGO_BIN_EXE_dino-sae");
    let tmp = fresh_dir("cli");
    std::fs::create_dir_all(&tmp).expect("mkdir");
    let run = |args: &[&str]| {
        let o = std::process::Command::new(bin).args(args).output().expect("run dino-sae");
        assert!(o.status.success(), "dino-sae {args:?}: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    let s = |p: &Path| p.to_str().expect("utf8 path").to_string();
    let (img, rec, lat, dec) = (
        root().join("assets/samples/chelsea.png"),
        tmp.join("rec.png"),
        tmp.join("z.safetensors"),
        tmp.join("dec.png"),
    );
    let out = run(&["reconstruct", &s(&img), "-o", &s(&rec), "--model", &s(&model), "--preview"]);
    assert!(out.contains("PSNR"), "{out}");
    assert_eq!(image::open(&rec).expect("png").to_rgb8().dimensions(), (448, 288));
    run(&["encode", &s(&img), "-o", &s(&lat), "--model", &s(&model)]);
    run(&["decode", &s(&lat), "-o", &s(&dec), "--model", &s(&model), "--preview"]);
    assert_eq!(image::open(&dec).expect("png").to_rgb8().dimensions(), (448, 288));
    let out = run(&["inspect-checkpoint", &s(&dir)]);
    assert!(out.contains("preview decoder"), "{out}");
    let out = run(&["inspect-checkpoint", &s(&model)]);
    assert!(out.contains("preview:") && !out.contains("does not load"), "{out}");
    let _ = std::fs::remove_dir_all(&tmp);
}
