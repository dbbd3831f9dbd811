//! Bad input gets a clear error and never a panic: images (corrupt, truncated, oversized, odd colour types,
//! sizes not multiple of 16) and checkpoints (truncated, wrong model, wrong shapes, NaN, missing keys).

use std::path::{Path, PathBuf};

use burn::tensor::Tensor;
use engine::EngineError;
use engine::checkpoint::{load_backbone, load_sae};
use engine::image_io::{Fit, decode_rgb, fit16};
use engine::tensor_file::{Precision, RawTensor, read_safetensors, write_safetensors};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("dino-sae-tests-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("tmp dir");
    d.join(name)
}

fn png_bytes(img: &image::DynamicImage) -> Vec<u8> {
    let mut buf = std::io::Cursor::new(Vec::new());
    img.write_to(&mut buf, image::ImageFormat::Png).expect("encode");
    buf.into_inner()
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

#[test]
fn corrupt_and_truncated_images_are_refused() {
    assert!(matches!(decode_rgb(b"definitely not an image"), Err(EngineError::Image(_))));
    assert!(matches!(decode_rgb(&[]), Err(EngineError::Image(_))));
    let good =
        png_bytes(&image::DynamicImage::ImageRgb8(image::RgbImage::from_pixel(64, 64, image::Rgb([10, 20, 30]))));
    let truncated = &good[..good.len() / 2];
    let e = decode_rgb(truncated).expect_err("truncated PNG must fail");
    assert!(e.to_string().contains("decode"), "{e}");
    assert!(decode_rgb(&good).is_ok());
}

#[test]
fn decompression_bomb_is_refused_before_decoding() {
    // A PNG header claiming 60000 x 60000 pixels (3.6 G), with no data behind it.
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend(60000u32.to_be_bytes());
    ihdr.extend(60000u32.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(13u32.to_be_bytes());
    png.extend(&ihdr);
    png.extend(crc32(&ihdr).to_be_bytes());
    let e = decode_rgb(&png).expect_err("bomb must be refused");
    let msg = e.to_string();
    assert!(msg.contains("limit") || msg.contains("60000"), "{msg}");
}

#[test]
fn grey_alpha_and_16bit_images_become_rgb() {
    let grey = image::DynamicImage::ImageLuma8(image::GrayImage::from_pixel(20, 20, image::Luma([77])));
    let g = decode_rgb(&png_bytes(&grey)).expect("grey");
    assert_eq!(g.get_pixel(3, 3).0, [77, 77, 77]);
    // fully transparent pixels composite to white, opaque ones keep their colour
    let mut rgba = image::RgbaImage::from_pixel(20, 20, image::Rgba([200, 0, 0, 0]));
    rgba.put_pixel(0, 0, image::Rgba([1, 2, 3, 255]));
    let a = decode_rgb(&png_bytes(&image::DynamicImage::ImageRgba8(rgba))).expect("rgba");
    assert_eq!(a.get_pixel(5, 5).0, [255, 255, 255]);
    assert_eq!(a.get_pixel(0, 0).0, [1, 2, 3]);
    let deep = image::ImageBuffer::<image::Rgb<u16>, Vec<u16>>::from_pixel(20, 20, image::Rgb([65535, 0, 32896]));
    let d = decode_rgb(&png_bytes(&image::DynamicImage::ImageRgb16(deep))).expect("16-bit");
    assert_eq!(d.get_pixel(1, 1).0, [255, 0, 128]);
}

#[test]
fn sizes_not_multiple_of_16_follow_the_fit_policy() {
    let img = image::RgbImage::from_fn(50, 37, |x, y| image::Rgb([x as u8, y as u8, 0]));
    assert_eq!(fit16(&img, Fit::Crop).dimensions(), (48, 32));
    assert_eq!(fit16(&img, Fit::Pad).dimensions(), (64, 48));
    assert_eq!(fit16(&img, Fit::Resize).dimensions(), (48, 32));
    // crop is centred: (50-48)/2 = 1, (37-32)/2 = 2
    assert_eq!(fit16(&img, Fit::Crop).get_pixel(0, 0).0, [1, 2, 0]);
    // tiny images are padded up to 16
    let tiny = image::RgbImage::new(5, 3);
    assert_eq!(fit16(&tiny, Fit::Crop).dimensions(), (16, 16));
}

fn sae_fixture() -> PathBuf {
    fixtures().join("dinosae-setA/sae/model.safetensors")
}

#[test]
fn encoder_refuses_sizes_not_multiple_of_16_and_decoder_wrong_channels() {
    let device = engine::cpu();
    let m = load_sae(sae_fixture(), &device, false).expect("load").model;
    let x = Tensor::<4>::zeros([1, 3, 40, 48], &device);
    assert!(matches!(m.encode(x), Err(EngineError::Shape(_))));
    let z = Tensor::<4>::zeros([1, 7, 2, 2], &device);
    assert!(matches!(m.decode(z), Err(EngineError::Shape(_))));
}

fn write_truncated(src: &Path, name: &str, frac: f64) -> PathBuf {
    let b = std::fs::read(src).expect("read");
    let p = tmp(name);
    std::fs::write(&p, &b[..(b.len() as f64 * frac) as usize]).expect("write");
    p
}

#[test]
fn truncated_empty_and_garbage_checkpoints_are_refused() {
    let device = engine::cpu();
    let st = fixtures().join("dinosae-setA/dinov3/hf/model.safetensors");
    let pth = fixtures().join("dinosae-setA/dinov3/official/model.pth");
    for (p, what) in [
        (write_truncated(&st, "trunc.safetensors", 0.5), "truncated safetensors"),
        (write_truncated(&pth, "trunc.pth", 0.6), "truncated pth"),
        (write_truncated(&pth, "trunc_small.pth", 0.02), "truncated pth header"),
        (write_truncated(&st, "empty.safetensors", 0.0), "empty"),
    ] {
        let e = load_backbone(&p, &device, false).err().unwrap_or_else(|| panic!("{what} must fail"));
        assert!(matches!(e, EngineError::Checkpoint(_) | EngineError::Io { .. }), "{what}: {e}");
    }
    let garbage = tmp("garbage.bin");
    std::fs::write(&garbage, vec![7u8; 4096]).expect("write");
    assert!(load_backbone(&garbage, &device, false).is_err());
}

#[test]
fn wrong_model_kind_is_refused_with_a_clear_message() {
    let device = engine::cpu();
    let e =
        load_sae(fixtures().join("dinosae-setA/dinov3/hf/model.safetensors"), &device, false).err().expect("must fail");
    assert!(e.to_string().contains("not a DINO-SAE"), "{e}");
    let e = load_backbone(fixtures().join("dinov2-evit-setA/decoder/model.safetensors"), &device, false)
        .err()
        .expect("must fail");
    assert!(e.to_string().contains("decoder"), "{e}");
}

fn modified_sae(name: &str, f: impl FnOnce(&mut engine::tensor_file::TensorMap)) -> PathBuf {
    let mut t = read_safetensors(sae_fixture()).expect("read");
    f(&mut t);
    let p = tmp(name);
    write_safetensors(&p, &t, &Default::default(), Precision::F32).expect("write");
    p
}

#[test]
fn wrong_shapes_nan_and_missing_keys_are_reported_not_run() {
    let device = engine::cpu();
    let key = "dino_model.blocks.1.norm1.weight";
    let p = modified_sae("shape.safetensors", |t| {
        t.insert(key.into(), RawTensor::zeros(vec![63]));
    });
    let e = load_sae(&p, &device, false).err().expect("mis-shaped must fail");
    assert!(matches!(e, EngineError::IncompleteWeights(_)) && e.to_string().contains(key), "{e}");

    let p = modified_sae("nan.safetensors", |t| {
        t.get_mut("decoder.project_in.main.conv.weight").expect("key").data[3] = f32::NAN;
    });
    let e = load_sae(&p, &device, false).err().expect("NaN must fail");
    assert!(e.to_string().contains("non-finite") && e.to_string().contains("project_in"), "{e}");

    let p = modified_sae("missing.safetensors", |t| {
        t.remove("decoder.stages.2.op_list.1.main.conv1.conv.weight");
    });
    let e = load_sae(&p, &device, false).err().expect("missing key must fail");
    assert!(e.to_string().contains("missing") && e.to_string().contains("stages.2.op_list.1"), "{e}");
    // explicitly allowed: loads, and the report says what is missing
    let l = load_sae(&p, &device, true).expect("allowed");
    assert_eq!(l.report.missing, vec!["decoder.stages.2.op_list.1.main.conv1.conv.weight".to_string()]);
}

#[test]
fn wrapped_official_checkpoints_are_unwrapped() {
    let device = engine::cpu();
    let t = read_safetensors(sae_fixture()).expect("read");
    let mut wrapped = engine::tensor_file::TensorMap::new();
    for (k, v) in &t {
        wrapped.insert(format!("ema.module.{k}"), v.clone());
        wrapped.insert(format!("model.{k}"), RawTensor::zeros(v.shape.clone()));
    }
    let p = tmp("wrapped.safetensors");
    write_safetensors(&p, &wrapped, &Default::default(), Precision::F32).expect("write");
    let src = engine::checkpoint::read(&p).expect("read");
    assert_eq!(src.unwrapped, "ema.module.");
    let a = load_sae(&p, &device, false).expect("load wrapped").model;
    let b = load_sae(sae_fixture(), &device, false).expect("load").model;
    let x = Tensor::<4>::ones([1, 3, 64, 64], &device);
    let za = RawTensor::from_tensor(a.encode(x.clone()).expect("enc").patches).expect("d");
    let zb = RawTensor::from_tensor(b.encode(x).expect("enc").patches).expect("d");
    assert_eq!(za, zb, "the EMA copy must be the one loaded");
}

#[test]
fn cmyk_jpeg_is_converted_to_rgb() {
    // tests/data/cmyk_red.jpg: CMYK (0, 255, 255, 0) = pure red, as Pillow converts it.
    let bytes =
        std::fs::read(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/data/cmyk_red.jpg")).expect("read");
    let img = decode_rgb(&bytes).expect("CMYK JPEG must decode");
    let p = img.get_pixel(16, 16).0;
    assert!(p[0] > 230 && p[1] < 30 && p[2] < 30, "CMYK red decoded as {p:?}");
}

/// A safetensors file whose header length has 0x80 as its low byte (any model can be saved so: 1 in 256 are)
/// opens with the same byte as a legacy torch pickle; it must load, and a real legacy pickle must still be refused.
#[test]
fn safetensors_whose_header_length_starts_with_0x80_loads() {
    let device = engine::cpu();
    let t = read_safetensors(sae_fixture()).expect("read");
    // pad the metadata until the header's length is 0x80 mod 256
    let p = tmp("header80.safetensors");
    let mut pad = String::new();
    loop {
        let mut meta = std::collections::BTreeMap::new();
        meta.insert("pad".to_string(), pad.clone());
        write_safetensors(&p, &t, &meta, Precision::F32).expect("write");
        let first = std::fs::read(&p).expect("read back")[0];
        if first == 0x80 {
            break;
        }
        pad.push('x');
        assert!(pad.len() < 600, "could not reach a header length of 0x80 mod 256");
    }
    let m = load_sae(&p, &device, false).expect("a safetensors file opening with 0x80 loads").model;
    let held = engine::weights::export(&m, &m.names).expect("export");
    for key in ["decoder.project_in.main.conv.bias", "dino_model.blocks.1.norm1.weight"] {
        assert_eq!(held[key].data, t[key].data, "{key} as loaded");
    }
    // a legacy (pre-1.6) torch file: pickle protocol 2 then the magic number as a LONG1
    let legacy = tmp("legacy.pth");
    std::fs::write(&legacy, [0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19])
        .expect("write");
    let e = load_sae(&legacy, &device, false).err().expect("a legacy pickle is refused");
    assert!(e.to_string().contains("legacy"), "{e}");
}
