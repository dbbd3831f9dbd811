//! The Studio: state, the engine link, and the frame loop. Panels live in `panels/`, event handling in
//! `events.rs`, sessions in `session_io.rs`, background file writes in `export.rs`.

use std::path::PathBuf;
use std::sync::Arc;

use eframe::egui::{self, Color32, ColorImage, TextureOptions};
use engine::steer::SteerEdit;
use engine::worker::{Job, JobKind, ModelSource, Models, Worker};

use crate::commands::{AppCommand, Command, CommandQueue};
use crate::engine_link::EngineLink;
use crate::state::*;

/// How the studio starts (from the command line, or a test).
#[derive(Clone, Debug, Default)]
pub struct StartOptions {
    /// An image or a session file (`.json`) to open.
    pub open: Option<PathBuf>,
    pub model: Option<PathBuf>,
    pub random_preset: Option<String>,
    pub tab: Option<Tab>,
    pub backend: engine::backend::BackendChoice,
    /// Longest side of the working copy (None: the remembered setting, default 384).
    pub working_side: Option<u32>,
    /// Hide values that change from run to run (timings, memory in use): for snapshot tests.
    pub stable_ui: bool,
    /// Do not offer the last session (tests, or when told what to open).
    pub no_restore: bool,
    /// The memory budget jobs are preflighted against (None: `DINO_SAE_MEMORY_BUDGET`, else 60 % of the
    /// available memory).
    pub memory_budget: Option<engine::preflight::Budget>,
    /// The user's data folder (the library of directions; None: `engine::dirs::data_dir()`).
    pub data_dir: Option<PathBuf>,
}

/// An image being read and scaled to its working copy on a thread.
pub(crate) type Opening =
    poll_promise::Promise<Result<(Option<PathBuf>, Arc<image::RgbImage>, image::RgbImage), String>>;

pub struct Studio {
    pub(crate) ctx: egui::Context,
    pub(crate) link: EngineLink,
    /// User intents of this frame, applied by [`Studio::apply_commands`].
    pub(crate) commands: CommandQueue,
    pub(crate) settings: Settings,
    /// What the engine has loaded (main and compare models, teacher, generator, preview decoder).
    pub(crate) models: Models,
    pub(crate) view: View,
    pub(crate) doc: Document,
    // one state struct per panel
    pub(crate) compare: CompareUi,
    pub(crate) inspect: InspectUi,
    pub(crate) steer: SteerUi,
    pub(crate) sample: SampleUi,
    pub(crate) render: RenderUi,
    pub(crate) models_ui: ModelsUi,
    pub(crate) files: Files,
    pub(crate) messages: Messages,
}

/// Seconds of stillness after a steering change before the full decode replaces the preview.
pub const FULL_DECODE_AFTER: f64 = 0.15;

/// A path shown in the UI: its last two components (the whole path is in the Models tab).
pub fn short_name(name: &str) -> String {
    let p = std::path::Path::new(name);
    let parts: Vec<String> =
        p.components().rev().take(2).map(|c| c.as_os_str().to_string_lossy().to_string()).collect();
    if parts.len() < 2 || !name.contains('/') {
        return name.to_string();
    }
    format!("{}/{}", parts[1], parts[0])
}

/// Largest texture side every wgpu adapter supports (egui asserts on larger textures).
pub const MAX_TEXTURE_SIDE: u32 = 2048;

/// An image as an egui texture, scaled down to fit [`MAX_TEXTURE_SIDE`] (a full-resolution render, a large
/// working copy); what is shown on screen is never larger anyway.
pub(crate) fn color_image(img: &image::RgbImage) -> ColorImage {
    let (w, h) = img.dimensions();
    if w.max(h) > MAX_TEXTURE_SIDE {
        let k = MAX_TEXTURE_SIDE as f64 / w.max(h) as f64;
        let (nw, nh) = (((w as f64 * k) as u32).max(1), ((h as f64 * k) as u32).max(1));
        let small = image::imageops::thumbnail(img, nw, nh);
        return ColorImage::from_rgb([small.width() as usize, small.height() as usize], small.as_raw());
    }
    ColorImage::from_rgb([w as usize, h as usize], img.as_raw())
}

impl Studio {
    pub fn new(ctx: egui::Context, opts: StartOptions) -> Self {
        Self::with_settings(ctx, opts, Settings::default())
    }

