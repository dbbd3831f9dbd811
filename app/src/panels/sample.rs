//! Sample: the generator's class, seed, steps, sampler, CFG, s_vae and batch; decoded previews while it runs,
//! cancel keeps the last state; slerp walks between two seeds or two opened images, playable and exportable.

use eframe::egui;
use engine::worker::{Job, JobKind};

use crate::app::Studio;
use crate::dialogs::DialogFor;
use crate::panels::side::path_field;

/// The Sample tab's state.
pub struct SampleUi {
    pub classes: Vec<String>,
    pub s_vae_default: f64,
    pub class: usize,
    pub seed: u64,
    pub steps: usize,
    pub exp_map: bool,
    pub cfg: f64,
    pub s_vae: f64,
    pub count: usize,
    pub preview: Option<egui::TextureHandle>,
    /// The sampling preview came from the preview decoder.
    pub preview_fast: bool,
    /// Samples: texture, cancelled, steps done, milliseconds.
    pub result: Option<(egui::TextureHandle, bool, usize, f64)>,
    pub result_image: Option<image::RgbImage>,
    pub dit_path: String,
    // slerp walk
    pub seed_b: u64,
    pub walk_frames: usize,
    pub walk: Vec<image::RgbImage>,
    /// The walk's frames are the preview decoder's (the full decode is on its way).
    pub walk_is_preview: bool,
    pub walk_tex: Vec<egui::TextureHandle>,
    pub walk_pos: usize,
    pub playing: bool,
    pub last_advance: f64,
    pub frames_dir: String,
    /// Where the walk's animation goes (.gif, or .png / .apng for APNG) and its frame rate.
    pub animation_path: String,
    pub fps: f32,
    /// What the last walk went between (written into the frames' text chunks).
    pub walk_label: String,
}

impl SampleUi {
    /// The sampler settings the panel shows, for `count` samples.
    pub fn spec(&self, count: usize) -> engine::generate::SampleSpec {
        engine::generate::SampleSpec {
            class: self.class,
            count: count.max(1),
            seed: self.seed,
            steps: self.steps.max(1),
            method: if self.exp_map {
                engine::sampler::SphereStep::ExpMap
            } else {
                engine::sampler::SphereStep::EulerProj
            },
            cfg_scale: self.cfg,
            s_vae: Some(self.s_vae),
            shift: None,
            grid: None,
        }
    }

    /// Take the settings of a saved spec (the class list stays).
    pub fn apply_spec(&mut self, s: &engine::generate::SampleSpec) {
        self.class = s.class;
        self.count = s.count.clamp(1, 16);
        self.seed = s.seed;
        self.steps = s.steps.clamp(1, 100);
        self.exp_map = matches!(s.method, engine::sampler::SphereStep::ExpMap);
        self.cfg = s.cfg_scale.clamp(1.0, 6.0);
        if let Some(v) = s.s_vae {
            self.s_vae = v.clamp(1.0, 40.0);
        }
    }
}

impl Default for SampleUi {
    fn default() -> Self {
        Self {
            classes: Vec::new(),
            s_vae_default: 14.0,
            class: 0,
            seed: 0,
            steps: 25,
            exp_map: false,
            cfg: 1.5,
            s_vae: 14.0,
            count: 4,
            preview: None,
            preview_fast: false,
            result: None,
            result_image: None,
            dit_path: String::new(),
            seed_b: 1,
            walk_frames: 16,
            walk: Vec::new(),
            walk_is_preview: false,
            walk_tex: Vec::new(),
            walk_pos: 0,
            playing: false,
            last_advance: 0.0,
            frames_dir: std::env::temp_dir().join("dino-sae-walk").display().to_string(),
            animation_path: std::env::temp_dir().join("dino-sae-walk.gif").display().to_string(),
            fps: 8.0,
            walk_label: String::new(),
        }
    }
}

pub fn show(s: &mut Studio, ui: &mut egui::Ui) {
    ui.horizontal(|ui| {
        path_field(ui, "Generator folder", &mut s.sample.dit_path);
    });
    ui.horizontal(|ui| {
        if ui.button("Load generator").clicked() && !s.sample.dit_path.trim().is_empty() {
            s.commands.send(Job::LoadGenerator(s.sample.dit_path.trim().into()));
        }
        if ui.button("Browse...").clicked() {
            s.ask(DialogFor::Generator);
        }
    });
    if s.sample.classes.is_empty() {
        ui.label("No generator loaded. The default model ships one in assets/default-model/dit.");
        walk_ui(s, ui);
        return;
    }
    let sm = &mut s.sample;
    egui::ComboBox::from_label("class").selected_text(sm.classes.get(sm.class).cloned().unwrap_or_default()).show_ui(
        ui,
        |ui| {
            for (i, c) in sm.classes.iter().enumerate() {
                ui.selectable_value(&mut sm.class, i, c);
            }
        },
    );
    ui.horizontal(|ui| {
        ui.add(egui::DragValue::new(&mut sm.seed).prefix("seed "));
        if ui.button("Randomise seed").clicked() {
            sm.seed = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64 % 1_000_000)
                .unwrap_or(7);
        }
    });
    ui.add(egui::Slider::new(&mut sm.steps, 1..=100).text("steps"));
    ui.horizontal(|ui| {
        ui.radio_value(&mut sm.exp_map, false, "Euler + projection");
        ui.radio_value(&mut sm.exp_map, true, "exp-map");
    });
    ui.add(egui::Slider::new(&mut sm.cfg, 1.0..=6.0).text("CFG scale"));
    ui.add(egui::Slider::new(&mut sm.s_vae, 1.0..=40.0).text("s_vae (decode radius)"));
    ui.add(egui::Slider::new(&mut sm.count, 1..=16).text("batch"));
    let running = s.link.is_running(JobKind::Sample);
    ui.horizontal(|ui| {
        if ui.add_enabled(!running, egui::Button::new("Start sampling")).clicked() {
            let spec = s.sample.spec(s.sample.count);
            s.sample.preview = None;
            s.commands.send(Job::Sample { spec, preview_every: 5 });
        }
        if ui.add_enabled(running, egui::Button::new("Cancel sampling")).clicked() {
            s.commands.cancel(JobKind::Sample);
        }
    });
    if running && let Some((step, of, eta)) = s.link.slot(JobKind::Sample).and_then(|x| x.progress) {
        ui.add(
            egui::ProgressBar::new(step as f32 / of.max(1) as f32).text(format!("step {step}/{of}, ETA {eta:.1} s")),
        );
    }
    // the preview and the samples side by side, as large as the panel allows (judging samples needs pixels)
    let side = ((ui.available_width() - 24.0) / 2.0).clamp(240.0, 512.0);
    ui.horizontal(|ui| {
        if let Some(p) = &s.sample.preview {
            ui.vertical(|ui| {
                ui.label(if s.sample.preview_fast {
                    "Preview (current state, preview decoder)"
                } else {
                    "Preview (current state, decoded)"
                });
                ui.image((p.id(), fit_within(p.size_vec2(), side)));
            });
        }
        if let Some((t, cancelled, done, ms)) = &s.sample.result {
            ui.vertical(|ui| {
                let timing = if s.view.stable_ui { String::new() } else { format!(", {ms:.0} ms") };
                ui.label(if *cancelled {
                    format!("Cancelled after {done} steps (last state kept){timing}")
                } else {
                    format!("Samples: {done} steps{timing}")
                });
                ui.image((t.id(), fit_within(t.size_vec2(), side)));
            });
        }
    });
    walk_ui(s, ui);
}

