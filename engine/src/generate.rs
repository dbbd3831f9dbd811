//! Generation on DINO-SAE latents, end to end (the `train-dit`, `sample` and `interpolate` commands):
//!
//! - **Latent cache** ([`cache_latents`]): every photo of a folder gives `crops_per_photo` square crops
//!   (crop 0 = the centre view, the rest random squares with scale jitter and flips, drawn from a
//!   generator seeded by `(seed, photo index)`), encoded once with the SAE. Class = index of the photo
//!   in the sorted folder. Stored as safetensors shards (`latents` `[n, C, h, w]`, `labels` `[n]`) under
//!   `RUN/latents/` plus `index.json` (classes, grid, C, crop settings, fingerprints of the SAE file and
//!   of the photos). A rerun with the same SAE, photos and crop settings reuses the cache.
//! - **Training** ([`train_dit_run`]): a class-conditional [`Dit`] (one class per photo plus the null
//!   class for CFG) trained with [`train_dit`] on the cached latents projected to radius `sqrt(C)`, with
//!   spherical RFM (default) or Euclidean linear FM (baseline). The run is cut into segments of
//!   `checkpoint_every` steps; after each segment the EMA is updated and a checkpoint is written
//!   atomically (`.ckpt-N.tmp/` renamed to `ckpt-N/`, then `latest`). A killed run resumes from `latest`
//!   and, because every segment is seeded by `(seed, first step)`, ends with exactly the weights of an
//!   uninterrupted run. Limitation: [`train_dit`] owns its AdamW state, so the optimiser moments restart
//!   at every segment (with a short learning-rate re-warm-up), as they do on resume in the SAE trainer.
//!   `loss.csv` (every step) and `loss.png` sit in the run folder; `final/` holds the EMA model
//!   (`model.safetensors` in the reference state-dict names, `config.json` = [`DitMeta`]).
//! - **Sampling** ([`sample_latents`], [`sample_grid`]): the spherical sampler (Euler + projection or the
//!   exponential map) for RFM models, RAE's Euler sampler for Euclidean ones; every patch ends at radius
//!   `s_vae` (default: the mean patch norm of the training latents) and is decoded by the SAE.
//! - **Interpolation** ([`slerp_frames`], [`interpolate`]): per patch, the direction follows the great
//!   circle ([`sphere::slerp`]) and the magnitude is interpolated linearly; frame 0 and the last frame
//!   are exactly the two latents.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::tensor::{Device, Tensor, TensorData};
use image::RgbImage;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::checkpoint::load_sae;
use crate::error::{EngineError, Result};
use crate::image_io::{self, Fit};
use crate::model::dit::{Dit, DitArch, DitConfig, rope_values};
use crate::model::sae::DinoSae;
use crate::raw::{Precision, RawTensor, TensorMap, atomic_write, read_safetensors, write_safetensors};
use crate::rfm::{self, EuclidFm, FlowObjective, SphereFm, TimeDist};
use crate::sampler::{EuclidSamplerConfig, SphereSamplerConfig, SphereStep, sample_euclid, sample_sphere};
use crate::sphere;
use crate::train::data::PhotoSet;
use crate::train::ema_update;
use crate::train_dit::{Batch, TrainDitConfig, TrainStep, train_dit};
use crate::weights::{ParamNames, WeightSource, export};

// ---------------------------------------------------------------------------------------------------
// Small helpers

/// Folder of the latent cache inside a run folder.
pub const LATENTS_DIR: &str = "latents";
/// `kind` of a saved generator's `config.json`.
pub const DIT_KIND: &str = "dino_sae_dit";
const INDEX_VERSION: u32 = 1;
const SHARD_SIZE: usize = 256;
const ENCODE_BATCH: usize = 8;
/// Learning-rate re-warm-up (steps) at the start of every segment after the first (fresh AdamW moments).
pub const REWARM_STEPS: usize = 5;

fn cfg_err(m: impl Into<String>) -> EngineError {
    EngineError::Config(m.into())
}

fn fnv1a(h: &mut u64, bytes: &[u8]) {
    for b in bytes {
        *h ^= *b as u64;
        *h = h.wrapping_mul(0x0100_0000_01b3);
    }
}

const FNV_START: u64 = 0xcbf2_9ce4_8422_2325;

/// Content fingerprint of a model file (a folder means its `model.safetensors`).
pub fn fingerprint_file(path: &Path) -> Result<String> {
    let p = if path.is_dir() { path.join("model.safetensors") } else { path.to_path_buf() };
    let bytes = std::fs::read(&p).map_err(|e| EngineError::io(&p, e))?;
    let mut h = FNV_START;
    fnv1a(&mut h, &bytes);
    Ok(format!("fnv1a64:{h:016x}:{}", bytes.len()))
}

/// Fingerprint of the photos (names and file sizes).
pub fn fingerprint_photos(dir: &Path, names: &[String]) -> String {
    let mut h = FNV_START;
    for n in names {
        let len = std::fs::metadata(dir.join(n)).map(|m| m.len()).unwrap_or(0);
        fnv1a(&mut h, n.as_bytes());
        fnv1a(&mut h, &len.to_le_bytes());
    }
    format!("fnv1a64:{h:016x}:{}", names.len())
}

/// Seed of photo `i`'s crops / of the segment starting at `step`.
fn mix_seed(seed: u64, k: u64) -> u64 {
    let mut z = seed ^ k.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn host(t: Tensor<4>) -> Result<Vec<f32>> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().map_err(|e| EngineError::Data(format!("{e:?}")))
}

/// Remove what a killed writer leaves behind: `.X.tmp` folders and `.X.tmpPID` files.
fn remove_stale_tmp(dir: &Path) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if name.starts_with('.') && name.contains(".tmp") {
                let p = e.path();
                if p.is_dir() {
                    let _ = std::fs::remove_dir_all(&p);
                } else {
                    let _ = std::fs::remove_file(&p);
                }
            }
        }
    }
}

fn write_json<T: Serialize>(path: &Path, v: &T) -> Result<()> {
    let s = serde_json::to_string_pretty(v).map_err(|e| cfg_err(e.to_string()))?;
    atomic_write(path, s.as_bytes())
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let s = std::fs::read_to_string(path).map_err(|e| EngineError::io(path, e))?;
    serde_json::from_str(&s).map_err(|e| cfg_err(format!("{}: {e}", path.display())))
}

// ---------------------------------------------------------------------------------------------------
// Latent cache

