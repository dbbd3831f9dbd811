//! The engine in one screen: the default model, a photo, encode, steer 30 degrees towards a random direction on
//! every patch's sphere, decode, save a PNG. `cargo run -p dino-sae-engine --example quickstart [PHOTO] [OUT.png]`.

use engine::image_io::{self, Fit};
use engine::steer::{SteerEdit, SteerTarget};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let photo =
        args.next().unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/../assets/samples/chelsea.png").into());
    let out = args.next().map_or_else(|| std::env::temp_dir().join("dino-sae-quickstart.png"), Into::into);
    // the embedded default model (assets/default-model, or $DINO_SAE_DEFAULT_MODEL), on the CPU
    let sae = engine::Sae::load_default()?;
    // a photo, centre-cropped to multiples of 16 px (one latent vector per 16x16 patch)
    let img = image_io::fit16(&image_io::load_rgb(&photo)?, Fit::Crop);
    let z = sae.encode_image(&img)?.latent; // [1, C, h, w]; big photos go through tiles by themselves
    // rotate every patch 30 degrees along its great circle towards a random direction (radius kept)
    let edit = SteerEdit { target: SteerTarget::Random(7), angle_deg: 30.0, ..Default::default() };
    let rec = sae.decode(&sae.steer(&z, &edit)?)?;
    let psnr = engine::metrics::psnr(&image_io::rgb8_to_f32(&img), &rec);
    image_io::save_png(&out, &image_io::f32_to_rgb8(&rec), &[("Software", "dino-sae quickstart".into())])?;
    let patches = z.shape[2] * z.shape[3];
    println!("{patches} patches steered 30 degrees; PSNR vs the photo {psnr:.2} dB -> {}", out.display());
    Ok(())
}
