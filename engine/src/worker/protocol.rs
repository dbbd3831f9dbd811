//! The messages between the UI and the engine thread: jobs (with their kind and ticket) and named event structs.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use image::RgbImage;

use crate::generate::SampleSpec;
use crate::image_io::Fit;
use crate::steer::SteerEdit;
use crate::tensor_file::RawTensor;
use crate::tiled::Tiling;

/// Where to get a model.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum ModelSource {
    /// The embedded default model (see [`crate::dirs::default_model_dir`]).
    Default,
    Path(PathBuf),
    /// Random weights of a preset, explicitly asked for (pipeline demo only).
    RandomPreset(String),
}

/// One slot per kind in the UI: a newer job of a kind supersedes the older one of the same kind only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub enum JobKind {
    LoadModel,
    LoadCompare,
    LoadTeacher,
    LoadGenerator,
    LoadPreview,
    Reconstruct,
    /// A steer decoded by the preview decoder (runs before everything else).
    SteerPreview,
    Steer,
    Cosine,
    Pin,
    TeacherCosine,
    Lpips,
    Sample,
    ClassMean,
    Walk,
    Export,
    Render,
    /// Regenerating a region of the current latent (and undoing that).
    Inpaint,
}

impl JobKind {
    pub const ALL: [JobKind; 18] = [
        JobKind::LoadModel,
        JobKind::LoadCompare,
        JobKind::LoadTeacher,
        JobKind::LoadGenerator,
        JobKind::LoadPreview,
        JobKind::Reconstruct,
        JobKind::SteerPreview,
        JobKind::Steer,
        JobKind::Cosine,
        JobKind::Pin,
        JobKind::TeacherCosine,
        JobKind::Lpips,
        JobKind::Sample,
        JobKind::ClassMean,
        JobKind::Walk,
        JobKind::Export,
        JobKind::Render,
        JobKind::Inpaint,
    ];

    /// Interactive jobs run before background ones.
    pub fn interactive(self) -> bool {
        matches!(
            self,
            JobKind::LoadModel
                | JobKind::LoadCompare
                | JobKind::LoadTeacher
                | JobKind::LoadGenerator
                | JobKind::LoadPreview
                | JobKind::Reconstruct
                | JobKind::SteerPreview
                | JobKind::Steer
                | JobKind::Cosine
                | JobKind::Pin
                | JobKind::TeacherCosine
        )
    }

    /// Of several queued jobs of this kind only the newest is worth running (its result supersedes theirs).
    pub fn newest_wins(self) -> bool {
        matches!(
            self,
            JobKind::Reconstruct
                | JobKind::SteerPreview
                | JobKind::Steer
                | JobKind::Cosine
                | JobKind::TeacherCosine
                | JobKind::Lpips
                | JobKind::Render
        )
    }

    /// What the status bar calls it.
    pub fn label(self) -> &'static str {
        match self {
            JobKind::LoadModel => "loading model",
            JobKind::LoadCompare => "loading compare model",
            JobKind::LoadTeacher => "loading teacher",
            JobKind::LoadGenerator => "loading generator",
            JobKind::LoadPreview => "loading preview decoder",
            JobKind::SteerPreview => "steering (preview)",
            JobKind::Reconstruct => "reconstructing",
            JobKind::Steer => "steering",
            JobKind::Cosine => "cosine map",
            JobKind::Pin => "pinning patch",
            JobKind::TeacherCosine => "teacher cosine",
            JobKind::Lpips => "LPIPS-VGG-like",
            JobKind::Sample => "sampling",
            JobKind::ClassMean => "class mean",
            JobKind::Walk => "walk",
            JobKind::Export => "exporting",
            JobKind::Render => "full-resolution render",
            JobKind::Inpaint => "regenerating the selection",
        }
    }
}

/// A job's id and its cooperative cancel flag (checked between layers, sampler steps and tiles).
#[derive(Clone, Debug, Default)]
pub struct Ticket {
    pub id: u64,
    pub cancel: Arc<AtomicBool>,
}

impl Ticket {
    pub fn new(id: u64) -> Self {
        Self { id, cancel: Arc::new(AtomicBool::new(false)) }
    }

    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }
}