/// How the photos become training latents.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CacheSpec {
    /// Crop side in pixels (multiple of 16); the latent grid is `crop / 16`.
    pub crop: u32,
    pub crops_per_photo: usize,
    /// Smallest random source square, as a fraction of the photo's shorter side.
    pub min_crop_frac: f32,
    pub seed: u64,
}

impl Default for CacheSpec {
    fn default() -> Self {
        Self { crop: 128, crops_per_photo: 16, min_crop_frac: 0.5, seed: 0 }
    }
}

impl CacheSpec {
    fn validate(&self) -> Result<()> {
        if self.crop == 0 || !self.crop.is_multiple_of(16) {
            return Err(cfg_err(format!("--crop must be a positive multiple of 16, got {}", self.crop)));
        }
        if self.crops_per_photo == 0 {
            return Err(cfg_err("crops per photo must be at least 1"));
        }
        Ok(())
    }

    /// Photos are held downscaled so the longer side is at most this.
    pub fn max_side(&self) -> u32 {
        (self.crop * 4).max(256)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShardInfo {
    pub file: String,
    pub count: usize,
}

/// `latents/index.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LatentIndex {
    pub version: u32,
    /// Class names = photo file names, sorted; class k = photo k.
    pub classes: Vec<String>,
    /// Latent grid `[h, w]`.
    pub grid: [usize; 2],
    /// Latent channels C.
    pub channels: usize,
    pub spec: CacheSpec,
    /// Fingerprint of the SAE file that encoded the latents.
    pub sae: String,
    /// Fingerprint of the photos (names and sizes).
    pub photos: String,
    pub count: usize,
    /// Mean per-patch norm of the latents (the default s_vae for sampling).
    pub mean_norm: f64,
    pub shards: Vec<ShardInfo>,
}

/// Cached latents in memory.
pub struct LatentSet {
    pub index: LatentIndex,
    /// `[count, C, h, w]` row-major.
    pub latents: Vec<f32>,
    pub labels: Vec<i64>,
}

impl LatentSet {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Values per latent: `C h w`.
    pub fn item_len(&self) -> usize {
        self.index.channels * self.index.grid[0] * self.index.grid[1]
    }

    /// Latent `i` as `[C, h, w]` host values.
    pub fn item(&self, i: usize) -> &[f32] {
        let n = self.item_len();
        &self.latents[i * n..(i + 1) * n]
    }

    /// The latents `idx` as a `[n, C, h, w]` tensor.
    pub fn gather(&self, idx: &[usize], device: &Device) -> Tensor<4> {
        let mut data = Vec::with_capacity(idx.len() * self.item_len());
        for &i in idx {
            data.extend_from_slice(self.item(i));
        }
        let [h, w] = self.index.grid;
        Tensor::from_data(TensorData::new(data, vec![idx.len(), self.index.channels, h, w]), device)
    }
}

pub use crate::train::data::random_crop;

/// The crops of photo `i` in cache order: the centre view, then random crops from the generator
/// seeded by `(spec.seed, i)`.
pub fn photo_crops(photos: &PhotoSet, i: usize, spec: &CacheSpec) -> Vec<RgbImage> {
    let mut rng = StdRng::seed_from_u64(mix_seed(spec.seed, i as u64));
    let mut out = vec![photos.center(i, spec.crop)];
    while out.len() < spec.crops_per_photo {
        out.push(random_crop(&photos.images[i], &mut rng, spec.crop, spec.min_crop_frac));
    }
    out
}

fn shard_name(k: usize) -> String {
    format!("shard_{k:04}.safetensors")
}

/// Load a cache if it exists and matches; `Ok(None)` when it must be rebuilt (with the reason).
fn load_cache(dir: &Path, want: &LatentIndex) -> Result<std::result::Result<LatentSet, String>> {
    let p = dir.join("index.json");
    if !p.exists() {
        return Ok(Err("no cache yet".into()));
    }
    let index: LatentIndex = match read_json(&p) {
        Ok(i) => i,
        Err(e) => return Ok(Err(format!("unreadable index ({e})"))),
    };
    for (what, same) in [
        ("format version", index.version == want.version),
        ("photos", index.classes == want.classes && index.photos == want.photos),
        ("crop settings", index.spec == want.spec),
        ("SAE", index.sae == want.sae),
    ] {
        if !same {
            return Ok(Err(format!("{what} changed")));
        }
    }
    let [h, w] = index.grid;
    let per = index.channels * h * w;
    let mut latents = Vec::with_capacity(index.count * per);
    let mut labels = Vec::with_capacity(index.count);
    for s in &index.shards {
        let map = match read_safetensors(dir.join(&s.file)) {
            Ok(m) => m,
            Err(e) => return Ok(Err(format!("shard {}: {e}", s.file))),
        };
        let (Some(z), Some(y)) = (map.get("latents"), map.get("labels")) else {
            return Ok(Err(format!("shard {} lacks `latents` or `labels`", s.file)));
        };
        if z.shape != [s.count, index.channels, h, w] || y.shape != [s.count] {
            return Ok(Err(format!("shard {} has shape {:?}", s.file, z.shape)));
        }
        latents.extend_from_slice(&z.data);
        labels.extend(y.data.iter().map(|&v| v as i64));
    }
    if labels.len() != index.count || labels.iter().any(|&l| l < 0 || l as usize >= index.classes.len()) {
        return Ok(Err("latent count or labels do not match the index".into()));
    }
    Ok(Ok(LatentSet { index, latents, labels }))
}

/// Encode the photos' crops with `sae` into `dir` (or reuse a matching cache there). Returns the set
/// and whether it was reused. `on_progress(done, total)` is called after each encoded batch.
pub fn cache_latents(
    sae: &DinoSae,
    sae_fingerprint: &str,
    photos: &PhotoSet,
    photos_fingerprint: &str,
    spec: &CacheSpec,
    dir: &Path,
    on_progress: &mut dyn FnMut(usize, usize),
) -> Result<(LatentSet, bool)> {
    spec.validate()?;
    let g = (spec.crop / 16) as usize;
    let c = sae.cfg.decoder.latent_channels;
    let mut want = LatentIndex {
        version: INDEX_VERSION,
        classes: photos.names.clone(),
        grid: [g, g],
        channels: c,
        spec: spec.clone(),
        sae: sae_fingerprint.to_string(),
        photos: photos_fingerprint.to_string(),
        count: 0,
        mean_norm: 0.0,
        shards: Vec::new(),
    };
    remove_stale_tmp(dir);
    if let Ok(set) = load_cache(dir, &want)? {
        return Ok((set, true));
    }
    // Rebuild: drop the old index first, so a crash never leaves an index naming foreign shards.
    std::fs::create_dir_all(dir).map_err(|e| EngineError::io(dir, e))?;
    let _ = std::fs::remove_file(dir.join("index.json"));
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().starts_with("shard_") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    let device = crate::cpu();
    let total = photos.images.len() * spec.crops_per_photo;
    let mut jobs: Vec<(usize, RgbImage)> = Vec::with_capacity(total);
    for i in 0..photos.images.len() {
        jobs.extend(photo_crops(photos, i, spec).into_iter().map(|img| (i, img)));
    }
    let per = c * g * g;
    let mut latents: Vec<f32> = Vec::with_capacity(total * per);
    let mut labels: Vec<i64> = Vec::with_capacity(total);
    for chunk in jobs.chunks(ENCODE_BATCH) {
        let refs: Vec<&RgbImage> = chunk.iter().map(|(_, img)| img).collect();
        let x = image_io::to_tensor(&refs, &sae.cfg.pixels, &device)?;
        let z = sae.encode(x)?.patches;
        let dims = z.dims();
        if dims != [chunk.len(), c, g, g] {
            return Err(EngineError::Shape(format!(
                "SAE gave latents {dims:?}, expected [{}, {c}, {g}, {g}]",
                chunk.len()
            )));
        }
        let v = host(z)?;
        if v.iter().any(|x| !x.is_finite()) {
            return Err(EngineError::NonFinite("encoded latents".into()));
        }
        latents.extend(v);
        labels.extend(chunk.iter().map(|(i, _)| *i as i64));
        on_progress(labels.len(), total);
    }
    for (k, start) in (0..total).step_by(SHARD_SIZE).enumerate() {
        let n = SHARD_SIZE.min(total - start);
        let mut m = TensorMap::new();
        m.insert("latents".into(), RawTensor::new(vec![n, c, g, g], latents[start * per..(start + n) * per].to_vec())?);
        m.insert(
            "labels".into(),
            RawTensor::new(vec![n], labels[start..start + n].iter().map(|&l| l as f32).collect())?,
        );
        let file = shard_name(k);
        write_safetensors(dir.join(&file), &m, &Default::default(), Precision::F32)?;
        want.shards.push(ShardInfo { file, count: n });
    }
    want.count = total;
    want.mean_norm = mean_patch_norm(&latents, c, g * g);
    write_json(&dir.join("index.json"), &want)?;
    Ok((LatentSet { index: want, latents, labels }, false))
}

/// Mean over patches of `|z|` for row-major `[n, C, hw]` values.
pub fn mean_patch_norm(v: &[f32], c: usize, hw: usize) -> f64 {
    let n = v.len() / (c * hw).max(1);
    let mut s = 0.0;
    for b in 0..n {
        for p in 0..hw {
            let q: f64 = (0..c).map(|ch| (v[(b * c + ch) * hw + p] as f64).powi(2)).sum();
            s += q.sqrt();
        }
    }
    s / (n * hw).max(1) as f64
}

// ---------------------------------------------------------------------------------------------------
// Saving and loading a generator

struct IdCollector(Vec<ParamId>);

impl ModuleVisitor for IdCollector {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.0.push(param.id);
    }
}

