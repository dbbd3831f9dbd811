//! The latent cache: photo crops encoded once with the SAE, stored as safetensors shards plus `index.json`.

use std::path::Path;

use burn::tensor::{Device, Tensor, TensorData};
use image::RgbImage;
use serde::{Deserialize, Serialize};

use crate::data::PhotoSet;
use crate::error::{EngineError, Result};
use crate::image_io;
use crate::model::sae::DinoSae;
use crate::tensor_file::remove_stale_tmp;
use crate::tensor_file::{Precision, RawTensor, TensorMap, read_safetensors, write_safetensors};

use super::{host, read_json, write_json};

const INDEX_VERSION: u32 = 1;
const SHARD_SIZE: usize = 256;
const ENCODE_BATCH: usize = 8;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShardInfo {
    pub file: String,
    pub count: usize,
}

/// `latents/index.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LatentIndex {
    pub version: u32,
    /// Class names ([`PhotoSet::classes`]: the photos' file names, or the class folders' names).
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

pub use crate::data::{CacheSpec, photo_crops, random_crop};

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
        classes: photos.classes.clone(),
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
        labels.extend(chunk.iter().map(|(i, _)| photos.labels[*i] as i64));
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