#[derive(Debug)]
pub enum Job {
    /// Load the main model (the default model also brings its generator). Clears the current image.
    LoadModel(ModelSource),
    /// Add a model whose reconstructions are shown beside the main one (Compare).
    AddCompareModel(PathBuf),
    /// Make compare model `index` the main model (the main model becomes a compare model).
    PromoteCompareModel(usize),
    /// Drop compare model `index`.
    RemoveCompareModel(usize),
    /// Load the unmodified teacher backbone (e.g. DINOv2 from scripts/fetch-teacher.sh) for per-patch
    /// student-vs-teacher cosines.
    LoadTeacher(PathBuf),
    /// Load a generator (`train-dit` final folder) trained on this model's latents.
    LoadGenerator(PathBuf),
    /// Load a preview decoder (`train-preview` output) distilled from this model's decoder.
    LoadPreview(PathBuf),
    /// Encode (caching the latent), decode, measure. `image` is the working copy; the preflight refuses sizes
    /// that do not fit the memory budget.
    Reconstruct { image: RgbImage, fit: Fit },
    /// Make `latent` `[1, C, h, w]` the current latent without an image (a session whose image is gone): its
    /// decode stands in for the input.
    LoadLatent { latent: RawTensor },
    /// Cosine of every patch of the current latent to one patch of it.
    PatchCosine { patch: usize },
    /// The unit direction of one patch of the current latent: a steering target that stays valid after another
    /// image is opened.
    PatchDirection { patch: usize },
    /// Per-patch cosine between the student's and the loaded teacher's patch tokens of the current image.
    TeacherCosine,
    /// Edit the cached latent and decode (no re-encode).
    Steer { edit: SteerEdit },
    /// Edit the cached latent and decode it with the preview decoder (fails when none is loaded).
    SteerPreview { edit: SteerEdit },
    /// LPIPS-VGG-like distance of the current image to its reconstructions (main model, then compare models).
    /// Images larger than 512 px on a side are measured at a size fitting 512 (reported).
    Lpips,
    /// Sample with the loaded generator, a decoded preview every `preview_every` steps; cancelling keeps the
    /// last state, which is decoded and returned.
    Sample { spec: SampleSpec, preview_every: usize },
    /// The mean patch direction of a generator class (from `count` samples), as a steering target.
    ClassMean { class: usize, count: usize },
    /// A slerp walk (per patch) between the samples of two seeds (`spec.seed` and `seed_b`), `frames` intervals.
    Walk { spec: SampleSpec, seed_b: u64, frames: usize },
    /// A slerp walk (per patch, linear magnitude) between two images, encoded with the current model: A is cropped
    /// to multiples of 16, B centre-cropped to A's aspect and resized to A's size. `frames` intervals.
    WalkImages { a: RgbImage, b: RgbImage, frames: usize },
    /// Save the current latent (edited by `edit`, when given) as safetensors.
    ExportLatent { path: PathBuf, edit: Option<SteerEdit> },
    /// Encode the full-resolution `original` in tiles, apply `edit` (given on the working copy's grid, mapped
    /// to the full grid by [`crate::steer::map_to_grid`]) and decode in tiles blended at the seams.
    Render { original: Arc<RgbImage>, fit: Fit, edit: SteerEdit, tiling: Tiling },
    /// Regenerate patches of the current latent with the loaded generator (the others held to the image's own
    /// latent, [`crate::generate::inpaint`]); previews through the preview decoder every few steps. The result
    /// becomes the current latent (answered as `Reconstructed`); the one before is kept for [`Job::UndoInpaint`].
    Inpaint { spec: crate::generate::InpaintSpec },
    /// Make the latent before the last inpainting current again.
    UndoInpaint,
    /// The mean unit direction of patches `a` of the current latent minus that of patches `b`
    /// ([`crate::directions::region_difference`]): "this region minus that region", a direction to save.
    RegionDifference { a: Vec<usize>, b: Vec<usize> },
    /// Keep patches of the current latent (directions and magnitudes) for [`Job::PastePatches`], also after another
    /// image is opened.
    CopyPatches { patches: Vec<usize> },
    /// Paste the copied patches onto the current latent with their layout, the top-left one at `to` (row, column);
    /// the result becomes the current latent (answered as `Reconstructed`, undone by [`Job::UndoInpaint`]).
    PastePatches { to: (usize, usize) },
}

