//! The autoencoder trainer's recipe ([`TrainConfig`]: stage, schedule, loss weights) and the learning-rate schedule
//! every trainer shares.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

use crate::error::{EngineError, Result};
use crate::model::sae::EmbedKind;

/// Alignment loss between student and teacher patch tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Align {
    /// 1 - cos(z_s, z_t), averaged over patches (the paper).
    Cosine,
    /// |z_s - z_t|^2 averaged (ablation).
    Mse,
}

/// Learning-rate schedule after warm-up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    #[default]
    Constant,
    /// Half cosine to 0 at the last step.
    Cosine,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub stage: u8,
    pub steps: usize,
    pub batch: usize,
    pub crop: u32,
    /// Smallest source square, as a fraction of the photo's shorter side (scale augmentation).
    pub min_crop_frac: f32,
    pub lr: f64,
    pub warmup: usize,
    pub weight_decay: f32,
    pub ema_decay: f64,
    pub ema_every: usize,
    pub align: Align,
    pub w_align: f64,
    pub w_l1: f64,
    /// Weight of a mean-squared pixel error term (0 = off, the paper's recipe; PSNR is this error's log).
    #[serde(default)]
    pub w_mse: f64,
    /// Weight of the LPIPS-VGG-like perceptual term (0 = off); its weights come from `perc_weights` or
    /// `lpips::default_dir()` (scripts/fetch-lpips.sh).
    #[serde(default)]
    pub w_perc: f64,
    #[serde(default)]
    pub perc_weights: Option<PathBuf>,
    /// Weight of the hinge GAN term (stage 2 defaults to 0.5, the paper's; 0 = no discriminator).
    #[serde(default)]
    pub w_gan: f64,
    /// Discriminator learning rate (None: the generator's); warm-up and schedule are the generator's.
    #[serde(default)]
    pub lr_d: Option<f64>,
    /// Stage 1 from scratch: the CNN stem (paper) or the backbone's resized patchify (ablation).
    #[serde(default)]
    pub embed: EmbedKind,
    /// Learning-rate schedule after the linear warm-up.
    #[serde(default)]
    pub schedule: Schedule,
    /// Stage 4: tau ramps linearly from `.0` to `.1` over the run.
    pub noise_tau: (f64, f64),
    pub checkpoint_every: usize,
    pub log_every: usize,
    pub seed: u64,
}

impl TrainConfig {
    pub fn stage(stage: u8) -> Self {
        Self {
            stage,
            steps: 1000,
            batch: 4,
            crop: 128,
            min_crop_frac: 0.3,
            lr: 3e-4,
            warmup: 50,
            weight_decay: 1e-4,
            ema_decay: 0.999,
            ema_every: 10,
            align: Align::Cosine,
            w_align: 0.5,
            w_l1: 1.0,
            w_mse: 0.0,
            w_perc: 0.0,
            perc_weights: None,
            w_gan: if stage == 2 { 0.5 } else { 0.0 },
            lr_d: None,
            embed: EmbedKind::Stem,
            schedule: Schedule::Constant,
            noise_tau: (0.8, 1.2),
            checkpoint_every: 200,
            log_every: 10,
            seed: 0,
        }
    }

    /// Learning rate at `step` (1-based): linear warm-up over `warmup` steps, then constant, or a half cosine
    /// from `lr` down to 0 at `steps`.
    pub fn lr_at(&self, step: usize) -> f64 {
        lr_schedule(self.lr, self.warmup, self.steps, self.schedule, step)
    }

    pub(super) fn validate(&self) -> Result<()> {
        match self.stage {
            0 | 1 | 3 | 4 => {}
            2 if self.w_gan > 0.0 => {}
            2 => return Err(EngineError::Config("stage 2 is stage 1 + the GAN term: it needs w_gan > 0".into())),
            s => return Err(EngineError::Config(format!("unknown stage {s} (0, 1, 2, 3, 4)"))),
        }
        if !(self.w_gan >= 0.0 && self.w_gan.is_finite()) {
            return Err(EngineError::Config(format!("w_gan must be finite and >= 0, got {}", self.w_gan)));
        }
        if !self.crop.is_multiple_of(16) || self.crop == 0 || self.batch == 0 {
            return Err(EngineError::Config("crop must be a positive multiple of 16 and batch > 0".into()));
        }
        Ok(())
    }
}

