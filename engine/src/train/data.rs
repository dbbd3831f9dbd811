//! Training photos: a folder of images, random crops with scale jitter and horizontal flips.

use std::path::Path;

use image::RgbImage;
use rand::{Rng, rngs::StdRng};

use crate::error::{EngineError, Result};

/// Photos held in memory (downscaled so the longer side is at most `max_side`).
pub struct PhotoSet {
    pub names: Vec<String>,
    pub images: Vec<RgbImage>,
}

impl PhotoSet {
    /// Load every decodable image in `dir` (sorted by name). Unreadable files are reported, not fatal.
    pub fn load(dir: &Path, max_side: u32) -> Result<Self> {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .map_err(|e| EngineError::io(dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        entries.sort();
        let (mut names, mut images) = (Vec::new(), Vec::new());
        for p in entries {
            match crate::image_io::load_rgb(&p) {
                Ok(img) => {
                    let (w, h) = img.dimensions();
                    let s = max_side as f32 / w.max(h) as f32;
                    let img = if s < 1.0 {
                        image::imageops::resize(
                            &img,
                            (w as f32 * s) as u32,
                            (h as f32 * s) as u32,
                            image::imageops::FilterType::Triangle,
                        )
                    } else {
                        img
                    };
                    names.push(p.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default());
                    images.push(img);
                }
                Err(e) => eprintln!("skipping {}: {e}", p.display()),
            }
        }
        if images.is_empty() {
            return Err(EngineError::Image(format!("no readable images in {}", dir.display())));
        }
        Ok(Self { names, images })
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
