//! Analytic FLOP counts (multiply-add = 2 FLOPs) of the models' matrix products and convolutions, for
//! reporting achieved FLOP/s in benchmarks. Normalisations and element-wise ops are not counted.

use crate::model::decoder::{BlockType, DecoderConfig, EVIT_DIM, UpsampleType};
use crate::model::vit::{Ffn, VitConfig};

/// 2 * (c_in / groups) * k * k * c_out * h_out * w_out
pub fn conv(c_in: usize, c_out: usize, k: usize, groups: usize, h_out: usize, w_out: usize) -> f64 {
    2.0 * (c_in / groups.max(1)) as f64 * (k * k) as f64 * c_out as f64 * (h_out * w_out) as f64
}

/// Encoder forward at `h x w` pixels: stem (or patchify) + blocks.
/// A DINO-SAE's encoder at `h x w` pixels, whatever its patch embedding: the stem sees the image, the resized
/// patchify sees it at `p/16` of its size (the hybrid runs both; the blocks once).
pub fn sae_encoder(cfg: &crate::model::sae::SaeConfig, h: usize, w: usize) -> f64 {
    let v = &cfg.encoder;
    let (sh, sw) = (h / 16 * v.patch_size, w / 16 * v.patch_size);
    match cfg.embed {
        crate::model::sae::EmbedKind::Stem => encoder(v, h, w, true),
        crate::model::sae::EmbedKind::Patchify => encoder(v, sh, sw, false),
        crate::model::sae::EmbedKind::Hybrid => {
            encoder(v, h, w, true) + conv(3, v.dim, v.patch_size, 1, sh / v.patch_size, sw / v.patch_size)
        }
    }
}

pub fn encoder(cfg: &VitConfig, h: usize, w: usize, stem: bool) -> f64 {
    let d = cfg.dim as f64;
    let (gh, gw, mut f) = if stem {
        let w0 = crate::model::stem::STEM_WIDTHS;
        let chans = [3, w0[0], w0[1], w0[2], cfg.dim];
        let ks = [7, 3, 3, 3];
        let mut f = 0.0;
        for i in 0..4 {
            let s = 2usize.pow(i as u32 + 1);
            f += conv(chans[i], chans[i + 1], ks[i], 1, h / s, w / s);
        }
        (h / 16, w / 16, f)
    } else {
        let p = cfg.patch_size;
        (h / p, w / p, conv(3, cfg.dim, p, 1, h / p, w / p))
    };
    let t = (cfg.n_prefix() + gh * gw) as f64;
    let ffn = cfg.ffn_hidden as f64;
    let mlp = match cfg.ffn {
        Ffn::Mlp => 2.0 * 2.0 * t * d * ffn,
        Ffn::Swiglu => 3.0 * 2.0 * t * d * ffn,
    };
    let block = 2.0 * t * d * 3.0 * d + 2.0 * 2.0 * t * t * d + 2.0 * t * d * d + mlp;
    f += block * cfg.depth as f64;
    f
}

/// Decoder forward from an `h x w` latent grid.
pub fn decoder(cfg: &DecoderConfig, h: usize, w: usize) -> f64 {
    let s = cfg.stages();
    let wl = &cfg.width_list;
    let mut f = conv(cfg.latent_channels, wl[s - 1], 3, 1, h, w);
    let (mut ch, mut cw) = (h, w);
    for stage_id in (0..s).rev() {
        let width = wl[stage_id];
        let depth = cfg.depth_list[stage_id];
        if depth == 0 {
            continue;
        }
        if stage_id < s - 1 {
            f += match cfg.upsample_block_type {
                UpsampleType::ConvPixelShuffle => conv(wl[stage_id + 1], 4 * width, 3, 1, ch, cw),
                UpsampleType::InterpolateConv => conv(wl[stage_id + 1], width, 3, 1, 2 * ch, 2 * cw),
            };
            ch *= 2;
            cw *= 2;
        }
        let n = (ch * cw) as f64;
        for _ in 0..depth {
            f += match cfg.block_of(stage_id) {
                BlockType::ResBlock => 2.0 * conv(width, width, 3, 1, ch, cw),
                BlockType::EvitGlu => {
                    let heads = width / EVIT_DIM;
                    let td = heads * EVIT_DIM;
                    let dim = EVIT_DIM as f64;
                    let attn = if ch * cw > EVIT_DIM {
                        heads as f64 * 2.0 * 2.0 * (dim + 1.0) * dim * n
                    } else {
                        heads as f64 * 2.0 * 2.0 * n * n * dim
                    };
                    let mid = 4 * width;
                    conv(width, 3 * td, 1, 1, ch, cw)
                        + attn
                        + conv(td, width, 1, 1, ch, cw)
                        + conv(width, 2 * mid, 1, 1, ch, cw)
                        + conv(2 * mid, 2 * mid, 3, 2 * mid, ch, cw)
                        + conv(mid, width, 1, 1, ch, cw)
                }
            };
        }
    }
    let c_out = if cfg.depth_list[0] > 0 { wl[0] } else { wl[1] };
    f += if cfg.depth_list[0] > 0 {
        conv(c_out, cfg.in_channels, 3, 1, ch, cw)
    } else {
        match cfg.upsample_block_type {
            UpsampleType::ConvPixelShuffle => conv(c_out, 4 * cfg.in_channels, 3, 1, ch, cw),
            UpsampleType::InterpolateConv => conv(c_out, cfg.in_channels, 3, 1, 2 * ch, 2 * cw),
        }
    };
    f
}

