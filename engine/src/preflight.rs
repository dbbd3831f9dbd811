//! Memory and time preflight: before an encode, decode, sample, render or training step starts, estimate its
//! peak memory and FLOPs from the config and the input shape, and refuse a job that would not fit the memory
//! budget with a typed error that says what would fit.
//!
//! The estimate counts the tensors that are alive at the worst moment of each forward (attention matrices,
//! activations of the widest decoder stage, the batch), with factors calibrated against the measured peak RSS
//! of this engine (`dino-sae preflight --measure`, `tests/preflight.rs`: the estimate is never below the
//! measured increase and within a factor of 2 of it on the shapes tested).

pub use crate::budget::{Attention, Budget, available_bytes};
use crate::error::{EngineError, Result};
use crate::model::decoder::{BlockType, DecoderConfig, UpsampleType};
use crate::model::sae::SaeConfig;
use crate::model::vit::{Ffn, VitConfig};

const F32: f64 = 4.0;
/// Fixed working set of any job (rayon stacks, small buffers, allocator slack). Calibrated with
/// `tests/preflight.rs` against measured peak RSS.
pub const BASE: f64 = 16.0 * 1024.0 * 1024.0;
/// Extra working set of a decode: the host im2col bands (at most 4 M floats) and the conv outputs beside them.
const DEC_WORK: f64 = 24.0 * 1024.0 * 1024.0;

/// Resident memory of this process now (VmRSS), bytes.
pub fn rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Peak resident memory of this process (VmHWM), bytes.
pub fn peak_rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Reset the peak resident memory (VmHWM) to the current RSS (Linux: `5` into /proc/self/clear_refs); false where
/// that is not possible (VmHWM then counts since the process started).
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// What a job will cost.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Estimate {
    /// Peak memory beyond the loaded weights, bytes.
    pub bytes: f64,
    pub flops: f64,
}

impl Estimate {
    /// Seconds at a throughput of `gflops` GFLOP/s.
    pub fn seconds_at(&self, gflops: f64) -> f64 {
        self.flops / (gflops.max(1e-3) * 1e9)
    }
}

/// Encoder peak at `batch x 3 x h x w` pixels (h, w multiples of 16) on a device whose attention takes `attn`.
pub fn encode(cfg: &SaeConfig, batch: usize, h: usize, w: usize, attn: Attention) -> Estimate {
    let stem = cfg.embed.has_stem();
    let flops = crate::flops::sae_encoder(cfg, h, w) * batch as f64;
    Estimate { bytes: encode_bytes(&cfg.encoder, batch, h, w, stem, attn), flops }
}

fn encode_bytes(v: &VitConfig, batch: usize, h: usize, w: usize, stem: bool, attn: Attention) -> f64 {
    let b = batch as f64;
    let px = b * 3.0 * (h * w) as f64 * F32;
    // the stem's first stage: 64 channels at half resolution, conv output + norm + activation alive
    let stem_peak = if stem {
        let w0 = crate::model::stem::STEM_WIDTHS[0] as f64;
        4.0 * b * w0 * (h * w) as f64 / 4.0 * F32
    } else {
        // the resized patchify: the bicubic resize of the input, a few copies
        4.0 * px
    };
    let t = (v.n_prefix() + (h / 16) * (w / 16)) as f64;
    let d = v.dim as f64;
    let tok = b * t * d * F32;
    // every block's output is kept (hidden states), plus tokens in / normed
    let resident = (v.depth as f64 + 3.0) * tok;
    // attention: q, k, v and the output, plus the scores. On the CPU fast path (`model::host::attention`) burn's
    // fused attention keeps at most a 1 MiB score matrix per thread in flight (it tiles the keys beyond 512); the
    // plain ops (wgpu, autodiff) keep the scores and their softmax alive together (2 matrices measured; 2.5 for
    // margin).
    let scores = match attn {
        Attention::Fused => {
            let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
            2.0 * threads * (1 << 20) as f64
        }
        Attention::Materialised => 2.5 * b * v.heads as f64 * t * t * F32,
    };
    let attn = scores + 10.0 * tok;
    let ffn = match v.ffn {
        Ffn::Mlp => 3.0 * b * t * v.ffn_hidden as f64 * F32,
        Ffn::Swiglu => 5.0 * b * t * v.ffn_hidden as f64 * F32,
    } + 3.0 * tok;
    BASE + 2.0 * px + stem_peak.max(resident + attn.max(ffn))
}

