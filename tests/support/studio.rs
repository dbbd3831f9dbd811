//! The Studio under egui_kittest for the UI tests (`tests/app_ui.rs`, `tests/app_snapshots.rs`): a harness on the
//! fixture DINO-SAE, waits on the worker, and the user's gestures (typing into a labelled field, sliders, clicks on
//! image patches), plus a tiny generator for the Sample tab. Each test binary uses part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use dino_sae_studio::app::{StartOptions, Studio};
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;

pub type H = Harness<'static, Option<Studio>>;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn app(h: &H) -> &Studio {
    h.state().as_ref().expect("studio started")
}

pub fn wait_for(h: &mut H, what: &str, cond: impl Fn(&Studio) -> bool) {
    let t = Instant::now();
    loop {
        h.step();
        if h.state().as_ref().is_some_and(&cond) {
            h.run_steps(2);
            return;
        }
        assert!(
            t.elapsed() < Duration::from_secs(600),
            "timed out waiting for {what}; error: {:?}",
            h.state().as_ref().and_then(|s| s.error())
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn idle(h: &mut H) {
    wait_for(h, "idle", |s| s.is_idle());
}

pub fn fixture_model() -> PathBuf {
    root().join("tests/fixtures/dinosae-setA/sae/model.safetensors")
}

pub fn options(open: Option<PathBuf>) -> StartOptions {
    StartOptions {
        open,
        model: Some(fixture_model()),
        backend: engine::backend::BackendChoice::Cpu,
        no_restore: true,
        // a library of directions of this test's own (never the user's)
        data_dir: Some(std::env::temp_dir().join(format!(
            "dino-sae-ui-data-{}-{}",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos())
        ))),
        ..Default::default()
    }
}

pub fn harness(opts: StartOptions) -> H {
    Harness::builder().with_size(egui::vec2(1360.0, 1000.0)).build_ui_state(
        move |ui, state: &mut Option<Studio>| {
            state.get_or_insert_with(|| Studio::new(ui.ctx().clone(), opts.clone())).show(ui);
        },
        None,
    )
}

/// The Studio on the fixture model (CPU backend) with chelsea.png opened.
pub fn studio() -> H {
    let mut h = harness(options(Some(root().join("assets/samples/chelsea.png"))));
    wait_for(&mut h, "reconstruction", |s| s.current().is_some());
    h
}

/// Type `text` into the field labelled `label` as a keyboard would: a key event and a text event per character.
pub fn type_into(h: &mut H, label: &str, text: &str) {
    h.get_by_label(label).focus();
    h.run_steps(2);
    // select what is there and replace it
    h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::A);
    h.step();
    for ch in text.chars() {
        let key = egui::Key::from_name(&ch.to_ascii_uppercase().to_string());
        if let Some(k) = key {
            h.event(egui::Event::Key {
                key: k,
                physical_key: None,
                pressed: true,
                repeat: false,
                modifiers: Default::default(),
            });
        }
        h.event(egui::Event::Text(ch.to_string()));
        if let Some(k) = key {
            h.event(egui::Event::Key {
                key: k,
                physical_key: None,
                pressed: false,
                repeat: false,
                modifiers: Default::default(),
            });
        }
        h.step();
    }
    h.run_steps(2);
}

pub fn set_slider(h: &mut H, label: &str, v: f64) {
    for n in h.query_all_by_label_contains(label) {
        n.set_value_accesskit(v);
    }
    h.run_steps(2);
}

pub fn click_patch(h: &mut H, fx: f32, fy: f32) {
    let r = app(h).last_image_rect().expect("image drawn");
    let pos = r.min + egui::vec2(r.width() * fx, r.height() * fy);
    h.hover_at(pos);
    h.step();
    for pressed in [true, false] {
        h.event(egui::Event::PointerButton {
            pos,
            button: egui::PointerButton::Primary,
            pressed,
            modifiers: Default::default(),
        });
        h.step();
    }
}

/// A tiny generator trained (a few steps) on the fixture model's latents.
pub fn tiny_generator(tag: &str) -> PathBuf {
    let run = std::env::temp_dir().join(format!("dino-sae-ui-dit-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&run);
    let cfg = engine::train::dit::DitRunConfig {
        steps: 10,
        batch: 8,
        checkpoint_every: 10,
        log_every: 5,
        cache: engine::generate::CacheSpec { crop: 32, crops_per_photo: 2, min_crop_frac: 0.5, seed: 1 },
        ..Default::default()
    };
    engine::train::dit::train_dit_run(&fixture_model(), &root().join("assets/samples"), &run, &cfg, &mut |_| true)
        .expect("train a tiny generator");
    run
}

pub fn load_generator(h: &mut H, run: &Path) {
    h.get_by_label("Sample").click();
    h.run_steps(2);
    type_into(h, "Generator folder", &run.join("final").display().to_string());
    h.get_by_label("Load generator").click();
    wait_for(h, "generator", |s| !s.sample_ui().classes.is_empty());
}