/// Peak resident memory of this process (VmHWM), MiB; None where /proc is unavailable.
pub fn peak_rss_mb() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// One DiT forward (batch 1, no CFG) on an `h x w` latent grid: token embedding, the blocks' attention and FFN
/// products, adaLN modulation, the final layer; a DDT head's blocks when present.
pub fn dit_step(cfg: &crate::model::dit::DitConfig, h: usize, w: usize) -> f64 {
    use crate::model::dit::ffn_hidden;
    let p = cfg.patch_size.max(1);
    let t = ((h / p) * (w / p)) as f64;
    let block = |d: usize, ratio: f64| {
        let df = d as f64;
        let f = ffn_hidden(d, ratio, cfg.use_swiglu) as f64;
        let ffn = if cfg.use_swiglu { 3.0 * 2.0 * t * df * f } else { 2.0 * 2.0 * t * df * f };
        2.0 * t * df * 3.0 * df + 2.0 * 2.0 * t * t * df + 2.0 * t * df * df + ffn + 2.0 * df * 6.0 * df
    };
    let d = cfg.hidden_size;
    let c_in = (cfg.in_channels * p * p) as f64;
    let mut f = 2.0 * t * c_in * d as f64 + block(d, cfg.mlp_ratio) * cfg.depth as f64;
    let last = match &cfg.head {
        Some(hc) => {
            f += 2.0 * t * d as f64 * hc.hidden_size as f64 + block(hc.hidden_size, cfg.mlp_ratio) * hc.depth as f64;
            hc.hidden_size
        }
        None => d,
    };
    f + 2.0 * t * last as f64 * c_in
}

/// One preview-decoder forward ([`crate::model::preview`]) from an `h x w` latent grid: every convolution at its
/// nominal size (the nearest-x2 + 3x3 upsampling counted at the output resolution, as in [`decoder`]).
pub fn preview(cfg: &crate::model::preview::PreviewConfig, h: usize, w: usize) -> f64 {
    use crate::model::preview::PreviewArch;
    let s = cfg.shuffle();
    match cfg.arch {
        PreviewArch::Linear => conv(cfg.latent_channels, 3 * s * s, 1, 1, h, w),
        PreviewArch::Conv => {
            let wl = &cfg.widths;
            let mut f = conv(cfg.latent_channels, wl[0], 1, 1, h, w);
            let (mut ch, mut cw) = (h, w);
            for i in 0..wl.len() {
                if i > 0 {
                    ch *= 2;
                    cw *= 2;
                    f += conv(wl[i - 1], wl[i], 3, 1, ch, cw);
                }
                f += cfg.depths[i] as f64 * conv(wl[i], wl[i], 3, 1, ch, cw);
            }
            f + conv(wl[wl.len() - 1], 3 * s * s, 3, 1, ch, cw)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vit_s16_at_224_is_about_9_gflops() {
        // ViT-S/16 at 224 is commonly quoted as 4.6 GMACs = 9.2 GFLOPs (197 tokens); ours has 4 registers more.
        let mut cfg = crate::model::dinov3::preset("dinov3_vits16").expect("preset");
        cfg.registers = 0;
        let f = encoder(&cfg, 224, 224, false);
        assert!((f / 1e9 - 9.2).abs() < 0.3, "{}", f / 1e9);
    }

    #[test]
    fn conv_count_matches_hand_count() {
        // 3x3 conv 64->128 on 32x32 output: 2*64*9*128*1024
        assert_eq!(conv(64, 128, 3, 1, 32, 32), 2.0 * 64.0 * 9.0 * 128.0 * 1024.0);
        // depthwise: groups = channels
        assert_eq!(conv(8, 8, 3, 8, 4, 4), 2.0 * 9.0 * 8.0 * 16.0);
    }
}
