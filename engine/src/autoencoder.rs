//! The front door: [`Sae`], a loaded DINO-SAE with its device and memory budget, and every job on it (encode a
//! photo, decode a latent, reconstruct, steer, per-patch maps) with the memory preflight and automatic tiling
//! built in. The command line and the studio's worker both come through here, so "preflight, then one pass or
//! tiles" exists once.
//!
//! ```no_run
//! # fn main() -> engine::Result<()> {
//! let sae = engine::Sae::load_default()?;
//! let photo = engine::image_io::fit16(&engine::image_io::load_rgb("photo.jpg")?, engine::image_io::Fit::Crop);
//! let z = sae.encode_image(&photo)?.latent; // [1, C, h, w]: one vector per 16x16 patch
//! let edit = engine::steer::SteerEdit { angle_deg: 30.0, ..Default::default() };
//! let out = sae.decode(&sae.steer(&z, &edit)?)?;
//! # Ok(()) }
//! ```
//!
//! Cancellation and progress are explicit: the `_with` variants take a [`Job`] (how to tile, a cancel token) and a
//! progress callback that first hears the plan ([`Progress::Plan`]) and then each tile.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use burn::tensor::Device;
use image::RgbImage;

use crate::budget::Budget;
use crate::error::{EngineError, Result};
use crate::image_io::{self, RgbF32};
use crate::model::sae::{DinoSae, SaeConfig};
use crate::preflight::{self, Estimate};
use crate::steer::SteerEdit;
use crate::tensor_file::RawTensor;
use crate::tiled::{self, Plan, TileProgress, Tiling};

/// Whether a whole-image job runs in one pass or in overlapping tiles.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Tiles {
    /// The plan decides: a job over the memory budget or estimated above [`tiled::AUTO_TILE_SECS`] goes to tiles.
    #[default]
    Auto,
    /// Always in tiles.
    Always,
    /// Always one pass (still refused over the memory budget).
    Never,
}

/// How a job runs: one pass or tiles, the tiles' size, and a cancel token (set it from another thread; the job
/// stops between layers or tiles with [`EngineError::Cancelled`]).
#[derive(Clone, Debug, Default)]
pub struct Job {
    pub tiles: Tiles,
    pub tiling: Tiling,
    pub cancel: Arc<AtomicBool>,
}

impl Job {
    pub fn tiles(tiles: Tiles) -> Self {
        Self { tiles, ..Default::default() }
    }
}

/// How a job ran (or is about to run).
#[derive(Clone, Debug, PartialEq)]
pub enum Ran {
    /// One pass, with the preflight's estimate.
    Whole(Estimate),
    /// In tiles; why, when the plan chose them (`None`: the caller asked for tiles).
    Tiled(Option<String>),
}

impl Ran {
    pub fn is_tiled(&self) -> bool {
        matches!(self, Ran::Tiled(_))
    }
}

/// Which half of the model a tile belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    Encode,
    Decode,
}

/// What a job reports while it runs.
#[derive(Clone, Debug, PartialEq)]
pub enum Progress {
    /// Decided before any work: one pass or tiles, and why.
    Plan(Ran),
    /// One more tile of a tiled job is done.
    Tile(Stage, TileProgress),
}

/// A progress callback that ignores everything.
pub fn quiet(_: Progress) {}

/// An encoded image.
#[derive(Clone, Debug)]
pub struct Encoded {
    /// `[1, C, H/16, W/16]`
    pub latent: RawTensor,
    /// The CLS token `[1, C]` (one-pass encodes only; tiles have none).
    pub cls: Option<RawTensor>,
    pub ran: Ran,
}

/// A decoded latent.
#[derive(Clone, Debug)]
pub struct Decoded {
    pub image: RgbF32,
    pub ran: Ran,
}