/// Decoder peak from a `batch x C x gh x gw` latent.
pub fn decode(cfg: &SaeConfig, batch: usize, gh: usize, gw: usize) -> Estimate {
    Estimate {
        bytes: decode_bytes(&cfg.decoder, batch, gh, gw),
        flops: crate::flops::decoder(&cfg.decoder, gh, gw) * batch as f64,
    }
}

fn decode_bytes(dc: &DecoderConfig, batch: usize, gh: usize, gw: usize) -> f64 {
    let b = batch as f64;
    let s = dc.stages();
    let wl = &dc.width_list;
    let (mut h, mut w) = (gh as f64, gw as f64);
    let mut peak = 6.0 * b * wl[s - 1] as f64 * h * w * F32;
    let mut c_prev = wl[s - 1] as f64;
    for stage_id in (0..s).rev() {
        let depth = dc.depth_list[stage_id];
        if depth == 0 {
            continue;
        }
        let c = wl[stage_id] as f64;
        if stage_id < s - 1 {
            // ConvPixelShuffle: conv to 4c at h x w, the shuffle, the duplicating shortcut, the sum
            let out = b * c * 4.0 * h * w * F32;
            peak = peak.max(b * c_prev * h * w * F32 + 4.0 * out);
            h *= 2.0;
            w *= 2.0;
        }
        let a = b * c * h * w * F32;
        let block = match dc.block_of(stage_id) {
            BlockType::ResBlock => 6.0 * a,
            // GLUMBConv: 1x1 to 8c, depthwise 3x3 on 8c, the gate, plus the linear attention's 3c, 6c
            BlockType::EvitGlu => 26.0 * a,
        };
        peak = peak.max(block);
        c_prev = c;
    }
    // the output head: norm + activation at the last width, then 3 channels (x2 when it upsamples)
    let last = b * c_prev * h * w * F32;
    let out_px = if dc.depth_list[0] > 0 { b * 3.0 * h * w * F32 } else { b * 3.0 * 4.0 * h * w * F32 };
    let head = match (dc.depth_list[0] > 0, dc.upsample_block_type) {
        (true, _) => 3.0 * last + 3.0 * out_px,
        (false, UpsampleType::ConvPixelShuffle) => 3.0 * last + 6.0 * out_px,
        // the upsampling conv is folded into 2x2 phase kernels: the 4x input is never materialised
        (false, UpsampleType::InterpolateConv) => 3.0 * last + 3.0 * out_px,
    };
    BASE + DEC_WORK + peak.max(head)
}

/// Encode then decode (the latent and the fitted input stay alive during the decode).
pub fn reconstruct(cfg: &SaeConfig, batch: usize, h: usize, w: usize, attn: Attention) -> Estimate {
    let e = encode(cfg, batch, h, w, attn);
    let d = decode(cfg, batch, h / 16, w / 16);
    let latent = (batch * cfg.decoder.latent_channels * (h / 16) * (w / 16)) as f64 * F32;
    Estimate { bytes: e.bytes.max(d.bytes + latent), flops: e.flops + d.flops }
}

/// Sampling `count` latents on an `gh x gw` grid with `steps` steps (CFG doubles the batch), then decoding them.
pub fn sample(
    dit: &crate::model::dit::DitConfig,
    sae: &SaeConfig,
    count: usize,
    gh: usize,
    gw: usize,
    steps: usize,
    cfg_scale: f64,
) -> Estimate {
    let b = (count * if cfg_scale != 1.0 { 2 } else { 1 }) as f64;
    let p = dit.patch_size.max(1);
    let t = ((gh / p) * (gw / p)) as f64;
    let d = dit.hidden_size as f64;
    let attn = 4.0 * b * dit.num_heads as f64 * t * t * F32;
    let act = 16.0 * b * t * d * F32 * dit.mlp_ratio.max(1.0);
    let dit_bytes = BASE + attn + act;
    let step = crate::flops::dit_step(dit, gh, gw) * b;
    let dec = decode(sae, count, gh, gw);
    Estimate { bytes: dit_bytes.max(dec.bytes), flops: step * steps.max(1) as f64 + dec.flops }
}

