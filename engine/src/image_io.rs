//! Image files in and out, with limits: decoding is bounded (no decompression bombs), every colour type
//! becomes RGB (grey expanded, alpha composited over white, 16-bit scaled), and sizes are brought to
//! multiples of 16 by a documented policy.

use std::io::Cursor;
use std::path::Path;

use burn::tensor::{Device, Tensor, TensorData};
use image::{DynamicImage, ImageReader, Limits, RgbImage};
use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};

/// An RGB image, HWC, values in [0, 1].
#[derive(Clone, Debug, PartialEq)]
pub struct RgbF32 {
    pub width: usize,
    pub height: usize,
    pub data: Vec<f32>,
}

/// How pixels map to the encoder's input and from the decoder's output.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PixelConfig {
    /// Encoder input = (rgb/255 - mean) / std.
    pub mean: [f32; 3],
    pub std: [f32; 3],
    /// Decoder output convention.
    pub output: OutputRange,
}

/// What the decoder's output values mean.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputRange {
    /// rgb/255 in [0, 1]
    Unit,
    /// the same ImageNet normalisation as the input
    Imagenet,
    /// [-1, 1]
    Signed,
}

pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

impl PixelConfig {
    /// Decoder output in this convention -> RGB in [0, 1] (unclamped, differentiable).
    ///
    /// # Shapes
    /// - t: `[B, 3, H, W]` -> same
    pub fn output_to_unit(&self, t: Tensor<4>) -> Tensor<4> {
        match self.output {
            OutputRange::Unit => t,
            OutputRange::Signed => t.add_scalar(1.0).mul_scalar(0.5),
            OutputRange::Imagenet => {
                let dev = t.device();
                let std = Tensor::<1>::from_floats(self.std.as_slice(), &dev).reshape([1, 3, 1, 1]);
                let mean = Tensor::<1>::from_floats(self.mean.as_slice(), &dev).reshape([1, 3, 1, 1]);
                t * std + mean
            }
        }
    }
}

impl Default for PixelConfig {
    fn default() -> Self {
        Self { mean: IMAGENET_MEAN, std: IMAGENET_STD, output: OutputRange::Unit }
    }
}

/// Largest accepted image, in pixels (decoding is refused beyond it).
pub const MAX_PIXELS: u64 = 64 * 1024 * 1024;
/// Largest accepted side.
pub const MAX_SIDE: u32 = 16384;

/// How to bring H, W to multiples of 16.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum Fit {
    /// Centre-crop to the largest multiple of 16 (loses at most 15 px per side). The default.
    #[default]
    Crop,
    /// Pad to the next multiple of 16 by edge replication.
    Pad,
    /// Resize (Lanczos3) to the nearest multiple of 16.
    Resize,
}

/// A reader with a known format and the size/allocation limits set.
fn limited_reader(bytes: &[u8]) -> Result<ImageReader<Cursor<&[u8]>>> {
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| EngineError::Image(format!("cannot read image header: {e}")))?;
    if reader.format().is_none() {
        return Err(EngineError::Image("unknown image format (PNG, JPEG, TIFF, WebP and BMP are supported)".into()));
    }
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_PIXELS * 8);
    reader.limits(limits);
    Ok(reader)
}

/// Decode image bytes to RGB with limits: the header is checked against the pixel limit before decoding.
pub fn decode_rgb(bytes: &[u8]) -> Result<RgbImage> {
    let reader = limited_reader(bytes)?;
    let (w, h) = reader.into_dimensions().map_err(|e| EngineError::Image(format!("cannot read image size: {e}")))?;
    if (w as u64) * (h as u64) > MAX_PIXELS {
        return Err(EngineError::Image(format!("image is {w}x{h}, over the limit of {MAX_PIXELS} pixels")));
    }
    let decoder =
        limited_reader(bytes)?.into_decoder().map_err(|e| EngineError::Image(format!("cannot decode image: {e}")))?;
    decode_oriented(decoder)
}

