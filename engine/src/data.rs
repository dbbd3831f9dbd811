//! Training photos: a folder of images, random crops with scale jitter and horizontal flips, the crops a cache
//! draws per photo, and the fingerprints that tell whether a cache was built from these photos and this model.

use std::path::Path;

use image::RgbImage;
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};

/// Photos held in memory (downscaled so the longer side is at most `max_side`), with their classes.
///
/// Two folder layouts: images directly in the folder (one class per photo, named by its file), or no images at the
/// top but one subfolder per class (the class-folder layout of torchvision's `ImageFolder`: `animal/cat.jpg`,
/// `city/street.png`; classes sorted by name, several photos each).
pub struct PhotoSet {
    /// Paths relative to the folder (`class/file` in the class-folder layout), sorted.
    pub names: Vec<String>,
    pub images: Vec<RgbImage>,
    /// Class names: the photos' file names, or the class folders' names.
    pub classes: Vec<String>,
    /// Class index of each photo (into `classes`).
    pub labels: Vec<usize>,
}

/// The entries of `dir` that `keep` accepts, hidden ones left out, sorted.
fn entries(dir: &Path, keep: fn(&Path) -> bool) -> Result<Vec<std::path::PathBuf>> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| EngineError::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| keep(p) && !is_hidden(p))
        .collect();
    v.sort();
    Ok(v)
}

/// The files directly in `dir`, sorted (subfolders and other entries left out).
fn files_in(dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    entries(dir, Path::is_file)
}

fn is_hidden(p: &Path) -> bool {
    p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'))
}

impl PhotoSet {
    /// Load every decodable image in `dir` (sorted by name), or in its class folders when `dir` holds no files
    /// but subfolders (see [`PhotoSet`]). Unreadable files are reported, not fatal; a class folder without one
    /// readable image is left out (and said).
    pub fn load(dir: &Path, max_side: u32) -> Result<Self> {
        let top = files_in(dir)?;
        // (class name or None for one class per photo, files)
        let groups: Vec<(Option<String>, Vec<std::path::PathBuf>)> = if top.is_empty() {
            let subs = entries(dir, Path::is_dir)?;
            let mut g = Vec::with_capacity(subs.len());
            for d in subs {
                let name = d.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
                g.push((Some(name), files_in(&d)?));
            }
            g
        } else {
            vec![(None, top)]
        };
        let mut set = Self { names: Vec::new(), images: Vec::new(), classes: Vec::new(), labels: Vec::new() };
        for (class, files) in groups {
            let before = set.images.len();
            for p in files {
                let file = p.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
                let img = match crate::image_io::load_rgb(&p) {
                    Ok(img) => downscale(img, max_side),
                    Err(e) => {
                        eprintln!("skipping {}: {e}", p.display());
                        continue;
                    }
                };
                match &class {
                    Some(c) => {
                        set.names.push(format!("{c}/{file}"));
                        set.labels.push(set.classes.len());
                    }
                    None => {
                        set.labels.push(set.classes.len());
                        set.classes.push(file.clone());
                        set.names.push(file);
                    }
                }
                set.images.push(img);
            }
            match class {
                Some(c) if set.images.len() > before => set.classes.push(c),
                Some(c) => eprintln!("skipping class folder {c}: no readable images"),
                None => {}
            }
        }
        if set.images.is_empty() {
            return Err(EngineError::Image(format!(
                "no readable images in {} (nor in class subfolders of it)",
                dir.display()
            )));
        }
        Ok(set)
    }

    /// The photos of class `c` (indices into `images`).
    pub fn class_photos(&self, c: usize) -> Vec<usize> {
        (0..self.labels.len()).filter(|&i| self.labels[i] == c).collect()
    }

    /// A random view of a random photo (see [`random_crop`]). Returns the photo index too.
    pub fn sample(&self, rng: &mut StdRng, crop: u32, min_frac: f32) -> (usize, RgbImage) {
        let i = rng.random_range(0..self.images.len());
        (i, random_crop(&self.images[i], rng, crop, min_frac))
    }

    /// The evaluation view of photo `i`: centre square crop resized to `size`.
    pub fn center(&self, i: usize, size: u32) -> RgbImage {
        let img = &self.images[i];
        let (w, h) = img.dimensions();
        let s = w.min(h);
        let v = image::imageops::crop_imm(img, (w - s) / 2, (h - s) / 2, s, s).to_image();
        image::imageops::resize(&v, size, size, image::imageops::FilterType::Lanczos3)
    }
}

/// `img` downscaled (Triangle) so that its longer side is at most `max_side`.
fn downscale(img: RgbImage, max_side: u32) -> RgbImage {
    let (w, h) = img.dimensions();
    let s = max_side as f32 / w.max(h) as f32;
    if s < 1.0 {
        let (nw, nh) = (((w as f32 * s) as u32).max(1), ((h as f32 * s) as u32).max(1));
        image::imageops::resize(&img, nw, nh, image::imageops::FilterType::Triangle)
    } else {
        img
    }
}

/// A random `crop x crop` view of `img`: source square side drawn in [min_frac, 1] x the shorter side, random
/// position, resized (Triangle), flipped with probability 1/2.
pub fn random_crop(img: &RgbImage, rng: &mut StdRng, crop: u32, min_frac: f32) -> RgbImage {
    let (w, h) = img.dimensions();
    let short = w.min(h);
    let lo = ((short as f32 * min_frac) as u32).max(crop.min(short)).min(short);
    let side = if lo >= short { short } else { rng.random_range(lo..=short) };
    let x = rng.random_range(0..=w - side);
    let y = rng.random_range(0..=h - side);
    let view = image::imageops::crop_imm(img, x, y, side, side).to_image();
    let mut out = if side == crop {
        view
    } else {
        image::imageops::resize(&view, crop, crop, image::imageops::FilterType::Triangle)
    };
    if rng.random_bool(0.5) {
        image::imageops::flip_horizontal_in_place(&mut out);
    }
    out
}

/// How the photos become square training crops: the generator's latent cache and the preview trainer's
/// decode-once cache draw them alike.
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
    pub fn validate(&self) -> Result<()> {
        if self.crop == 0 || !self.crop.is_multiple_of(16) {
            return Err(EngineError::Config(format!(
                "the crop side must be a positive multiple of 16, got {}",
                self.crop
            )));
        }
        if self.crops_per_photo == 0 {
            return Err(EngineError::Config("crops per photo must be at least 1".into()));
        }
        Ok(())
    }

    /// Photos are held downscaled so the longer side is at most this.
    pub fn max_side(&self) -> u32 {
        (self.crop * 4).max(256)
    }
}

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

/// Seed of photo `i`'s crops / of the segment starting at `step`: [`mix`] of `k + 1`.
pub fn mix_seed(seed: u64, k: u64) -> u64 {
    mix(seed, k.wrapping_add(1))
}

/// A seed derived from `seed` and a counter `k` (splitmix64's finaliser on `seed ^ k * golden ratio`).
pub fn mix(seed: u64, k: u64) -> u64 {
    let mut z = seed ^ k.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
