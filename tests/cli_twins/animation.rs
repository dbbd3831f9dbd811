//! `steer --sweep N --gif` and `interpolate --gif`: animations read back with the image crate (frame count, size),
//! the APNG's first and last frames against `reconstruct` and a plain `steer` at the full angle (lossless, so equal).

use std::ffi::OsStr;
use std::path::Path;

use super::{dino_sae, root, tmp_dir};

fn ok(args: &[&str]) -> String {
    let a: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    let (code, so, se) = dino_sae(&a);
    assert_eq!(code, 0, "dino-sae {args:?}\n{so}\n{se}");
    so
}

fn frames(path: &Path) -> Vec<image::RgbImage> {
    let file = std::io::BufReader::new(std::fs::File::open(path).expect("animation"));
    let frames = if path.extension().is_some_and(|e| e == "gif") {
        image::AnimationDecoder::into_frames(image::codecs::gif::GifDecoder::new(file).expect("gif")).collect_frames()
    } else {
        let png = image::codecs::png::PngDecoder::new(file).expect("png");
        image::AnimationDecoder::into_frames(png.apng().expect("apng")).collect_frames()
    };
    frames.expect("frames").into_iter().map(|f| image::DynamicImage::ImageRgba8(f.into_buffer()).to_rgb8()).collect()
}

#[test]
fn sweeps_and_walks_become_gif_and_apng_animations() {
    let dir = tmp_dir("animation");
    let src = engine::image_io::load_rgb(root().join("assets/samples/chelsea.png")).expect("photo");
    let photo = dir.join("chelsea-160.png");
    engine::image_io::working_copy(&src, 160).save(&photo).expect("write");
    let p = photo.to_str().expect("utf8");
    let s = |name: &str| dir.join(name).to_str().expect("utf8").to_string();
    // a sweep of 5 frames from 0 to 60 degrees, as APNG and as GIF
    let sweep = ["--all", "--towards", "random:3", "--angle", "60", "--sweep", "5"];
    let (steered, steered2, x_png, x_mp4) = (s("steered.png"), s("steered2.png"), s("x.png"), s("x.mp4"));
    let mut args = vec!["steer", p, "-o", &steered];
    args.extend(sweep);
    let apng = s("sweep.png");
    args.extend(["--gif", &apng]);
    assert!(ok(&args).contains("5 frames"));
    let gif = s("sweep.gif");
    let mut args = vec!["steer", p, "-o", &steered2];
    args.extend(sweep);
    args.extend(["--gif", &gif, "--fps", "5"]);
    ok(&args);
    let (a, g) = (frames(Path::new(&apng)), frames(Path::new(&gif)));
    assert_eq!((a.len(), g.len()), (5, 5));
    let size = image::image_dimensions(&photo).map(|(w, h)| (w / 16 * 16, h / 16 * 16)).expect("size");
    assert!(a.iter().chain(&g).all(|f| f.dimensions() == size), "every frame at the encoded size {size:?}");
    // frame 0 is the reconstruction, the last frame the 60-degree steer (APNG is lossless)
    ok(&["reconstruct", p, "-o", &s("recon.png")]);
    assert_eq!(a[0], engine::image_io::load_rgb(s("recon.png")).expect("recon"), "0 degrees = the reconstruction");
    assert_eq!(a[4], engine::image_io::load_rgb(&steered).expect("steered"), "the last frame = the steer");
    assert_ne!(a[0], a[4]);
    // GIF frames are the same pictures in 256 colours: close, not equal
    let psnr = engine::metrics::psnr(&engine::image_io::rgb8_to_f32(&a[2]), &engine::image_io::rgb8_to_f32(&g[2]));
    assert!(psnr > 25.0, "GIF frame 2 vs APNG frame 2: {psnr:.1} dB");
    // a walk between two images, 3 intervals: 4 frames
    let other = dir.join("astronaut-160.png");
    let src = engine::image_io::load_rgb(root().join("assets/samples/astronaut.png")).expect("photo");
    engine::image_io::working_copy(&src, 160).save(&other).expect("write");
    let walk = s("walk.gif");
    ok(&["interpolate", p, other.to_str().expect("utf8"), "--steps", "3", "-o", &s("walk"), "--gif", &walk]);
    assert_eq!(frames(Path::new(&walk)).len(), 4);
    // refusals: an unknown extension, a sweep without --gif
    let run = |args: &[&str]| {
        let a: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
        dino_sae(&a)
    };
    let base = ["steer", p, "-o", &x_png, "--all", "--towards", "random:1", "--angle", "9", "--sweep", "3"];
    let mut with_mp4 = base.to_vec();
    with_mp4.extend(["--gif", &x_mp4]);
    let (code, _, se) = run(&with_mp4);
    assert_eq!(code, 1);
    assert!(se.contains(".gif"), "{se}");
    assert_eq!(run(&base).0, 2, "--sweep needs --gif (a usage error)");
    let _ = std::fs::remove_dir_all(&dir);
}
