//! Image mutations (header sizes, EXIF) and the image target.

use crate::harness::Target;
use crate::mutate::{Rng, interesting, mutate_bytes};
use crate::{MIB, read};

/// Image-aware: a PNG's IHDR width / height / depth / colour type (CRC fixed), a JPEG's SOF size, EXIF
/// orientation values; else byte-level.
pub fn mutate_image(r: &mut Rng, data: &[u8], seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut d = data.to_vec();
    if d.starts_with(b"\x89PNG") && d.len() > 33 && r.chance(0.6) {
        match r.below(3) {
            0 => d[16..20].copy_from_slice(&(interesting(r) as u32).to_be_bytes()),
            1 => d[20..24].copy_from_slice(&(interesting(r) as u32).to_be_bytes()),
            _ => {
                d[24] = *r.pick(&[1u8, 2, 4, 8, 16, 0, 3]);
                d[25] = *r.pick(&[0u8, 2, 3, 4, 6, 7]);
            }
        }
        let crc = crc32(&d[12..29]);
        d[29..33].copy_from_slice(&crc.to_be_bytes());
        return d;
    }
    if d.starts_with(&[0xff, 0xd8]) && r.chance(0.6) {
        // SOF0/SOF2: ff c0/c2 len(2) precision(1) height(2) width(2)
        if let Some(p) = d.windows(2).position(|w| w[0] == 0xff && (w[1] == 0xc0 || w[1] == 0xc2))
            && p + 9 <= d.len()
        {
            let v = (interesting(r) as u16).to_be_bytes();
            let at = p + 5 + 2 * r.below(2);
            d[at..at + 2].copy_from_slice(&v);
            return d;
        }
    }
    mutate_bytes(r, data, seeds)
}

/// CRC-32 (PNG chunks, zip).
pub fn crc32(data: &[u8]) -> u32 {
    let mut c = 0xffff_ffffu32;
    for &b in data {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 { 0xedb8_8320 ^ (c >> 1) } else { c >> 1 };
        }
    }
    !c
}

pub(super) fn png_seed(w: u32, h: u32, color: image::ColorType) -> Vec<u8> {
    let img = image::DynamicImage::ImageRgb8(image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x * 7) as u8, (y * 5) as u8, (x ^ y) as u8])
    }));
    let img = match color {
        image::ColorType::La8 => image::DynamicImage::ImageLumaA8(img.to_luma_alpha8()),
        image::ColorType::Rgba16 => image::DynamicImage::ImageRgba16(img.to_rgba16()),
        _ => img,
    };
    let mut c = std::io::Cursor::new(Vec::new());
    let _ = img.write_to(&mut c, image::ImageFormat::Png);
    c.into_inner()
}

pub(super) fn encoded(w: u32, h: u32, f: image::ImageFormat) -> Vec<u8> {
    let img = image::DynamicImage::ImageRgb8(image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x * 9) as u8, (y * 3) as u8, 128])
    }));
    let mut c = std::io::Cursor::new(Vec::new());
    let _ = img.write_to(&mut c, f);
    c.into_inner()
}

pub(super) fn image_target() -> Target {
    let seeds = vec![
        png_seed(24, 17, image::ColorType::Rgb8),
        png_seed(9, 12, image::ColorType::La8),
        png_seed(5, 6, image::ColorType::Rgba16),
        encoded(32, 24, image::ImageFormat::Jpeg),
        encoded(13, 7, image::ImageFormat::Bmp),
        encoded(16, 9, image::ImageFormat::Tiff),
        encoded(12, 12, image::ImageFormat::WebP),
        read("tests/data/cmyk_red.jpg"),
    ];
    Target {
        name: "image",
        seeds: seeds.into_iter().filter(|s| !s.is_empty()).collect(),
        mutate: Box::new(mutate_image),
        run: Box::new(|b| engine::image_io::decode_rgb(b).map(|_| ())),
        // the decoder's own allocation limit (MAX_PIXELS x 8 bytes) plus the RGB copy
        cap: |n| engine::image_io::MAX_PIXELS as usize * 12 + 16 * MIB + 4 * n,
    }
}
