//! `train-dit`, `sample`, `interpolate` (engine::generate) on the tiny fixture DINO-SAE (C = 64) and the
//! sample photos: latent cache, training and resume, sampling, interpolation. Every check compares with
//! an independent computation (direct SAE calls, a host f64 sampler, a hand-written slerp).

use std::path::{Path, PathBuf};

use burn::tensor::{Tensor, TensorData};
use engine::EngineError;
use engine::checkpoint::load_sae;
use engine::data::PhotoSet;
use engine::generate::{
    CacheSpec, DIT_KIND, DitBundle, DitMeta, Endpoint, InterpSpec, ObjectiveKind, SampleEvalSpec, SampleSpec,
    cache_latents, check_sae, dit_param_names, dit_state_dict, evaluate_samples, fingerprint_file, fingerprint_photos,
    interpolate, load_dit, resolve_class, sample_grid, sample_latents, save_dit, slerp_frames,
};
use engine::image_io;
use engine::model::dit::{Dit, DitArch, DitConfig, labels};
use engine::model::sae::DinoSae;
use engine::sampler::{SphereStep, sphere_noise};
use engine::tensor_file::{Precision, RawTensor, read_safetensors};
use engine::train::dit::{DitRunConfig, TrainEvent, train_dit_run};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn sae_path() -> PathBuf {
    root().join("tests/fixtures/dinosae-setA/sae/model.safetensors")
}

fn photos_dir() -> PathBuf {
    root().join("assets/samples")
}

fn sae() -> DinoSae {
    load_sae(sae_path(), &engine::cpu(), false).expect("fixture SAE loads").model
}

fn tmp(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("dino-sae-generate-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir_all(&p).expect("tmp dir");
    p
}

fn host(t: &Tensor<4>) -> Vec<f32> {
    t.clone().into_data().convert::<f32>().try_to_vec::<f32>().expect("f32")
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// Per-patch vectors of a row-major `[n, C, h, w]` buffer, as f64.
fn patches(v: &[f32], c: usize, hw: usize) -> Vec<Vec<f64>> {
    let n = v.len() / (c * hw);
    let mut out = Vec::new();
    for b in 0..n {
        for p in 0..hw {
            out.push((0..c).map(|ch| v[(b * c + ch) * hw + p] as f64).collect());
        }
    }
    out
}

fn norm(a: &[f64]) -> f64 {
    a.iter().map(|x| x * x).sum::<f64>().sqrt()
}

fn small_run(objective: ObjectiveKind, steps: usize) -> DitRunConfig {
    DitRunConfig {
        objective,
        steps,
        batch: 16,
        checkpoint_every: 20,
        log_every: 1,
        seed: 3,
        cache: CacheSpec { crop: 32, crops_per_photo: 4, min_crop_frac: 0.5, seed: 1 },
        ..Default::default()
    }
}

/// The generator metadata of an untrained RFM DiT on the fixture SAE's latents (C = 64, 2x2 grid).
fn rfm_meta(cfg: &DitConfig, classes: Vec<String>) -> DitMeta {
    DitMeta {
        kind: DIT_KIND.into(),
        dit: cfg.clone(),
        classes,
        objective_kind: ObjectiveKind::Rfm,
        objective: ObjectiveKind::Rfm.objective(1.0),
        grid: [2, 2],
        channels: 64,
        s_vae: 8.0,
        steps: 0,
        ema: false,
        sae: String::new(),
    }
}

fn sorted_photo_names() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(photos_dir())
        .expect("photos")
        .map(|e| e.expect("entry").file_name().to_string_lossy().to_string())
        .collect();
    v.sort();
    v
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read_dir").flatten() {
        let p = e.path();
        out.push(p.clone());
        if p.is_dir() {
            walk(&p, out);
        }
    }
}