fn param_ids<M: Module>(m: &M) -> Vec<ParamId> {
    let mut c = IdCollector(Vec::new());
    m.visit(&mut c);
    c.0
}

/// Reference state-dict name of every parameter of `model` (found by building a model of the same
/// config through [`Dit::load`] and pairing parameters in visiting order).
pub fn dit_param_names(model: &Dit) -> Result<ParamNames> {
    let mut ws = WeightSource::random(0, &crate::cpu());
    let reference = Dit::load(&mut ws, &model.cfg);
    let ref_names = ws.names();
    let (a, b) = (param_ids(&reference), param_ids(model));
    if a.len() != b.len() {
        return Err(EngineError::Shape(format!("DiT has {} parameters, its config builds {}", b.len(), a.len())));
    }
    let mut out = ParamNames::new();
    for (ra, mb) in a.iter().zip(&b) {
        let name = ref_names.get(ra).ok_or_else(|| EngineError::Data("unnamed DiT parameter".into()))?;
        out.insert(*mb, name.clone());
    }
    Ok(out)
}

/// The full reference state dict of `model`: its parameters plus the constant tables [`Dit::load`]
/// reads (`pos_embed`, RoPE `freqs_cos/sin`, DDT `t_embedder.W`).
pub fn dit_state_dict(model: &Dit, names: &ParamNames) -> Result<TensorMap> {
    let mut map = export(model, names)?;
    let cfg = &model.cfg;
    if let Some(p) = &model.pos_embed {
        map.insert("pos_embed".into(), RawTensor::from_tensor(p.clone())?);
    }
    if let Some(w) = &model.t_embedder.fourier_w {
        map.insert("t_embedder.W".into(), RawTensor::from_tensor(w.clone())?);
    }
    if cfg.use_rope {
        let g = cfg.input_size / cfg.patch_size;
        let tables: Vec<(&str, usize)> = match cfg.arch {
            DitArch::LightningDit => vec![("feat_rope", cfg.hidden_size / cfg.num_heads)],
            DitArch::Ddt => {
                let h = cfg.head.as_ref().map_or(cfg.num_heads, |h| h.num_heads);
                vec![("enc_feat_rope", cfg.hidden_size / cfg.num_heads), ("dec_feat_rope", cfg.head_width() / h)]
            }
        };
        for (name, hd) in tables {
            let (cos, sin) = rope_values(hd, g, g);
            map.insert(format!("{name}.freqs_cos"), RawTensor::new(vec![g * g, hd], cos)?);
            map.insert(format!("{name}.freqs_sin"), RawTensor::new(vec![g * g, hd], sin)?);
        }
    }
    Ok(map)
}

/// Build a [`Dit`] from a state dict; every key must be used and every parameter present.
pub fn dit_from_state_dict(map: TensorMap, cfg: &DitConfig, device: &Device) -> Result<(Dit, ParamNames)> {
    cfg.validate()?;
    let mut ws = WeightSource::from_map(map, device);
    let m = Dit::load(&mut ws, cfg);
    let names = ws.names();
    let rep = ws.finish();
    if !rep.is_complete() || !rep.unexpected.is_empty() {
        return Err(EngineError::IncompleteWeights(rep.summary(12)));
    }
    Ok((m, names))
}

/// Which training objective.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ObjectiveKind {
    /// Riemannian flow matching on the product of spheres (the paper).
    Rfm,
    /// Euclidean linear flow matching (RAE baseline).
    Euclid,
}