/// A photo through the encoder and back.
#[derive(Clone, Debug)]
pub struct Reconstruction {
    pub image: RgbF32,
    /// `[1, C, H/16, W/16]`
    pub latent: RawTensor,
    pub ran: Ran,
    pub encode_secs: f64,
    pub decode_secs: f64,
}

/// A DINO-SAE ready to use: the model, the device it runs on and the memory budget every job is checked against.
pub struct Sae {
    model: DinoSae,
    device: Device,
    budget: Budget,
    source: Option<PathBuf>,
}

impl Sae {
    /// The embedded default model ([`crate::dirs::default_model_dir`]) on the CPU, within the environment's budget.
    pub fn load_default() -> Result<Self> {
        Self::load(crate::dirs::require_default_model_dir()?)
    }

    /// A DINO-SAE checkpoint (our folder, an official state dict) on the CPU, within the environment's budget.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        Self::load_on(path, &crate::cpu(), Budget::from_env())
    }

    /// A checkpoint on `device` within `budget` (loading is checked against the same budget as every job).
    pub fn load_on(path: impl AsRef<Path>, device: &Device, budget: Budget) -> Result<Self> {
        let path = path.as_ref();
        let model = crate::checkpoint::load_sae_within(path, device, false, &budget)?.model;
        Ok(Self { source: Some(path.to_path_buf()), ..Self::new(model, device, budget) })
    }

    /// A model already in memory.
    pub fn new(model: DinoSae, device: &Device, budget: Budget) -> Self {
        let budget = budget.on(device);
        Self { model, device: device.clone(), budget, source: None }
    }

    pub fn model(&self) -> &DinoSae {
        &self.model
    }

    pub fn config(&self) -> &SaeConfig {
        &self.model.cfg
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn budget(&self) -> &Budget {
        &self.budget
    }

    /// Where the model was loaded from (`None` for [`Sae::new`]).
    pub fn source(&self) -> Option<&Path> {
        self.source.as_deref()
    }

    /// The same model within another budget (on the same device).
    pub fn with_budget(mut self, budget: Budget) -> Self {
        self.set_budget(budget);
        self
    }

    /// Check the jobs from now on against `budget` (on this model's device).
    pub fn set_budget(&mut self, budget: Budget) {
        self.budget = budget.on(&self.device);
    }

    /// How encoding (`decode_too`: and decoding back) a `w x h` image would run with [`Tiles::Auto`].
    pub fn plan_image(&self, w: usize, h: usize, decode_too: bool) -> Result<Plan> {
        tiled::plan_image(&self.model.cfg, w, h, decode_too, &self.budget)
    }

    /// How decoding one `gh x gw` latent would run with [`Tiles::Auto`].
    pub fn plan_decode(&self, gh: usize, gw: usize) -> Result<Plan> {
        tiled::plan_decode(&self.model.cfg, gh, gw, &self.budget)
    }

    fn decide(
        &self,
        tiles: Tiles,
        plan: impl FnOnce() -> Result<Plan>,
        whole: impl FnOnce() -> Result<Estimate>,
    ) -> Result<Ran> {
        match tiles {
            Tiles::Always => Ok(Ran::Tiled(None)),
            Tiles::Never => Ok(Ran::Whole(whole()?)),
            Tiles::Auto => Ok(match plan()? {
                Plan::Whole(e) => Ran::Whole(e),
                Plan::Tiled(why) => Ran::Tiled(Some(why)),
            }),
        }
    }

    /// Encode an image (sides multiples of 16: [`image_io::fit16`]) as the plan decides, quietly.
    pub fn encode_image(&self, img: &RgbImage) -> Result<Encoded> {
        self.encode_image_with(img, &Job::default(), &mut quiet)
    }

    /// [`Sae::encode_image`] with tiling, a cancel token and progress.
    pub fn encode_image_with(&self, img: &RgbImage, job: &Job, progress: &mut dyn FnMut(Progress)) -> Result<Encoded> {
        let (w, h) = (img.width() as usize, img.height() as usize);
        check_sides(w, h)?;
        let cfg = &self.model.cfg;
        let ran = self.decide(
            job.tiles,
            || self.plan_image(w, h, false),
            || preflight::check_encode(cfg, 1, w, h, &self.budget),
        )?;
        progress(Progress::Plan(ran.clone()));
        if ran.is_tiled() {
            let latent = self.encode_tiles(img, job, progress)?;
            return Ok(Encoded { latent, cls: None, ran });
        }
        let x = image_io::to_tensor(&[img], &cfg.pixels, &self.device)?;
        let lat = self.model.encode_cancellable(x, &job.cancel)?;
        Ok(Encoded { latent: RawTensor::from_tensor(lat.patches)?, cls: Some(RawTensor::from_tensor(lat.cls)?), ran })
    }

    fn encode_tiles(&self, img: &RgbImage, job: &Job, progress: &mut dyn FnMut(Progress)) -> Result<RawTensor> {
        let mut tile = |t| progress(Progress::Tile(Stage::Encode, t));
        tiled::encode_tiled(&self.model, img, job.tiling, &self.budget, &self.device, &job.cancel, &mut tile)
    }

    fn decode_tiles(&self, z: &RawTensor, job: &Job, progress: &mut dyn FnMut(Progress)) -> Result<RgbF32> {
        let mut tile = |t| progress(Progress::Tile(Stage::Decode, t));
        tiled::decode_tiled(&self.model, z, job.tiling, &self.budget, &self.device, &job.cancel, &mut tile)
    }

    /// Decode one latent `[1, C, h, w]` with the full decoder as the plan decides, quietly.
    pub fn decode(&self, z: &RawTensor) -> Result<RgbF32> {
        Ok(self.decode_with(z, &Job::default(), &mut quiet)?.image)
    }

    /// [`Sae::decode`] with tiling, a cancel token and progress (tiles blended at the seams).
    pub fn decode_with(&self, z: &RawTensor, job: &Job, progress: &mut dyn FnMut(Progress)) -> Result<Decoded> {
        let (gh, gw) = self.check_latent(z)?;
        if z.shape[0] != 1 {
            return Err(EngineError::Shape(format!(
                "decode takes one latent [1, C, h, w]; this holds a batch of {} (decode_batch)",
                z.shape[0]
            )));
        }
        let cfg = &self.model.cfg;
        let ran = self.decide(
            job.tiles,
            || self.plan_decode(gh, gw),
            || preflight::check_decode(cfg, 1, gh, gw, &self.budget),
        )?;
        progress(Progress::Plan(ran.clone()));
        let image = if ran.is_tiled() {
            self.decode_tiles(z, job, progress)?
        } else {
            let y = self.model.decode_cancellable(z.to_tensor(&self.device)?, &job.cancel)?;
            image_io::from_tensor(y, &cfg.pixels)?.remove(0)
        };
        Ok(Decoded { image, ran })
    }

    /// Decode a batch of latents `[B, C, h, w]` in one pass (after the preflight for the whole batch).
    pub fn decode_batch(&self, z: &RawTensor, job: &Job) -> Result<Vec<RgbF32>> {
        let (gh, gw) = self.check_latent(z)?;
        preflight::check_decode(&self.model.cfg, z.shape[0], gh, gw, &self.budget)?;
        let y = self.model.decode_cancellable(z.to_tensor(&self.device)?, &job.cancel)?;
        image_io::from_tensor(y, &self.model.cfg.pixels)
    }

    /// Encode and decode back, as the plan for the round trip decides, quietly.
    pub fn reconstruct(&self, img: &RgbImage) -> Result<Reconstruction> {
        self.reconstruct_with(img, &Job::default(), &mut quiet)
    }

    /// [`Sae::reconstruct`] with tiling, a cancel token and progress.
    pub fn reconstruct_with(
        &self,
        img: &RgbImage,
        job: &Job,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Reconstruction> {
        let (w, h) = (img.width() as usize, img.height() as usize);
        check_sides(w, h)?;
        let cfg = &self.model.cfg;
        let ran = self.decide(
            job.tiles,
            || self.plan_image(w, h, true),
            || preflight::check_reconstruct(cfg, w, h, &self.budget),
        )?;
        progress(Progress::Plan(ran.clone()));
        let t0 = Instant::now();
        let (latent, image, t1) = if ran.is_tiled() {
            let z = self.encode_tiles(img, job, progress)?;
            let t1 = Instant::now();
            let image = self.decode_tiles(&z, job, progress)?;
            (z, image, t1)
        } else {
            let x = image_io::to_tensor(&[img], &cfg.pixels, &self.device)?;
            let z = self.model.encode_cancellable(x, &job.cancel)?.patches;
            let t1 = Instant::now();
            let latent = RawTensor::from_tensor(z.clone())?;
            let y = self.model.decode_cancellable(z, &job.cancel)?;
            (latent, image_io::from_tensor(y, &cfg.pixels)?.remove(0), t1)
        };
        let (encode_secs, decode_secs) = ((t1 - t0).as_secs_f64(), t1.elapsed().as_secs_f64());
        Ok(Reconstruction { image, latent, ran, encode_secs, decode_secs })
    }

    /// Rotate patches of a latent along great circles ([`crate::steer::apply`]): radii kept, unselected patches
    /// untouched.
    pub fn steer(&self, z: &RawTensor, edit: &SteerEdit) -> Result<RawTensor> {
        self.check_latent(z)?;
        crate::steer::apply(z, edit, &self.device)
    }

    /// Per-patch maps of a latent: magnitudes (radius) and, for each patch, its direction's cosine to the mean
    /// direction of the image, both row-major over the `h x w` grid.
    pub fn maps(&self, z: &RawTensor) -> Result<Maps> {
        let (gh, gw) = self.check_latent(z)?;
        if z.shape[0] != 1 {
            return Err(EngineError::Shape(format!("maps take one latent [1, C, h, w], got {:?}", z.shape)));
        }
        let rows = crate::inspect::patch_rows(z);
        let c = z.shape[1];
        let mut mean = vec![0f32; c];
        for r in &rows {
            let n = r.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
            for (m, v) in mean.iter_mut().zip(r) {
                *m += v / n;
            }
        }
        Ok(Maps {
            grid: (gh, gw),
            magnitude: crate::inspect::magnitudes(z),
            cosine_to_mean: crate::inspect::cosine_to(z, &mean),
        })
    }

    /// `(h, w)` of a latent `[B, C, h, w]` with this model's C.
    fn check_latent(&self, z: &RawTensor) -> Result<(usize, usize)> {
        let c = self.model.cfg.decoder.latent_channels;
        match z.shape.as_slice() {
            &[b, zc, h, w] if zc == c && b > 0 && h > 0 && w > 0 => Ok((h, w)),
            s => Err(EngineError::Shape(format!("expected a latent [B, {c}, h, w] for this model, got {s:?}"))),
        }
    }
}

/// Per-patch maps of one latent (row-major, `grid` = `(h, w)` patches).
#[derive(Clone, Debug, PartialEq)]
pub struct Maps {
    pub grid: (usize, usize),
    /// Each patch's radius.
    pub magnitude: Vec<f32>,
    /// Each patch's cosine to the image's mean direction.
    pub cosine_to_mean: Vec<f32>,
}

fn check_sides(w: usize, h: usize) -> Result<()> {
    if w == 0 || h == 0 || !w.is_multiple_of(16) || !h.is_multiple_of(16) {
        return Err(EngineError::Shape(format!(
            "image sides must be positive multiples of 16 (image_io::fit16), got {w}x{h}"
        )));
    }
    Ok(())
}