    /// Start with remembered settings (eframe storage); options from the command line win.
    pub fn with_settings(ctx: egui::Context, opts: StartOptions, settings: Settings) -> Self {
        let mut settings = settings.sanitised();
        if let Some(w) = opts.working_side {
            settings.working_side = w.clamp(64, 4096);
        }
        let c2 = ctx.clone();
        let worker = Worker::spawn_with_budget(opts.backend, opts.memory_budget.clone(), move || c2.request_repaint());
        let link = EngineLink::new(worker);
        let src = match (&opts.model, &opts.random_preset) {
            (Some(p), _) => ModelSource::Path(p.clone()),
            (None, Some(p)) => ModelSource::RandomPreset(p.clone()),
            _ => ModelSource::Default,
        };
        let mut commands = CommandQueue::default();
        commands.send(Job::LoadModel(src));
        ctx.set_visuals(if settings.dark { egui::Visuals::dark() } else { egui::Visuals::light() });
        let last = crate::session_io::last_session_path();
        let mut s = Self {
            ctx,
            link,
            commands,
            settings,
            models: Models::default(),
            view: View {
                tab: opts.tab.unwrap_or_default(),
                backend: "starting...".into(),
                stable_ui: opts.stable_ui,
                ..Default::default()
            },
            doc: Document::default(),
            compare: CompareUi::default(),
            inspect: InspectUi::default(),
            steer: SteerUi { directions: DirectionsUi::new(opts.data_dir.clone()), ..Default::default() },
            sample: SampleUi::default(),
            render: RenderUi::default(),
            models_ui: ModelsUi::default(),
            files: Files::default(),
            messages: Messages::default(),
        };
        match opts.open {
            Some(p) if engine::worker::session::Session::is_session_path(&p) => s.open_session(&p),
            Some(p) => {
                s.settings.image_path = p.display().to_string();
                s.open_image(&p);
            }
            None => {
                if !opts.no_restore {
                    s.files.offer_restore = last.filter(|p| p.exists());
                }
                // open on a sample photo
                let sample = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../assets/samples/astronaut.png");
                if sample.exists() {
                    s.open_image(&sample);
                }
            }
        }
        s
    }

    /// Register the WGSL heatmap pipeline with eframe's wgpu renderer.
    pub fn enable_gpu(&mut self, rs: &eframe::egui_wgpu::RenderState) {
        let pipeline = crate::gpu_heatmap::HeatmapPipeline::new(&rs.device, rs.target_format);
        rs.renderer.write().callback_resources.insert(crate::gpu_heatmap::HeatmapResources { pipeline, bound: None });
        self.view.gpu_heatmap = true;
    }

    // ---- read-only views for tests and the shell --------------------------------------------------------

    pub fn settings(&self) -> &Settings {
        &self.settings
    }
    pub fn tab(&self) -> Tab {
        self.view.tab
    }
    pub fn current(&self) -> Option<&Current> {
        self.doc.current.as_ref()
    }
    pub fn original(&self) -> Option<&image::RgbImage> {
        self.doc.image.as_ref().map(|i| i.original.as_ref())
    }
    pub fn edit(&self) -> &SteerEdit {
        &self.steer.edit
    }
    pub fn selection(&self) -> &[usize] {
        &self.steer.selection
    }
    pub fn error(&self) -> Option<&str> {
        self.messages.error.as_deref()
    }
    pub fn models(&self) -> &Models {
        &self.models
    }
    pub fn sample_ui(&self) -> &SampleUi {
        &self.sample
    }
    pub fn render_ui(&self) -> &RenderUi {
        &self.render
    }
    pub fn is_running(&self, kind: JobKind) -> bool {
        self.link.is_running(kind)
    }
    pub fn is_idle(&self) -> bool {
        self.link.running().is_empty() && self.doc.opening.is_none() && self.commands.is_empty()
    }
    pub fn last_image_rect(&self) -> Option<egui::Rect> {
        self.view.last_image_rect
    }
    pub fn class_mean(&self) -> Option<&(usize, Vec<f32>)> {
        self.steer.class_mean.as_ref()
    }
    pub fn pinned(&self) -> Option<&(String, Vec<f32>)> {
        self.steer.pinned.as_ref()
    }
    pub fn recent_images(&self) -> usize {
        self.doc.recent.len()
    }
    pub fn zoom(&self) -> f32 {
        self.settings.zoom
    }
    pub fn swipe(&self) -> f32 {
        self.compare.swipe
    }
    pub fn last_export(&self) -> Option<&std::path::Path> {
        self.files.last_export.as_deref()
    }
    pub fn previews_shown(&self) -> u64 {
        self.steer.previews_shown
    }

    pub(crate) fn tex_options(&self) -> TextureOptions {
        if self.settings.linear { TextureOptions::LINEAR } else { TextureOptions::NEAREST }
    }

