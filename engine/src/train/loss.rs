//! The autoencoder trainer's losses: the stem warm start (stage 0), the token alignment (stages 1-2), the
//! generator's loss (pixels, perceptual, GAN) and the discriminator's step.

use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData};
use rand::{Rng, rngs::StdRng};

use crate::error::{EngineError, Result};
use crate::model::nn::Probe;
use crate::model::sae::{DinoSae, SaeConfig, tokens_to_map};
use crate::model::vit::Vit;
use crate::resize::resize_bicubic;
use crate::sphere::cosine_last;

use super::{Align, Stats, TrainConfig, diffaug, disc};

/// Stage 0 (stem warm start): the stem's tokens against the teacher's own patch embedding of the image resized to
/// the teacher's grid, MSE relative to the target's mean square. Only the stem runs (no blocks, no decoder).
///
/// # Shapes
/// - x (plain) / x_ad (autodiff): `[B, 3, 16g, 16g]`; `side` = p * g
pub(super) fn stem_warmup_loss(
    model: &DinoSae,
    teacher: &Vit,
    x: Tensor<4>,
    x_ad: Tensor<4>,
    side: usize,
    ad: &Device,
) -> (Tensor<1>, f64) {
    let s = model.encoder.patch_embed.forward(x_ad, &mut Probe::default());
    let t = teacher.patch_embed.forward(resize_bicubic(x, side, side, false, None), &mut Probe::default());
    let t = Tensor::<4>::from_data(t.into_data(), ad);
    let scale = (t.clone().square().mean().into_scalar::<f32>() as f64).max(1e-12);
    let l = (s - t).square().mean().div_scalar(scale);
    let v = l.clone().into_scalar::<f32>() as f64;
    (l, v)
}

/// What a step needs besides the model and the batch.
pub(super) struct StepCtx<'a> {
    pub(super) cfg: &'a TrainConfig,
    pub(super) teacher: &'a Vit,
    pub(super) sae: &'a SaeConfig,
    pub(super) perc_net: Option<&'a crate::lpips::LpipsVgg>,
    pub(super) ad: &'a Device,
    /// Side of the teacher's input: its patch size times the crop's grid.
    pub(super) side: usize,
}

pub(super) fn scalar(t: &Tensor<1>) -> f64 {
    t.clone().into_scalar::<f32>() as f64
}

/// Stages 1-2: the student's tokens against the teacher's on the crop resized (bicubic) to the teacher's grid.
///
/// # Shapes
/// - s: `[B, g*g, C]` (autodiff); x: `[B, 3, 16g, 16g]` (plain)
pub(super) fn align_loss(ctx: &StepCtx, s: Tensor<3>, x: Tensor<4>) -> Tensor<1> {
    let tx = resize_bicubic(x, ctx.side, ctx.side, false, None);
    let t = ctx.teacher.forward(tx, &mut Probe::default()).patch_tokens();
    let t = Tensor::<3>::from_data(t.into_data(), ctx.ad);
    match ctx.cfg.align {
        Align::Cosine => cosine_last(s, t).neg().add_scalar(1.0).mean(),
        Align::Mse => (s - t).square().mean(),
    }
}

/// Stage 4: `z + sigma * eps`, one sigma ~ U(0, tau) per sample, tau ramping linearly over the run.
///
/// # Shapes
/// - z: `[B, C, g, g]` -> `[B, C, g, g]`
pub(super) fn add_latent_noise(cfg: &TrainConfig, z: Tensor<4>, step: usize, rng: &mut StdRng) -> Tensor<4> {
    let frac = step as f64 / cfg.steps.max(1) as f64;
    let tau = cfg.noise_tau.0 + (cfg.noise_tau.1 - cfg.noise_tau.0) * frac;
    let b = z.dims()[0];
    let sig: Vec<f32> = (0..b).map(|_| rng.random_range(0.0..tau.max(1e-9)) as f32).collect();
    let device = z.device();
    let sig = Tensor::<4>::from_data(TensorData::new(sig, vec![b, 1, 1, 1]), &device);
    let eps = Tensor::<4>::random(z.dims(), burn::tensor::Distribution::Normal(0.0, 1.0), &device);
    z + eps * sig
}

