//! The Studio: model panel, Compare (original | reconstruction | error), Inspect (|z|, PCA, cosine heatmaps),
//! Steer (great-circle rotation, magnitude, noise on selected patches, live decode, undo/redo), status bar.
//! Talks to the engine thread only through `engine::worker` messages and images.

use std::path::PathBuf;

use eframe::egui::{self, Color32, ColorImage, TextureHandle, TextureOptions};
use engine::image_io::Fit;
use engine::steer::{SteerEdit, SteerTarget};
use engine::worker::{Command, Event, ModelInfo, ModelSource, Worker};

use crate::commands::AppCommand;
use crate::heatmap;

/// Command-line options: `--model PATH`, `--image PATH`, `--random-preset NAME`.
#[derive(Default, Clone)]
pub struct StartOptions {
    pub model: Option<PathBuf>,
    pub image: Option<PathBuf>,
    pub random_preset: Option<String>,
    /// `compare`, `inspect`, `steer` or `sample`.
    pub tab: Option<String>,
    /// `auto` (wgpu on a hardware GPU, else CPU), `cpu` or `wgpu`; `DINO_SAE_BACKEND` when not given.
    pub backend: Option<String>,
}

impl StartOptions {
    pub fn from_args(args: &[String]) -> Self {
        let mut o = Self::default();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "--model" => o.model = it.next().map(PathBuf::from),
                "--image" => o.image = it.next().map(PathBuf::from),
                "--random-preset" => o.random_preset = it.next().cloned(),
                "--tab" => o.tab = it.next().cloned(),
                "--backend" => o.backend = it.next().cloned(),
                _ => {}
            }
        }
        o
    }
}