#[test]
fn latent_cache_is_written_matches_the_sae_and_is_reused() {
    let dir = tmp("cache");
    let m = sae();
    let spec = CacheSpec { crop: 32, crops_per_photo: 3, min_crop_frac: 0.5, seed: 9 };
    let photos = PhotoSet::load(&photos_dir(), spec.max_side()).expect("photos");
    let (sfp, pfp) = (fingerprint_file(&sae_path()).expect("fp"), fingerprint_photos(&photos_dir(), &photos.names));
    let (set, reused) = cache_latents(&m, &sfp, &photos, &pfp, &spec, &dir, &mut |_, _| {}).expect("cache");
    assert!(!reused, "a fresh folder cannot reuse a cache");
    let names = sorted_photo_names();
    assert_eq!(set.index.classes, names, "classes = sorted photo names");
    assert_eq!(set.len(), names.len() * 3);
    assert_eq!((set.index.channels, set.index.grid), (64, [2, 2]));
    let want_labels: Vec<i64> = (0..names.len() as i64).flat_map(|i| [i, i, i]).collect();
    assert_eq!(set.labels, want_labels);
    // shards on disk hold exactly the set
    let shard = read_safetensors(dir.join(&set.index.shards[0].file)).expect("shard");
    assert_eq!(shard["latents"].shape, vec![set.len(), 64, 2, 2]);
    assert_eq!(shard["latents"].data, set.latents);
    assert_eq!(shard["labels"].data, want_labels.iter().map(|&l| l as f32).collect::<Vec<_>>());
    // crop 0 of every photo = the SAE's latent of its centre view, encoded on its own
    let device = engine::cpu();
    for i in 0..names.len() {
        let img = photos.center(i, 32);
        let z = m.encode(image_io::to_tensor(&[&img], &m.cfg.pixels, &device).expect("x")).expect("enc").patches;
        let d = max_diff(set.item(3 * i), &host(&z));
        assert!(d < 1e-4, "photo {i}: cached centre latent differs from a direct encode by {d}");
        let d1 = max_diff(set.item(3 * i + 1), &host(&z));
        assert!(d1 > 1e-3, "photo {i}: random crop 1 equals the centre view");
    }
    // the recorded mean patch norm
    let mean: f64 = patches(&set.latents, 64, 4).iter().map(|p| norm(p)).sum::<f64>() / (set.len() * 4) as f64;
    assert!((mean - set.index.mean_norm).abs() < 1e-6, "mean_norm {} vs {mean}", set.index.mean_norm);
    // rerun: reused, files untouched
    let shard_path = dir.join(&set.index.shards[0].file);
    let mtime = std::fs::metadata(&shard_path).and_then(|m| m.modified()).expect("mtime");
    let mut calls = 0;
    let (again, reused) =
        cache_latents(&m, &sfp, &photos, &pfp, &spec, &dir, &mut |_, _| calls += 1).expect("cache again");
    assert!(reused && calls == 0, "second run must reuse the cache without encoding");
    assert_eq!(again.latents, set.latents);
    assert_eq!(std::fs::metadata(&shard_path).and_then(|m| m.modified()).expect("mtime"), mtime);
    // other crop settings rebuild it
    let spec2 = CacheSpec { crops_per_photo: 2, ..spec.clone() };
    let (other, reused) = cache_latents(&m, &sfp, &photos, &pfp, &spec2, &dir, &mut |_, _| {}).expect("rebuild");
    assert!(!reused);
    assert_eq!(other.len(), names.len() * 2);
    assert_eq!(other.item(0), set.item(0), "crop 0 is the centre view whatever the count");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn train_dit_loss_decreases_and_resume_matches_an_uninterrupted_run() {
    let cfg = small_run(ObjectiveKind::Rfm, 60);
    // uninterrupted
    let a = tmp("train-a");
    let sa = train_dit_run(&sae_path(), &photos_dir(), &a, &cfg, &mut |_| true).expect("train");
    assert_eq!((sa.start_step, sa.steps, sa.losses.len()), (0, 60, 60));
    assert!(sa.losses.iter().all(|l| l.is_finite()));
    let head = sa.losses[..10].iter().sum::<f32>() / 10.0;
    let tail = sa.losses[50..].iter().sum::<f32>() / 10.0;
    eprintln!("RFM loss: first 10 steps {head:.4}, last 10 steps {tail:.4}");
    assert!(tail < 0.85 * head, "loss did not decrease: {head} -> {tail}");
    for f in ["loss.csv", "loss.png", "latest", "final/model.safetensors", "final/config.json", "latents/index.json"] {
        assert!(a.join(f).exists(), "missing {f}");
    }
    let meta: DitMeta =
        serde_json::from_str(&std::fs::read_to_string(a.join("final/config.json")).expect("cfg")).expect("meta");
    assert_eq!((meta.kind.as_str(), meta.steps, meta.channels, meta.grid), (DIT_KIND, 60, 64, [2, 2]));
    assert_eq!(meta.classes, sorted_photo_names());
    assert_eq!(meta.dit.num_classes, 4);
    assert!(meta.dit.label_rows() == 5, "null class row for CFG");

    // interrupted at step 30 (after ckpt-20), with a half-written checkpoint left behind, then resumed
    let b = tmp("train-b");
    let r =
        train_dit_run(&sae_path(), &photos_dir(), &b, &cfg, &mut |e| !matches!(e, TrainEvent::Step(p) if p.step == 30));
    assert!(matches!(r, Err(EngineError::Cancelled)), "a stopped run reports Cancelled");
    assert_eq!(std::fs::read_to_string(b.join("latest")).expect("latest").trim(), "ckpt-20");
    std::fs::create_dir_all(b.join(".ckpt-40.tmp")).expect("fake tmp");
    std::fs::write(b.join(".ckpt-40.tmp/model.safetensors"), b"partial").expect("fake");
    std::fs::write(b.join(".latest.tmp4242"), b"ckpt-40").expect("fake");
    let mut resumed_at = None;
    let mut first_step = None;
    let sb = train_dit_run(&sae_path(), &photos_dir(), &b, &cfg, &mut |e| {
        match e {
            TrainEvent::Resumed { step } => resumed_at = Some(step),
            TrainEvent::Step(p) if first_step.is_none() => first_step = Some(p.step),
            _ => {}
        }
        true
    })
    .expect("resume");
    assert_eq!((resumed_at, first_step, sb.start_step, sb.losses.len()), (Some(20), Some(21), 20, 40));
    assert!(sb.latents_reused, "the resumed run reuses the latent cache");
    let mut files = Vec::new();
    walk(&b, &mut files);
    let tmps: Vec<_> = files.iter().filter(|p| p.to_string_lossy().contains(".tmp")).collect();
    assert!(tmps.is_empty(), "temporary files left: {tmps:?}");
    assert_eq!(std::fs::read_to_string(b.join("latest")).expect("latest").trim(), "ckpt-60");
    let steps: Vec<usize> = std::fs::read_to_string(b.join("loss.csv"))
        .expect("csv")
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().expect("col").parse().expect("step"))
        .collect();
    assert_eq!(steps, (1..=60).collect::<Vec<_>>(), "loss.csv holds every step once");
    // same weights as the uninterrupted run, and both differ from the initial model
    let wa = read_safetensors(a.join("final/model.safetensors")).expect("a");
    let wb = read_safetensors(b.join("final/model.safetensors")).expect("b");
    assert_eq!(wa.keys().collect::<Vec<_>>(), wb.keys().collect::<Vec<_>>());
    let worst = wa.iter().map(|(k, v)| max_diff(&v.data, &wb[k].data)).fold(0.0, f32::max);
    assert!(worst <= 1e-6, "resumed run ends with different weights (max diff {worst})");
    let init = Dit::init(&meta.dit, cfg.seed, &engine::cpu()).expect("init");
    let w0 = dit_state_dict(&init, &dit_param_names(&init).expect("names")).expect("sd");
    let moved = max_diff(&w0["final_layer.linear.weight"].data, &wa["final_layer.linear.weight"].data);
    assert!(moved > 1e-4, "final weights equal the initial ones");
    let _ = std::fs::remove_dir_all(&a);
    let _ = std::fs::remove_dir_all(&b);
}