/// A training step of the autoencoder at `batch x crop x crop` (autodiff keeps every activation of the student
/// and the decoder for the backward pass; the frozen teacher's forward adds one encode).
pub fn train_step(cfg: &SaeConfig, batch: usize, crop: usize) -> Estimate {
    // training runs under autodiff, where attention takes the plain ops
    let e = encode(cfg, batch, crop, crop, Attention::Materialised);
    let d = decode(cfg, batch, crop / 16, crop / 16);
    let kept = (e.bytes - BASE) * (cfg.encoder.depth as f64 / 2.0).max(2.0) + (d.bytes - BASE) * 4.0;
    Estimate { bytes: BASE + kept * 1.5 + e.bytes, flops: 3.0 * (e.flops + d.flops) + e.flops }
}

/// Parameters a decoder config asks for (every conv weight and bias, norms), in f64 so absurd configs do not
/// overflow.
pub fn decoder_numel(dc: &DecoderConfig) -> f64 {
    let s = dc.stages();
    if s == 0 || dc.depth_list.len() != s || !(dc.block_type.len() == 1 || dc.block_type.len() == s) {
        return 0.0; // not a valid config (validate() says why)
    }
    let wl: Vec<f64> = dc.width_list.iter().map(|&w| w as f64).collect();
    let conv = |ci: f64, co: f64, k: f64| ci * co * k * k + co;
    let up = |ci: f64, co: f64| match dc.upsample_block_type {
        UpsampleType::ConvPixelShuffle => conv(ci, 4.0 * co, 3.0),
        UpsampleType::InterpolateConv => conv(ci, co, 3.0),
    };
    let mut n = conv(dc.latent_channels as f64, wl[s - 1], 3.0);
    for stage_id in 0..s {
        let (w, depth) = (wl[stage_id], dc.depth_list[stage_id] as f64);
        if depth == 0.0 {
            continue;
        }
        if stage_id < s - 1 {
            n += up(wl[stage_id + 1], w);
        }
        let block = match dc.block_of(stage_id) {
            BlockType::ResBlock => 2.0 * 9.0 * w * w + 2.0 * w,
            // qkv + proj (<= w each way), inverted 1x1 to 8w, depthwise 3x3 on 8w, point 4w -> w
            BlockType::EvitGlu => {
                let td = (w / 32.0).floor() * 32.0;
                3.0 * td * w + td * w + 8.0 * w * w + 8.0 * w + 72.0 * w + 8.0 * w + 4.0 * w * w
            }
        };
        n += depth * block;
    }
    let c_out = if dc.depth_list[0] > 0 { wl[0] } else { wl.get(1).copied().unwrap_or(wl[0]) };
    n += c_out
        + if dc.depth_list[0] > 0 { conv(c_out, dc.in_channels as f64, 3.0) } else { up(c_out, dc.in_channels as f64) };
    n
}

/// Parameters a DINO-SAE config asks for (backbone with the stem or the patchify, blocks, decoder).
pub fn sae_numel(cfg: &SaeConfig) -> f64 {
    let v = &cfg.encoder;
    let d = v.dim as f64;
    let h = v.ffn_hidden as f64;
    let w = crate::model::stem::STEM_WIDTHS.map(|x| x as f64);
    let stem = 3.0 * w[0] * 49.0 + w[0] * w[1] * 9.0 + w[1] * w[2] * 9.0 + w[2] * d * 9.0 + w[0] + w[1] + w[2];
    let patchify = 3.0 * (v.patch_size as f64).powi(2) * d + d;
    let embed = if cfg.embed.has_stem() { stem } else { 0.0 } + if cfg.embed.has_patchify() { patchify } else { 0.0 };
    let pos = if v.family == crate::model::vit::Family::Dinov2 { (1.0 + (v.pos_grid as f64).powi(2)) * d } else { 0.0 };
    let ffn = match v.ffn {
        Ffn::Mlp => 2.0 * d * h + h + d,
        Ffn::Swiglu => 3.0 * d * h + 2.0 * h + d,
    };
    let block = 4.0 * d + 3.0 * d * d + d * d + d + ffn;
    embed + d * (1.0 + v.registers as f64) + pos + v.depth as f64 * block + 2.0 * d + decoder_numel(&cfg.decoder)
}