impl ObjectiveKind {
    pub fn parse(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "rfm" | "sphere" => Ok(Self::Rfm),
            "euclid" | "fm" | "euclidean" => Ok(Self::Euclid),
            o => Err(cfg_err(format!("unknown objective `{o}` (rfm, euclid)"))),
        }
    }

    /// The objective with time shift `shift`.
    pub fn objective(self, shift: f64) -> FlowObjective {
        match self {
            Self::Rfm => FlowObjective::Sphere(SphereFm { lambda_rad: 0.1, shift, time: TimeDist::paper() }),
            Self::Euclid => FlowObjective::Euclid(EuclidFm { shift, ..Default::default() }),
        }
    }
}

/// `config.json` of a saved generator.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DitMeta {
    pub kind: String,
    pub dit: DitConfig,
    /// Class names (index = label).
    pub classes: Vec<String>,
    pub objective_kind: ObjectiveKind,
    pub objective: FlowObjective,
    /// Latent grid `[h, w]` the model was trained on.
    pub grid: [usize; 2],
    /// Latent channels C.
    pub channels: usize,
    /// Default final patch radius for sampling (mean patch norm of the training latents).
    pub s_vae: f64,
    /// Training steps behind these weights.
    pub steps: usize,
    /// True when the weights are the EMA.
    pub ema: bool,
    /// Fingerprint of the SAE whose latents it learned.
    pub sae: String,
}

impl DitMeta {
    fn validate(&self) -> Result<()> {
        if self.kind != DIT_KIND {
            return Err(cfg_err(format!("config.json is a `{}`, not a `{DIT_KIND}`", self.kind)));
        }
        if self.dit.in_channels != self.channels {
            return Err(cfg_err(format!(
                "config.json: DiT in_channels {} but latent C {}",
                self.dit.in_channels, self.channels
            )));
        }
        let g = self.dit.input_size / self.dit.patch_size.max(1);
        if self.grid != [g, g] {
            return Err(cfg_err(format!("config.json: grid {:?} but the DiT's native grid is {g}x{g}", self.grid)));
        }
        if self.classes.len() != self.dit.num_classes {
            return Err(cfg_err(format!(
                "config.json: {} class names for {} classes",
                self.classes.len(),
                self.dit.num_classes
            )));
        }
        Ok(())
    }
}

/// A generator ready to sample.
#[derive(Debug)]
pub struct DitBundle {
    pub model: Dit,
    pub meta: DitMeta,
}

/// Write `dir/model.safetensors` and `dir/config.json` (atomically each).
pub fn save_dit(dir: &Path, model: &Dit, names: &ParamNames, meta: &DitMeta) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| EngineError::io(dir, e))?;
    let map = dit_state_dict(model, names)?;
    let md = [("format".to_string(), "pt".to_string())].into_iter().collect();
    write_safetensors(dir.join("model.safetensors"), &map, &md, Precision::F32)?;
    write_json(&dir.join("config.json"), meta)
}

/// Load a generator folder (`model.safetensors` + `config.json`; a path to either file works too).
pub fn load_dit(path: &Path, device: &Device) -> Result<DitBundle> {
    let dir = if path.is_file() { path.parent().unwrap_or(Path::new(".")).to_path_buf() } else { path.to_path_buf() };
    let cfg_path = dir.join("config.json");
    if !cfg_path.exists() {
        return Err(cfg_err(format!("{} has no config.json (expected a `train-dit` final/ folder)", dir.display())));
    }
    let meta: DitMeta = read_json(&cfg_path)?;
    meta.validate()?;
    let map = read_safetensors(dir.join("model.safetensors"))?;
    let (model, _) = dit_from_state_dict(map, &meta.dit, device)?;
    Ok(DitBundle { model, meta })
}

// ---------------------------------------------------------------------------------------------------
// Training

/// `train-dit` settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DitRunConfig {
    /// DiT size preset (`tiny`, `s`, `b`, `l`, `xl`).
    pub preset: String,
    pub arch: DitArch,
    pub objective: ObjectiveKind,
    pub steps: usize,
    pub batch: usize,
    pub lr: f64,
    pub warmup: usize,
    pub weight_decay: f32,
    /// Probability of training a sample as the null class (CFG).
    pub label_dropout: f64,
    /// EMA decay per step (0 disables the EMA: `final/` then holds the raw weights).
    pub ema_decay: f64,
    pub checkpoint_every: usize,
    pub log_every: usize,
    pub seed: u64,
    /// Time shift of training and sampling (None: `rfm::default_shift(C, h, w)`).
    pub shift: Option<f64>,
    pub cache: CacheSpec,
}

impl Default for DitRunConfig {
    fn default() -> Self {
        Self {
            preset: "tiny".into(),
            arch: DitArch::LightningDit,
            objective: ObjectiveKind::Rfm,
            steps: 2000,
            batch: 32,
            lr: 1e-3,
            warmup: 20,
            weight_decay: 0.0,
            label_dropout: 0.1,
            ema_decay: 0.999,
            checkpoint_every: 200,
            log_every: 10,
            seed: 0,
            shift: None,
            cache: CacheSpec::default(),
        }
    }
}

/// A logged training step (loss averaged since the previous log).
#[derive(Clone, Copy, Debug)]
pub struct DitProgress {
    pub step: usize,
    pub steps: usize,
    pub loss: f64,
    pub lr: f64,
    /// Seconds since this call started, and the steps it trained in them.
    pub secs: f64,
    pub trained: usize,
}

/// What [`train_dit_run`] reports while it runs. Returning false from the callback on a `Step` stops the
/// run like a kill (nothing since the last checkpoint is kept) and returns [`EngineError::Cancelled`].
#[derive(Clone, Copy, Debug)]
pub enum TrainEvent {
    Encoding { done: usize, total: usize },
    Latents { count: usize, reused: bool },
    Resumed { step: usize },
    Step(DitProgress),
    Checkpoint { step: usize },
}