/// Decode with the EXIF orientation applied (phone photos come out upright); an unreadable orientation is
/// ignored (the pixels are still good).
fn decode_oriented(mut decoder: impl image::ImageDecoder) -> Result<RgbImage> {
    let orientation = decoder.orientation().unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut img =
        DynamicImage::from_decoder(decoder).map_err(|e| EngineError::Image(format!("cannot decode image: {e}")))?;
    if img.width() == 0 || img.height() == 0 {
        return Err(EngineError::Image("image has no pixels".into()));
    }
    img.apply_orientation(orientation);
    Ok(to_rgb(img))
}

/// The EXIF orientation an image file declares (1-8, 1 = upright), if it declares one.
pub fn exif_orientation(bytes: &[u8]) -> Option<u8> {
    use image::ImageDecoder;
    let mut d = limited_reader(bytes).ok()?.into_decoder().ok()?;
    d.orientation().ok().map(|o| o.to_exif())
}

fn to_rgb(img: DynamicImage) -> RgbImage {
    if img.color().has_alpha() {
        let rgba = img.to_rgba32f();
        let (w, h) = rgba.dimensions();
        let mut out = RgbImage::new(w, h);
        for (o, p) in out.pixels_mut().zip(rgba.pixels()) {
            let a = p[3].clamp(0.0, 1.0);
            for c in 0..3 {
                o[c] = ((p[c].clamp(0.0, 1.0) * a + (1.0 - a)) * 255.0).round() as u8;
            }
        }
        out
    } else {
        img.to_rgb8()
    }
}

/// Read and decode an image file.
pub fn load_rgb(path: impl AsRef<Path>) -> Result<RgbImage> {
    let path = path.as_ref();
    let meta = std::fs::metadata(path).map_err(|e| EngineError::io(path, e))?;
    if meta.len() > 512 * 1024 * 1024 {
        return Err(EngineError::Image(format!("{} is larger than 512 MiB", path.display())));
    }
    let bytes = std::fs::read(path).map_err(|e| EngineError::io(path, e))?;
    decode_rgb(&bytes).map_err(|e| EngineError::Image(format!("{}: {e}", path.display())))
}

/// Bring both sides to multiples of 16 (at least 16).
pub fn fit16(img: &RgbImage, fit: Fit) -> RgbImage {
    let (w, h) = img.dimensions();
    match fit {
        Fit::Crop if w >= 16 && h >= 16 => {
            let (nw, nh) = (w / 16 * 16, h / 16 * 16);
            image::imageops::crop_imm(img, (w - nw) / 2, (h - nh) / 2, nw, nh).to_image()
        }
        Fit::Resize => {
            let nw = ((w as f32 / 16.0).round() as u32).max(1) * 16;
            let nh = ((h as f32 / 16.0).round() as u32).max(1) * 16;
            image::imageops::resize(img, nw, nh, image::imageops::FilterType::Lanczos3)
        }
        _ => {
            let (nw, nh) = (w.div_ceil(16).max(1) * 16, h.div_ceil(16).max(1) * 16);
            RgbImage::from_fn(nw, nh, |x, y| *img.get_pixel(x.min(w - 1), y.min(h - 1)))
        }
    }
}

/// Resize so the image is exactly `w x h` (Lanczos3), for fixed-size pipelines.
pub fn resize_exact(img: &RgbImage, w: u32, h: u32) -> RgbImage {
    if img.dimensions() == (w, h) {
        return img.clone();
    }
    image::imageops::resize(img, w, h, image::imageops::FilterType::Lanczos3)
}

/// RGB8 images of one size -> normalised `[B, 3, H, W]` encoder input.
pub fn to_tensor(imgs: &[&RgbImage], px: &PixelConfig, device: &Device) -> Result<Tensor<4>> {
    let first = imgs.first().ok_or_else(|| EngineError::Image("no images".into()))?;
    let (w, h) = first.dimensions();
    let (w, h) = (w as usize, h as usize);
    let mut data = Vec::with_capacity(imgs.len() * 3 * h * w);
    for img in imgs {
        if img.dimensions() != first.dimensions() {
            return Err(EngineError::Image("images in one batch must have the same size".into()));
        }
        for c in 0..3 {
            data.extend(img.pixels().map(|p| (p[c] as f32 / 255.0 - px.mean[c]) / px.std[c]));
        }
    }
    Ok(Tensor::from_data(TensorData::new(data, vec![imgs.len(), 3, h, w]), device))
}