    /// The whole window content.
    pub fn show(&mut self, ui: &mut egui::Ui) {
        while let Some(ev) = self.link.poll() {
            self.on_event(ev);
        }
        self.poll_opening();
        self.poll_dialog();
        if let Some(done) = self.files.exporter.poll() {
            match done {
                Ok(p) => self.files.last_export = Some(p),
                Err(e) => self.messages.error = Some(e),
            }
        }
        let now = ui.input(|i| i.time);
        self.steer.undoer.feed_state(now, &self.steer.edit);
        self.poll_full_decode(now);
        for cmd in AppCommand::pressed(ui.ctx()) {
            self.commands.send(cmd);
        }
        let dropped: Vec<_> = ui.ctx().input(|i| i.raw.dropped_files.clone());
        for f in dropped {
            let p = f.path().to_path_buf();
            self.settings.image_path = p.display().to_string();
            self.open_image(&p);
        }
        if self.doc.opening.is_some() || !self.files.exporter.is_idle() {
            ui.ctx().request_repaint_after(std::time::Duration::from_millis(50));
        }
        egui::Panel::top("menu").show(ui, |ui| crate::panels::menu::show(self, ui));
        egui::Panel::bottom("status").show(ui, |ui| crate::panels::status::show(self, ui));
        egui::Panel::left("side").resizable(true).default_size(300.0).show(ui, |ui| {
            egui::ScrollArea::vertical().show(ui, |ui| crate::panels::side::show(self, ui));
        });
        egui::CentralPanel::default().show(ui, |ui| {
            if let Some(p) = self.files.offer_restore.clone() {
                crate::session_io::restore_banner(self, ui, &p);
            }
            let tab = self.view.tab;
            tab.show(self, ui);
        });
        if self.view.help {
            egui::Window::new("Keyboard shortcuts").collapsible(false).show(ui.ctx(), |ui| {
                for cmd in AppCommand::all() {
                    ui.label(format!("{:<12} {}", ui.ctx().format_shortcut(&cmd.shortcut()), cmd.label()));
                }
                ui.small("Shortcuts without a modifier do nothing while you type in a text field.");
            });
        }
        self.apply_commands();
    }

    /// The current image with the Inspect panel's map over it when `heat` (the tab's own switch), for
    /// [`crate::widgets::overlay`].
    pub(crate) fn overlay(&self, heat: bool) -> Option<crate::widgets::overlay::Overlay<'_>> {
        Some(crate::widgets::overlay::Overlay {
            current: self.doc.current.as_ref()?,
            heat: heat.then_some(self.inspect.heat),
            opacity: self.settings.opacity,
            bilinear: self.settings.linear,
            gpu: self.view.gpu_heatmap,
            version: self.view.overlay_version,
            selection: &self.steer.selection,
        })
    }

    /// Draw the overlay widget and remember where the image went (tests click into it).
    pub(crate) fn show_overlay(&mut self, ui: &mut egui::Ui, size: egui::Vec2, heat: bool) -> Option<egui::Response> {
        let resp = crate::widgets::overlay::show(ui, &self.overlay(heat)?, size);
        self.view.last_image_rect = Some(resp.rect);
        Some(resp)
    }

    /// Apply the queued user intents, in order: the one place the studio talks to the engine link. Commands may
    /// queue more (a command that sends jobs); those are applied in the same frame.
    pub fn apply_commands(&mut self) {
        while let Some(c) = self.commands.pop() {
            match c {
                Command::App(cmd) => self.run(cmd),
                Command::Engine(job) => {
                    self.link.submit(job);
                }
                Command::Cancel(kind) => self.link.cancel(kind),
            }
        }
    }

    pub(crate) fn error_colour() -> Color32 {
        Color32::from_rgb(220, 60, 60)
    }
}

/// eframe wrapper: settings in eframe's storage, the last session written on exit.
pub struct StudioApp(pub Studio);

pub const SETTINGS_KEY: &str = "dino-sae-studio.settings";

impl eframe::App for StudioApp {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.0.show(ui);
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        eframe::set_value(storage, SETTINGS_KEY, &self.0.settings);
        self.0.save_last_session();
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn textures_never_exceed_the_guaranteed_side() {
        let big = image::RgbImage::from_pixel(6000, 4000, image::Rgb([10, 20, 30]));
        let t = super::color_image(&big);
        assert_eq!(t.size, [2048, 1365]);
        assert!(t.pixels.iter().all(|p| p.r() == 10 && p.g() == 20 && p.b() == 30));
        let small = image::RgbImage::new(300, 200);
        assert_eq!(super::color_image(&small).size, [300, 200]);
        assert_eq!(super::short_name("/a/b/c/model.safetensors"), "c/model.safetensors");
        assert_eq!(super::short_name("default model"), "default model");
    }
}
