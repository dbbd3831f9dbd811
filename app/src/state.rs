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
pub use crate::panels::directions::DirectionsUi;
pub use crate::panels::inspect::InspectUi;
pub use crate::panels::models::ModelsUi;
pub use crate::panels::sample::SampleUi;
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
    /// A direction of the library, applied (`directions.applied`).
    Library,
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