/// Decoder output `[B, 3, H, W]` -> images in [0, 1] (clamped), HWC.
pub fn from_tensor(t: Tensor<4>, px: &PixelConfig) -> Result<Vec<RgbF32>> {
    let [b, c, h, w] = t.dims();
    if c != 3 {
        return Err(EngineError::Shape(format!("expected 3 channels, got {c}")));
    }
    let v = crate::tensor_file::host_vec(px.output_to_unit(t))?;
    if v.iter().any(|x| !x.is_finite()) {
        return Err(EngineError::NonFinite("decoder output".into()));
    }
    let mut out = Vec::with_capacity(b);
    for bi in 0..b {
        let mut data = vec![0f32; h * w * 3];
        for ci in 0..3 {
            for i in 0..h * w {
                data[i * 3 + ci] = v[((bi * 3 + ci) * h * w) + i].clamp(0.0, 1.0);
            }
        }
        out.push(RgbF32 { width: w, height: h, data });
    }
    Ok(out)
}

/// An HWC image in [0, 1] as a `[1, 3, H, W]` tensor in [0, 1] (no normalisation).
pub fn rgbf32_to_unit_tensor(img: &RgbF32, device: &Device) -> Result<Tensor<4>> {
    let (h, w) = (img.height, img.width);
    if img.data.len() != h * w * 3 {
        return Err(EngineError::Image(format!("image data of {} values for {w}x{h}x3", img.data.len())));
    }
    let mut data = Vec::with_capacity(3 * h * w);
    for c in 0..3 {
        data.extend((0..h * w).map(|i| img.data[i * 3 + c]));
    }
    Ok(Tensor::from_data(TensorData::new(data, vec![1, 3, h, w]), device))
}

pub fn rgb8_to_f32(img: &RgbImage) -> RgbF32 {
    RgbF32 {
        width: img.width() as usize,
        height: img.height() as usize,
        data: img.as_raw().iter().map(|&v| v as f32 / 255.0).collect(),
    }
}

pub fn f32_to_rgb8(img: &RgbF32) -> RgbImage {
    let raw = img.data.iter().map(|v| (v.clamp(0.0, 1.0) * 255.0).round() as u8).collect();
    RgbImage::from_raw(img.width as u32, img.height as u32, raw).expect("size matches")
}

/// Save a PNG with `tEXt` chunks (parameters of how it was made), atomically.
pub fn save_png(path: impl AsRef<Path>, img: &RgbImage, text: &[(&str, String)]) -> Result<()> {
    let mut buf = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut buf, img.width(), img.height());
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        for (k, v) in text {
            enc.add_text_chunk(k.to_string(), v.clone()).map_err(|e| EngineError::Image(e.to_string()))?;
        }
        let mut w = enc.write_header().map_err(|e| EngineError::Image(e.to_string()))?;
        w.write_image_data(img.as_raw()).map_err(|e| EngineError::Image(e.to_string()))?;
    }
    crate::tensor_file::atomic_write(path.as_ref(), &buf)
}

/// The working copy of an opened image: scaled down (Lanczos3, aspect kept) so that its longest side is at most
/// `max_side` (at least 16 px on each side); images already within it are returned unchanged.
pub fn working_copy(img: &RgbImage, max_side: u32) -> RgbImage {
    let (w, h) = img.dimensions();
    let side = w.max(h);
    let max_side = max_side.max(16);
    if side <= max_side {
        return img.clone();
    }
    let s = max_side as f64 / side as f64;
    let (nw, nh) = (((w as f64 * s).round() as u32).max(16), ((h as f64 * s).round() as u32).max(16));
    if side > 4 * max_side {
        // a camera photo: box-average to twice the target first (fast, alias-free), then Lanczos3
        let pre = image::imageops::thumbnail(img, (2 * nw).min(w), (2 * nh).min(h));
        return image::imageops::resize(&pre, nw, nh, image::imageops::FilterType::Lanczos3);
    }
    image::imageops::resize(img, nw, nh, image::imageops::FilterType::Lanczos3)
}