/// Recipe fields that differ between the configuration a checkpoint was written with (`saved`, its state.json's
/// `train`) and the one a resume runs with, as `field: old -> new`. `steps`, `checkpoint_every` and `log_every` may
/// change on a resume (a longer or shorter run) and are not reported.
pub fn recipe_changes(saved: &serde_json::Value, now: &TrainConfig) -> Vec<String> {
    let Ok(serde_json::Value::Object(now)) = serde_json::to_value(now) else { return Vec::new() };
    now.iter()
        .filter(|(k, _)| !matches!(k.as_str(), "steps" | "checkpoint_every" | "log_every"))
        .filter_map(|(k, v)| {
            let old = saved.get(k).unwrap_or(&serde_json::Value::Null);
            (old != v).then(|| format!("{k}: {old} -> {v}"))
        })
        .collect()
}

/// Learning rate at `step` (1-based) of a run of `steps`: linear warm-up over `warmup` steps, then constant, or a
/// half cosine from `lr` down to 0 at `steps` (every trainer's schedule).
pub fn lr_schedule(lr: f64, warmup: usize, steps: usize, schedule: Schedule, step: usize) -> f64 {
    let warm = (step as f64 / warmup.max(1) as f64).min(1.0);
    let decay = match schedule {
        Schedule::Constant => 1.0,
        Schedule::Cosine => {
            let span = steps.saturating_sub(warmup).max(1) as f64;
            let t = (step.saturating_sub(warmup) as f64 / span).min(1.0);
            0.5 * (1.0 + (std::f64::consts::PI * t).cos())
        }
    };
    lr * warm * decay
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resume_reports_changed_recipe_fields_only() {
        let saved = TrainConfig::stage(1);
        let mut now = saved.clone();
        assert!(recipe_changes(&serde_json::to_value(&saved).unwrap(), &now).is_empty());
        now.steps = 5000; // a longer run: not a recipe change
        now.lr = 1e-4;
        now.w_mse = 10.0;
        let c = recipe_changes(&serde_json::to_value(&saved).unwrap(), &now);
        assert_eq!(c, vec!["lr: 0.0003 -> 0.0001".to_string(), "w_mse: 0.0 -> 10.0".to_string()]);
        // a field the old checkpoint did not record at all
        let mut old = serde_json::to_value(&saved).unwrap();
        old.as_object_mut().unwrap().remove("embed");
        assert_eq!(recipe_changes(&old, &saved), vec!["embed: null -> \"stem\"".to_string()]);
    }

    #[test]
    fn learning_rate_schedules_follow_their_formulas() {
        let mut c = TrainConfig::stage(1);
        c.lr = 1e-3;
        c.warmup = 10;
        c.steps = 110;
        // warm-up: linear from lr/warmup
        assert!((c.lr_at(1) - 1e-4).abs() < 1e-15);
        assert!((c.lr_at(5) - 5e-4).abs() < 1e-15);
        assert!((c.lr_at(10) - 1e-3).abs() < 1e-15);
        assert!((c.lr_at(110) - 1e-3).abs() < 1e-15, "constant keeps lr");
        c.schedule = Schedule::Cosine;
        assert!((c.lr_at(10) - 1e-3).abs() < 1e-15, "cosine starts at lr after warm-up");
        assert!((c.lr_at(60) - 0.5e-3).abs() < 1e-12, "half-way is lr/2");
        assert!((c.lr_at(35) - 1e-3 * (0.5 + 0.5 * (std::f64::consts::PI / 4.0).cos())).abs() < 1e-12);
        assert!(c.lr_at(110).abs() < 1e-15, "ends at 0");
        assert!(c.lr_at(200).abs() < 1e-15, "stays at 0 past the end");
    }
}
