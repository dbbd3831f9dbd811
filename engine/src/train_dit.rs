//! Training loop for the generator: a [`Dit`] on latents with a [`FlowObjective`] (spherical RFM or the
//! Euclidean baseline), AdamW, label dropout to the null class (for CFG). Runs on any autodiff device
//! (`engine::cpu().autodiff()` on CPU). Data come from a caller-supplied batch function, so the same loop
//! serves the tests' synthetic distribution and a future `train-dit` CLI on encoded latents.

use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::{Device, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};
use crate::model::dit::{Dit, labels};
use crate::rfm::FlowObjective;

/// Optimiser and loop settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainDitConfig {
    pub steps: usize,
    pub batch: usize,
    pub lr: f64,
    pub weight_decay: f32,
    pub beta2: f32,
    /// Probability of replacing a label by the null class (the reference's class_dropout_prob).
    pub label_dropout: f64,
    /// Seed of the batch, noise, time and dropout draws.
    pub seed: u64,
    /// Linear warm-up steps of the learning rate.
    pub warmup: usize,
}

impl Default for TrainDitConfig {
    fn default() -> Self {
        Self {
            steps: 1000,
            batch: 64,
            lr: 1e-3,
            weight_decay: 0.0,
            beta2: 0.99,
            label_dropout: 0.1,
            seed: 0,
            warmup: 20,
        }
    }
}

/// A data batch: latents `[B, C, H, W]` (on the training device) and labels.
pub struct Batch {
    pub x: Tensor<4>,
    pub y: Vec<i64>,
}

/// Progress of one step.
#[derive(Clone, Copy, Debug)]
pub struct TrainStep {
    pub step: usize,
    pub loss: f32,
    pub lr: f64,
}

/// Train `model` (its parameters must live on an autodiff device) and return the trained model with
/// the loss of every step. `data(rng, batch)` supplies batches; `on_step` may stop early (return false).
pub fn train_dit(
    mut model: Dit,
    objective: &FlowObjective,
    cfg: &TrainDitConfig,
    data: &mut dyn FnMut(&mut StdRng, usize) -> Batch,
    on_step: &mut dyn FnMut(&TrainStep) -> bool,
) -> Result<(Dit, Vec<f32>)> {
    let mut optim = AdamWConfig::new().with_weight_decay(cfg.weight_decay).with_beta_2(cfg.beta2).init();
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let null = model.cfg.null_class() as i64;
    let can_drop = model.cfg.label_rows() > model.cfg.num_classes;
    let mut losses = Vec::with_capacity(cfg.steps);
    for step in 0..cfg.steps {
        let batch = data(&mut rng, cfg.batch);
        let device: Device = batch.x.device();
        let mut y = batch.y;
        if can_drop && cfg.label_dropout > 0.0 {
            for l in y.iter_mut() {
                if rng.random::<f64>() < cfg.label_dropout {
                    *l = null;
                }
            }
        }
        let s = objective.draw(&batch.x, &mut rng);
        let v = model.velocity(s.xt.clone(), s.t.clone(), labels(&y, &device));
        let loss = objective.loss(&v, &s);
        let lv: f32 = loss.clone().into_scalar::<f32>();
        if !lv.is_finite() {
            return Err(EngineError::NonFinite(format!("DiT training loss at step {step}")));
        }
        losses.push(lv);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let lr = cfg.lr * ((step + 1) as f64 / cfg.warmup.max(1) as f64).min(1.0);
        model = optim.step(lr, model, grads);
        if !on_step(&TrainStep { step: step + 1, loss: lv, lr }) {
            break;
        }
    }
    Ok((model, losses))
}

/// The trained model without autodiff (for sampling).
pub fn inference_model(model: &Dit) -> Dit {
    model.valid()
}