/// Refuse a config that asks for more parameters than its weights file holds (x2 slack) or than the memory
/// budget: such a config and file do not belong together, and building the model would allocate what the file
/// never had.
pub fn check_weights_match(what: &str, config_numel: f64, file_numel: usize, budget: &Budget) -> Result<()> {
    if !config_numel.is_finite() || config_numel * F32 > budget.bytes as f64 {
        return Err(EngineError::TooBig {
            what: format!("the model {what} describes"),
            estimate: human(config_numel * F32),
            budget: format!("{} ({})", human(budget.bytes as f64), budget.source),
            advice: "the config is wrong for these weights, or the model is too large for this machine".into(),
        });
    }
    if config_numel > 2.0 * file_numel as f64 + 65536.0 {
        return Err(EngineError::Config(format!(
            "{what} describes a model of {:.2} M parameters, but the weights hold {:.2} M values: config and weights do not belong together",
            config_numel / 1e6,
            file_numel as f64 / 1e6
        )));
    }
    Ok(())
}

/// Human size: `1.9 GiB`, `340 MiB`.
pub fn human(bytes: f64) -> String {
    let mib = bytes / (1024.0 * 1024.0);
    if mib >= 1024.0 { format!("{:.1} GiB", mib / 1024.0) } else { format!("{mib:.0} MiB") }
}

