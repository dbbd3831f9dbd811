//! Whole or tiled: the one place the CLI decides how an image or a latent goes through the model.
//!
//! `--tiled` forces overlapping tiles (engine::tiled, progress bar and ETA on stderr); `--whole` forces one pass
//! (still refused when the memory preflight says it cannot fit); without either, the engine's plan decides: a job
//! over the memory budget or estimated above a minute (`tiled::AUTO_TILE_SECS`) goes to tiles, and says so.

use anyhow::{Context, Result, bail};
use engine::Sae;
use engine::autoencoder::{Job, Progress, Ran, Stage, Tiles};
use engine::metrics::RgbF32;
use engine::tensor_file::RawTensor;
use engine::tiled::Plan;
use image::RgbImage;

use crate::args::{announce, flag_hint, progress_line, too_big};

/// `--tiled` / `--whole`: how a whole-image job runs (neither: decided by the preflight).
#[derive(clap::Args, Clone, Copy, Debug, Default)]
pub struct TileArgs {
    /// Overlapping 512 px tiles (engine::tiled), with a progress bar and ETA on stderr. Without --tiled or
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

    /// How the engine's front door should run a job: `--tiled`, `--whole`, or the plan.
    pub fn mode(&self) -> Tiles {
        if self.tiled {
            Tiles::Always
        } else if self.whole {
            Tiles::Never
        } else {
            Tiles::Auto
        }
    }

    /// A front-door result with the flag that fixes a one-pass refusal appended (only `--whole` can be refused
    /// for memory: the plan sends such a job to tiles).
    pub fn hint<T>(&self, r: engine::Result<T>, hint: &str) -> Result<T> {
        if self.mode() == Tiles::Never { flag_hint(r, too_big, hint).context("memory preflight") } else { Ok(r?) }
    }
}

/// The CLI's view of a front-door job: the plan on stderr (the preflight's estimate, or why it goes to tiles),
/// then a progress bar per stage of a tiled job.
pub fn reporter(what: String) -> impl FnMut(Progress) {
    let (mut enc, mut dec) = (progress_line("encode"), progress_line("decode"));
    move |p| match p {
        Progress::Plan(Ran::Whole(est)) => announce(&what, &est),
        Progress::Plan(Ran::Tiled(Some(why))) => {
            eprintln!("auto-tiling: {why}; running in overlapping tiles (--whole forces one pass)")
        }
        Progress::Plan(Ran::Tiled(None)) => {}
        Progress::Tile(Stage::Encode, t) => enc(t),
        Progress::Tile(Stage::Decode, t) => dec(t),
    }
}

/// Encode a fitted image to its latent `[1, C, h, w]` (and CLS `[1, C]` when encoded in one pass), whole or in
/// tiles as `how` and the preflight decide.
pub fn encode(sae: &Sae, img: &RgbImage, how: &TileArgs) -> Result<(RawTensor, Option<RawTensor>)> {
    let what = format!("encode of {}x{}", img.width(), img.height());
    let e = how.hint(
        sae.encode_image_with(img, &Job::tiles(how.mode()), &mut reporter(what)),
        "--tiled encodes it in tiles",
    )?;
    Ok((e.latent, e.cls))
}

/// Decode one latent `[1, C, h, w]` with the full decoder, whole or in tiles (blended at the seams); of a batch,
/// the first image (after the preflight for the whole batch).
pub fn decode(sae: &Sae, z: &RawTensor, how: &TileArgs) -> Result<RgbF32> {
    let b = z.shape.first().copied().unwrap_or(0);
    if b > 1 {
        if how.tiled {
            bail!("--tiled decodes one latent at a time; this file holds a batch of {b}");
        }
        let job = Job::tiles(Tiles::Never);
        let mut images = how.hint(sae.decode_batch(z, &job), "--tiled decodes it in tiles")?;
        return Ok(images.remove(0));
    }
    let what = format!("decode of a {}x{} latent", z.shape.get(2).unwrap_or(&0), z.shape.get(3).unwrap_or(&0));
    let d =
        how.hint(sae.decode_with(z, &Job::tiles(how.mode()), &mut reporter(what)), "--tiled decodes it in tiles")?;
    Ok(d.image)
}
