//! The studio's state that is not the engine's: what is remembered between runs (`Settings`, stored with
//! eframe's storage), the view (tab, heatmap), the steering and sampling controls, and what is shown.

use std::path::PathBuf;

use eframe::egui::TextureHandle;
use engine::image_io::Fit;
use serde::{Deserialize, Serialize};

/// Default longest side of the working copy: interaction stays live on 2 CPU cores.
pub const DEFAULT_WORKING_SIDE: u32 = 384;

/// What is remembered between runs; unknown or missing fields fall back to defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub dark: bool,
    pub opacity: f32,
    pub linear: bool,
    pub model_path: String,
    pub image_path: String,
    pub export_path: String,
    pub fit: Fit,
    pub zoom: f32,
    /// Longest side of the working copy of every opened image, pixels.
    pub working_side: u32,
    /// Sessions opened or saved, newest first (File > Open recent).
    pub recent_sessions: Vec<PathBuf>,
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
            fit: Fit::Crop,
            zoom: 1.0,
            working_side: DEFAULT_WORKING_SIDE,
            recent_sessions: Vec::new(),
        }
    }
}

impl Settings {
    /// Clamp what a stored file may have put out of range.
    pub fn sanitised(mut self) -> Self {
        self.opacity = if self.opacity.is_finite() { self.opacity.clamp(0.0, 1.0) } else { 0.6 };
        self.zoom = if self.zoom.is_finite() { self.zoom.clamp(1.0, 16.0) } else { 1.0 };
        self.working_side = self.working_side.clamp(64, 4096);
        self.recent_sessions.truncate(8);
        self
    }

    pub fn remember_session(&mut self, path: PathBuf) {
        self.recent_sessions.retain(|p| p != &path);
        self.recent_sessions.insert(0, path);
        self.recent_sessions.truncate(8);
    }
}

pub use crate::panels::Tab;
pub use crate::panels::compare::CompareUi;
pub use crate::panels::inspect::InspectUi;
pub use crate::panels::models::ModelsUi;
pub use crate::panels::steer::SteerUi;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum HeatMode {
    #[default]
    Magnitude,
    Pca,
    Cosine,
    /// Student-vs-teacher cosine per patch (needs a loaded teacher).
    Teacher,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum TargetKind {
    Patch,
    #[default]
    Random,
    /// A principal axis (0..3) of the patch directions, with a sign.
    Pca(usize, bool),
    /// The mean direction of a generator class (fetched from the worker).
    ClassMean,
    /// A patch pinned earlier, possibly of another image (its direction is kept in the app).
    Pinned,
}

/// The studio's view state saved in a session (opaque to the engine).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SessionUi {
    pub tab: Tab,
    pub heat: HeatMode,
    pub target_kind: TargetKind,
    pub target_patch: usize,
    pub pinned: Option<(String, Vec<f32>)>,
    pub class_mean: Option<(usize, Vec<f32>)>,
    pub exp_map: bool,
}

/// The image that is open: its original (full resolution, EXIF-oriented) and where it came from.
pub struct OpenImage {
    pub path: Option<PathBuf>,
    pub original: std::sync::Arc<image::RgbImage>,
}

/// Everything shown about the current (working) image.
pub struct Current {
    pub version: u64,
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
    /// The steered decode: image, PSNR vs the input, milliseconds.
    pub steered: Option<(image::RgbImage, f64, f64)>,
    /// The steered decode shown is the preview decoder's (the full decode follows).
    pub steered_is_preview: bool,
    /// LPIPS-VGG-like of the main reconstruction and of the compare models', once computed.
    pub lpips: Option<(f64, Vec<f64>)>,
    /// "computing...", the size it was measured at, or why it is not available.
    pub lpips_note: String,
    /// A latent opened from a session without its image.
    pub from_latent: bool,
    pub tex_input: TextureHandle,
    pub tex_recon: TextureHandle,
    pub tex_error: TextureHandle,
    pub tex_overlay: Option<TextureHandle>,
    pub tex_steered: Option<TextureHandle>,
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
    pub preview: Option<TextureHandle>,
    /// The sampling preview came from the preview decoder.
    pub preview_fast: bool,
    /// Samples: texture, cancelled, steps done, milliseconds.
    pub result: Option<(TextureHandle, bool, usize, f64)>,
    pub result_image: Option<image::RgbImage>,
    pub dit_path: String,
    // slerp walk
    pub seed_b: u64,
    pub walk_frames: usize,
    pub walk: Vec<image::RgbImage>,
    /// The walk's frames are the preview decoder's (the full decode is on its way).
    pub walk_is_preview: bool,
    pub walk_tex: Vec<TextureHandle>,
    pub walk_pos: usize,
    pub playing: bool,
    pub last_advance: f64,
    pub frames_dir: String,
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
            walk_label: String::new(),
        }
    }
}

/// The full-resolution render of the current edit.
#[derive(Default)]
pub struct RenderUi {
    /// The last finished render: image, milliseconds, tiles per pass.
    pub result: Option<(image::RgbImage, f64, usize)>,
    pub texture: Option<TextureHandle>,
    /// Why the last render did not finish ("cancelled", or the error).
    pub note: Option<String>,
}

/// How the window is shown: the tab, the help overlay, and what the frame loop keeps about the screen.
#[derive(Default)]
pub struct View {
    pub tab: Tab,
    pub help: bool,
    /// Hide values that change from run to run (timings, memory in use): for snapshot tests.
    pub stable_ui: bool,
    /// Where the engine computes, as the status bar names it.
    pub backend: String,
    pub last_image_rect: Option<eframe::egui::Rect>,
    /// The WGSL heatmap pipeline is registered (eframe on wgpu).
    pub gpu_heatmap: bool,
    /// Bumped whenever the overlay's values change (the GPU heatmap re-uploads).
    pub overlay_version: u64,
}

/// The image the studio works on: the open original, the one being opened, and what is shown of it.
#[derive(Default)]
pub struct Document {
    pub image: Option<OpenImage>,
    pub opening: Option<crate::app::Opening>,
    /// The working copy waiting for a model to be loaded.
    pub pending_work: Option<image::RgbImage>,
    /// The edit to apply once the next reconstruction arrives (an opened session's).
    pub pending_edit: Option<engine::steer::SteerEdit>,
    pub current: Option<Current>,
    /// The last working copies reconstructed (walks between images).
    pub recent: Vec<image::RgbImage>,
}

/// Files: the session path, exports in flight, file dialogs, the last session offered on start.
pub struct Files {
    pub session_path: String,
    pub exporter: crate::export::Exporter,
    pub last_export: Option<PathBuf>,
    pub dialog: Option<(crate::dialogs::DialogFor, poll_promise::Promise<Option<PathBuf>>)>,
    /// The last session, offered on start.
    pub offer_restore: Option<PathBuf>,
}

impl Default for Files {
    fn default() -> Self {
        Self {
            session_path: std::env::temp_dir().join("dino-sae-session.json").display().to_string(),
            exporter: Default::default(),
            last_export: None,
            dialog: None,
            offer_restore: None,
        }
    }
}

/// What the status bar says: the last error (what the user had stays as it was) and the last note.
#[derive(Clone, Debug, Default)]
pub struct Messages {
    pub error: Option<String>,
    pub status: Option<String>,
}
