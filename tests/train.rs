//! The trainer end to end at small scale: loss decreases, an interrupted run resumes where it stopped, no partial
//! checkpoint is left behind, the EMA result loads as a complete model. Teacher = the tiny DINOv3 of the fixtures.

use std::path::PathBuf;

use engine::model::decoder::DecoderConfig;
use engine::train::{data::PhotoSet, train, TrainConfig};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn teacher() -> PathBuf {
    root().join("tests/fixtures/dinosae-setA/dinov3/hf")
}

fn cfg(steps: usize) -> TrainConfig {
    let mut c = TrainConfig::stage(1);
    c.steps = steps;
    c.batch = 2;
    c.crop = 32;
    c.min_crop_frac = 0.05;
    c.lr = 2e-3;
    c.warmup = 5;
    c.log_every = 5;
    c.ema_every = 5;
    c.checkpoint_every = 10;
    c
}

fn rows(out: &std::path::Path) -> Vec<(usize, f64)> {
    std::fs::read_to_string(out.join("loss.csv"))
        .expect("csv")
        .lines()
        .skip(1)
        .map(|l| {
            let v: Vec<&str> = l.split(',').collect();
            (v[0].parse().expect("step"), v[1].parse().expect("loss"))
        })
        .collect()
}

#[test]
fn stage1_trains_resumes_and_leaves_no_partial_checkpoint() {
    let photos = PhotoSet::load(&root().join("assets/samples"), 256).expect("photos");
    let out = std::env::temp_dir().join(format!("dino-sae-train-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let dec = DecoderConfig::small(64);
    // interrupted after 20 steps (the callback says stop)
    let mut stop_at_20 = |r: &engine::train::LogRow| r.step < 20;
    let e = train(&cfg(60), &teacher(), None, dec.clone(), &photos, &out, &mut stop_at_20).err().expect("interrupted");
    assert!(matches!(e, engine::EngineError::Cancelled));
    assert_eq!(std::fs::read_to_string(out.join("latest")).expect("latest").trim(), "ckpt-20");
    // a crash while writing a checkpoint leaves only a temporary folder
    std::fs::create_dir_all(out.join(".ckpt-25.tmp/model")).expect("fake partial");
    std::fs::write(out.join(".ckpt-25.tmp/model/model.safetensors"), b"partial").expect("write");
    let mut go = |_: &engine::train::LogRow| true;
    let m = train(&cfg(60), &teacher(), None, dec, &photos, &out, &mut go).expect("resume");
    let r = rows(&out);
    let steps: Vec<usize> = r.iter().map(|x| x.0).collect();
    assert_eq!(steps, (1..=12).map(|i| i * 5).collect::<Vec<_>>(), "resume continues after step 20 without repeats");
    let first: f64 = r[..3].iter().map(|x| x.1).sum::<f64>() / 3.0;
    let last: f64 = r[r.len() - 3..].iter().map(|x| x.1).sum::<f64>() / 3.0;
    assert!(last < 0.8 * first, "loss should decrease: first {first:.4} last {last:.4}");
    let leftovers: Vec<String> = std::fs::read_dir(&out)
        .expect("dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "partial checkpoints left: {leftovers:?}");
    assert!(out.join("loss.png").exists());
    let loaded = engine::checkpoint::load_sae(out.join("final"), &engine::cpu(), false).expect("final loads");
    assert_eq!(loaded.model.cfg, m.cfg);
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn stage2_is_refused_clearly() {
    let photos = PhotoSet::load(&root().join("assets/samples"), 64).expect("photos");
    let mut c = cfg(2);
    c.stage = 2;
    let out = std::env::temp_dir().join(format!("dino-sae-train2-{}", std::process::id()));
    let mut go = |_: &engine::train::LogRow| true;
    let e = train(&c, &teacher(), None, DecoderConfig::small(64), &photos, &out, &mut go).err().expect("refused");
    assert!(e.to_string().contains("not implemented"), "{e}");
}
