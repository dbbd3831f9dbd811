//! EXIF orientation is applied when an image is decoded, for all eight orientations: an asymmetric 5x3 image
//! (every pixel a different colour) is written as PNG with an `eXIf` chunk and as JPEG with an APP1 `Exif`
//! segment, both crafted byte by byte here, and the decoded pixels are compared with the transform of the
//! original computed independently (the EXIF 2.3 definition of each orientation, written out per pixel).
//! (image 0.25 reports orientation for JPEG, PNG, WebP and TIFF; PNG is lossless, so its check is exact.)

use engine::image_io::{decode_rgb, exif_orientation};
use image::{Rgb, RgbImage};

const W: u32 = 5;
const H: u32 = 3;

fn original() -> RgbImage {
    RgbImage::from_fn(W, H, |x, y| Rgb([(40 * x + 20) as u8, (70 * y + 30) as u8, (x * 3 + y * 50) as u8]))
}

/// A little-endian TIFF header with one IFD entry: Orientation (0x0112), SHORT, count 1, value `o`.
fn exif_tiff(o: u16) -> Vec<u8> {
    let mut t = b"II*\0".to_vec();
    t.extend(8u32.to_le_bytes()); // IFD0 at byte 8
    t.extend(1u16.to_le_bytes()); // one entry
    t.extend(0x0112u16.to_le_bytes());
    t.extend(3u16.to_le_bytes()); // SHORT
    t.extend(1u32.to_le_bytes());
    t.extend(o.to_le_bytes());
    t.extend([0, 0]); // value padded to 4 bytes
    t.extend(0u32.to_le_bytes()); // no next IFD
    t
}

fn crc32(data: &[u8]) -> u32 {
    let mut c = 0xffff_ffffu32;
    for &b in data {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 { 0xedb8_8320 ^ (c >> 1) } else { c >> 1 };
        }
    }
    !c
}

/// The image as PNG with an `eXIf` chunk right after IHDR.
fn png_with_orientation(img: &RgbImage, o: u16) -> Vec<u8> {
    let mut c = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(img.clone()).write_to(&mut c, image::ImageFormat::Png).expect("png");
    let png = c.into_inner();
    // signature (8) + IHDR chunk (4 len + 4 type + 13 data + 4 crc)
    let at = 8 + 25;
    assert_eq!(&png[12..16], b"IHDR");
    let data = exif_tiff(o);
    let mut chunk = (data.len() as u32).to_be_bytes().to_vec();
    let mut typed = b"eXIf".to_vec();
    typed.extend(&data);
    chunk.extend(&typed);
    chunk.extend(crc32(&typed).to_be_bytes());
    let mut out = png[..at].to_vec();
    out.extend(chunk);
    out.extend(&png[at..]);
    out
}

/// The image as JPEG (quality 100) with an APP1 `Exif\0\0` segment right after SOI.
fn jpeg_with_orientation(img: &RgbImage, o: u16) -> Vec<u8> {
    let mut jpg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpg, 100).encode_image(img).expect("jpeg");
    let mut payload = b"Exif\0\0".to_vec();
    payload.extend(exif_tiff(o));
    let mut seg = vec![0xff, 0xe1];
    seg.extend(((payload.len() + 2) as u16).to_be_bytes());
    seg.extend(payload);
    let mut out = jpg[..2].to_vec();
    out.extend(seg);
    out.extend(&jpg[2..]);
    out
}

/// The upright image for orientation `o`: for each output pixel, the source pixel it shows.
fn expected(src: &RgbImage, o: u16) -> RgbImage {
    let (w, h) = src.dimensions();
    let swap = o >= 5;
    let (ow, oh) = if swap { (h, w) } else { (w, h) };
    RgbImage::from_fn(ow, oh, |x, y| {
        let (sx, sy) = match o {
            1 => (x, y),
            2 => (w - 1 - x, y),         // mirrored horizontally
            3 => (w - 1 - x, h - 1 - y), // rotated 180
            4 => (x, h - 1 - y),         // mirrored vertically
            5 => (y, x),                 // transposed
            6 => (y, h - 1 - x),         // stored rotated 90 CCW: shown rotated 90 CW
            7 => (w - 1 - y, h - 1 - x), // transverse
            8 => (w - 1 - y, x),         // stored rotated 90 CW: shown rotated 90 CCW
            _ => unreachable!(),
        };
        *src.get_pixel(sx, sy)
    })
}

#[test]
fn the_expected_transforms_are_the_eight_distinct_symmetries() {
    let src = original();
    let all: Vec<RgbImage> = (1..=8).map(|o| expected(&src, o)).collect();
    for i in 0..8 {
        for j in 0..i {
            assert_ne!(all[i], all[j], "orientations {} and {} must differ", i + 1, j + 1);
        }
    }
    // 6 then 8 is the identity; 3 twice is the identity
    assert_eq!(expected(&expected(&src, 6), 8), src);
    assert_eq!(expected(&expected(&src, 3), 3), src);
}

#[test]
fn png_exif_orientation_is_applied_exactly_for_all_eight() {
    let src = original();
    for o in 1..=8u16 {
        let bytes = png_with_orientation(&src, o);
        assert_eq!(exif_orientation(&bytes), Some(o as u8), "orientation {o} read from the eXIf chunk");
        let got = decode_rgb(&bytes).unwrap_or_else(|e| panic!("orientation {o}: {e}"));
        let want = expected(&src, o);
        assert_eq!(got.dimensions(), want.dimensions(), "orientation {o}");
        assert!(got == want, "orientation {o}: decoded pixels differ from the expected transform");
    }
}

#[test]
fn jpeg_exif_orientation_is_applied_for_all_eight() {
    // JPEG is lossy and subsamples chroma: compare per pixel with a tolerance, which still tells the eight
    // transforms apart (neighbouring source pixels differ by >= 40 in red or green).
    let src = original();
    for o in 1..=8u16 {
        let bytes = jpeg_with_orientation(&src, o);
        assert_eq!(exif_orientation(&bytes), Some(o as u8), "orientation {o} read from APP1");
        let got = decode_rgb(&bytes).unwrap_or_else(|e| panic!("orientation {o}: {e}"));
        let want = expected(&src, o);
        assert_eq!(got.dimensions(), want.dimensions(), "orientation {o}");
        let worst = got
            .pixels()
            .zip(want.pixels())
            .map(|(a, b)| (0..2).map(|c| (a[c] as i32 - b[c] as i32).abs()).max().unwrap_or(0))
            .max()
            .unwrap_or(0);
        assert!(worst <= 16, "orientation {o}: red/green differ by up to {worst} (tolerance 16)");
        // and every other orientation is further away than that
        for other in (1..=8u16).filter(|&k| k != o) {
            let alt = expected(&src, other);
            if alt.dimensions() != got.dimensions() {
                continue;
            }
            let far = got
                .pixels()
                .zip(alt.pixels())
                .map(|(a, b)| (0..2).map(|c| (a[c] as i32 - b[c] as i32).abs()).max().unwrap_or(0))
                .max()
                .unwrap_or(0);
            assert!(far > 16, "orientation {o} decodes as close to orientation {other} ({far})");
        }
    }
}

#[test]
fn an_unreadable_orientation_is_ignored() {
    let src = original();
    // 0 and 9 are not orientations: the pixels come out as stored
    for o in [0u16, 9, 0xffff] {
        let got = decode_rgb(&png_with_orientation(&src, o)).expect("decodes");
        assert!(got == src, "orientation value {o}");
    }
}