/// What a finished run returns.
#[derive(Clone, Debug)]
pub struct TrainDitSummary {
    /// Step the run started from (0 or the resumed checkpoint).
    pub start_step: usize,
    pub steps: usize,
    /// Loss of every step trained by this call, in order.
    pub losses: Vec<f32>,
    pub latents_reused: bool,
    pub latent_count: usize,
    pub final_dir: PathBuf,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct CkptState {
    step: usize,
    run: DitRunConfig,
    meta: DitMeta,
}

fn latest_ckpt(out: &Path) -> Option<(usize, PathBuf)> {
    let s = std::fs::read_to_string(out.join("latest")).ok()?;
    let name = s.trim();
    let step = name.strip_prefix("ckpt-")?.parse().ok()?;
    let p = out.join(name);
    ["model.safetensors", "ema.safetensors", "state.json"].iter().all(|f| p.join(f).exists()).then_some((step, p))
}

fn save_ckpt(out: &Path, step: usize, model: &TensorMap, ema: &TensorMap, state: &CkptState) -> Result<()> {
    let tmp = out.join(format!(".ckpt-{step}.tmp"));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| EngineError::io(&tmp, e))?;
    write_safetensors(tmp.join("model.safetensors"), model, &Default::default(), Precision::F32)?;
    write_safetensors(tmp.join("ema.safetensors"), ema, &Default::default(), Precision::F32)?;
    write_json(&tmp.join("state.json"), state)?;
    crate::train::publish_checkpoint(out, &tmp, step)
}

/// `loss.csv` rows `(step, loss)`.
pub fn read_loss_csv(path: &Path) -> Vec<(usize, f64)> {
    let s = std::fs::read_to_string(path).unwrap_or_default();
    s.lines()
        .skip(1)
        .filter_map(|l| {
            let mut it = l.split(',');
            Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
        })
        .collect()
}

/// Redraw `loss.png` from `loss.csv` (averaged into at most 1000 points).
pub fn write_loss_png(out: &Path) -> Result<()> {
    let rows = read_loss_csv(&out.join("loss.csv"));
    let per = rows.len().div_ceil(1000).max(1);
    let vals: Vec<f64> = rows.chunks(per).map(|c| c.iter().map(|r| r.1).sum::<f64>() / c.len() as f64).collect();
    crate::train::plot::loss_curve(&out.join("loss.png"), &[("loss".to_string(), vals)], 640, 360)
}

/// EMA decay over steps `from+1 ..= to`: the product of `min(decay, (1+s)/(10+s))`.
pub fn ema_segment_decay(decay: f64, from: usize, to: usize) -> f64 {
    (from + 1..=to).map(|s| decay.min((1.0 + s as f64) / (10.0 + s as f64))).product()
}

/// `train-dit`: cache latents, train (resuming from `out/latest`), write `out/final`. See the module docs.
pub fn train_dit_run(
    sae_path: &Path,
    photos_dir: &Path,
    out: &Path,
    cfg: &DitRunConfig,
    on_event: &mut dyn FnMut(TrainEvent) -> bool,
) -> Result<TrainDitSummary> {
    if cfg.batch == 0 || cfg.steps == 0 {
        return Err(cfg_err("--steps and --batch must be positive"));
    }
    cfg.cache.validate()?;
    std::fs::create_dir_all(out).map_err(|e| EngineError::io(out, e))?;
    remove_stale_tmp(out);
    let plain = crate::cpu();
    let ad = crate::cpu().autodiff();

    // 1. latents
    let sae = load_sae(sae_path, &plain, false)?.model;
    let sae_fp = fingerprint_file(sae_path)?;
    let photos = PhotoSet::load(photos_dir, cfg.cache.max_side())?;
    let photos_fp = fingerprint_photos(photos_dir, &photos.names);
    let (set, reused) =
        cache_latents(&sae, &sae_fp, &photos, &photos_fp, &cfg.cache, &out.join(LATENTS_DIR), &mut |done, total| {
            on_event(TrainEvent::Encoding { done, total });
        })?;
    drop((sae, photos));
    on_event(TrainEvent::Latents { count: set.len(), reused });
    if set.is_empty() {
        return Err(cfg_err("no latents to train on"));
    }

    // 2. model, objective, metadata
    let c = set.index.channels;
    let [gh, gw] = set.index.grid;
    let dcfg = DitConfig::preset(cfg.arch, &cfg.preset, c, gh, set.index.classes.len())?;
    let shift = cfg.shift.unwrap_or_else(|| rfm::default_shift(c, gh, gw));
    let objective = cfg.objective.objective(shift);
    let mut meta = DitMeta {
        kind: DIT_KIND.into(),
        dit: dcfg.clone(),
        classes: set.index.classes.clone(),
        objective_kind: cfg.objective,
        objective: objective.clone(),
        grid: [gh, gw],
        channels: c,
        s_vae: set.index.mean_norm,
        steps: 0,
        ema: cfg.ema_decay > 0.0,
        sae: sae_fp.clone(),
    };
    let (mut step, mut model, names, mut ema) = match latest_ckpt(out) {
        Some((s, p)) => {
            let st: CkptState = read_json(&p.join("state.json"))?;
            if st.meta.dit != dcfg
                || st.meta.objective != objective
                || st.meta.sae != sae_fp
                || st.meta.classes != meta.classes
            {
                return Err(cfg_err(format!(
                    "{} holds a run with other settings (model, objective, SAE or photos differ); use a new --out",
                    out.display()
                )));
            }
            let (m, names) = dit_from_state_dict(read_safetensors(p.join("model.safetensors"))?, &dcfg, &ad)?;
            let ema = read_safetensors(p.join("ema.safetensors"))?;
            on_event(TrainEvent::Resumed { step: s });
            (s, m, names, ema)
        }
        None => {
            let m = Dit::init(&dcfg, cfg.seed, &ad)?;
            let names = dit_param_names(&m)?;
            let ema = dit_state_dict(&m, &names)?;
            (0, m, names, ema)
        }
    };
    let start_step = step;

    // 3. loss log: keep the rows up to the checkpoint we start from
    let csv_path = out.join("loss.csv");
    {
        let mut text = String::from("step,loss,lr,secs\n");
        if step > 0 {
            let old = std::fs::read_to_string(&csv_path).unwrap_or_default();
            for line in old.lines().skip(1) {
                match line.split(',').next().and_then(|s| s.parse::<usize>().ok()) {
                    Some(s) if s <= step => {
                        text.push_str(line);
                        text.push('\n');
                    }
                    _ => {}
                }
            }
        }
        atomic_write(&csv_path, text.as_bytes())?;
    }
    let mut csv =
        std::fs::OpenOptions::new().append(true).open(&csv_path).map_err(|e| EngineError::io(&csv_path, e))?;

    // 4. segments of checkpoint_every steps
    let t0 = Instant::now();
    let r = rfm::radius(c);
    let mut losses = Vec::new();
    let mut window = (0.0f64, 0usize);
    let every = cfg.checkpoint_every.max(1);
    while step < cfg.steps {
        let seg = every.min(cfg.steps - step);
        let tcfg = TrainDitConfig {
            steps: seg,
            batch: cfg.batch,
            lr: cfg.lr,
            weight_decay: cfg.weight_decay,
            beta2: 0.99,
            label_dropout: cfg.label_dropout,
            seed: mix_seed(cfg.seed ^ 0x05ee_dd17, step as u64),
            warmup: if step == 0 { cfg.warmup } else { cfg.warmup.min(REWARM_STEPS) },
        };
        let mut data = |rng: &mut StdRng, n: usize| {
            let idx: Vec<usize> = (0..n).map(|_| rng.random_range(0..set.len())).collect();
            let y = idx.iter().map(|&i| set.labels[i]).collect();
            Batch { x: sphere::project_to_radius(&set.gather(&idx, &ad), r), y }
        };
        let mut stopped = false;
        let mut io_err: Option<EngineError> = None;
        let base = step;
        let mut on_step = |s: &TrainStep| {
            let g = base + s.step;
            losses.push(s.loss);
            let secs = t0.elapsed().as_secs_f64();
            if let Err(e) = writeln!(csv, "{g},{:.6},{:.3e},{secs:.2}", s.loss, s.lr) {
                io_err = Some(EngineError::io(&csv_path, e));
                return false;
            }
            window = (window.0 + s.loss as f64, window.1 + 1);
            if g.is_multiple_of(cfg.log_every.max(1)) || g == cfg.steps {
                let p = DitProgress {
                    step: g,
                    steps: cfg.steps,
                    loss: window.0 / window.1.max(1) as f64,
                    lr: s.lr,
                    secs,
                    trained: g - start_step,
                };
                window = (0.0, 0);
                if !on_event(TrainEvent::Step(p)) {
                    stopped = true;
                    return false;
                }
            }
            true
        };
        let (m, _) = train_dit(model, &objective, &tcfg, &mut data, &mut on_step)?;
        if let Some(e) = io_err {
            return Err(e);
        }
        if stopped {
            return Err(EngineError::Cancelled);
        }
        model = m;
        let cur = dit_state_dict(&model, &names)?;
        if cfg.ema_decay > 0.0 {
            ema_update(&mut ema, &cur, ema_segment_decay(cfg.ema_decay, step, step + seg));
        } else {
            ema = cur.clone();
        }
        step += seg;
        meta.steps = step;
        save_ckpt(out, step, &cur, &ema, &CkptState { step, run: cfg.clone(), meta: meta.clone() })?;
        write_loss_png(out)?;
        on_event(TrainEvent::Checkpoint { step });
    }
    drop(csv);

    // 5. final model = EMA weights
    meta.steps = step;
    let (final_model, final_names) = dit_from_state_dict(ema, &dcfg, &plain)?;
    let final_dir = out.join("final");
    save_dit(&final_dir, &final_model, &final_names, &meta)?;
    write_loss_png(out)?;
    Ok(TrainDitSummary { start_step, steps: step, losses, latents_reused: reused, latent_count: set.len(), final_dir })
}

