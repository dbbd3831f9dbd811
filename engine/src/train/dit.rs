//! Training the generator: [`train_dit`] (the loop: a [`Dit`] with a [`FlowObjective`], AdamW, label dropout to
//! the null class for CFG, on any autodiff device and any batch source) and [`train_dit_run`] (`train-dit`: latents
//! cached, segments with EMA and atomic checkpoints, resumable).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::{Device, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::checkpoint::load_sae;
use crate::data::{PhotoSet, fingerprint_file, fingerprint_photos, mix_seed};
use crate::error::{EngineError, Result};
use crate::generate::{
    CacheSpec, DIT_KIND, DitMeta, ObjectiveKind, cache_latents, cfg_err, dit_from_state_dict, dit_param_names,
    dit_state_dict, save_dit,
};
use crate::model::dit::{Dit, DitArch, DitConfig, labels};
use crate::rfm::{self, FlowObjective};
use crate::sphere;
use crate::tensor_file::{Precision, TensorMap, atomic_write, read_safetensors, write_safetensors};
use crate::tensor_file::{read_json, write_json};
use crate::train::{RunDir, ema_update};

/// Folder of the latent cache inside a run folder.
pub const LATENTS_DIR: &str = "latents";
/// Learning-rate re-warm-up (steps) at the start of every segment after the first (fresh AdamW moments).
pub const REWARM_STEPS: usize = 5;

/// `train-dit` settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DitRunConfig {
    /// DiT size preset (`tiny`, `s`, `b`, `l`, `xl`).
    pub preset: String,
    pub arch: DitArch,
    pub objective: ObjectiveKind,
    pub steps: usize,
    pub batch: usize,
    pub lr: f64,
    pub warmup: usize,
    pub weight_decay: f32,
    /// Probability of training a sample as the null class (CFG).
    pub label_dropout: f64,
    /// EMA decay per step (0 disables the EMA: `final/` then holds the raw weights).
    pub ema_decay: f64,
    pub checkpoint_every: usize,
    pub log_every: usize,
    pub seed: u64,
    /// Time shift of training and sampling (None: `rfm::default_shift(C, h, w)`).
    pub shift: Option<f64>,
    pub cache: CacheSpec,
    /// Write `final/` in f16 (the shipped form: half the size; a run already at its last step only rewrites it).
    /// Not a setting of the run: runs saved before it existed resume, with or without it.
    #[serde(default)]
    pub final_f16: bool,
}

impl Default for DitRunConfig {
    fn default() -> Self {
        Self {
            preset: "tiny".into(),
            arch: DitArch::LightningDit,
            objective: ObjectiveKind::Rfm,
            steps: 2000,
            batch: 32,
            lr: 1e-3,
            warmup: 20,
            weight_decay: 0.0,
            label_dropout: 0.1,
            ema_decay: 0.999,
            checkpoint_every: 200,
            log_every: 10,
            seed: 0,
            shift: None,
            cache: CacheSpec::default(),
            final_f16: false,
        }
    }
}

/// A logged training step (loss averaged since the previous log).
#[derive(Clone, Copy, Debug)]
pub struct DitProgress {
    pub step: usize,
    pub steps: usize,
    pub loss: f64,
    pub lr: f64,
    /// Seconds since this call started, and the steps it trained in them.
    pub secs: f64,
    pub trained: usize,
}

/// What [`train_dit_run`] reports while it runs. Returning false from the callback on a `Step` stops the
/// run like a kill (nothing since the last checkpoint is kept) and returns [`EngineError::Cancelled`].
#[derive(Clone, Copy, Debug)]
pub enum TrainEvent {
    Encoding { done: usize, total: usize },
    Latents { count: usize, reused: bool },
    Resumed { step: usize },
    Step(DitProgress),
    Checkpoint { step: usize },
}