impl Job {
    pub fn kind(&self) -> JobKind {
        match self {
            Job::LoadModel(_) => JobKind::LoadModel,
            Job::AddCompareModel(_) | Job::PromoteCompareModel(_) | Job::RemoveCompareModel(_) => JobKind::LoadCompare,
            Job::LoadTeacher(_) => JobKind::LoadTeacher,
            Job::LoadGenerator(_) => JobKind::LoadGenerator,
            Job::LoadPreview(_) => JobKind::LoadPreview,
            Job::SteerPreview { .. } => JobKind::SteerPreview,
            Job::Reconstruct { .. } | Job::LoadLatent { .. } => JobKind::Reconstruct,
            Job::PatchCosine { .. } => JobKind::Cosine,
            Job::PatchDirection { .. } => JobKind::Pin,
            Job::TeacherCosine => JobKind::TeacherCosine,
            Job::Steer { .. } => JobKind::Steer,
            Job::Lpips => JobKind::Lpips,
            Job::Sample { .. } => JobKind::Sample,
            Job::Inpaint { .. } | Job::UndoInpaint => JobKind::Inpaint,
            Job::RegionDifference { .. } | Job::CopyPatches { .. } => JobKind::Pin,
            Job::PastePatches { .. } => JobKind::Inpaint,
            Job::ClassMean { .. } => JobKind::ClassMean,
            Job::Walk { .. } | Job::WalkImages { .. } => JobKind::Walk,
            Job::ExportLatent { .. } => JobKind::Export,
            Job::Render { .. } => JobKind::Render,
        }
    }
}

#[derive(Debug)]
pub enum Command {
    Run { ticket: Ticket, job: Job },
    Shutdown,
}

/// What the UI needs to show about a model.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelInfo {
    pub name: String,
    pub config: String,
    pub params: usize,
    /// Bytes its weights take in memory.
    pub bytes: u64,
    pub report: String,
    pub random: bool,
    pub source: ModelSource,
}

/// A loaded generator.
#[derive(Clone, Debug, PartialEq)]
pub struct GeneratorInfo {
    pub path: Option<PathBuf>,
    pub classes: Vec<String>,
    pub grid: [usize; 2],
    pub s_vae: f64,
}

/// Every model the engine holds (sent after any load).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Models {
    pub main: Option<ModelInfo>,
    pub compare: Vec<ModelInfo>,
    pub teacher: Option<String>,
    pub generator: Option<GeneratorInfo>,
    /// The preview decoder of the main model (where it came from, parameters, GFLOP at 256x256).
    pub preview: Option<PreviewInfo>,
}

/// A loaded preview decoder.
#[derive(Clone, Debug, PartialEq)]
pub struct PreviewInfo {
    pub path: PathBuf,
    pub params: usize,
    pub gflop_256: f64,
}

#[derive(Debug)]
pub struct BackendReady {
    pub name: String,
    /// The name without machine-dependent parts ([`crate::backend::Backend::generic_name`]).
    pub generic_name: String,
    pub wgpu: bool,
}

#[derive(Debug)]
pub struct Loaded {
    pub kind: JobKind,
    pub id: u64,
    pub models: Models,
}

/// Another model's reconstruction of the same input.
#[derive(Debug, Clone)]
pub struct OtherRecon {
    pub name: String,
    pub image: RgbImage,
    pub psnr: f64,
    pub ssim: f64,
}

#[derive(Debug)]
pub struct Reconstruction {
    /// The job it answers: `Reconstruct` (an image, a latent) or `Inpaint` (a regenerated region, an undo).
    pub kind: JobKind,
    pub id: u64,
    /// Increases with every new current latent; results computed on a latent carry its version.
    pub version: u64,
    pub input: RgbImage,
    pub recon: RgbImage,
    pub psnr: f64,
    pub ssim: f64,
    /// Per-patch |z|, row-major `grid.0 x grid.1`.
    pub magnitude: Vec<f32>,
    /// PCA -> RGB of patch directions, fitted jointly on every image reconstructed with this model.
    pub pca_rgb: Vec<[u8; 3]>,
    /// The 3 principal axes of that fit (length C each), usable as steering directions.
    pub pca_axes: Vec<Vec<f32>>,
    pub others: Vec<OtherRecon>,
    pub grid: (usize, usize),
    pub millis: f64,
    /// True for a latent loaded without its image (`input` is then its decode).
    pub from_latent: bool,
}

/// The answer to [`Job::CopyPatches`].
#[derive(Debug)]
pub struct Copied {
    pub id: u64,
    pub patches: usize,
    /// Rows and columns the copied selection spans.
    pub span: (usize, usize),
}

/// The answer to [`Job::RegionDifference`].
#[derive(Debug)]
pub struct RegionDirection {
    pub id: u64,
    /// Length C (not normalised).
    pub direction: Vec<f32>,
    /// How many patches each region held.
    pub sizes: (usize, usize),
}

#[derive(Debug)]
pub struct CosineMap {
    pub id: u64,
    pub version: u64,
    pub patch: usize,
    pub values: Vec<f32>,
}

#[derive(Debug)]
pub struct TeacherCosine {
    pub id: u64,
    pub version: u64,
    pub values: Vec<f32>,
}