// ---------------------------------------------------------------------------------------------------
// Sampling

/// Parse a sampler name: `euler-proj` or `exp-map`.
pub fn parse_sampler(s: &str) -> Result<SphereStep> {
    match s.to_ascii_lowercase().replace('_', "-").as_str() {
        "euler-proj" | "euler" => Ok(SphereStep::EulerProj),
        "exp-map" | "exp" => Ok(SphereStep::ExpMap),
        o => Err(cfg_err(format!("unknown sampler `{o}` (euler-proj, exp-map)"))),
    }
}

/// A class by index or by name (exact, or the name without its extension).
pub fn resolve_class(meta: &DitMeta, s: &str) -> Result<usize> {
    let n = meta.classes.len();
    if let Ok(k) = s.parse::<usize>() {
        if k < n {
            return Ok(k);
        }
        return Err(cfg_err(format!(
            "class {k} out of range: this model has {n} classes (0..{})",
            n.saturating_sub(1)
        )));
    }
    let stem = |c: &str| Path::new(c).file_stem().map(|x| x.to_string_lossy().to_string()).unwrap_or_default();
    if let Some(k) = meta.classes.iter().position(|c| c == s) {
        return Ok(k);
    }
    let hits: Vec<usize> = (0..n).filter(|&k| stem(&meta.classes[k]) == s).collect();
    match hits.as_slice() {
        [k] => Ok(*k),
        _ => Err(cfg_err(format!(
            "unknown class `{s}`; classes: {}",
            meta.classes.iter().enumerate().map(|(i, c)| format!("{i}={c}")).collect::<Vec<_>>().join(", ")
        ))),
    }
}

/// Refuse an SAE whose latents are not the generator's.
pub fn check_sae(meta: &DitMeta, sae: &DinoSae) -> Result<()> {
    let c = sae.cfg.decoder.latent_channels;
    if c != meta.channels {
        return Err(EngineError::Shape(format!(
            "the generator makes latents with C = {} but the SAE decodes C = {c}; use the SAE it was trained with",
            meta.channels
        )));
    }
    if meta.grid[0] == 0 || meta.grid[1] == 0 {
        return Err(EngineError::Shape(format!("generator grid {:?} is empty", meta.grid)));
    }
    Ok(())
}

/// Sampling settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SampleSpec {
    pub class: usize,
    pub count: usize,
    pub seed: u64,
    pub steps: usize,
    pub method: SphereStep,
    pub cfg_scale: f64,
    /// Final patch radius (None: the model's `s_vae`).
    pub s_vae: Option<f64>,
    /// Time shift (None: the training shift).
    pub shift: Option<f64>,
    /// Latent grid `[h, w]` (None: the generator's training grid). The DiT rebuilds its position and RoPE
    /// tables per grid, so other grids run; quality away from the training grid is not checked.
    pub grid: Option<[usize; 2]>,
}

impl Default for SampleSpec {
    fn default() -> Self {
        Self {
            class: 0,
            count: 1,
            seed: 0,
            steps: 50,
            method: SphereStep::EulerProj,
            cfg_scale: 1.0,
            s_vae: None,
            shift: None,
            grid: None,
        }
    }
}

/// The spherical sampler settings a spec asks for (training shift and the model's s_vae unless overridden).
pub fn sphere_config(b: &DitBundle, spec: &SampleSpec) -> SphereSamplerConfig {
    SphereSamplerConfig {
        steps: spec.steps,
        shift: spec.shift.unwrap_or_else(|| b.meta.objective.shift()),
        cfg_scale: spec.cfg_scale,
        guided_channels: None,
        method: spec.method,
        final_radius: Some(spec.s_vae.unwrap_or(b.meta.s_vae)),
        t_end: 0.0,
        seed: spec.seed,
    }
}