/// The generator's loss for stages 1-4: alignment (stages 1-2), L1 + MSE on pixels, perceptual, and the GAN's
/// generator term (its discriminator's spectral norms are refreshed first). Returns the loss, its unweighted parts,
/// and the detached fake (in [0, 1]) for the discriminator's step.
///
/// # Shapes
/// - x (plain) / x_ad (autodiff): `[B, 3, 16g, 16g]` normalised input; target: `[B, 3, 16g, 16g]` in [0, 1]
#[allow(clippy::too_many_arguments)]
pub(super) fn autoencoder_loss(
    ctx: &StepCtx,
    model: &DinoSae,
    x: Tensor<4>,
    x_ad: Tensor<4>,
    target: Tensor<4>,
    step: usize,
    rng: &mut StdRng,
    disc: Option<&mut disc::Discriminator>,
) -> Result<(Tensor<1>, Stats, Option<Tensor<4>>)> {
    let cfg = ctx.cfg;
    let mut stats = Stats::default();
    let out_s = model.encoder.forward(x_ad, &mut Probe::default());
    let s = out_s.patch_tokens();
    let align = (cfg.stage <= 2).then(|| align_loss(ctx, s.clone(), x));
    let mut z = tokens_to_map(s, out_s.grid);
    if cfg.stage == 4 {
        z = add_latent_noise(cfg, z, step, rng);
    }
    let recon = model.decoder.forward(z, &mut Probe::default());
    let err = recon.clone() - target.clone();
    let l1 = err.clone().abs().mean();
    stats.l1 = scalar(&l1);
    let mut loss = match align {
        Some(a) => {
            stats.align = scalar(&a);
            a.mul_scalar(cfg.w_align) + l1.mul_scalar(cfg.w_l1)
        }
        None => l1.mul_scalar(cfg.w_l1),
    };
    if cfg.w_mse > 0.0 {
        let mse = err.square().mean();
        stats.mse = scalar(&mse);
        loss = loss + mse.mul_scalar(cfg.w_mse);
    } else {
        stats.mse = scalar(&err.detach().square().mean());
    }
    if let Some(net) = ctx.perc_net {
        let p = net
            .layers(ctx.sae.pixels.output_to_unit(recon.clone()), ctx.sae.pixels.output_to_unit(target))?
            .sum_dim(1)
            .mean();
        stats.perc = scalar(&p);
        loss = loss + p.mul_scalar(cfg.w_perc);
    }
    let fake = match disc {
        Some(d) => {
            d.update_spectral_norms()?;
            let fake = ctx.sae.pixels.output_to_unit(recon);
            let g = disc::hinge_g_loss(d.forward(diffaug::diff_augment(fake.clone(), rng)));
            stats.gan_g = scalar(&g);
            loss = loss + g.mul_scalar(cfg.w_gan);
            Some(fake.detach())
        }
        None => None,
    };
    Ok((loss, stats, fake))
}

/// One discriminator step on real vs (detached) fake images, both through DiffAugment. Returns its hinge loss.
///
/// # Shapes
/// - real, fake: `[B, 3, H, W]` in [0, 1]
pub(super) fn discriminator_step(
    d: &mut disc::Discriminator,
    optim: &mut burn::optim::ModuleOptimizer,
    lr: f64,
    real: Tensor<4>,
    fake: Tensor<4>,
    step: usize,
    rng: &mut StdRng,
) -> Result<f64> {
    let real_aug = diffaug::diff_augment(real, rng);
    let fake_aug = diffaug::diff_augment(fake, rng);
    let dl = disc::hinge_d_loss(d.forward(real_aug), d.forward(fake_aug));
    let dv = scalar(&dl);
    if !dv.is_finite() {
        return Err(EngineError::NonFinite(format!("discriminator loss at step {step}")));
    }
    let g = GradientsParams::from_grads(dl.backward(), &d.heads);
    d.heads = optim.step(lr, d.heads.clone(), g);
    Ok(dv)
}