/// What is remembered between runs (eframe storage); unknown or missing fields fall back to defaults.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Settings {
    pub dark: bool,
    pub opacity: f32,
    pub linear: bool,
    pub model_path: String,
    pub image_path: String,
    pub export_path: String,
    pub fit: String,
    pub zoom: f32,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            dark: true,
            opacity: 0.6,
            linear: false,
            model_path: String::new(),
            image_path: String::new(),
            export_path: std::env::temp_dir().join("dino-sae-exports/export.png").display().to_string(),
            fit: "Crop".into(),
            zoom: 1.0,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tab {
    Compare,
    Inspect,
    Steer,
    Sample,
}

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
    pub running: bool,
    pub progress: Option<(usize, usize, f64)>,
    pub preview: Option<TextureHandle>,
    pub result: Option<(TextureHandle, bool, usize, f64)>,
    pub result_image: Option<image::RgbImage>,
    cancel: std::sync::Arc<std::sync::atomic::AtomicBool>,
    pub dit_path: String,
    // slerp walk
    pub seed_b: u64,
    pub walk_frames: usize,
    pub walk: Vec<image::RgbImage>,
    pub walk_tex: Vec<TextureHandle>,
    pub walk_pos: usize,
    pub playing: bool,
    last_advance: f64,
    pub frames_dir: String,
    pub frames_saved: Option<usize>,
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
            method: if self.exp_map { engine::sampler::SphereStep::ExpMap } else { engine::sampler::SphereStep::EulerProj },
            cfg_scale: self.cfg,
            s_vae: Some(self.s_vae),
            shift: None,
            grid: None,
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
            running: false,
            progress: None,
            preview: None,
            result: None,
            result_image: None,
            cancel: Default::default(),
            dit_path: String::new(),
            seed_b: 1,
            walk_frames: 16,
            walk: Vec::new(),
            walk_tex: Vec::new(),
            walk_pos: 0,
            playing: false,
            last_advance: 0.0,
            frames_dir: std::env::temp_dir().join("dino-sae-walk").display().to_string(),
            walk_label: String::new(),
            frames_saved: None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeatMode {
    Magnitude,
    Pca,
    Cosine,
    /// Student-vs-teacher cosine per patch (needs a loaded teacher).
    Teacher,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TargetKind {
    Patch,
    Random,
    /// A principal axis (0..3) of the patch directions, with a sign.
    Pca(usize, bool),
    /// The mean direction of a generator class (fetched from the worker).
    ClassMean,
    /// A patch pinned earlier, possibly of another image (its direction is kept in the app).
    Pinned,
}

/// Everything shown about the current image.
pub struct Current {
    pub input: image::RgbImage,
    pub recon: image::RgbImage,
    pub psnr: f64,
    pub ssim: f64,
    pub millis: f64,
    pub grid: (usize, usize),
    pub magnitude: Vec<f32>,
    pub pca_rgb: Vec<[u8; 3]>,
    pub pca_axes: Vec<Vec<f32>>,
    pub teacher_cosine: Option<Vec<f32>>,
    /// Other models' reconstructions: (name, texture, PSNR, SSIM).
    pub others: Vec<(String, TextureHandle, f64, f64)>,
    pub cosine: Option<(usize, Vec<f32>)>,
    pub steered: Option<(image::RgbImage, f64, f64)>,
    /// LPIPS-VGG-like of the main reconstruction and of the compare models', once computed.
    pub lpips: Option<(f64, Vec<f64>)>,
    /// "computing...", the size it was measured at, or why it is not available.
    pub lpips_note: String,
    tex_input: TextureHandle,
    tex_recon: TextureHandle,
    tex_error: TextureHandle,
    tex_overlay: Option<TextureHandle>,
    tex_steered: Option<TextureHandle>,
}

pub struct Studio {
    ctx: egui::Context,
    worker: Worker,
    /// The engine's device, as the worker reported it.
    pub backend: String,
    /// Id of the LPIPS-VGG-like job for the current image.
    lpips_pending: Option<u64>,
    pub model: Option<ModelInfo>,
    pub current: Option<Current>,
    pub tab: Tab,
    pub error: Option<String>,
    pub busy: bool,
    last_sent: u64,
    pending_image: Option<image::RgbImage>,
    pub image_path: String,
    pub model_path: String,
    pub export_path: String,
    fit: Fit,
    pub heat: HeatMode,
    pub show_heat: bool,
    opacity: f32,
    // steering
    pub edit: SteerEdit,
    target_kind: TargetKind,
    pub target_patch: usize,
    pub selection: Vec<usize>,
    /// egui's Undoer over the steer edit: a point when an edit settles (1 s), and explicitly at the start and end of
    /// every drag, discrete change and reset.
    undoer: egui::util::undoer::Undoer<SteerEdit>,
    help: bool,
    dark: bool,
    pub last_export: Option<PathBuf>,
    /// Where the clickable original was drawn last frame (tests click into it).
    pub last_image_rect: Option<egui::Rect>,
    /// Compare: fraction of the reconstruction covered by the original (swipe divider).
    pub swipe: f32,
    /// Compare: linear (true) or nearest texture sampling.
    pub linear: bool,
    pub sample: SampleUi,
    /// Heatmaps drawn by shaders/heatmap.wgsl (eframe on wgpu) instead of the CPU overlay.
    pub gpu_heatmap: bool,
    overlay_version: u64,
    /// Compare: shared zoom (1 = fit) and pan (uv offset of the view's centre) of all three views.
    pub zoom: f32,
    pub pan: egui::Vec2,
    /// Steering target "class mean": (class, mean direction).
    pub class_mean: Option<(usize, Vec<f32>)>,
    /// A pinned target patch: (label, direction). Survives opening another image.
    pub pinned: Option<(String, Vec<f32>)>,
    /// Images opened this session (newest last, at most 6), for walks between images.
    pub recent: Vec<image::RgbImage>,
    /// Last informational message (status bar).
    pub status: Option<String>,
    pub teacher_path: String,
    /// Steer: where a box selection started.
    box_start: Option<egui::Pos2>,
    /// An open native file dialog (rfd on its own thread) and what its answer is for.
    dialog: Option<(DialogFor, poll_promise::Promise<Option<PathBuf>>)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DialogFor {
    Image,
    Model,
    ModelFolder,
    Export,
    Generator,
}

fn color_image(img: &image::RgbImage) -> ColorImage {
    ColorImage::from_rgb([img.width() as usize, img.height() as usize], img.as_raw())
}

/// Resident memory of this process (VmRSS), MiB.
fn current_rss_mb() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = s.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Row-major indices of the grid cells whose centres lie inside `r` (screen coordinates over `resp`).
pub fn patches_in(resp: &egui::Response, r: egui::Rect, grid: (usize, usize)) -> Vec<usize> {
    let (gh, gw) = grid;
    let img = resp.rect;
    let mut out = Vec::new();
    for y in 0..gh {
        for x in 0..gw {
            let c = img.min + egui::vec2((x as f32 + 0.5) * img.width() / gw as f32, (y as f32 + 0.5) * img.height() / gh as f32);
            if r.contains(c) {
                out.push(y * gw + x);
            }
        }
    }
    out
}

/// A horizontal colour bar of the heatmap colormap with its end values and midpoint.
fn colour_bar(ui: &mut egui::Ui, lo: f32, hi: f32) {
    ui.horizontal(|ui| {
        ui.label(format!("colour scale {lo:.2}"));
        let (rect, _) = ui.allocate_exact_size(egui::vec2(220.0, 14.0), egui::Sense::hover());
        let n = 48;
        for i in 0..n {
            let t = (i as f32 + 0.5) / n as f32;
            let [r, g, b] = heatmap::colormap(t);
            let x0 = rect.left() + rect.width() * i as f32 / n as f32;
            let x1 = rect.left() + rect.width() * (i + 1) as f32 / n as f32 + 0.5;
            let cell = egui::Rect::from_min_max(egui::pos2(x0, rect.top()), egui::pos2(x1, rect.bottom()));
            ui.painter().rect_filled(cell, 0.0, Color32::from_rgb(r, g, b));
        }
        ui.label(format!("{hi:.2}  (mid {:.2})", 0.5 * (lo + hi)));
    });
}

fn patch_at(resp: &egui::Response, pos: egui::Pos2, grid: (usize, usize)) -> Option<usize> {
    let r = resp.rect;
    let gx = ((pos.x - r.left()) / r.width() * grid.1 as f32).floor();
    let gy = ((pos.y - r.top()) / r.height() * grid.0 as f32).floor();
    (gx >= 0.0 && gy >= 0.0 && (gx as usize) < grid.1 && (gy as usize) < grid.0).then(|| gy as usize * grid.1 + gx as usize)
}

impl Studio {
    pub fn new(ctx: egui::Context, opts: StartOptions) -> Self {
        let c2 = ctx.clone();
        let choice = match opts.backend.as_deref().map(str::parse::<engine::backend::BackendChoice>) {
            Some(Ok(c)) => c,
            Some(Err(_)) | None => engine::backend::BackendChoice::from_env(),
        };
        let worker = Worker::spawn_on(choice, move || c2.request_repaint());
        let src = match (&opts.model, &opts.random_preset) {
            (Some(p), _) => ModelSource::Path(p.clone()),
            (None, Some(p)) => ModelSource::RandomPreset(p.clone()),
            _ => ModelSource::Default,
        };
        worker.send(Command::LoadModel(src));
        let export_dir = std::env::temp_dir().join("dino-sae-exports");
        let mut s = Self {
            ctx,
            worker,
            backend: "starting...".into(),
            lpips_pending: None,
            model: None,
            current: None,
            tab: Tab::Compare,
            error: None,
            busy: true,
            last_sent: 0,
            pending_image: None,
            image_path: String::new(),
            model_path: String::new(),
            export_path: export_dir.join("export.png").display().to_string(),
            fit: Fit::Crop,
            heat: HeatMode::Magnitude,
            show_heat: false,
            opacity: 0.6,
            edit: SteerEdit::default(),
            target_kind: TargetKind::Random,
            target_patch: 0,
            selection: Vec::new(),
            undoer: Default::default(),
            help: false,
            dark: true,
            last_export: None,
            last_image_rect: None,
            swipe: 0.0,
            linear: false,
            sample: SampleUi::default(),
            gpu_heatmap: false,
            overlay_version: 0,
            zoom: 1.0,
            pan: egui::Vec2::ZERO,
            dialog: None,
            box_start: None,
            status: None,
            class_mean: None,
            pinned: None,
            recent: Vec::new(),
            teacher_path: std::env::var("HOME")
                .map(|h| PathBuf::from(h).join(".cache/dino-sae/teacher-dinov2-s14").display().to_string())
                .unwrap_or_default(),
        };
        match opts.tab.as_deref() {
            Some("inspect") => {
                s.tab = Tab::Inspect;
                s.show_heat = true;
            }
            Some("steer") => s.tab = Tab::Steer,
            Some("sample") => s.tab = Tab::Sample,
            _ => {}
        }
        // Open on a sample photo unless told otherwise.
        let sample = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../assets/samples/astronaut.png");
        if let Some(p) = opts.image.or(sample.exists().then_some(sample)) {
            s.image_path = p.display().to_string();
            s.open_image(&p);
        }
        s
    }

    /// Ask the desktop for a path without blocking the UI (rfd through the XDG portal, on a thread).
    fn ask(&mut self, what: DialogFor) {
        if self.dialog.is_some() {
            return;
        }
        let promise = poll_promise::Promise::spawn_thread("file-dialog", move || {
            let d = rfd::FileDialog::new();
            match what {
                DialogFor::Image => d.add_filter("images", &["png", "jpg", "jpeg", "tif", "tiff", "webp", "bmp"]).pick_file(),
                DialogFor::Model => d.add_filter("checkpoints", &["safetensors", "pth", "pt", "bin"]).pick_file(),
                DialogFor::ModelFolder | DialogFor::Generator => d.pick_folder(),
                DialogFor::Export => d.add_filter("PNG", &["png"]).set_file_name("export.png").save_file(),
            }
        });
        self.dialog = Some((what, promise));
    }

    fn poll_dialog(&mut self) {
        let Some((what, p)) = &self.dialog else { return };
        let Some(answer) = p.ready() else { return };
        let (what, answer) = (*what, answer.clone());
        self.dialog = None;
        let Some(path) = answer else { return }; // cancelled, or no portal available: typed paths still work
        let text = path.display().to_string();
        match what {
            DialogFor::Image => {
                self.image_path = text;
                self.open_image(&path);
            }
            DialogFor::Model | DialogFor::ModelFolder => {
                self.model_path = text;
                self.load_model(ModelSource::Path(path));
            }
            DialogFor::Export => {
                self.export_path = text;
                self.export_image();
            }
            DialogFor::Generator => {
                self.sample.dit_path = text;
                self.busy = true;
                self.worker.send(Command::LoadDit(path));
            }
        }
    }

    /// Current settings (for eframe storage).
    pub fn settings(&self) -> Settings {
        Settings {
            dark: self.dark,
            opacity: self.opacity,
            linear: self.linear,
            model_path: self.model_path.clone(),
            image_path: self.image_path.clone(),
            export_path: self.export_path.clone(),
            fit: format!("{:?}", self.fit),
            zoom: self.zoom,
        }
    }

    /// Apply remembered settings (paths are only filled in, nothing is loaded).
    pub fn apply_settings(&mut self, st: Settings) {
        self.dark = st.dark;
        self.ctx.set_visuals(if self.dark { egui::Visuals::dark() } else { egui::Visuals::light() });
        self.opacity = st.opacity.clamp(0.0, 1.0);
        self.linear = st.linear;
        if self.model_path.is_empty() {
            self.model_path = st.model_path;
        }
        if !st.export_path.is_empty() {
            self.export_path = st.export_path;
        }
        self.fit = match st.fit.as_str() {
            "Pad" => Fit::Pad,
            "Resize" => Fit::Resize,
            _ => Fit::Crop,
        };
        self.zoom = if st.zoom.is_finite() { st.zoom.clamp(1.0, 16.0) } else { 1.0 };
    }

    /// Register the WGSL heatmap pipeline with eframe's wgpu renderer.
    pub fn enable_gpu(&mut self, rs: &eframe::egui_wgpu::RenderState) {
        let pipeline = crate::gpu_heatmap::HeatmapPipeline::new(&rs.device, rs.target_format);
        rs.renderer.write().callback_resources.insert(crate::gpu_heatmap::HeatmapResources { pipeline, bound: None });
        self.gpu_heatmap = true;
    }

    pub fn open_image(&mut self, path: &std::path::Path) {
        match engine::image_io::load_rgb(path) {
            Ok(img) => self.submit(img),
            Err(e) => self.error = Some(e.to_string()),
        }
    }

    pub fn open_bytes(&mut self, bytes: &[u8]) {
        match engine::image_io::decode_rgb(bytes) {
            Ok(img) => self.submit(img),
            Err(e) => self.error = Some(e.to_string()),
        }
    }

    pub fn load_model(&mut self, src: ModelSource) {
        self.busy = true;
        self.worker.send(Command::LoadModel(src));
    }

    fn next_id(&mut self) -> u64 {
        self.last_sent += 1;
        self.last_sent
    }

    fn submit(&mut self, img: image::RgbImage) {
        if self.model.is_none() {
            self.pending_image = Some(img);
            return;
        }
        let id = self.next_id();
        self.busy = true;
        self.worker.send(Command::Reconstruct { id, image: img, fit: self.fit });
    }

    fn send_steer(&mut self) {
        if self.current.is_none() {
            return;
        }
        self.edit.patches = self.selection.clone();
        self.edit.target = match self.target_kind {
            TargetKind::Patch => SteerTarget::Patch(self.target_patch),
            TargetKind::Random => SteerTarget::Random(self.edit.noise_seed.wrapping_add(1)),
            TargetKind::ClassMean => match &self.class_mean {
                Some((_, d)) => SteerTarget::Direction(d.clone()),
                None => SteerTarget::Random(self.edit.noise_seed.wrapping_add(1)),
            },
            TargetKind::Pinned => match &self.pinned {
                Some((_, d)) => SteerTarget::Direction(d.clone()),
                None => SteerTarget::Random(self.edit.noise_seed.wrapping_add(1)),
            },
            TargetKind::Pca(k, positive) => {
                match self.current.as_ref().and_then(|c| c.pca_axes.get(k)) {
                    Some(a) => SteerTarget::Direction(a.iter().map(|v| if positive { *v } else { -*v }).collect()),
                    None => SteerTarget::Random(self.edit.noise_seed.wrapping_add(1)),
                }
            }
        };
        let id = self.next_id();
        self.busy = true;
        self.worker.send(Command::Steer { id, edit: self.edit.clone() });
    }

    /// Make the current edit an undo point (no-op when it already is the latest).
    fn push_undo(&mut self) {
        self.undoer.add_undo(&self.edit);
    }

    /// Whether Undo / Redo would change anything (menus grey them out otherwise).
    pub fn can_undo(&self) -> bool {
        self.undoer.has_undo(&self.edit)
    }

    pub fn can_redo(&self) -> bool {
        self.undoer.has_redo(&self.edit)
    }

    /// Run a command (menus, shortcuts and tests all come here).
    pub fn run(&mut self, cmd: AppCommand) {
        match cmd {
            AppCommand::OpenImage => {
                let p = PathBuf::from(self.image_path.trim());
                self.open_image(&p);
            }
            AppCommand::ExportImage => self.export_image(),
            AppCommand::ExportLatent => {
                let p = PathBuf::from(self.export_path.trim()).with_extension("safetensors");
                self.worker.send(Command::ExportLatent { path: p, edited: Some(self.edit.clone()) });
            }
            AppCommand::ShowCompare => self.tab = Tab::Compare,
            AppCommand::ShowInspect => self.tab = Tab::Inspect,
            AppCommand::ShowSteer => self.tab = Tab::Steer,
            AppCommand::ToggleHeatmap => self.show_heat = !self.show_heat,
            AppCommand::ResetSteer => {
                self.push_undo();
                self.edit = SteerEdit::default();
                self.push_undo();
                self.send_steer();
            }
            AppCommand::Undo => {
                if let Some(e) = self.undoer.undo(&self.edit).cloned() {
                    self.edit = e;
                    self.send_steer();
                }
            }
            AppCommand::Redo => {
                if let Some(e) = self.undoer.redo(&self.edit).cloned() {
                    self.edit = e;
                    self.send_steer();
                }
            }
            AppCommand::ToggleTheme => {
                self.dark = !self.dark;
                self.ctx.set_visuals(if self.dark { egui::Visuals::dark() } else { egui::Visuals::light() });
            }
            AppCommand::ToggleHelp => self.help = !self.help,
        }
    }

    fn export_image(&mut self) {
        let (img, what) = match (&self.sample.result_image, &self.current, self.tab) {
            (Some(g), _, Tab::Sample) => (g.clone(), "samples"),
            (_, Some(c), Tab::Steer) if c.steered.is_some() => (c.steered.as_ref().map(|s| s.0.clone()).unwrap_or_default(), "steered"),
            (_, Some(c), _) => (c.recon.clone(), "reconstruction"),
            _ => return,
        };
        let model = self.model.as_ref().map(|m| m.name.clone()).unwrap_or_default();
        let text = vec![
            ("Software", "DINO-SAE Studio".to_string()),
            ("Model", model),
            ("Kind", what.to_string()),
            ("Steer", serde_json::to_string(&self.edit).unwrap_or_default()),
            (
                "Sample",
                format!(
                    "class={} seed={} steps={} sampler={} cfg={} s_vae={} n={}",
                    self.sample.classes.get(self.sample.class).cloned().unwrap_or_default(),
                    self.sample.seed,
                    self.sample.steps,
                    if self.sample.exp_map { "exp-map" } else { "euler-proj" },
                    self.sample.cfg,
                    self.sample.s_vae,
                    self.sample.count
                ),
            ),
        ];
        let path = PathBuf::from(self.export_path.trim());
        match engine::image_io::save_png(&path, &img, &text) {
            Ok(()) => self.last_export = Some(path),
            Err(e) => self.error = Some(e.to_string()),
        }
    }

    fn tex_options(&self) -> TextureOptions {
        if self.linear { TextureOptions::LINEAR } else { TextureOptions::NEAREST }
    }

    fn reload_textures(&mut self) {
        let o = self.tex_options();
        if let Some(c) = &mut self.current {
            c.tex_input.set(color_image(&c.input), o);
            c.tex_recon.set(color_image(&c.recon), o);
            let err = heatmap::error_image(&c.input, &c.recon);
            c.tex_error.set(color_image(&err), o);
        }
    }

    fn overlay_texture(&self, c: &Current) -> Option<ColorImage> {
        let img = match self.heat {
            HeatMode::Magnitude => heatmap::overlay(&c.input, &c.magnitude, c.grid, 1.0).0,
            HeatMode::Cosine => {
                let (_, v) = c.cosine.as_ref()?;
                heatmap::overlay_range(&c.input, v, c.grid, -1.0, 1.0)
            }
            HeatMode::Teacher => heatmap::overlay_range(&c.input, c.teacher_cosine.as_ref()?, c.grid, -1.0, 1.0),
            HeatMode::Pca => {
                if c.pca_rgb.is_empty() {
                    return None;
                }
                heatmap::overlay_colors(&c.input, &c.pca_rgb, c.grid)
            }
        };
        Some(color_image(&img))
    }

    fn refresh_overlay(&mut self) {
        self.overlay_version += 1;
        let tex = self.current.as_ref().and_then(|c| self.overlay_texture(c));
        if let Some(c) = &mut self.current {
            c.tex_overlay = tex.map(|t| self.ctx.load_texture("overlay", t, TextureOptions::NEAREST));
        }
    }

    /// Drain worker events.
    pub fn poll(&mut self) {
        while let Some(ev) = self.worker.try_recv() {
            match ev {
                Event::Loaded(info) => {
                    self.model = Some(info);
                    self.busy = false;
                    self.error = None;
                    if let Some(img) = self.pending_image.take() {
                        self.submit(img);
                    } else if let Some(c) = &self.current {
                        let img = c.input.clone();
                        self.submit(img);
                    }
                }
                Event::Reconstructed { id, input, recon, psnr, ssim, magnitude, pca_rgb, pca_axes, teacher_cosine, others, grid, millis } => {
                    if id != self.last_sent {
                        continue;
                    }
                    self.busy = false;
                    if self.recent.last() != Some(&input) {
                        self.recent.push(input.clone());
                        if self.recent.len() > 6 {
                            self.recent.remove(0);
                        }
                    }
                    let err = heatmap::error_image(&input, &recon);
                    let o = self.tex_options();
                    let others = others
                        .into_iter()
                        .enumerate()
                        .map(|(i, (n, img, p, q))| (n, self.ctx.load_texture(format!("other{i}"), color_image(&img), o), p, q))
                        .collect();
                    self.current = Some(Current {
                        tex_input: self.ctx.load_texture("input", color_image(&input), o),
                        tex_recon: self.ctx.load_texture("recon", color_image(&recon), o),
                        tex_error: self.ctx.load_texture("error", color_image(&err), o),
                        tex_overlay: None,
                        tex_steered: None,
                        input,
                        recon,
                        psnr,
                        ssim,
                        millis,
                        grid,
                        magnitude,
                        pca_rgb,
                        pca_axes,
                        teacher_cosine,
                        others,
                        cosine: None,
                        steered: None,
                        lpips: None,
                        lpips_note: "LPIPS-VGG-like: computing...".into(),
                    });
                    self.selection.clear();
                    self.refresh_overlay();
                    // the perceptual distance runs as its own job (VGG16 is slower than the decode)
                    let lid = self.next_id();
                    self.lpips_pending = Some(lid);
                    self.worker.send(Command::Lpips { id: lid });
                }
                Event::CosineMap { id: _, patch, values } => {
                    if let Some(c) = &mut self.current {
                        c.cosine = Some((patch, values));
                    }
                    self.heat = HeatMode::Cosine;
                    self.show_heat = true;
                    self.refresh_overlay();
                }
                Event::Steered { id, image, psnr, millis, .. } => {
                    if id != self.last_sent {
                        continue; // a newer edit is on its way
                    }
                    self.busy = false;
                    if let Some(c) = &mut self.current {
                        c.tex_steered = Some(self.ctx.load_texture("steered", color_image(&image), TextureOptions::NEAREST));
                        c.steered = Some((image, psnr, millis));
                    }
                }
                Event::Exported { path } => self.last_export = Some(path),
                Event::BackendReady { name, wgpu: _ } => self.backend = name,
                Event::CompareModelAdded { name } | Event::TeacherLoaded { name } => {
                    self.busy = false;
                    self.status = Some(format!("loaded {name}"));
                    if let Some(c) = &self.current {
                        let img = c.input.clone();
                        self.submit(img);
                    }
                }
                Event::DitLoaded { classes, grid: _, s_vae } => {
                    self.sample.classes = classes;
                    self.sample.s_vae_default = s_vae;
                    self.sample.s_vae = s_vae;
                    self.sample.class = 0;
                    self.busy = false;
                }
                Event::SampleProgress { id, step, of, eta_secs, preview } => {
                    if id == self.last_sent {
                        self.sample.progress = Some((step, of, eta_secs));
                        self.sample.preview = Some(self.ctx.load_texture("sample-preview", color_image(&preview), TextureOptions::NEAREST));
                    }
                }
                Event::Sampled { id, images, cancelled, steps_done, millis } => {
                    if id != self.last_sent {
                        continue;
                    }
                    self.busy = false;
                    self.sample.running = false;
                    match engine::generate::tile(&images) {
                        Ok(grid) => {
                            let t = self.ctx.load_texture("sample-result", color_image(&grid), TextureOptions::NEAREST);
                            self.sample.result = Some((t, cancelled, steps_done, millis));
                            self.sample.result_image = Some(grid);
                        }
                        Err(e) => self.error = Some(e.to_string()),
                    }
                }
                Event::ClassMean { id: _, class, direction } => {
                    self.busy = false;
                    self.class_mean = Some((class, direction));
                    self.target_kind = TargetKind::ClassMean;
                    self.send_steer();
                }
                Event::PatchDirection { id: _, patch, direction } => {
                    self.busy = false;
                    let n = self.recent.len();
                    self.pinned = Some((format!("patch {patch} of image {n}"), direction));
                    self.target_kind = TargetKind::Pinned;
                    self.send_steer();
                }
                Event::Walked { id, frames, millis: _ } => {
                    if id != self.last_sent {
                        continue;
                    }
                    self.busy = false;
                    self.sample.running = false;
                    self.sample.walk_tex = frames
                        .iter()
                        .enumerate()
                        .map(|(i, f)| self.ctx.load_texture(format!("walk{i}"), color_image(f), TextureOptions::NEAREST))
                        .collect();
                    self.sample.walk = frames;
                    self.sample.walk_pos = 0;
                    self.sample.frames_saved = None;
                }
                Event::LpipsScores { id, main, others, size } => {
                    if Some(id) == self.lpips_pending {
                        if let Some(c) = &mut self.current {
                            c.lpips = Some((main, others));
                            c.lpips_note = format!("LPIPS-VGG-like at {}x{}", size.0, size.1);
                        }
                    }
                }
                Event::Failed { id: Some(id), error } if Some(id) == self.lpips_pending => {
                    // not an error of anything the user did: say it where the score would be
                    if let Some(c) = &mut self.current {
                        c.lpips_note = error;
                    }
                }
                Event::Failed { id, error } => {
                    if id.is_none() || id == Some(self.last_sent) {
                        self.busy = false;
                        self.sample.running = false;
                    }
                    self.error = Some(error); // what the user had stays as it was
                }
            }
        }
    }

    fn model_panel(&mut self, ui: &mut egui::Ui) {
        ui.heading("Model");
        match &self.model {
            Some(m) => {
                if m.random {
                    ui.colored_label(Color32::from_rgb(230, 120, 40), "RANDOM weights: pipeline demo only");
                }
                ui.label(format!("{}\n{:.1} M parameters\non {}", m.name, m.params as f64 / 1e6, self.backend));
                ui.collapsing("Key report", |ui| ui.monospace(&m.report));
                ui.collapsing("Config", |ui| egui::ScrollArea::vertical().max_height(200.0).show(ui, |ui| ui.monospace(&m.config)));
            }
            None => {
                ui.label("No model loaded.");
            }
        }
        ui.label("Checkpoint (our folder or an official DINO-SAE state dict):");
        ui.text_edit_singleline(&mut self.model_path);
        ui.horizontal(|ui| {
            if ui.button("Load model").clicked() && !self.model_path.trim().is_empty() {
                self.load_model(ModelSource::Path(PathBuf::from(self.model_path.trim())));
            }
            if ui.button("Default model").clicked() {
                self.load_model(ModelSource::Default);
            }
        });
        ui.horizontal(|ui| {
            if ui.button("Browse file...").clicked() {
                self.ask(DialogFor::Model);
            }
            if ui.button("Browse folder...").clicked() {
                self.ask(DialogFor::ModelFolder);
            }
        });
        if ui.button("Random small model (demo)").clicked() {
            self.load_model(ModelSource::RandomPreset("small".into()));
        }
        if ui.button("Add model to compare").clicked() && !self.model_path.trim().is_empty() {
            self.busy = true;
            self.worker.send(Command::AddCompareModel(PathBuf::from(self.model_path.trim())));
        }
        ui.label("Teacher (for student-vs-teacher cosine):");
        ui.text_edit_singleline(&mut self.teacher_path);
        if ui.button("Load teacher").clicked() && !self.teacher_path.trim().is_empty() {
            self.busy = true;
            self.worker.send(Command::LoadTeacher(PathBuf::from(self.teacher_path.trim())));
        }
        if let Some(mb) = current_rss_mb() {
            ui.small(format!("memory in use: {mb:.0} MiB"));
        }
        ui.separator();
        ui.heading("Image");
        ui.label("Path (or drop a file on the window):");
        ui.text_edit_singleline(&mut self.image_path);
        ui.horizontal(|ui| {
            if ui.button(AppCommand::OpenImage.label()).clicked() {
                self.run(AppCommand::OpenImage);
            }
            if ui.button("Browse image...").clicked() {
                self.ask(DialogFor::Image);
            }
        });
        egui::ComboBox::from_label("Fit to x16").selected_text(format!("{:?}", self.fit)).show_ui(ui, |ui| {
            ui.selectable_value(&mut self.fit, Fit::Crop, "Crop");
            ui.selectable_value(&mut self.fit, Fit::Pad, "Pad");
            ui.selectable_value(&mut self.fit, Fit::Resize, "Resize");
        });
        ui.separator();
        ui.heading("Export");
        ui.text_edit_singleline(&mut self.export_path);
        ui.horizontal(|ui| {
            if ui.button(AppCommand::ExportImage.label()).clicked() {
                self.run(AppCommand::ExportImage);
            }
            if ui.button(AppCommand::ExportLatent.label()).clicked() {
                self.run(AppCommand::ExportLatent);
            }
        });
        if ui.button("Export PNG as...").clicked() {
            self.ask(DialogFor::Export);
        }
        if let Some(p) = &self.last_export {
            ui.small(format!("saved {}", p.display()));
        }
    }

    fn image_size(&self, ui: &egui::Ui, cols: f32) -> egui::Vec2 {
        self.image_size_leaving(ui, cols, 60.0)
    }

    /// Image size for `cols` images side by side, leaving `below` points of height for what follows.
    fn image_size_leaving(&self, ui: &egui::Ui, cols: f32, below: f32) -> egui::Vec2 {
        let Some(c) = &self.current else { return egui::Vec2::ZERO };
        let avail = ui.available_size();
        let (w, h) = (c.input.width() as f32, c.input.height() as f32);
        let s = ((avail.x / cols - 12.0) / w).min((avail.y - below).max(120.0) / h).max(0.05);
        egui::vec2(w * s, h * s)
    }

    /// The original with the heatmap overlay; returns the response for clicks.
    fn overlay_image(&mut self, ui: &mut egui::Ui, size: egui::Vec2) -> Option<egui::Response> {
        let c = self.current.as_ref()?;
        let resp = ui.add(egui::Image::new((c.tex_input.id(), size)).sense(egui::Sense::click()));
        self.last_image_rect = Some(resp.rect);
        let c = self.current.as_ref()?;
        let uv = egui::Rect::from_min_max(egui::pos2(0.0, 0.0), egui::pos2(1.0, 1.0));
        if self.show_heat {
            let scalar = match self.heat {
                HeatMode::Magnitude => {
                    let (lo, hi) = c.magnitude.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), v| (a.min(*v), b.max(*v)));
                    Some((c.magnitude.clone(), lo, hi))
                }
                HeatMode::Cosine => c.cosine.as_ref().map(|(_, v)| (v.clone(), -1.0, 1.0)),
                HeatMode::Teacher => c.teacher_cosine.as_ref().map(|v| (v.clone(), -1.0, 1.0)),
                HeatMode::Pca => None,
            };
            match scalar.filter(|_| self.gpu_heatmap) {
                Some((values, vmin, vmax)) => {
                    let ppp = ui.ctx().pixels_per_point();
                    let job = crate::gpu_heatmap::HeatmapJob {
                        base: std::sync::Arc::new(c.input.clone()),
                        values: std::sync::Arc::new(values),
                        grid: c.grid,
                        vmin,
                        vmax,
                        opacity: self.opacity,
                        bilinear: self.linear,
                        version: self.overlay_version,
                        rect_px: ([resp.rect.min.x * ppp, resp.rect.min.y * ppp], [resp.rect.width() * ppp, resp.rect.height() * ppp]),
                    };
                    ui.painter()
                        .add(eframe::egui_wgpu::Callback::new_paint_callback(resp.rect, crate::gpu_heatmap::HeatmapCallback(job)));
                }
                None => {
                    if let Some(t) = &c.tex_overlay {
                        ui.painter().image(t.id(), resp.rect, uv, Color32::from_white_alpha((self.opacity * 255.0) as u8));
                    }
                }
            }
        }
        // selected patches
        let (gh, gw) = c.grid;
        for &p in &self.selection {
            let (y, x) = (p / gw, p % gw);
            let r = egui::Rect::from_min_size(
                resp.rect.min + egui::vec2(x as f32 * resp.rect.width() / gw as f32, y as f32 * resp.rect.height() / gh as f32),
                egui::vec2(resp.rect.width() / gw as f32, resp.rect.height() / gh as f32),
            );
            ui.painter().rect_stroke(r, 0.0, egui::Stroke::new(1.5, Color32::YELLOW), egui::StrokeKind::Inside);
        }
        Some(resp)
    }

    fn compare_tab(&mut self, ui: &mut egui::Ui) {
        let Some(c) = &self.current else {
            ui.label("Open an image (path on the left, or drop a file here).");
            return;
        };
        let lp = match &c.lpips {
            Some((v, _)) => format!("LPIPS-VGG-like {v:.4}"),
            None => c.lpips_note.clone(),
        };
        ui.label(format!(
            "PSNR {:.2} dB   SSIM {:.4}   {lp}   {}x{} px, {}x{} patches   {:.0} ms",
            c.psnr,
            c.ssim,
            c.input.width(),
            c.input.height(),
            c.grid.1,
            c.grid.0,
            c.millis
        ));
        ui.horizontal(|ui| {
            ui.add(egui::Slider::new(&mut self.swipe, 0.0..=1.0).text("swipe (original on the left)"));
            let before = self.linear;
            ui.checkbox(&mut self.linear, "linear filtering");
            if before != self.linear {
                self.reload_textures();
            }
            ui.label("hold Space: flicker to the original");
        });
        ui.horizontal(|ui| {
            ui.add(egui::Slider::new(&mut self.zoom, 1.0..=16.0).logarithmic(true).text("zoom (all views; drag to pan)"));
            if ui.button("Fit").clicked() {
                self.zoom = 1.0;
                self.pan = egui::Vec2::ZERO;
            }
            if ui.button("1:1").clicked() {
                let fit = self.image_size(ui, 3.0);
                if let Some(c) = &self.current {
                    self.zoom = (c.input.width() as f32 / fit.x.max(1.0)).max(1.0);
                }
            }
        });
        let size = self.image_size(ui, 3.0);
        let flicker = ui.ctx().input(|i| i.key_down(egui::Key::Space));
        // the same uv window for every view: zoom around the centre, shifted by the pan
        let half = 0.5 / self.zoom.max(1.0);
        let lim = 0.5 - half;
        self.pan = egui::vec2(self.pan.x.clamp(-lim, lim), self.pan.y.clamp(-lim, lim));
        let centre = egui::pos2(0.5 + self.pan.x, 0.5 + self.pan.y);
        let uv = egui::Rect::from_center_size(centre, egui::vec2(2.0 * half, 2.0 * half));
        let mut drag = egui::Vec2::ZERO;
        let mut view = |ui: &mut egui::Ui, tex: &TextureHandle| {
            let r = ui.add(egui::Image::new((tex.id(), size)).uv(uv).sense(egui::Sense::drag()));
            drag += r.drag_delta() / size;
            r
        };
        let c = self.current.as_ref().expect("checked");
        ui.horizontal(|ui| {
            ui.vertical(|ui| {
                ui.label("Original");
                view(ui, &c.tex_input);
            });
            ui.vertical(|ui| {
                ui.label(if flicker { "Original (Space held)" } else { "Reconstruction" });
                let tex = if flicker { &c.tex_input } else { &c.tex_recon };
                let resp = view(ui, tex);
                if self.swipe > 0.0 && !flicker {
                    // the original over the left part, split at the divider
                    let r = resp.rect;
                    let split = r.left() + r.width() * self.swipe;
                    let left = egui::Rect::from_min_max(r.min, egui::pos2(split, r.bottom()));
                    let uv_left = egui::Rect::from_min_max(uv.min, egui::pos2(uv.min.x + uv.width() * self.swipe, uv.max.y));
                    ui.painter().image(c.tex_input.id(), left, uv_left, Color32::WHITE);
                    ui.painter().vline(split, r.y_range(), egui::Stroke::new(2.0, Color32::WHITE));
                }
            });
            ui.vertical(|ui| {
                ui.label("Error |x - recon| x4");
                view(ui, &c.tex_error);
            });
        });
        if !c.others.is_empty() {
            ui.horizontal(|ui| {
                for (i, (name, tex, p, q)) in c.others.iter().enumerate() {
                    ui.vertical(|ui| {
                        let short = std::path::Path::new(name).file_name().map(|f| f.to_string_lossy().to_string()).unwrap_or_default();
                        let lp = c.lpips.as_ref().and_then(|(_, o)| o.get(i)).map(|v| format!(", LPIPS-VGG-like {v:.4}")).unwrap_or_default();
                        ui.label(format!("{short}: PSNR {p:.2} dB, SSIM {q:.4}{lp}"));
                        view(ui, tex);
                    });
                }
            });
        }
        // dragging any view pans all of them
        self.pan -= drag * uv.width();
    }

    fn inspect_tab(&mut self, ui: &mut egui::Ui) {
        if self.current.is_none() {
            ui.label("Open an image first.");
            return;
        }
        ui.horizontal(|ui| {
            let before = self.heat;
            ui.selectable_value(&mut self.heat, HeatMode::Magnitude, "Magnitude |z|");
            ui.selectable_value(&mut self.heat, HeatMode::Pca, "Direction (PCA -> RGB)");
            ui.selectable_value(&mut self.heat, HeatMode::Cosine, "Cosine to clicked patch");
            ui.add_enabled_ui(self.current.as_ref().is_some_and(|c| c.teacher_cosine.is_some()), |ui| {
                ui.selectable_value(&mut self.heat, HeatMode::Teacher, "Student vs teacher");
            });
            if before != self.heat {
                self.show_heat = true;
                self.refresh_overlay();
            }
            ui.checkbox(&mut self.show_heat, "overlay");
            ui.add(egui::Slider::new(&mut self.opacity, 0.0..=1.0).text("opacity"));
        });
        // room below the image for the colour scale, the nearest patches and the histogram
        let size = self.image_size_leaving(ui, 1.6, 280.0);
        let Some(resp) = self.overlay_image(ui, size) else { return };
        let c = self.current.as_ref().expect("checked");
        let grid = c.grid;
        if let Some(pos) = resp.hover_pos() {
            if let Some(p) = patch_at(&resp, pos, grid) {
                let mut tip = format!("patch ({}, {})  |z| = {:.3}", p / grid.1, p % grid.1, c.magnitude[p]);
                if let Some((q, v)) = &c.cosine {
                    tip.push_str(&format!("\ncos to patch {q}: {:.3}", v[p]));
                }
                if let Some(v) = &c.teacher_cosine {
                    tip.push_str(&format!("\nangle to the teacher: {:.1} deg", v[p].clamp(-1.0, 1.0).acos().to_degrees()));
                }
                resp.clone().on_hover_text(tip);
            }
        }
        if let Some(pos) = resp.interact_pointer_pos().filter(|_| resp.clicked()) {
            if let Some(p) = patch_at(&resp, pos, grid) {
                let id = self.next_id();
                self.worker.send(Command::PatchCosine { id, patch: p });
            }
        }
        let c = self.current.as_ref().expect("checked");
        let (lo, hi) = match self.heat {
            HeatMode::Magnitude => c.magnitude.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), v| (a.min(*v), b.max(*v))),
            _ => (-1.0, 1.0),
        };
        if self.heat != HeatMode::Pca {
            colour_bar(ui, lo, hi);
        }
        if let Some(v) = &c.teacher_cosine {
            let mean = v.iter().sum::<f32>() / v.len().max(1) as f32;
            ui.label(format!("mean student-vs-teacher cosine: {mean:.3}"));
        }
        if let Some((q, v)) = &c.cosine {
            ui.label(format!("cosine map of patch {q} (click another patch to change)"));
            let mut order: Vec<usize> = (0..v.len()).filter(|&i| i != *q).collect();
            order.sort_by(|a, b| v[*b].total_cmp(&v[*a]));
            let near: Vec<String> = order.iter().take(5).map(|&i| format!("({}, {}) {:.3}", i / c.grid.1, i % c.grid.1, v[i])).collect();
            ui.label(format!("nearest patches: {}", near.join(", ")));
        }
        // Histogram of the patch norms (egui_plot), with the mean and, when one is clicked, the chosen patch.
        let bins = heatmap::histogram(&c.magnitude, 24);
        let width = bins.get(1).map(|b| (b.0 - bins[0].0) as f64).unwrap_or(1.0);
        let mean = c.magnitude.iter().sum::<f32>() as f64 / c.magnitude.len().max(1) as f64;
        let picked = c.cosine.as_ref().map(|(q, _)| c.magnitude[*q] as f64);
        egui::CollapsingHeader::new("Histogram of |z|").default_open(true).show(ui, |ui| {
            ui.label(format!("{} patches, mean |z| {mean:.2}", c.magnitude.len()));
            let bars: Vec<egui_plot::Bar> =
                bins.iter().map(|(lo, n)| egui_plot::Bar::new(*lo as f64 + width / 2.0, *n as f64).width(width * 0.95)).collect();
            egui_plot::Plot::new("norm_histogram")
                .height(130.0)
                .allow_zoom(false)
                .allow_drag(false)
                .allow_scroll(false)
                .x_axis_label("|z|")
                .y_axis_label("patches")
                .show(ui, |p| {
                    p.bar_chart(egui_plot::BarChart::new("|z|", bars).color(Color32::from_rgb(90, 150, 230)));
                    p.vline(egui_plot::VLine::new("mean", mean).color(Color32::from_rgb(240, 200, 60)));
                    if let Some(v) = picked {
                        p.vline(egui_plot::VLine::new("clicked patch", v).color(Color32::from_rgb(230, 80, 80)));
                    }
                });
        });
    }

    fn steer_tab(&mut self, ui: &mut egui::Ui) {
        if self.current.is_none() {
            ui.label("Open an image first.");
            return;
        }
        let mut changed = false;
        ui.horizontal(|ui| {
            ui.label("Selection:");
            if ui.button("All patches").clicked() {
                self.selection.clear();
                changed = true;
            }
            ui.label(if self.selection.is_empty() {
                "all (click patches to toggle, drag a box, Shift+drag to brush)".to_string()
            } else {
                format!("{} patches (click to toggle, drag a box, Shift+drag to brush)", self.selection.len())
            });
        });
        ui.horizontal(|ui| {
            ui.label("Target:");
            changed |= ui.radio_value(&mut self.target_kind, TargetKind::Random, "random direction").changed();
            changed |= ui.radio_value(&mut self.target_kind, TargetKind::Patch, "patch").changed();
            for k in 0..3 {
                for (positive, sign) in [(true, "+"), (false, "-")] {
                    changed |= ui.radio_value(&mut self.target_kind, TargetKind::Pca(k, positive), format!("PCA {}{sign}", k + 1)).changed();
                }
            }
        });
        ui.horizontal(|ui| {
            let classes = self.sample.classes.clone();
            ui.add_enabled_ui(!classes.is_empty(), |ui| {
                let name = classes.get(self.sample.class).cloned().unwrap_or_else(|| "(load a generator)".into());
                if ui.button(format!("Target: class mean of {name}")).clicked() {
                    let id = self.next_id();
                    self.busy = true;
                    self.worker.send(Command::ClassMean { id, class: self.sample.class, count: 4 });
                }
            });
            if let Some((k, _)) = &self.class_mean {
                let selected = self.target_kind == TargetKind::ClassMean;
                if ui.radio(selected, format!("class mean ({})", self.sample.classes.get(*k).cloned().unwrap_or_default())).clicked() {
                    self.target_kind = TargetKind::ClassMean;
                    changed = true;
                }
            }
            if self.target_kind == TargetKind::Patch {
                let n = self.current.as_ref().map(|c| c.grid.0 * c.grid.1).unwrap_or(1);
                changed |= ui.add(egui::DragValue::new(&mut self.target_patch).range(0..=n.saturating_sub(1))).changed();
                // keep this patch's direction as the target, also after another image is opened
                if ui.button("Pin as target").on_hover_text("keep this patch's direction; open another image to steer it there").clicked() {
                    let id = self.next_id();
                    self.busy = true;
                    self.worker.send(Command::PatchDirection { id, patch: self.target_patch });
                }
            }
            if let Some((label, _)) = &self.pinned {
                let selected = self.target_kind == TargetKind::Pinned;
                if ui.radio(selected, format!("pinned: {label}")).clicked() {
                    self.target_kind = TargetKind::Pinned;
                    changed = true;
                }
            }
        });
        let before = self.edit.clone();
        let r1 = ui.add(egui::Slider::new(&mut self.edit.angle_deg, 0.0..=180.0).text("rotate (degrees)"));
        let r2 = ui.add(egui::Slider::new(&mut self.edit.magnitude_scale, 0.0..=3.0).text("magnitude scale"));
        let r3 = ui.add(egui::Slider::new(&mut self.edit.noise_deg, 0.0..=90.0).text("angular noise (degrees)"));
        let mut settled = false;
        for r in [&r1, &r2, &r3] {
            // an undo point before every drag or discrete change (keyboard, typed value, accessibility) and after it
            if r.drag_started() || (r.changed() && !r.dragged()) {
                self.undoer.add_undo(&before);
            }
            settled |= r.drag_stopped() || (r.changed() && !r.dragged());
            changed |= r.changed();
        }
        ui.horizontal(|ui| {
            for cmd in [AppCommand::Undo, AppCommand::Redo, AppCommand::ResetSteer] {
                let enabled = match cmd {
                    AppCommand::Undo => self.can_undo(),
                    AppCommand::Redo => self.can_redo(),
                    _ => true,
                };
                if ui.add_enabled(enabled, egui::Button::new(cmd.label())).clicked() {
                    self.run(cmd);
                }
            }
        });
        if changed {
            self.send_steer();
        }
        if settled {
            // after send_steer, which resolves the target into the edit
            self.push_undo();
        }
        let size = self.image_size(ui, 2.0);
        ui.horizontal(|ui| {
            ui.vertical(|ui| {
                ui.label("Original (click patches to select)");
                if let Some(resp) = self.overlay_image(ui, size) {
                    let grid = self.current.as_ref().map(|c| c.grid).unwrap_or((1, 1));
                    // drag a box: select every patch it covers; with Shift held the drag is a brush instead
                    let resp = resp.interact(egui::Sense::click_and_drag());
                    let brush = ui.ctx().input(|i| i.modifiers.shift);
                    if brush && resp.dragged() {
                        if let Some(p) = resp.interact_pointer_pos().and_then(|pos| patch_at(&resp, pos, grid)) {
                            if !self.selection.contains(&p) {
                                self.selection.push(p);
                            }
                        }
                        if resp.drag_stopped() {
                            self.send_steer();
                        }
                    } else if resp.drag_started() {
                        // where the button went down, not where the drag was recognised
                        self.box_start = ui.ctx().input(|i| i.pointer.press_origin()).or(resp.interact_pointer_pos());
                    }
                    if let (Some(a), Some(b)) = (self.box_start, resp.interact_pointer_pos()) {
                        if resp.dragged() {
                            ui.painter().rect_stroke(egui::Rect::from_two_pos(a, b), 0.0, egui::Stroke::new(1.0, Color32::WHITE), egui::StrokeKind::Inside);
                        }
                        if resp.drag_stopped() {
                            let r = egui::Rect::from_two_pos(a, b);
                            self.selection = patches_in(&resp, r, grid);
                            self.box_start = None;
                            self.send_steer();
                        }
                    }
                    if let Some(pos) = resp.interact_pointer_pos().filter(|_| resp.clicked()) {
                        if let Some(p) = patch_at(&resp, pos, grid) {
                            match self.selection.iter().position(|&q| q == p) {
                                Some(i) => {
                                    self.selection.remove(i);
                                }
                                None => self.selection.push(p),
                            }
                            self.send_steer();
                        }
                    }
                }
            });
            ui.vertical(|ui| {
                let c = self.current.as_ref().expect("checked");
                match (&c.tex_steered, &c.steered) {
                    (Some(t), Some((_, psnr, ms))) => {
                        ui.label(format!("Steered decode: PSNR vs original {psnr:.2} dB ({ms:.0} ms)"));
                        ui.image((t.id(), size));
                    }
                    _ => {
                        ui.label("Steered decode: move a slider");
                        ui.image((c.tex_recon.id(), size));
                    }
                }
            });
        });
    }

    fn start_sampling(&mut self) {
        let cancel = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        self.sample.cancel = cancel.clone();
        let spec = self.sample.spec(self.sample.count);
        let id = self.next_id();
        self.busy = true;
        self.sample.running = true;
        self.sample.progress = None;
        self.worker.send(Command::Sample { id, spec, preview_every: 5, cancel });
    }

    fn start_walk(&mut self) {
        let spec = self.sample.spec(1);
        let id = self.next_id();
        self.busy = true;
        self.sample.running = true;
        self.sample.walk_label = format!("seed {} -> seed {}", self.sample.seed, self.sample.seed_b);
        self.worker.send(Command::Walk { id, spec, seed_b: self.sample.seed_b, frames: self.sample.walk_frames });
    }

    /// Walk from the current image to the `k`-th recently opened image (per-patch slerp of their latents).
    pub fn start_image_walk(&mut self, k: usize) {
        let (Some(c), Some(b)) = (self.current.as_ref(), self.recent.get(k)) else { return };
        let (a, b) = (c.input.clone(), b.clone());
        let id = self.next_id();
        self.busy = true;
        self.sample.running = true;
        self.sample.walk_label = format!("current image -> recent image {}", k + 1);
        self.worker.send(Command::WalkImages { id, a, b, frames: self.sample.walk_frames });
    }

    /// Write the walk's frames as PNGs (frame_000.png ...) with the parameters in text chunks.
    pub fn export_walk(&mut self) {
        let dir = PathBuf::from(self.sample.frames_dir.trim());
        let n = self.sample.walk.len();
        for (i, f) in self.sample.walk.iter().enumerate() {
            let text = vec![
                ("Software", "DINO-SAE Studio".to_string()),
                ("Walk", format!("{}, frame {i}/{}, slerp per patch", self.sample.walk_label, n.saturating_sub(1))),
            ];
            if let Err(e) = engine::image_io::save_png(dir.join(format!("frame_{i:03}.png")), f, &text) {
                self.error = Some(e.to_string());
                return;
            }
        }
        self.sample.frames_saved = Some(n);
    }

    fn walk_ui(&mut self, ui: &mut egui::Ui) {
        ui.separator();
        ui.heading("Slerp walk between two seeds or two images");
        ui.horizontal(|ui| {
            ui.label(format!("from seed {} to", self.sample.seed));
            ui.add(egui::DragValue::new(&mut self.sample.seed_b).prefix("seed "));
            ui.add(egui::Slider::new(&mut self.sample.walk_frames, 1..=60).text("intervals"));
            if ui.add_enabled(!self.sample.running && !self.sample.classes.is_empty(), egui::Button::new("Walk")).clicked() {
                self.start_walk();
            }
        });
        ui.horizontal(|ui| {
            let current = self.current.as_ref().map(|c| c.input.clone());
            let others: Vec<usize> = (0..self.recent.len()).filter(|&k| Some(&self.recent[k]) != current.as_ref()).collect();
            if others.is_empty() {
                ui.label("Images: open two images to walk between them");
            } else {
                ui.label("Images: from the current image to");
                let mut pick = None;
                for k in others {
                    let (w, h) = self.recent[k].dimensions();
                    if ui.add_enabled(!self.sample.running, egui::Button::new(format!("recent image {} ({w}x{h})", k + 1))).clicked() {
                        pick = Some(k);
                    }
                }
                if let Some(k) = pick {
                    self.start_image_walk(k);
                }
            }
        });
        if self.sample.walk_tex.is_empty() {
            return;
        }
        let n = self.sample.walk_tex.len();
        ui.horizontal(|ui| {
            if ui.button(if self.sample.playing { "Pause" } else { "Play" }).clicked() {
                self.sample.playing = !self.sample.playing;
            }
            ui.add(egui::Slider::new(&mut self.sample.walk_pos, 0..=n - 1).text("frame"));
        });
        if self.sample.playing {
            let now = ui.ctx().input(|i| i.time);
            if now - self.sample.last_advance > 0.12 {
                self.sample.walk_pos = (self.sample.walk_pos + 1) % n;
                self.sample.last_advance = now;
            }
            ui.ctx().request_repaint_after(std::time::Duration::from_millis(120));
        }
        let t = &self.sample.walk_tex[self.sample.walk_pos.min(n - 1)];
        ui.image((t.id(), egui::vec2(200.0, 200.0)));
        ui.horizontal(|ui| {
            ui.label("Frames folder:");
            ui.text_edit_singleline(&mut self.sample.frames_dir);
            if ui.button("Export frames").clicked() {
                self.export_walk();
            }
        });
        if let Some(k) = self.sample.frames_saved {
            ui.label(format!("saved {k} frames"));
        }
    }

    pub fn cancel_sampling(&mut self) {
        self.sample.cancel.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    fn sample_tab(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            ui.label("Generator folder (train-dit final/):");
            ui.text_edit_singleline(&mut self.sample.dit_path);
            if ui.button("Load generator").clicked() && !self.sample.dit_path.trim().is_empty() {
                self.busy = true;
                self.worker.send(Command::LoadDit(PathBuf::from(self.sample.dit_path.trim())));
            }
            if ui.button("Browse...").clicked() {
                self.ask(DialogFor::Generator);
            }
        });
        if self.sample.classes.is_empty() {
            ui.label("No generator loaded. The default model ships one in assets/default-model/dit.");
            self.walk_ui(ui);
            return;
        }
        let sm = &mut self.sample;
        egui::ComboBox::from_label("class")
            .selected_text(sm.classes.get(sm.class).cloned().unwrap_or_default())
            .show_ui(ui, |ui| {
                for (i, c) in sm.classes.iter().enumerate() {
                    ui.selectable_value(&mut sm.class, i, c);
                }
            });
        ui.horizontal(|ui| {
            ui.add(egui::DragValue::new(&mut sm.seed).prefix("seed "));
            if ui.button("Randomise seed").clicked() {
                sm.seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64 % 1_000_000).unwrap_or(7);
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
        ui.horizontal(|ui| {
            let running = self.sample.running;
            if ui.add_enabled(!running, egui::Button::new("Start sampling")).clicked() {
                self.start_sampling();
            }
            if ui.add_enabled(running, egui::Button::new("Cancel sampling")).clicked() {
                self.cancel_sampling();
            }
        });
        if let Some((step, of, eta)) = self.sample.progress {
            ui.add(egui::ProgressBar::new(step as f32 / of.max(1) as f32).text(format!("step {step}/{of}, ETA {eta:.1} s")));
        }
        ui.horizontal(|ui| {
            if let Some(p) = &self.sample.preview {
                ui.vertical(|ui| {
                    ui.label("Preview (current state, decoded)");
                    ui.image((p.id(), egui::vec2(240.0, 240.0)));
                });
            }
            if let Some((t, cancelled, done, ms)) = &self.sample.result {
                ui.vertical(|ui| {
                    ui.label(if *cancelled {
                        format!("Cancelled after {done} steps (last state kept), {ms:.0} ms")
                    } else {
                        format!("Samples: {done} steps, {ms:.0} ms")
                    });
                    ui.image((t.id(), egui::vec2(240.0, 240.0)));
                });
            }
        });
        self.walk_ui(ui);
    }

    fn menu(&mut self, ui: &mut egui::Ui) {
        egui::MenuBar::new().ui(ui, |ui| {
            ui.menu_button("File", |ui| {
                for cmd in [AppCommand::OpenImage, AppCommand::ExportImage, AppCommand::ExportLatent] {
                    if ui.add(egui::Button::new(cmd.label()).shortcut_text(ui.ctx().format_shortcut(&cmd.shortcut()))).clicked() {
                        self.run(cmd);
                    }
                }
            });
            ui.menu_button("View", |ui| {
                for cmd in [AppCommand::ShowCompare, AppCommand::ShowInspect, AppCommand::ShowSteer, AppCommand::ToggleHeatmap, AppCommand::ToggleTheme] {
                    if ui.add(egui::Button::new(cmd.label()).shortcut_text(ui.ctx().format_shortcut(&cmd.shortcut()))).clicked() {
                        self.run(cmd);
                    }
                }
            });
            ui.menu_button("Help", |ui| {
                if ui.button(AppCommand::ToggleHelp.label()).clicked() {
                    self.run(AppCommand::ToggleHelp);
                }
            });
            ui.separator();
            ui.selectable_value(&mut self.tab, Tab::Compare, "Compare");
            ui.selectable_value(&mut self.tab, Tab::Inspect, "Inspect");
            ui.selectable_value(&mut self.tab, Tab::Steer, "Steer");
            ui.selectable_value(&mut self.tab, Tab::Sample, "Sample");
        });
    }

    /// The whole window content.
    pub fn show(&mut self, ui: &mut egui::Ui) {
        self.poll();
        self.poll_dialog();
        let now = ui.input(|i| i.time);
        self.undoer.feed_state(now, &self.edit);
        for cmd in AppCommand::ALL {
            if ui.ctx().input_mut(|i| i.consume_shortcut(&cmd.shortcut())) {
                self.run(cmd);
            }
        }
        let dropped: Vec<_> = ui.ctx().input(|i| i.raw.dropped_files.clone());
        for f in dropped {
            match f.bytes() {
                Ok(b) => self.open_bytes(&b),
                Err(e) => self.error = Some(format!("{}: {e}", f.path().display())),
            }
        }
        egui::Panel::top("menu").show(ui, |ui| self.menu(ui));
        egui::Panel::bottom("status").show(ui, |ui| {
            ui.horizontal(|ui| {
                ui.label(format!("backend: {}", self.backend));
                ui.separator();
                ui.label(if self.gpu_heatmap { "heatmaps: GPU (WGSL)" } else { "heatmaps: CPU" });
                ui.separator();
                if self.busy {
                    ui.spinner();
                    ui.label("working...");
                }
                if let Some(e) = &self.error {
                    ui.colored_label(Color32::from_rgb(220, 60, 60), format!("error: {e}"));
                } else if let Some(m) = &self.status {
                    ui.label(m);
                }
            });
        });
        egui::Panel::left("model").resizable(true).default_size(290.0).show(ui, |ui| {
            egui::ScrollArea::vertical().show(ui, |ui| self.model_panel(ui));
        });
        egui::CentralPanel::default().show(ui, |ui| match self.tab {
            Tab::Compare => self.compare_tab(ui),
            Tab::Inspect => self.inspect_tab(ui),
            Tab::Steer => self.steer_tab(ui),
            Tab::Sample => {
                egui::ScrollArea::vertical().show(ui, |ui| self.sample_tab(ui));
            }
        });
        if self.help {
            egui::Window::new("Keyboard shortcuts").collapsible(false).show(ui.ctx(), |ui| {
                for cmd in AppCommand::ALL {
                    ui.label(format!("{:<10} {}", ui.ctx().format_shortcut(&cmd.shortcut()), cmd.label()));
                }
            });
        }
    }
}

/// eframe wrapper.
pub struct StudioApp(pub Studio);

impl eframe::App for StudioApp {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.0.show(ui);
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        eframe::set_value(storage, "dino-sae-studio.settings", &self.0.settings());
    }
}