/// Sample `spec.count` latents `[n, C, h, w]` of class `spec.class`; every patch has radius s_vae.
pub fn sample_latents(b: &DitBundle, spec: &SampleSpec) -> Result<Tensor<4>> {
    let meta = &b.meta;
    if spec.class >= meta.classes.len() {
        return Err(cfg_err(format!("class {} out of range ({} classes)", spec.class, meta.classes.len())));
    }
    if spec.count == 0 || spec.steps == 0 {
        return Err(cfg_err("--n and --steps must be positive"));
    }
    let s_vae = spec.s_vae.unwrap_or(meta.s_vae);
    if !(s_vae.is_finite() && s_vae > 0.0) {
        return Err(cfg_err(format!("s_vae must be positive, got {s_vae}")));
    }
    let device = b.model.y_table.val().device();
    let y = vec![spec.class as i64; spec.count];
    let [h, w] = spec.grid.unwrap_or(meta.grid);
    if h == 0 || w == 0 {
        return Err(cfg_err("the latent grid must be at least 1x1"));
    }
    let shift = spec.shift.unwrap_or_else(|| meta.objective.shift());
    let out = match meta.objective_kind {
        ObjectiveKind::Rfm => {
            let sc = sphere_config(b, spec);
            sample_sphere(&b.model, &y, [meta.channels, h, w], &sc, &device, &mut |_, _| true)
        }
        ObjectiveKind::Euclid => {
            if spec.method != SphereStep::EulerProj {
                return Err(cfg_err("a Euclidean-FM model samples with plain Euler (use --sampler euler-proj)"));
            }
            let z =
                rfm::gaussian_tensor(&mut StdRng::seed_from_u64(spec.seed), [spec.count, meta.channels, h, w], &device);
            let ec = EuclidSamplerConfig {
                points: spec.steps + 1,
                shift,
                cfg_scale: spec.cfg_scale,
                guided_channels: None,
                t_last: 1.0,
                final_radius: Some(s_vae),
            };
            sample_euclid(&b.model, z, &y, &ec, &mut |_, _| true)
        }
    };
    Ok(out.z)
}

/// Decode latents to RGB8 images.
pub fn decode_images(sae: &DinoSae, z: Tensor<4>) -> Result<Vec<RgbImage>> {
    let x = sae.decode(z)?;
    Ok(image_io::from_tensor(x, &sae.cfg.pixels)?.iter().map(image_io::f32_to_rgb8).collect())
}

/// Tile equally sized images row-major, `ceil(sqrt(n))` columns, no gaps.
pub fn tile(imgs: &[RgbImage]) -> Result<RgbImage> {
    let first = imgs.first().ok_or_else(|| EngineError::Image("no images to tile".into()))?;
    let (w, h) = first.dimensions();
    let cols = (imgs.len() as f64).sqrt().ceil().max(1.0) as u32;
    let rows = (imgs.len() as u32).div_ceil(cols);
    let mut out = RgbImage::new(cols * w, rows * h);
    for (k, img) in imgs.iter().enumerate() {
        if img.dimensions() != (w, h) {
            return Err(EngineError::Image("tiles must have one size".into()));
        }
        let (cx, cy) = (k as u32 % cols, k as u32 / cols);
        image::imageops::replace(&mut out, img, (cx * w) as i64, (cy * h) as i64);
    }
    Ok(out)
}

/// What [`sample_grid`] made.
#[derive(Debug)]
pub struct SampleResult {
    /// `[n, C, h, w]` latents before decoding.
    pub latents: RawTensor,
    pub images: Vec<RgbImage>,
    pub grid: RgbImage,
}

/// Sample, decode and write a grid PNG whose text chunks hold the parameters.
pub fn sample_grid(
    b: &DitBundle,
    sae: &DinoSae,
    spec: &SampleSpec,
    out: &Path,
    extra: &[(&str, String)],
) -> Result<SampleResult> {
    check_sae(&b.meta, sae)?;
    let z = sample_latents(b, spec)?;
    let latents = RawTensor::from_tensor(z.clone())?;
    let images = decode_images(sae, z)?;
    let grid = tile(&images)?;
    let mut text: Vec<(&str, String)> = vec![
        ("Software", "dino-sae sample".into()),
        ("Class", format!("{} ({})", spec.class, b.meta.classes[spec.class])),
        ("Seed", spec.seed.to_string()),
        ("Steps", spec.steps.to_string()),
        (
            "Sampler",
            match spec.method {
                SphereStep::EulerProj => "euler-proj",
                SphereStep::ExpMap => "exp-map",
            }
            .into(),
        ),
        ("CFG", spec.cfg_scale.to_string()),
        ("SVAE", spec.s_vae.unwrap_or(b.meta.s_vae).to_string()),
        ("Shift", spec.shift.unwrap_or_else(|| b.meta.objective.shift()).to_string()),
        ("Count", spec.count.to_string()),
        ("Objective", format!("{:?}", b.meta.objective_kind).to_lowercase()),
    ];
    text.extend(extra.iter().cloned());
    image_io::save_png(out, &grid, &text)?;
    Ok(SampleResult { latents, images, grid })
}

// ---------------------------------------------------------------------------------------------------
// Interpolation

/// One end of an interpolation.
#[derive(Clone, Debug, PartialEq)]
pub enum Endpoint {
    Image(PathBuf),
    /// A sample of the generator from this seed.
    Seed(u64),
}

impl Endpoint {
    /// `seed:17` is a seed, anything else an image path.
    pub fn parse(s: &str) -> Result<Self> {
        match s.strip_prefix("seed:") {
            Some(v) => {
                v.trim().parse().map(Self::Seed).map_err(|_| cfg_err(format!("bad seed in `{s}` (seed:INTEGER)")))
            }
            None => Ok(Self::Image(PathBuf::from(s))),
        }
    }
}