#[test]
fn saved_generator_reloads_with_identical_outputs() {
    let device = engine::cpu();
    let dir = tmp("save");
    for arch in [DitArch::LightningDit, DitArch::Ddt] {
        let cfg = DitConfig::preset(arch, "tiny", 64, 2, 4).expect("cfg");
        let m = Dit::random(&cfg, 5, &device).expect("model");
        let meta = rfm_meta(&cfg, (0..4).map(|i| format!("c{i}")).collect());
        // f32 reloads exactly; f16 (the shipped form) within its rounding: 2^-11 relative per weight
        let mut sizes = Vec::new();
        for (precision, tol) in [(Precision::F32, 1e-6f32), (Precision::F16, 1e-2)] {
            save_dit(&dir, &m, &dit_param_names(&m).expect("names"), &meta, precision).expect("save");
            sizes.push(std::fs::metadata(dir.join("model.safetensors")).expect("file").len());
            let b = load_dit(&dir, &device).expect("load");
            assert_eq!(b.meta, meta);
            let x = sphere_noise([3, 64, 2, 2], 1, &device);
            let t = Tensor::<1>::from_data(TensorData::new(vec![0.2f32, 0.5, 0.9], vec![3]), &device);
            let y = labels(&[0, 3, 4], &device);
            let want = host(&m.velocity(x.clone(), t.clone(), y.clone()));
            let scale = want.iter().fold(1.0f32, |a, v| a.max(v.abs()));
            let d = max_diff(&want, &host(&b.model.velocity(x, t, y)));
            assert!(d <= tol * scale, "{arch:?} {precision:?}: reloaded model differs by {d} (scale {scale})");
        }
        assert!(sizes[1] * 10 < sizes[0] * 6, "f16 is about half the size: {sizes:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The spherical sampler redone on the host in f64: Euler + projection on radius sqrt(C), CFG on all
/// channels, time grid shift(1 - k/steps), final rescale to s_vae.
fn host_sampler(
    b: &engine::generate::DitBundle,
    class: i64,
    n: usize,
    seed: u64,
    steps: usize,
    cfg: f64,
    s_vae: f64,
) -> Vec<f64> {
    let device = engine::cpu();
    let (c, hw) = (64usize, 4usize);
    let r = (c as f64).sqrt();
    let shift = b.meta.objective.shift();
    let sh = |t: f64| shift * t / (1.0 + (shift - 1.0) * t);
    let mut z: Vec<f64> = host(&sphere_noise([n, c, 2, 2], seed, &device)).iter().map(|&v| v as f64).collect();
    let null = b.meta.dit.num_classes as i64;
    for k in 0..steps {
        let (t, tn) = (sh(1.0 - k as f64 / steps as f64), sh(1.0 - (k + 1) as f64 / steps as f64));
        let zf: Vec<f32> = z.iter().map(|&v| v as f32).collect();
        let x = Tensor::<4>::from_data(TensorData::new(zf, vec![n, c, 2, 2]), &device);
        let tt = Tensor::<1>::from_data(TensorData::new(vec![t as f32; n], vec![n]), &device);
        let vc = host(&b.model.velocity(x.clone(), tt.clone(), labels(&vec![class; n], &device)));
        let vu = host(&b.model.velocity(x, tt, labels(&vec![null; n], &device)));
        for bi in 0..n {
            for p in 0..hw {
                let idx = |ch: usize| (bi * c + ch) * hw + p;
                let v: Vec<f64> =
                    (0..c).map(|ch| vu[idx(ch)] as f64 + cfg * (vc[idx(ch)] as f64 - vu[idx(ch)] as f64)).collect();
                let zz: Vec<f64> = (0..c).map(|ch| z[idx(ch)]).collect();
                let dot = zz.iter().zip(&v).map(|(a, b)| a * b).sum::<f64>() / (r * r);
                let y: Vec<f64> = (0..c).map(|ch| zz[ch] + (tn - t) * (v[ch] - dot * zz[ch])).collect();
                let ny = norm(&y);
                for ch in 0..c {
                    z[idx(ch)] = r * y[ch] / ny;
                }
            }
        }
    }
    for p in 0..n * hw {
        let (bi, q) = (p / hw, p % hw);
        let v: Vec<f64> = (0..c).map(|ch| z[(bi * c + ch) * hw + q]).collect();
        let nv = norm(&v);
        for ch in 0..c {
            z[(bi * c + ch) * hw + q] = s_vae * v[ch] / nv;
        }
    }
    z
}

#[test]
fn sample_grid_is_deterministic_on_the_sphere_and_matches_a_host_sampler() {
    let run = tmp("sample");
    train_dit_run(&sae_path(), &photos_dir(), &run, &small_run(ObjectiveKind::Rfm, 40), &mut |_| true).expect("train");
    let b = load_dit(&run.join("final"), &engine::cpu()).expect("load");
    let m = sae();
    // classes by index and name, clear errors otherwise
    assert_eq!(resolve_class(&b.meta, "chelsea.png").expect("name"), 1);
    assert_eq!(resolve_class(&b.meta, "coffee").expect("stem"), 2);
    assert_eq!(resolve_class(&b.meta, "3").expect("index"), 3);
    let e = resolve_class(&b.meta, "4").expect_err("out of range").to_string();
    assert!(e.contains("out of range") && e.contains("4 classes"), "{e}");
    let e = resolve_class(&b.meta, "dog").expect_err("unknown").to_string();
    assert!(e.contains("dog") && e.contains("chelsea.png"), "{e}");

    let spec = SampleSpec {
        class: 1,
        count: 3,
        seed: 11,
        steps: 6,
        method: SphereStep::EulerProj,
        cfg_scale: 4.0,
        s_vae: Some(7.5),
        shift: None,
        grid: None,
    };
    let out = run.join("grid.png");
    let r = sample_grid(&b, &m, &spec, &out, &[]).expect("sample");
    // size: 3 tiles of 32x32 in 2 columns
    let png = image_io::load_rgb(&out).expect("png");
    assert_eq!(png.dimensions(), (64, 64));
    assert!(r.images.iter().all(|i| i.dimensions() == (32, 32)));
    // every patch at radius s_vae before decoding
    let lat = &r.latents;
    assert_eq!(lat.shape, vec![3, 64, 2, 2]);
    for p in patches(&lat.data, 64, 4) {
        assert!((norm(&p) - 7.5).abs() < 1e-4, "patch radius {} != s_vae 7.5", norm(&p));
    }
    // = an independent f64 sampler
    let want = host_sampler(&b, 1, 3, 11, 6, 4.0, 7.5);
    let worst = lat.data.iter().zip(&want).map(|(a, b)| (*a as f64 - b).abs()).fold(0.0, f64::max);
    let unguided = host(&sample_latents(&b, &SampleSpec { cfg_scale: 1.0, ..spec.clone() }).expect("cfg 1"));
    let cfg_effect = max_diff(&unguided, &lat.data) as f64;
    eprintln!("sampler vs host f64 reference: max diff {worst:.2e}; CFG 4 vs 1 moves latents by {cfg_effect:.2e}");
    assert!(worst < 1e-4, "sampler differs from the host Euler+projection reference by {worst}");
    assert!(cfg_effect > 1e-3, "CFG has too little effect to be checked ({cfg_effect:.2e})");
    // the PNG tiles are the SAE's decodes of those latents
    let dec = m.decode(lat.to_tensor(&engine::cpu()).expect("t")).expect("decode");
    let imgs: Vec<_> =
        image_io::from_tensor(dec, &m.cfg.pixels).expect("imgs").iter().map(image_io::f32_to_rgb8).collect();
    for (k, img) in imgs.iter().enumerate() {
        let tile = image::imageops::crop_imm(&png, (k as u32 % 2) * 32, (k as u32 / 2) * 32, 32, 32).to_image();
        assert!(tile == *img, "tile {k} is not the decode of latent {k}");
    }
    // parameters in the PNG text chunks
    let bytes = std::fs::read(&out).expect("bytes");
    for chunk in
        ["Seed\x0011", "Steps\x006", "Sampler\x00euler-proj", "CFG\x004", "SVAE\x007.5", "Class\x001 (chelsea.png)"]
    {
        assert!(bytes.windows(chunk.len()).any(|w| w == chunk.as_bytes()), "PNG lacks text chunk {chunk:?}");
    }
    // deterministic per seed, different across seeds; exp-map stays on the sphere too
    let out2 = run.join("grid2.png");
    sample_grid(&b, &m, &spec, &out2, &[]).expect("again");
    assert_eq!(std::fs::read(&out2).expect("b2"), bytes, "same seed must give the same PNG");
    let other = sample_latents(&b, &SampleSpec { seed: 12, ..spec.clone() }).expect("seed 12");
    assert!(max_diff(&host(&other), &lat.data) > 1e-2, "another seed gave the same samples");
    let exp = sample_latents(&b, &SampleSpec { method: SphereStep::ExpMap, s_vae: None, ..spec.clone() }).expect("exp");
    for p in patches(&host(&exp), 64, 4) {
        assert!((norm(&p) - b.meta.s_vae).abs() < 1e-4);
    }
    // mismatched C or grid is refused with a clear message
    let mut bad = b.meta.clone();
    bad.channels = 32;
    let e = check_sae(&bad, &m).expect_err("C mismatch").to_string();
    assert!(e.contains("C = 32") && e.contains("C = 64"), "{e}");
    let bad_dir = run.join("bad");
    std::fs::create_dir_all(&bad_dir).expect("dir");
    std::fs::copy(run.join("final/model.safetensors"), bad_dir.join("model.safetensors")).expect("copy");
    let mut meta = b.meta.clone();
    meta.grid = [3, 3];
    std::fs::write(bad_dir.join("config.json"), serde_json::to_string(&meta).expect("json")).expect("write");
    let e = load_dit(&bad_dir, &engine::cpu()).expect_err("grid mismatch").to_string();
    assert!(e.contains("grid"), "{e}");
    let _ = std::fs::remove_dir_all(&run);
}

#[test]
fn euclidean_baseline_trains_and_samples_at_s_vae() {
    let run = tmp("euclid");
    let s = train_dit_run(&sae_path(), &photos_dir(), &run, &small_run(ObjectiveKind::Euclid, 40), &mut |_| true)
        .expect("train");
    let head = s.losses[..10].iter().sum::<f32>() / 10.0;
    let tail = s.losses[30..].iter().sum::<f32>() / 10.0;
    eprintln!("Euclidean FM loss: first 10 steps {head:.4}, last 10 steps {tail:.4}");
    assert!(tail < head, "Euclidean FM loss did not decrease: {head} -> {tail}");
    let b = load_dit(&run.join("final"), &engine::cpu()).expect("load");
    assert_eq!(b.meta.objective_kind, ObjectiveKind::Euclid);
    let spec = SampleSpec { class: 0, count: 2, seed: 1, steps: 5, ..Default::default() };
    let z = sample_latents(&b, &spec).expect("sample");
    for p in patches(&host(&z), 64, 4) {
        assert!((norm(&p) - b.meta.s_vae).abs() < 1e-4);
    }
    let e = sample_latents(&b, &SampleSpec { method: SphereStep::ExpMap, ..spec }).expect_err("exp-map refused");
    assert!(e.to_string().contains("Euler"), "{e}");
    let _ = std::fs::remove_dir_all(&run);
}

/// Hand-written slerp of directions with a linear magnitude, per patch.
fn reference_frame(a: &[f64], b: &[f64], t: f64) -> Vec<f64> {
    let (na, nb) = (norm(a), norm(b));
    let (da, db): (Vec<f64>, Vec<f64>) = (a.iter().map(|x| x / na).collect(), b.iter().map(|x| x / nb).collect());
    let cos = da.iter().zip(&db).map(|(x, y)| x * y).sum::<f64>().clamp(-1.0, 1.0);
    let th = cos.acos();
    let m = (1.0 - t) * na + t * nb;
    da.iter().zip(&db).map(|(x, y)| m * (((1.0 - t) * th).sin() * x + (t * th).sin() * y) / th.sin()).collect()
}

#[test]
fn interpolate_images_ends_at_the_decodes_and_follows_the_slerp() {
    let out = tmp("interp");
    let m = sae();
    let (pa, pb) = (photos_dir().join("chelsea.png"), photos_dir().join("rocket.jpg"));
    let spec = InterpSpec { steps: 4, size: Some(32), sample: SampleSpec::default() };
    let r = interpolate(&m, None, &Endpoint::Image(pa.clone()), &Endpoint::Image(pb.clone()), &spec, &out)
        .expect("interpolate");
    assert_eq!(r.frames.len(), 5);
    for k in 0..5 {
        assert!(out.join(format!("frame_{k:03}.png")).exists());
    }
    // independent endpoints: centre square, resized to 32, encoded one at a time
    let device = engine::cpu();
    let square = |p: &Path| {
        let img = image_io::load_rgb(p).expect("img");
        let (w, h) = img.dimensions();
        let s = w.min(h);
        image_io::resize_exact(&image::imageops::crop_imm(&img, (w - s) / 2, (h - s) / 2, s, s).to_image(), 32, 32)
    };
    let enc = |img: &image::RgbImage| {
        host(&m.encode(image_io::to_tensor(&[img], &m.cfg.pixels, &device).expect("x")).expect("e").patches)
    };
    let (za, zb) = (enc(&square(&pa)), enc(&square(&pb)));
    assert!(max_diff(&r.latents[0].data, &za) < 1e-4, "frame 0 latent is not encode(A)");
    assert!(max_diff(&r.latents[4].data, &zb) < 1e-4, "last frame latent is not encode(B)");
    // every frame PNG is the SAE's decode of its latent; the ends are within 1/255 of decode(encode(A/B))
    let decode = |v: &[f32]| {
        let t = RawTensor::new(vec![1, 64, 2, 2], v.to_vec()).expect("raw").to_tensor::<4>(&device).expect("t");
        image_io::f32_to_rgb8(&image_io::from_tensor(m.decode(t).expect("d"), &m.cfg.pixels).expect("img")[0])
    };
    for (k, lat) in r.latents.iter().enumerate() {
        let png = image_io::load_rgb(&r.frames[k]).expect("frame");
        assert!(png == decode(&lat.data), "frame {k} PNG is not the decode of its latent");
    }
    for (k, z) in [(0usize, &za), (4, &zb)] {
        let png = image_io::load_rgb(&r.frames[k]).expect("frame");
        let d = png.as_raw().iter().zip(decode(z).as_raw()).map(|(a, b)| a.abs_diff(*b)).max().unwrap_or(0);
        assert!(d <= 1, "endpoint frame {k} differs from the independent decode by {d}/255");
    }
    // intermediate frames lie on the per-patch slerp with linear magnitude
    let (pa_, pb_) = (patches(&r.latents[0].data, 64, 4), patches(&r.latents[4].data, 64, 4));
    for k in 1..4 {
        let t = k as f64 / 4.0;
        let got = patches(&r.latents[k].data, 64, 4);
        for p in 0..4 {
            let want = reference_frame(&pa_[p], &pb_[p], t);
            let err = got[p].iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
            assert!(err < 1e-4 * norm(&want), "frame {k} patch {p}: off the slerp by {err}");
        }
    }
    // latents.safetensors holds the same frames
    let saved = read_safetensors(out.join("latents.safetensors")).expect("latents");
    assert_eq!(saved["frames"].shape, vec![5, 64, 2, 2]);
    assert_eq!(saved["frames"].data, r.latents.iter().flat_map(|l| l.data.clone()).collect::<Vec<_>>());
    // slerp_frames itself on antipodal-free random latents: exact ends
    let a = sphere_noise([1, 64, 2, 2], 3, &device).mul_scalar(2.0);
    let b = sphere_noise([1, 64, 2, 2], 4, &device);
    let f = slerp_frames(&a, &b, 3).expect("frames");
    assert_eq!(host(&f[0]), host(&a));
    assert_eq!(host(&f[3]), host(&b));
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn interpolate_seeds_uses_the_generator_samples() {
    let run = tmp("interp-seed");
    train_dit_run(&sae_path(), &photos_dir(), &run, &small_run(ObjectiveKind::Rfm, 20), &mut |_| true).expect("train");
    let b = load_dit(&run.join("final"), &engine::cpu()).expect("load");
    let m = sae();
    let sample = SampleSpec { class: 2, steps: 4, ..Default::default() };
    let spec = InterpSpec { steps: 3, size: None, sample: sample.clone() };
    let e = interpolate(&m, None, &Endpoint::Seed(17), &Endpoint::Seed(42), &spec, &run.join("f0"))
        .expect_err("needs a generator");
    assert!(e.to_string().contains("need a generator"), "{e}");
    let mixed = Endpoint::Image(photos_dir().join("chelsea.png"));
    assert!(interpolate(&m, Some(&b), &mixed, &Endpoint::Seed(1), &spec, &run.join("f1")).is_err());
    assert_eq!(Endpoint::parse("seed:17").expect("parse"), Endpoint::Seed(17));
    let r = interpolate(&m, Some(&b), &Endpoint::Seed(17), &Endpoint::Seed(42), &spec, &run.join("frames"))
        .expect("interp");
    let s17 = host(&sample_latents(&b, &SampleSpec { seed: 17, count: 1, ..sample.clone() }).expect("17"));
    let s42 = host(&sample_latents(&b, &SampleSpec { seed: 42, count: 1, ..sample }).expect("42"));
    assert_eq!(r.latents[0].data, s17, "frame 0 is the seed-17 sample");
    assert_eq!(r.latents[3].data, s42, "last frame is the seed-42 sample");
    // both ends at s_vae, so every frame stays at s_vae
    for lat in &r.latents {
        for p in patches(&lat.data, 64, 4) {
            assert!((norm(&p) - b.meta.s_vae).abs() < 1e-4);
        }
    }
    let _ = std::fs::remove_dir_all(&run);
}

/// `eval-samples` (`evaluate_samples`) with a random generator over the sample photos and the fixture teacher: one
/// row per class with `n` crops of that class's own photo (each crop's mean colour lies within the photo's range of
/// local means, and differs from the other class's), the next class as the reference, finite non-negative
/// distances that a rerun reproduces exactly, and a clear refusal of a photo folder that lacks a class.
#[test]
fn sample_quality_rows_follow_the_classes_and_repeat_exactly() {
    let device = engine::cpu();
    let m = sae();
    let teacher =
        engine::checkpoint::load_backbone(root().join("tests/fixtures/dinosae-setA/dinov3/hf"), &device, false)
            .expect("teacher")
            .model;
    let photos = PhotoSet::load(&photos_dir(), 256).expect("photos");
    let names = sorted_photo_names();
    let cfg = DitConfig::preset(DitArch::LightningDit, "tiny", 64, 2, names.len()).expect("cfg");
    let meta = rfm_meta(&cfg, names.clone());
    let b = DitBundle { model: Dit::random(&cfg, 7, &device).expect("model"), meta };
    let spec = SampleEvalSpec { n: 3, size: 32, steps: 4, seed: 5, max_classes: Some(2), ..Default::default() };
    let rows = evaluate_samples(&b, &m, &teacher, &photos, &spec, &mut |_, _| {}).expect("evaluate");
    assert_eq!(rows.len(), 2);
    let mean = |img: &image::RgbImage| -> [f64; 3] {
        let n = (img.width() * img.height()) as f64;
        let mut s = [0.0; 3];
        for p in img.pixels() {
            for c in 0..3 {
                s[c] += p[c] as f64 / n;
            }
        }
        s
    };
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r.class, names[i]);
        assert_eq!(r.other_class, names[(i + 1) % names.len()]);
        assert_eq!((r.sample_images.len(), r.crop_images.len()), (3, 3));
        assert!(r.sample_images.iter().chain(&r.crop_images).all(|im| im.dimensions() == (32, 32)));
        for fd in [r.samples, r.recon, r.other] {
            assert!(fd.is_finite() && fd >= -1e-6, "{} {fd}", r.class);
        }
        // the crops are views of the class's photo: each crop's mean colour is within the photo's extremes of
        // 8x8-downsampled colour (a crop spans at least half the shorter side)
        let p = &photos.images[photos.names.iter().position(|n| *n == r.class).expect("photo")];
        let small = image::imageops::resize(p, 8, 8, image::imageops::FilterType::Triangle);
        for crop in &r.crop_images {
            let m = mean(crop);
            for c in 0..3 {
                let (lo, hi) =
                    small.pixels().fold((255.0f64, 0.0f64), |(l, h), q| (l.min(q[c] as f64), h.max(q[c] as f64)));
                assert!(m[c] >= lo - 8.0 && m[c] <= hi + 8.0, "{}: crop mean {m:?} outside the photo's range", r.class);
            }
        }
    }
    let again = evaluate_samples(&b, &m, &teacher, &photos, &spec, &mut |_, _| {}).expect("evaluate");
    for (a, r) in rows.iter().zip(&again) {
        assert_eq!((a.samples, a.recon, a.other), (r.samples, r.recon, r.other), "a rerun gives the same numbers");
    }
    // a folder with only the first photo lacks the other classes
    let dir = tmp("eval-samples");
    std::fs::copy(photos_dir().join(&names[0]), dir.join(&names[0])).expect("copy");
    let one = PhotoSet::load(&dir, 256).expect("one photo");
    let e = evaluate_samples(&b, &m, &teacher, &one, &spec, &mut |_, _| {}).expect_err("classes missing");
    assert!(e.to_string().contains("lacks"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn class_folders_become_named_classes_of_several_photos() {
    let dir = tmp("kinds");
    for (class, file) in [("b_kind", "astronaut.png"), ("b_kind", "rocket.jpg"), ("a_kind", "chelsea.png")] {
        std::fs::create_dir_all(dir.join(class)).expect("class dir");
        std::fs::copy(photos_dir().join(file), dir.join(class).join(file)).expect("copy");
    }
    // a class folder without a readable image is left out; an unreadable file is skipped
    std::fs::create_dir_all(dir.join("c_empty")).expect("empty class");
    std::fs::write(dir.join("c_empty/broken.png"), b"not a png").expect("write");
    let photos = PhotoSet::load(&dir, 256).expect("class folders load");
    assert_eq!(photos.classes, ["a_kind", "b_kind"]);
    assert_eq!(photos.names, ["a_kind/chelsea.png", "b_kind/astronaut.png", "b_kind/rocket.jpg"]);
    assert_eq!(photos.labels, [0, 1, 1]);
    assert_eq!(photos.class_photos(1), [1, 2]);
    let direct = image_io::load_rgb(photos_dir().join("chelsea.png")).expect("chelsea");
    let small = image::imageops::resize(
        &direct,
        256,
        256 * direct.height() / direct.width(),
        image::imageops::FilterType::Triangle,
    );
    assert_eq!(photos.images[0].dimensions(), small.dimensions(), "downscaled like a flat folder's photos");

    // the cache labels each crop with its photo's class; crop 0 is the centre view, as for a flat folder
    let m = sae();
    let spec = CacheSpec { crop: 32, crops_per_photo: 2, min_crop_frac: 0.5, seed: 3 };
    let pfp = fingerprint_photos(&dir, &photos.names);
    let sfp = fingerprint_file(&sae_path()).expect("fp");
    let (set, _) = cache_latents(&m, &sfp, &photos, &pfp, &spec, &dir.join("cache"), &mut |_, _| {}).expect("cache");
    assert_eq!(set.index.classes, ["a_kind", "b_kind"]);
    assert_eq!(set.labels, [0, 0, 1, 1, 1, 1]);
    let device = engine::cpu();
    let img = photos.center(2, 32);
    let z = m.encode(image_io::to_tensor(&[&img], &m.cfg.pixels, &device).expect("x")).expect("enc").patches;
    assert!(max_diff(set.item(4), &host(&z)) < 1e-4, "rocket's centre view is item 4");

    // eval-samples finds each class's photos by folder name and draws its crops round-robin over them
    let teacher =
        engine::checkpoint::load_backbone(root().join("tests/fixtures/dinosae-setA/dinov3/hf"), &device, false)
            .expect("teacher")
            .model;
    let cfg = DitConfig::preset(DitArch::LightningDit, "tiny", 64, 2, 2).expect("cfg");
    let b = DitBundle {
        model: Dit::random(&cfg, 7, &device).expect("model"),
        meta: rfm_meta(&cfg, photos.classes.clone()),
    };
    let spec = SampleEvalSpec { n: 2, size: 32, steps: 2, seed: 5, ..Default::default() };
    let rows = evaluate_samples(&b, &m, &teacher, &photos, &spec, &mut |_, _| {}).expect("evaluate");
    assert_eq!((rows[0].class.as_str(), rows[0].other_class.as_str()), ("a_kind", "b_kind"));
    // the reference draw: one seeded stream per class, crop k from the class's photo k mod its photo count
    for (c, members) in [(0usize, vec![0usize]), (1, vec![1, 2])] {
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(engine::data::mix_seed(5, c as u64));
        for k in 0..2 {
            let want = engine::data::random_crop(&photos.images[members[k % members.len()]], &mut rng, 32, 0.5);
            assert!(
                rows[c].crop_images[k] == want,
                "class {c} crop {k} is not drawn from the class's photo {}",
                k % members.len()
            );
        }
    }
    // a flat folder keeps one class per photo: subfolders next to top-level images are not classes
    std::fs::copy(photos_dir().join("coffee.png"), dir.join("coffee.png")).expect("copy");
    let flat = PhotoSet::load(&dir, 256).expect("flat");
    assert_eq!(
        (flat.classes.clone(), flat.names.clone(), flat.labels.clone()),
        (vec!["coffee.png".to_string()], vec!["coffee.png".to_string()], vec![0])
    );
    let _ = std::fs::remove_dir_all(&dir);
}