/// What a finished run returns.
#[derive(Clone, Debug)]
pub struct TrainDitSummary {
    /// Step the run started from (0 or the resumed checkpoint).
    pub start_step: usize,
    pub steps: usize,
    /// Loss of every step trained by this call, in order.
    pub losses: Vec<f32>,
    pub latents_reused: bool,
    pub latent_count: usize,
    pub final_dir: PathBuf,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct CkptState {
    step: usize,
    run: DitRunConfig,
    meta: DitMeta,
}

fn save_ckpt(run: &RunDir, step: usize, model: &TensorMap, ema: &TensorMap, state: &CkptState) -> Result<()> {
    let tmp = run.checkpoint_tmp(step)?;
    write_safetensors(tmp.join("model.safetensors"), model, &Default::default(), Precision::F32)?;
    write_safetensors(tmp.join("ema.safetensors"), ema, &Default::default(), Precision::F32)?;
    write_json(&tmp.join("state.json"), state)?;
    run.publish(&tmp, step)
}

/// `loss.csv` rows `(step, loss)`.
pub fn read_loss_csv(path: &Path) -> Vec<(usize, f64)> {
    let s = std::fs::read_to_string(path).unwrap_or_default();
    s.lines()
        .skip(1)
        .filter_map(|l| {
            let mut it = l.split(',');
            Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
        })
        .collect()
}

/// Redraw `loss.png` from `loss.csv` (averaged into at most 1000 points).
pub fn write_loss_png(out: &Path) -> Result<()> {
    let rows = read_loss_csv(&out.join("loss.csv"));
    let per = rows.len().div_ceil(1000).max(1);
    let vals: Vec<f64> = rows.chunks(per).map(|c| c.iter().map(|r| r.1).sum::<f64>() / c.len() as f64).collect();
    crate::train::plot::loss_curve(&out.join("loss.png"), &[("loss".to_string(), vals)], 640, 360)
}

/// EMA decay over steps `from+1 ..= to`: the product of `min(decay, (1+s)/(10+s))`.
pub fn ema_segment_decay(decay: f64, from: usize, to: usize) -> f64 {
    (from + 1..=to).map(|s| decay.min((1.0 + s as f64) / (10.0 + s as f64))).product()
}

/// `train-dit`: cache latents, train (resuming from `out/latest`), write `out/final`. See the module docs.
pub fn train_dit_run(
    sae_path: &Path,
    photos_dir: &Path,
    out: &Path,
    cfg: &DitRunConfig,
    on_event: &mut dyn FnMut(TrainEvent) -> bool,
) -> Result<TrainDitSummary> {
    if cfg.batch == 0 || cfg.steps == 0 {
        return Err(cfg_err("steps and batch must be positive"));
    }
    cfg.cache.validate()?;
    let run = RunDir::open(out)?;
    let plain = crate::cpu();
    let ad = crate::cpu().autodiff();

    // 1. latents
    let sae = load_sae(sae_path, &plain, false)?.model;
    let sae_fp = fingerprint_file(sae_path)?;
    let photos = PhotoSet::load(photos_dir, cfg.cache.max_side())?;
    let photos_fp = fingerprint_photos(photos_dir, &photos.names);
    let (set, reused) =
        cache_latents(&sae, &sae_fp, &photos, &photos_fp, &cfg.cache, &out.join(LATENTS_DIR), &mut |done, total| {
            on_event(TrainEvent::Encoding { done, total });
        })?;
    drop((sae, photos));
    on_event(TrainEvent::Latents { count: set.len(), reused });
    if set.is_empty() {
        return Err(cfg_err("no latents to train on"));
    }

    // 2. model, objective, metadata
    let c = set.index.channels;
    let [gh, gw] = set.index.grid;
    let dcfg = DitConfig::preset(cfg.arch, &cfg.preset, c, gh, set.index.classes.len())?;
    let shift = cfg.shift.unwrap_or_else(|| rfm::default_shift(c, gh, gw));
    let objective = cfg.objective.objective(shift);
    let mut meta = DitMeta {
        kind: DIT_KIND.into(),
        dit: dcfg.clone(),
        classes: set.index.classes.clone(),
        objective_kind: cfg.objective,
        objective: objective.clone(),
        grid: [gh, gw],
        channels: c,
        s_vae: set.index.mean_norm,
        steps: 0,
        ema: cfg.ema_decay > 0.0,
        sae: sae_fp.clone(),
    };
    let (mut step, mut model, names, mut ema) = match run.latest(&[
        "model.safetensors",
        "ema.safetensors",
        "state.json",
    ]) {
        Some((s, p)) => {
            let st: CkptState = read_json(&p.join("state.json"))?;
            if st.meta.dit != dcfg
                || st.meta.objective != objective
                || st.meta.sae != sae_fp
                || st.meta.classes != meta.classes
            {
                return Err(cfg_err(format!(
                    "{} holds a run with other settings (model, objective, SAE or photos differ); use a new run folder",
                    out.display()
                )));
            }
            let (m, names) = dit_from_state_dict(read_safetensors(p.join("model.safetensors"))?, &dcfg, &ad)?;
            let ema = read_safetensors(p.join("ema.safetensors"))?;
            on_event(TrainEvent::Resumed { step: s });
            (s, m, names, ema)
        }
        None => {
            let m = Dit::init(&dcfg, cfg.seed, &ad)?;
            let names = dit_param_names(&m)?;
            let ema = dit_state_dict(&m, &names)?;
            (0, m, names, ema)
        }
    };
    let start_step = step;

    // 3. loss log: keep the rows up to the checkpoint we start from
    let csv_path = out.join("loss.csv");
    {
        let mut text = String::from("step,loss,lr,secs\n");
        if step > 0 {
            let old = std::fs::read_to_string(&csv_path).unwrap_or_default();
            for line in old.lines().skip(1) {
                match line.split(',').next().and_then(|s| s.parse::<usize>().ok()) {
                    Some(s) if s <= step => {
                        text.push_str(line);
                        text.push('\n');
                    }
                    _ => {}
                }
            }
        }
        atomic_write(&csv_path, text.as_bytes())?;
    }
    let mut csv =
        std::fs::OpenOptions::new().append(true).open(&csv_path).map_err(|e| EngineError::io(&csv_path, e))?;

    // 4. segments of checkpoint_every steps
    let t0 = Instant::now();
    let r = rfm::radius(c);
    let mut losses = Vec::new();
    let mut window = (0.0f64, 0usize);
    let every = cfg.checkpoint_every.max(1);
    while step < cfg.steps {
        let seg = every.min(cfg.steps - step);
        let tcfg = TrainDitConfig {
            steps: seg,
            batch: cfg.batch,
            lr: cfg.lr,
            weight_decay: cfg.weight_decay,
            beta2: 0.99,
            label_dropout: cfg.label_dropout,
            seed: mix_seed(cfg.seed ^ 0x05ee_dd17, step as u64),
            warmup: if step == 0 { cfg.warmup } else { cfg.warmup.min(REWARM_STEPS) },
        };
        let mut data = |rng: &mut StdRng, n: usize| {
            let idx: Vec<usize> = (0..n).map(|_| rng.random_range(0..set.len())).collect();
            let y = idx.iter().map(|&i| set.labels[i]).collect();
            Batch { x: sphere::project_to_radius(&set.gather(&idx, &ad), r), y }
        };
        let mut stopped = false;
        let mut io_err: Option<EngineError> = None;
        let base = step;
        let mut on_step = |s: &TrainStep| {
            let g = base + s.step;
            losses.push(s.loss);
            let secs = t0.elapsed().as_secs_f64();
            if let Err(e) = writeln!(csv, "{g},{:.6},{:.3e},{secs:.2}", s.loss, s.lr) {
                io_err = Some(EngineError::io(&csv_path, e));
                return false;
            }
            window = (window.0 + s.loss as f64, window.1 + 1);
            if g.is_multiple_of(cfg.log_every.max(1)) || g == cfg.steps {
                let p = DitProgress {
                    step: g,
                    steps: cfg.steps,
                    loss: window.0 / window.1.max(1) as f64,
                    lr: s.lr,
                    secs,
                    trained: g - start_step,
                };
                window = (0.0, 0);
                if !on_event(TrainEvent::Step(p)) {
                    stopped = true;
                    return false;
                }
            }
            true
        };
        let (m, _) = train_dit(model, &objective, &tcfg, &mut data, &mut on_step)?;
        if let Some(e) = io_err {
            return Err(e);
        }
        if stopped {
            return Err(EngineError::Cancelled);
        }
        model = m;
        let cur = dit_state_dict(&model, &names)?;
        if cfg.ema_decay > 0.0 {
            ema_update(&mut ema, &cur, ema_segment_decay(cfg.ema_decay, step, step + seg));
        } else {
            ema = cur.clone();
        }
        step += seg;
        meta.steps = step;
        save_ckpt(&run, step, &cur, &ema, &CkptState { step, run: cfg.clone(), meta: meta.clone() })?;
        write_loss_png(out)?;
        on_event(TrainEvent::Checkpoint { step });
    }
    drop(csv);

    // 5. final model = EMA weights
    meta.steps = step;
    let (final_model, final_names) = dit_from_state_dict(ema, &dcfg, &plain)?;
    let final_dir = out.join("final");
    let precision = if cfg.final_f16 { Precision::F16 } else { Precision::F32 };
    save_dit(&final_dir, &final_model, &final_names, &meta, precision)?;
    write_loss_png(out)?;
    Ok(TrainDitSummary { start_step, steps: step, losses, latents_reused: reused, latent_count: set.len(), final_dir })
}

// The training loop

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