/// Bring two images to one size: `size` given: both centre-cropped to squares and resized to
/// `size x size`; otherwise A is centre-cropped to multiples of 16 and B centre-cropped to A's aspect
/// ratio and resized to A's size.
pub fn pair_images(a: &RgbImage, b: &RgbImage, size: Option<u32>) -> Result<(RgbImage, RgbImage)> {
    let crop_to = |img: &RgbImage, aw: u32, ah: u32| {
        let (w, h) = img.dimensions();
        // largest centred window with aspect aw:ah
        let (cw, ch) = if (w as u64) * (ah as u64) > (h as u64) * (aw as u64) {
            (((h as u64 * aw as u64) / ah as u64).max(1) as u32, h)
        } else {
            (w, ((w as u64 * ah as u64) / aw as u64).max(1) as u32)
        };
        image::imageops::crop_imm(img, (w - cw) / 2, (h - ch) / 2, cw, ch).to_image()
    };
    match size {
        Some(s) => {
            if s == 0 || !s.is_multiple_of(16) {
                return Err(cfg_err(format!("--size must be a positive multiple of 16, got {s}")));
            }
            Ok((image_io::resize_exact(&crop_to(a, 1, 1), s, s), image_io::resize_exact(&crop_to(b, 1, 1), s, s)))
        }
        None => {
            let a2 = image_io::fit16(a, Fit::Crop);
            let (w, h) = a2.dimensions();
            let b2 = image_io::resize_exact(&crop_to(b, w, h), w, h);
            Ok((a2, b2))
        }
    }
}

/// `steps + 1` latents from `a` to `b`: per patch, `slerp(a/|a|, b/|b|, t) ((1-t)|a| + t|b|)` with
/// `t = k/steps`; frame 0 is `a` and frame `steps` is `b` exactly.
///
/// # Shapes
/// - a, b: `[B, C, h, w]` -> `steps + 1` tensors `[B, C, h, w]`
pub fn slerp_frames(a: &Tensor<4>, b: &Tensor<4>, steps: usize) -> Result<Vec<Tensor<4>>> {
    if a.dims() != b.dims() {
        return Err(EngineError::Shape(format!("latents differ in shape: {:?} vs {:?}", a.dims(), b.dims())));
    }
    if steps == 0 {
        return Err(cfg_err("--steps must be at least 1"));
    }
    let (ma, mb) = (sphere::magnitude(a), sphere::magnitude(b));
    let (da, db) = (sphere::direction(a), sphere::direction(b));
    Ok((0..=steps)
        .map(|k| {
            if k == 0 {
                return a.clone();
            }
            if k == steps {
                return b.clone();
            }
            let t = k as f64 / steps as f64;
            sphere::slerp(&da, &db, t) * (ma.clone().mul_scalar(1.0 - t) + mb.clone().mul_scalar(t))
        })
        .collect())
}

/// Interpolation settings.
#[derive(Clone, Debug)]
pub struct InterpSpec {
    /// Intervals: `steps + 1` frames.
    pub steps: usize,
    /// Square size for image endpoints (None: A's size, see [`pair_images`]).
    pub size: Option<u32>,
    /// For seed endpoints: class, sampler settings (its `seed` and `count` are ignored).
    pub sample: SampleSpec,
}

/// What [`interpolate`] made.
#[derive(Debug)]
pub struct InterpResult {
    /// Latent of every frame `[1, C, h, w]`.
    pub latents: Vec<RawTensor>,
    pub frames: Vec<PathBuf>,
}

/// The latent of an endpoint pair: images encoded with the SAE, seeds sampled with the generator.
pub fn endpoint_latents(
    sae: &DinoSae,
    dit: Option<&DitBundle>,
    a: &Endpoint,
    b: &Endpoint,
    spec: &InterpSpec,
) -> Result<(Tensor<4>, Tensor<4>)> {
    let device = crate::cpu();
    match (a, b) {
        (Endpoint::Image(pa), Endpoint::Image(pb)) => {
            let (ia, ib) = pair_images(&image_io::load_rgb(pa)?, &image_io::load_rgb(pb)?, spec.size)?;
            // the memory preflight: both endpoints are encoded in one batch, every frame decoded alone
            let (w, h) = (ia.width() as usize, ia.height() as usize);
            let budget = crate::preflight::Budget::from_env();
            crate::preflight::check_encode(&sae.cfg, 2, w, h, &budget)?;
            crate::preflight::check_decode(&sae.cfg, 1, h / 16, w / 16, &budget)?;
            let x = image_io::to_tensor(&[&ia, &ib], &sae.cfg.pixels, &device)?;
            let z = sae.encode(x)?.patches;
            Ok((z.clone().narrow(0, 0, 1), z.narrow(0, 1, 1)))
        }
        (Endpoint::Seed(sa), Endpoint::Seed(sb)) => {
            let d = dit.ok_or_else(|| cfg_err("seed endpoints need a generator (--dit RUN/final)"))?;
            check_sae(&d.meta, sae)?;
            let one = |seed: u64| sample_latents(d, &SampleSpec { seed, count: 1, ..spec.sample.clone() });
            Ok((one(*sa)?, one(*sb)?))
        }
        _ => Err(cfg_err("both endpoints must be images or both seeds (seed:N)")),
    }
}

/// Interpolate between two endpoints, decode every frame, write `out/frame_000.png`, ... and
/// `out/latents.safetensors` (`frames` `[steps+1, C, h, w]`).
pub fn interpolate(
    sae: &DinoSae,
    dit: Option<&DitBundle>,
    a: &Endpoint,
    b: &Endpoint,
    spec: &InterpSpec,
    out: &Path,
) -> Result<InterpResult> {
    let (za, zb) = endpoint_latents(sae, dit, a, b, spec)?;
    let frames = slerp_frames(&za, &zb, spec.steps)?;
    std::fs::create_dir_all(out).map_err(|e| EngineError::io(out, e))?;
    let mut latents = Vec::with_capacity(frames.len());
    let mut paths = Vec::with_capacity(frames.len());
    let name = |e: &Endpoint| match e {
        Endpoint::Image(p) => p.display().to_string(),
        Endpoint::Seed(s) => format!("seed:{s}"),
    };
    for (k, z) in frames.into_iter().enumerate() {
        latents.push(RawTensor::from_tensor(z.clone())?);
        let img = decode_images(sae, z)?.remove(0);
        let p = out.join(format!("frame_{k:03}.png"));
        let t = k as f64 / spec.steps as f64;
        image_io::save_png(
            &p,
            &img,
            &[
                ("Software", "dino-sae interpolate".into()),
                ("A", name(a)),
                ("B", name(b)),
                ("T", format!("{t}")),
                ("Path", "slerp per patch, linear magnitude".into()),
            ],
        )?;
        paths.push(p);
    }
    let mut all = latents.iter().flat_map(|r| r.data.iter().copied()).collect::<Vec<f32>>();
    let mut shape = latents[0].shape.clone();
    shape[0] = latents.len();
    let mut m = TensorMap::new();
    m.insert("frames".into(), RawTensor::new(shape, std::mem::take(&mut all))?);
    write_safetensors(out.join("latents.safetensors"), &m, &Default::default(), Precision::F32)?;
    Ok(InterpResult { latents, frames: paths })
}
