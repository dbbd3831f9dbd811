//! Animations of frames (walks between seeds or images, steering sweeps): animated GIF (256 colours per frame,
//! looping) and APNG (lossless, looping), both at a frame rate. The format follows the file's extension: `.gif`,
//! or `.png` / `.apng` for APNG.

use std::path::Path;

use image::RgbImage;

use crate::error::{EngineError, Result};

/// The container an animation is written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Gif,
    Apng,
}

impl Format {
    /// From a file name: `.gif` -> GIF, `.png` / `.apng` -> APNG.
    pub fn of(path: &Path) -> Result<Self> {
        match path.extension().map(|e| e.to_string_lossy().to_ascii_lowercase()).as_deref() {
            Some("gif") => Ok(Format::Gif),
            Some("png" | "apng") => Ok(Format::Apng),
            _ => Err(EngineError::Config(format!(
                "{}: an animation is a .gif or a .png / .apng (APNG) file",
                path.display()
            ))),
        }
    }
}

/// Frames per second allowed (GIF stores delays in hundredths of a second).
pub const FPS_RANGE: std::ops::RangeInclusive<f32> = 0.1..=50.0;

fn check(frames: &[RgbImage], fps: f32) -> Result<(u32, u32)> {
    let first = frames.first().ok_or_else(|| EngineError::Config("an animation needs at least one frame".into()))?;
    let (w, h) = first.dimensions();
    if w == 0 || h == 0 || w > u16::MAX as u32 || h > u16::MAX as u32 {
        return Err(EngineError::Shape(format!("frames of {w}x{h} cannot be animated (1..=65535 px a side)")));
    }
    if let Some(f) = frames.iter().find(|f| f.dimensions() != (w, h)) {
        return Err(EngineError::Shape(format!("frames differ in size: {w}x{h} and {}x{}", f.width(), f.height())));
    }
    if !fps.is_finite() || !FPS_RANGE.contains(&fps) {
        return Err(EngineError::Config(format!("frame rate {fps}: use 0.1 to 50 frames per second")));
    }
    Ok((w, h))
}

/// Write `frames` (all of one size) as a looping animation at `fps`, in the format of `path`'s extension; the file
/// is written to a temporary sibling and renamed, so a failure leaves nothing half-written.
pub fn write(path: &Path, frames: &[RgbImage], fps: f32) -> Result<Format> {
    let format = Format::of(path)?;
    let (w, h) = check(frames, fps)?;
    let mut bytes = Vec::new();
    match format {
        Format::Gif => {
            use image::codecs::gif::{GifEncoder, Repeat};
            let delay = image::Delay::from_numer_denom_ms((1000.0 / fps).round() as u32, 1);
            let mut enc = GifEncoder::new_with_speed(&mut bytes, 10);
            enc.set_repeat(Repeat::Infinite).map_err(|e| EngineError::Data(e.to_string()))?;
            for f in frames {
                let rgba = image::DynamicImage::ImageRgb8(f.clone()).to_rgba8();
                enc.encode_frame(image::Frame::from_parts(rgba, 0, 0, delay))
                    .map_err(|e| EngineError::Data(format!("GIF: {e}")))?;
            }
        }
        Format::Apng => {
            let mut enc = png::Encoder::new(&mut bytes, w, h);
            enc.set_color(png::ColorType::Rgb);
            enc.set_depth(png::BitDepth::Eight);
            let e = |e: png::EncodingError| EngineError::Data(format!("APNG: {e}"));
            enc.set_animated(frames.len() as u32, 0).map_err(e)?;
            // the delay as a fraction: 1000 / (fps * 1000) seconds
            enc.set_frame_delay(1000, (fps * 1000.0).round().clamp(1.0, u16::MAX as f32) as u16).map_err(e)?;
            let mut writer = enc.write_header().map_err(e)?;
            for f in frames {
                writer.write_image_data(f.as_raw()).map_err(e)?;
            }
            writer.finish().map_err(e)?;
        }
    }
    crate::tensor_file::atomic_write(path, &bytes)?;
    Ok(format)
}