#[derive(Debug)]
pub struct Steered {
    pub id: u64,
    pub version: u64,
    /// Decoded by the preview decoder (a full decode follows).
    pub preview: bool,
    pub image: RgbImage,
    pub psnr: f64,
    pub magnitude: Vec<f32>,
    pub millis: f64,
}

#[derive(Debug)]
pub struct PatchDirection {
    pub id: u64,
    pub patch: usize,
    pub direction: Vec<f32>,
}

#[derive(Debug)]
pub struct LpipsScores {
    pub id: u64,
    pub version: u64,
    pub main: f64,
    pub others: Vec<f64>,
    /// The size it was measured at (w, h).
    pub size: (usize, usize),
}

/// Progress of a long job (sampling steps, render tiles), with a decoded preview where there is one.
#[derive(Debug)]
pub struct Progress {
    pub kind: JobKind,
    pub id: u64,
    pub done: usize,
    pub of: usize,
    pub eta_secs: f64,
    pub preview: Option<RgbImage>,
    /// The preview image came from the preview decoder.
    pub fast: bool,
}

#[derive(Debug)]
pub struct Sampled {
    pub id: u64,
    pub images: Vec<RgbImage>,
    pub cancelled: bool,
    pub steps_done: usize,
    pub millis: f64,
}

#[derive(Debug)]
pub struct ClassMean {
    pub id: u64,
    pub class: usize,
    pub direction: Vec<f32>,
}

#[derive(Debug)]
pub struct Walked {
    pub id: u64,
    pub frames: Vec<RgbImage>,
    pub millis: f64,
    /// Frames decoded by the preview decoder, sent first; the full decode of the same frames follows.
    pub preview: bool,
}

#[derive(Debug)]
pub struct Exported {
    pub id: u64,
    pub path: PathBuf,
}

#[derive(Debug)]
pub struct Rendered {
    pub id: u64,
    pub version: u64,
    /// At the original's size (brought to multiples of 16 by the fit).
    pub image: RgbImage,
    pub tiles: usize,
    pub millis: f64,
}

/// A job that failed (or was cancelled: `cancelled`); the engine's state is as it was before the job.
#[derive(Debug)]
pub struct Failed {
    pub kind: Option<JobKind>,
    pub id: Option<u64>,
    pub error: String,
    pub cancelled: bool,
}

#[derive(Debug)]
pub enum Event {
    /// The device the engine computes on (sent once, first).
    BackendReady(BackendReady),
    Loaded(Loaded),
    Reconstructed(Box<Reconstruction>),
    CosineMap(CosineMap),
    TeacherCosine(TeacherCosine),
    Steered(Steered),
    PatchDirection(PatchDirection),
    Lpips(LpipsScores),
    Progress(Progress),
    Sampled(Sampled),
    ClassMean(ClassMean),
    Walked(Walked),
    Exported(Exported),
    Rendered(Rendered),
    RegionDirection(RegionDirection),
    Copied(Copied),
    Failed(Failed),
}

impl Event {
    /// The kind and id of the job this event answers (progress included); None for `BackendReady` and failures
    /// outside any job.
    pub fn job(&self) -> Option<(JobKind, u64)> {
        Some(match self {
            Event::BackendReady(_) => return None,
            Event::Loaded(e) => (e.kind, e.id),
            Event::Reconstructed(e) => (e.kind, e.id),
            Event::CosineMap(e) => (JobKind::Cosine, e.id),
            Event::TeacherCosine(e) => (JobKind::TeacherCosine, e.id),
            Event::Steered(e) => (if e.preview { JobKind::SteerPreview } else { JobKind::Steer }, e.id),
            Event::PatchDirection(e) => (JobKind::Pin, e.id),
            Event::Lpips(e) => (JobKind::Lpips, e.id),
            Event::Progress(e) => (e.kind, e.id),
            Event::Sampled(e) => (JobKind::Sample, e.id),
            Event::ClassMean(e) => (JobKind::ClassMean, e.id),
            Event::Walked(e) => (JobKind::Walk, e.id),
            Event::Exported(e) => (JobKind::Export, e.id),
            Event::Rendered(e) => (JobKind::Render, e.id),
            Event::RegionDirection(e) => (JobKind::Pin, e.id),
            Event::Copied(e) => (JobKind::Pin, e.id),
            Event::Failed(e) => (e.kind?, e.id?),
        })
    }

    /// Whether this event ends its job (everything but progress).
    pub fn is_final(&self) -> bool {
        !matches!(self, Event::Progress(_) | Event::BackendReady(_)) && !matches!(self, Event::Walked(w) if w.preview)
    }
}
