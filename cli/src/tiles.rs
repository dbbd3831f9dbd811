//! Whole or tiled: the one place the CLI decides how an image or a latent goes through the model.
//!
//! `--tiled` forces overlapping tiles (engine::render, progress bar and ETA on stderr); `--whole` forces one pass
//! (still refused when the memory preflight says it cannot fit); without either, the engine's plan decides: a job
//! over the memory budget or estimated above a minute (`render::AUTO_TILE_SECS`) goes to tiles, and says so.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::{Context, Result, bail};
use engine::image_io;
use engine::metrics::RgbF32;
use engine::model::sae::DinoSae;
use engine::preflight::{self, Budget};
use engine::raw::RawTensor;
use engine::render::{self, Plan, Tiling};
use image::RgbImage;

use crate::args::{announce, flag_hint, progress_line, too_big};

/// `--tiled` / `--whole`: how a whole-image job runs (neither: decided by the preflight).
#[derive(clap::Args, Clone, Copy, Debug, Default)]
pub struct TileArgs {
    /// Overlapping 512 px tiles (engine::render), with a progress bar and ETA on stderr. Without --tiled or
    /// --whole, a job over the memory budget or estimated above a minute goes to tiles by itself.
    #[arg(long, conflicts_with = "whole")]
    pub tiled: bool,
    /// One pass over the whole input, even where tiles would be chosen (still refused over the memory budget).
    #[arg(long)]
    pub whole: bool,
}

impl TileArgs {
    /// Tiles or not. `one_pass_only` names a flag that needs one pass (`--preview`): when the plan wants tiles
    /// and the user did not insist, the job is refused with the flags that fix it instead of an hour-long pass.
    pub fn decide(&self, plan: impl FnOnce() -> engine::Result<Plan>, one_pass_only: Option<&str>) -> Result<bool> {
        if self.tiled {
            if let Some(flag) = one_pass_only {
                bail!("{flag} runs in one pass; drop --tiled or {flag}");
            }
            return Ok(true);
        }
        if self.whole {
            return Ok(false);
        }
        match plan()? {
            Plan::Whole(_) => Ok(false),
            Plan::Tiled(why) => match one_pass_only {
                Some(flag) => bail!(
                    "{why}. {flag} runs in one pass: drop {flag} to render it in tiles, or add --whole to run the \
                     one pass anyway"
                ),
                None => {
                    eprintln!("auto-tiling: {why}; running in overlapping tiles (--whole forces one pass)");
                    Ok(true)
                }
            },
        }
    }
}

/// Encode a fitted image to its latent `[1, C, h, w]` (and CLS `[1, C]` when encoded in one pass), whole or in
/// tiles as `how` and the preflight decide.
pub fn encode(m: &DinoSae, img: &RgbImage, how: &TileArgs) -> Result<(RawTensor, Option<RawTensor>)> {
    let device = engine::cpu();
    let budget = Budget::from_env();
    let (w, h) = (img.width() as usize, img.height() as usize);
    if how.decide(|| render::plan_image(&m.cfg, w, h, false, &budget), None)? {
        let cancel = Arc::new(AtomicBool::new(false));
        let z =
            render::encode_tiled(m, img, Tiling::default(), &budget, &device, &cancel, &mut progress_line("encode"))?;
        return Ok((z, None));
    }
    let est = flag_hint(preflight::check_encode(&m.cfg, 1, w, h, &budget), too_big, "--tiled encodes it in tiles")
        .context("memory preflight")?;
    announce(&format!("encode of {w}x{h}"), &est);
    let lat = m.encode(image_io::to_tensor(&[img], &m.cfg.pixels, &device)?)?;
    Ok((RawTensor::from_tensor(lat.patches)?, Some(RawTensor::from_tensor(lat.cls)?)))
}

/// Decode one latent `[1, C, h, w]` with the full decoder, whole or in tiles (blended at the seams).
pub fn decode(m: &DinoSae, z: &RawTensor, how: &TileArgs) -> Result<RgbF32> {
    let device = engine::cpu();
    let budget = Budget::from_env();
    let (gh, gw) = (z.shape[2], z.shape[3]);
    let b = z.shape[0];
    if b != 1 && how.tiled {
        bail!("--tiled decodes one latent at a time; this file holds a batch of {b}");
    }
    // a batch runs in one pass (after the preflight below); one latent follows the plan
    if b == 1 && how.decide(|| render::plan_decode(&m.cfg, gh, gw, &budget), None)? {
        let cancel = Arc::new(AtomicBool::new(false));
        return Ok(render::decode_tiled(
            m,
            z,
            Tiling::default(),
            &budget,
            &device,
            &cancel,
            &mut progress_line("decode"),
        )?);
    }
    let est = flag_hint(preflight::check_decode(&m.cfg, b, gh, gw, &budget), too_big, "--tiled decodes it in tiles")
        .context("memory preflight")?;
    announce(&format!("decode of a {gh}x{gw} latent"), &est);
    Ok(image_io::from_tensor(m.decode(z.to_tensor(&device)?)?, &m.cfg.pixels)?.remove(0))
}