fn walk_ui(s: &mut Studio, ui: &mut egui::Ui) {
    ui.separator();
    ui.heading("Slerp walk between two seeds or two images");
    let busy = s.link.is_running(JobKind::Walk);
    ui.horizontal(|ui| {
        ui.label(format!("from seed {} to", s.sample.seed));
        ui.add(egui::DragValue::new(&mut s.sample.seed_b).prefix("seed "));
        ui.add(egui::Slider::new(&mut s.sample.walk_frames, 1..=60).text("intervals"));
        if ui.add_enabled(!busy && !s.sample.classes.is_empty(), egui::Button::new("Walk")).clicked() {
            let spec = s.sample.spec(1);
            s.sample.walk_label = format!("seed {} -> seed {}", s.sample.seed, s.sample.seed_b);
            s.commands.send(Job::Walk { spec, seed_b: s.sample.seed_b, frames: s.sample.walk_frames });
        }
    });
    ui.horizontal(|ui| {
        let current = s.doc.current.as_ref().map(|c| c.input.clone());
        let others: Vec<usize> =
            (0..s.doc.recent.len()).filter(|&k| Some(&s.doc.recent[k]) != current.as_ref()).collect();
        if others.is_empty() {
            ui.label("Images: open two images to walk between them");
            return;
        }
        ui.label("Images: from the current image to");
        let mut pick = None;
        for k in others {
            let (w, h) = s.doc.recent[k].dimensions();
            if ui.add_enabled(!busy, egui::Button::new(format!("recent image {} ({w}x{h})", k + 1))).clicked() {
                pick = Some(k);
            }
        }
        if let (Some(k), Some(a)) = (pick, current) {
            s.sample.walk_label = format!("current image -> recent image {}", k + 1);
            s.commands.send(Job::WalkImages { a, b: s.doc.recent[k].clone(), frames: s.sample.walk_frames });
        }
    });
    if s.sample.walk_tex.is_empty() {
        return;
    }
    let n = s.sample.walk_tex.len();
    ui.horizontal(|ui| {
        if ui.button(if s.sample.playing { "Pause" } else { "Play" }).clicked() {
            s.sample.playing = !s.sample.playing;
        }
        ui.add(egui::Slider::new(&mut s.sample.walk_pos, 0..=n - 1).text("frame"));
    });
    if s.sample.playing {
        let now = ui.ctx().input(|i| i.time);
        if now - s.sample.last_advance > 0.12 {
            s.sample.walk_pos = (s.sample.walk_pos + 1) % n;
            s.sample.last_advance = now;
        }
        ui.ctx().request_repaint_after(std::time::Duration::from_millis(120));
    }
    let t = &s.sample.walk_tex[s.sample.walk_pos.min(n - 1)];
    let side = (ui.available_width() - 16.0).clamp(200.0, 384.0);
    ui.image((t.id(), fit_within(t.size_vec2(), side)));
    if s.sample.walk_is_preview {
        ui.small("preview decoder frames; the full decode follows");
    }
    ui.horizontal(|ui| {
        path_field(ui, "Frames folder", &mut s.sample.frames_dir);
    });
    if ui.add_enabled(!s.sample.walk_is_preview, egui::Button::new("Export frames")).clicked() {
        s.export_walk();
    }
    ui.horizontal(|ui| {
        path_field(ui, "Animation file (.gif, or .png for APNG)", &mut s.sample.animation_path);
    });
    ui.horizontal(|ui| {
        ui.add(egui::Slider::new(&mut s.sample.fps, 1.0..=30.0).text("frames per second"));
        if ui.add_enabled(!s.sample.walk_is_preview, egui::Button::new("Export animation")).clicked() {
            s.export_walk_animation();
        }
    });
}

/// `size` scaled (up or down) so that its longer side is `side`, keeping its aspect.
fn fit_within(size: egui::Vec2, side: f32) -> egui::Vec2 {
    let long = size.x.max(size.y).max(1.0);
    size * (side / long)
}