/// `1,904`
pub fn thousands(v: usize) -> String {
    let s = v.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// The largest `w x h` (multiples of 16) of the same aspect as `w x h` whose job fits `budget`, if any.
pub fn largest_fitting(
    w: usize,
    h: usize,
    budget: &Budget,
    cost: impl Fn(usize, usize) -> Estimate,
) -> Option<(usize, usize)> {
    let fits = |s: f64| {
        let (sw, sh) = (((w as f64 * s) / 16.0).floor() as usize * 16, ((h as f64 * s) / 16.0).floor() as usize * 16);
        (sw >= 16 && sh >= 16 && cost(sw, sh).bytes <= budget.bytes as f64).then_some((sw, sh))
    };
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    if let Some(r) = fits(1.0) {
        return Some(r);
    }
    for _ in 0..40 {
        let mid = 0.5 * (lo + hi);
        if fits(mid).is_some() { lo = mid } else { hi = mid }
    }
    fits(lo)
}

/// Refuse `est` when it exceeds `budget`. `what` names the job ("encode of 6000x4000"), `advice` what would fit.
pub fn check(what: &str, est: &Estimate, budget: &Budget, advice: impl FnOnce() -> String) -> Result<()> {
    if est.bytes.is_finite() && est.bytes <= budget.bytes as f64 {
        return Ok(());
    }
    Err(EngineError::TooBig {
        what: what.to_string(),
        estimate: human(est.bytes),
        budget: format!("{} ({})", human(budget.bytes as f64), budget.source),
        advice: advice(),
    })
}

/// Preflight of a reconstruct (encode + decode) of a `w x h` image; the refusal names the largest size that fits.
pub fn check_reconstruct(cfg: &SaeConfig, w: usize, h: usize, budget: &Budget) -> Result<Estimate> {
    let cost = |sw: usize, sh: usize| reconstruct(cfg, 1, sh, sw, budget.attention);
    check_image_job(&format!("reconstruct of {w}x{h}"), w, h, budget, cost)
}

/// Preflight of an encode of `w x h`.
pub fn check_encode(cfg: &SaeConfig, batch: usize, w: usize, h: usize, budget: &Budget) -> Result<Estimate> {
    let cost = |sw: usize, sh: usize| encode(cfg, batch, sh, sw, budget.attention);
    check_image_job(&format!("encode of {w}x{h} (batch {batch})"), w, h, budget, cost)
}

/// Check a job on a `w x h` image whose estimate at any size is `cost(w, h)`; a refusal names the largest size of
/// the same aspect that fits.
fn check_image_job(
    what: &str,
    w: usize,
    h: usize,
    budget: &Budget,
    cost: impl Fn(usize, usize) -> Estimate,
) -> Result<Estimate> {
    let est = cost(w, h);
    check(what, &est, budget, || match largest_fitting(w, h, budget, &cost) {
        Some((fw, fh)) => format!(
            "at most {} x {} fits at this model; use the working resolution or a tiled render",
            thousands(fw),
            thousands(fh)
        ),
        None => "nothing fits at this model: raise the budget (DINO_SAE_MEMORY_BUDGET)".into(),
    })?;
    Ok(est)
}

/// Preflight of a decode of a `gw x gh` latent grid.
pub fn check_decode(cfg: &SaeConfig, batch: usize, gh: usize, gw: usize, budget: &Budget) -> Result<Estimate> {
    let est = decode(cfg, batch, gh, gw);
    check(&format!("decode of a {gh}x{gw} latent (batch {batch}, {}x{} px)", gw * 16, gh * 16), &est, budget, || {
        match largest_fitting(gw, gh, budget, |sw, sh| decode(cfg, batch, sh, sw)) {
            Some((fw, fh)) => format!(
                "at most a {}x{} grid fits in one pass at this model; decode big latents with a tiled render",
                fh, fw
            ),
            None => "nothing fits at this model: raise the budget (DINO_SAE_MEMORY_BUDGET)".into(),
        }
    })?;
    Ok(est)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_budgets() {
        assert_eq!(Budget::parse("8GiB").map(|b| b.bytes).ok(), Some(8 << 30));
        assert_eq!(Budget::parse("512 MiB").map(|b| b.bytes).ok(), Some(512 << 20));
        assert_eq!(Budget::parse("2000").map(|b| b.bytes).ok(), Some(2000));
        assert!(Budget::parse("lots").is_err());
        assert!(Budget::parse("-1GiB").is_err());
        assert_eq!(thousands(1904), "1,904");
        assert_eq!(thousands(123), "123");
        assert_eq!(thousands(1234567), "1,234,567");
    }

    /// The budget follows the device: the CPU inference device fuses attention (with the fast paths on), autodiff
    /// never does, and a budget moved to a device that materialises the scores refuses what the CPU's accepts.
    #[test]
    fn the_attention_path_follows_the_device() {
        let cpu = crate::cpu();
        let want = if crate::budget::fast_paths() { Attention::Fused } else { Attention::Materialised };
        assert_eq!(Attention::on(&cpu), want);
        assert_eq!(Budget::bytes(1 << 30).attention, want);
        let ad = cpu.clone().autodiff();
        assert_eq!(Attention::on(&ad), Attention::Materialised);
        let cfg = SaeConfig::small_dinov2();
        // 2048x2048: 16,385 tokens; the plain ops' 6 score matrices are 6.4 GB, the fused path's a few MiB
        let budget = Budget::bytes(4 << 30);
        assert!(check_encode(&cfg, 1, 2048, 2048, &budget.clone().on(&ad)).is_err());
        if want == Attention::Fused {
            assert!(check_encode(&cfg, 1, 2048, 2048, &budget.on(&cpu)).is_ok());
        }
    }

    #[test]
    fn a_camera_photo_is_refused_with_what_fits() {
        let cfg = SaeConfig::small_dinov2();
        let budget = Budget::bytes(4 << 30);
        let err = check_reconstruct(&cfg, 6000, 4000, &budget).expect_err("6000x4000 must not fit in 4 GiB");
        let msg = err.to_string();
        assert!(msg.contains("at most"), "{msg}");
        // 93,755 tokens of 384 floats kept for 12 blocks is 1.7 GB alone; the plain ops' attention scores over them
        // would be 211 GB per matrix with 6 heads
        let attention_scores = 6.0 * 93_755f64 * 93_755.0 * 4.0;
        let e = reconstruct(&cfg, 1, 4000, 6000, budget.attention).bytes;
        assert!(e > 1.7e9 && (budget.attention == Attention::Fused || e > attention_scores), "{e} {msg}");
        let plain = reconstruct(&cfg, 1, 4000, 6000, Attention::Materialised).bytes;
        assert!(plain > attention_scores, "the plain ops' estimate counts the score matrices: {plain}");
        // and the size it names does fit, while 16 px more on each side does not
        let at = budget.attention;
        let (fw, fh) = largest_fitting(6000, 4000, &budget, |w, h| reconstruct(&cfg, 1, h, w, at)).expect("fits");
        assert!(reconstruct(&cfg, 1, fh, fw, at).bytes <= budget.bytes as f64);
        assert!(reconstruct(&cfg, 1, fh + 32, fw + 48, at).bytes > budget.bytes as f64);
        assert!(check_reconstruct(&cfg, 256, 256, &budget).is_ok());
    }
}
