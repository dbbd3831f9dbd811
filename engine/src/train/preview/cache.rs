//! The decode-once cache of `train-preview` (`OUT/cache/`): crops, their latents and perturbed copies, the full
//! decoder's outputs; reused when the SAE, photos and settings match.

use std::path::Path;

use burn::tensor::{Device, Tensor, TensorData};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use crate::data::{CacheSpec, PhotoSet, photo_crops};
use crate::error::{EngineError, Result};
use crate::image_io;
use crate::model::sae::{DinoSae, OutputRange, PixelConfig};
use crate::tensor_file::{Precision, RawTensor, TensorMap, read_safetensors, write_safetensors};

use super::{PreviewTrainConfig, perturb_latent};
use crate::data::mix;
use crate::tensor_file::{host_vec as host4, read_json, write_json};

const CACHE_VERSION: u32 = 1;
const DECODE_BATCH: usize = 8;
const SHARD_ITEMS: usize = 128;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(super) struct CacheKey {
    pub(super) crop: u32,
    pub(super) crops_per_photo: usize,
    pub(super) min_crop_frac: f32,
    pub(super) noise_variants: usize,
    pub(super) noise_max_deg: f32,
    pub(super) seed: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct CacheIndex {
    version: u32,
    key: CacheKey,
    sae: String,
    photos: String,
    channels: usize,
    grid: usize,
    count: usize,
    shards: Vec<(String, usize)>,
}

/// The cached training set in memory.
pub struct PreviewSet {
    /// `[n, C, g, g]`
    pub latents: Vec<f32>,
    /// Full decoder outputs `[n, 3, 16g, 16g]` (decoder convention).
    pub targets: Vec<f32>,
    /// The crops `[n, 3, 16g, 16g]` (decoder convention).
    pub photos: Vec<f32>,
    /// 1 for an unperturbed latent (the photo term applies), else 0.
    pub clean: Vec<f32>,
    pub channels: usize,
    pub grid: usize,
}

impl PreviewSet {
    pub fn len(&self) -> usize {
        self.clean.len()
    }

    pub fn is_empty(&self) -> bool {
        self.clean.is_empty()
    }

    fn gather(&self, src: &[f32], per: usize, idx: &[usize], shape: [usize; 4], device: &Device) -> Tensor<4> {
        let mut v = Vec::with_capacity(idx.len() * per);
        for &i in idx {
            v.extend_from_slice(&src[i * per..(i + 1) * per]);
        }
        Tensor::from_data(TensorData::new(v, shape.to_vec()), device)
    }

    /// Latents, targets, photos and the clean mask `[n, 1, 1, 1]` of items `idx`.
    pub fn batch(&self, idx: &[usize], device: &Device) -> [Tensor<4>; 4] {
        let (n, c, g) = (idx.len(), self.channels, self.grid);
        let px = 16 * g;
        let z = self.gather(&self.latents, c * g * g, idx, [n, c, g, g], device);
        let t = self.gather(&self.targets, 3 * px * px, idx, [n, 3, px, px], device);
        let p = self.gather(&self.photos, 3 * px * px, idx, [n, 3, px, px], device);
        let m = self.gather(&self.clean, 1, idx, [n, 1, 1, 1], device);
        [z, t, p, m]
    }
}

/// RGB in [0, 1] (host, `[3, H, W]`) -> the decoder's output convention, in place.
fn unit_to_output(v: &mut [f32], px: &PixelConfig, hw: usize) {
    for (ci, chunk) in v.chunks_mut(hw).enumerate() {
        let c = ci % 3;
        for x in chunk {
            *x = match px.output {
                OutputRange::Unit => *x,
                OutputRange::Signed => *x * 2.0 - 1.0,
                OutputRange::Imagenet => (*x - px.mean[c]) / px.std[c],
            };
        }
    }
}

fn load_cache(dir: &Path, want: &CacheIndex) -> Option<PreviewSet> {
    let idx: CacheIndex = read_json(&dir.join("index.json")).ok()?;
    if idx.version != want.version || idx.key != want.key || idx.sae != want.sae || idx.photos != want.photos {
        return None;
    }
    let mut set = PreviewSet {
        latents: vec![],
        targets: vec![],
        photos: vec![],
        clean: vec![],
        channels: idx.channels,
        grid: idx.grid,
    };
    for (file, n) in &idx.shards {
        let mut m = read_safetensors(dir.join(file)).ok()?;
        let mut take = |k: &str, per: usize| -> Option<Vec<f32>> {
            let t = m.remove(k)?;
            (t.data.len() == n * per).then_some(t.data)
        };
        let (g, c) = (idx.grid, idx.channels);
        let px = 16 * g;
        set.latents.extend(take("latents", c * g * g)?);
        set.targets.extend(take("targets", 3 * px * px)?);
        set.photos.extend(take("photos", 3 * px * px)?);
        set.clean.extend(take("clean", 1)?);
    }
    (set.len() == idx.count).then_some(set)
}

/// Build (or reuse) the decode-once cache in `dir`. `on_progress(done, total)` after each decoded batch.
pub fn build_cache(
    sae: &DinoSae,
    sae_fp: &str,
    photos: &PhotoSet,
    photos_fp: &str,
    cfg: &PreviewTrainConfig,
    dir: &Path,
    on_progress: &mut dyn FnMut(usize, usize),
) -> Result<(PreviewSet, bool)> {
    let c = sae.cfg.decoder.latent_channels;
    let g = (cfg.crop / 16) as usize;
    let px = 16 * g;
    let mut want = CacheIndex {
        version: CACHE_VERSION,
        key: cfg.cache_key(),
        sae: sae_fp.into(),
        photos: photos_fp.into(),
        channels: c,
        grid: g,
        count: 0,
        shards: vec![],
    };
    if let Some(set) = load_cache(dir, &want) {
        return Ok((set, true));
    }
    std::fs::create_dir_all(dir).map_err(|e| EngineError::io(dir, e))?;
    let _ = std::fs::remove_file(dir.join("index.json"));
    let device = crate::cpu();
    let spec = CacheSpec {
        crop: cfg.crop,
        crops_per_photo: cfg.crops_per_photo,
        min_crop_frac: cfg.min_crop_frac,
        seed: cfg.seed,
    };
    let crops: Vec<image::RgbImage> = (0..photos.images.len()).flat_map(|i| photo_crops(photos, i, &spec)).collect();
    let variants = 1 + cfg.noise_variants;
    let total = crops.len() * variants;
    let mut set = PreviewSet { latents: vec![], targets: vec![], photos: vec![], clean: vec![], channels: c, grid: g };
    for (ci, chunk) in crops.chunks(DECODE_BATCH).enumerate() {
        let refs: Vec<&image::RgbImage> = chunk.iter().collect();
        let x = image_io::to_tensor(&refs, &sae.cfg.pixels, &device)?;
        let z = host4(sae.encode(x)?.patches)?;
        let per = c * g * g;
        // clean + perturbed latents, item-major: crop k's variants are consecutive
        let mut zs: Vec<f32> = Vec::with_capacity(chunk.len() * variants * per);
        for (k, img) in chunk.iter().enumerate() {
            let mut rng = StdRng::seed_from_u64(mix(cfg.seed ^ 0x9e_0e_1e, (ci * DECODE_BATCH + k) as u64));
            let base = &z[k * per..(k + 1) * per];
            for v in 0..variants {
                let mut zz = base.to_vec();
                if v > 0 {
                    perturb_latent(&mut zz, c, &mut rng, cfg.noise_max_deg);
                }
                zs.extend_from_slice(&zz);
                let mut p: Vec<f32> = (0..3).flat_map(|ch| img.pixels().map(move |q| q[ch] as f32 / 255.0)).collect();
                unit_to_output(&mut p, &sae.cfg.pixels, px * px);
                set.photos.extend(p);
                set.clean.push(if v == 0 { 1.0 } else { 0.0 });
            }
        }
        let n = chunk.len() * variants;
        for part in zs.chunks(DECODE_BATCH * per) {
            let m = part.len() / per;
            let t = sae.decode(Tensor::from_data(TensorData::new(part.to_vec(), vec![m, c, g, g]), &device))?;
            let t = host4(t)?;
            if t.iter().any(|v| !v.is_finite()) {
                return Err(EngineError::NonFinite("full decoder output while caching".into()));
            }
            set.targets.extend(t);
        }
        set.latents.extend(zs);
        on_progress(set.len(), total);
        debug_assert_eq!(set.len(), (ci * DECODE_BATCH).min(crops.len()) * variants + n);
    }
    for (k, start) in (0..set.len()).step_by(SHARD_ITEMS).enumerate() {
        let n = SHARD_ITEMS.min(set.len() - start);
        let (lp, tp) = (c * g * g, 3 * px * px);
        let mut m = TensorMap::new();
        m.insert(
            "latents".into(),
            RawTensor::new(vec![n, c, g, g], set.latents[start * lp..(start + n) * lp].to_vec())?,
        );
        m.insert(
            "targets".into(),
            RawTensor::new(vec![n, 3, px, px], set.targets[start * tp..(start + n) * tp].to_vec())?,
        );
        m.insert(
            "photos".into(),
            RawTensor::new(vec![n, 3, px, px], set.photos[start * tp..(start + n) * tp].to_vec())?,
        );
        m.insert("clean".into(), RawTensor::new(vec![n], set.clean[start..start + n].to_vec())?);
        let file = format!("shard_{k:04}.safetensors");
        write_safetensors(dir.join(&file), &m, &Default::default(), Precision::F32)?;
        want.shards.push((file, n));
    }
    want.count = set.len();
    write_json(&dir.join("index.json"), &want)?;
    Ok((set, false))
}
