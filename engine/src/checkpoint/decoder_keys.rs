//! The DC-AE decoder's configuration from an official `DCAE_Decoder` state dict (keys and shapes alone), or from
//! the official `config.json` beside the weights (`decoder_config`).
//!
//! What the keys fix and what they cannot:
//! - A stage of depth 0 leaves no keys (not even an upsample block), so `stages.k` indices can have gaps and the
//!   deepest (`stages.0`) or shallowest stage can be missing. The stage count is `max k + 1`, plus one when
//!   project_out upsamples (an empty stage 0); an empty stage gets the width flowing through it. Any config with
//!   more empty stages builds the same ops, so it decodes identically.
//! - project_in: `project_in.main.conv` (with a shortcut: duplicating, or `project_in.shortcut.*` for
//!   InterpolateConv) or `project_in.conv` (`in_shortcut: null`).
//! - upsample blocks: `op_list.0.main.conv.conv` (+ `op_list.0.shortcut.conv.conv` for an InterpolateConv
//!   shortcut; none for duplicating) or `op_list.0.conv.conv` (no shortcut); ConvPixelShuffle when the conv writes
//!   4x the block width, InterpolateConv when it writes the block width.
//! - project_out: the conv's `op_list` index counts the norm and activation present (null ones leave no op);
//!   `.conv.conv` means it upsamples (stage 0 empty). Norms: RMSNorm2d (`[1, C, 1, 1]`), BatchNorm2d
//!   (`running_mean`), efficientvit LayerNorm2d (EViT blocks only).
//! - Not in the keys: activations (taken as the official defaults, silu / relu, unless `config.json` says
//!   otherwise) and `upsample_match_channel` (false only builds when the widths it touches are equal, where true
//!   builds the same ops).

use std::collections::BTreeSet;

use serde_json::Value;

use crate::error::{EngineError, Result};
use crate::model::decoder::{BlockType, DecoderConfig, SHORTCUT_DUPLICATING, SHORTCUT_INTERPOLATE, UpsampleType};
use crate::tensor_file::{RawTensor, TensorMap};

fn err(m: String) -> EngineError {
    EngineError::Checkpoint(format!("decoder: {m}"))
}

/// The decoder config to load `t` (keys under `prefix`, e.g. `decoder.`) with: the official `config.json`'s
/// `decoder_config` when `config` holds one, else inferred from the keys.
pub fn decoder_config(config: Option<&Value>, t: &TensorMap, prefix: &str) -> Result<DecoderConfig> {
    if let Some(dc) = config.and_then(|c| c.get("decoder_config")) {
        let cfg: DecoderConfig = serde_json::from_value(dc.clone())
            .map_err(|e| EngineError::Config(format!("config.json: decoder_config: {e}")))?;
        cfg.validate()?;
        return Ok(cfg);
    }
    guess_decoder(t, prefix)
}

/// The conv weight `{prefix}{k}` if present (an error if present with a rank other than 4).
fn conv_at<'a>(t: &'a TensorMap, prefix: &str, k: &str) -> Result<Option<&'a RawTensor>> {
    match t.get(&format!("{prefix}{k}")) {
        Some(w) if w.shape.len() != 4 => {
            Err(err(format!("{prefix}{k} has shape {:?}, expected a conv weight", w.shape)))
        }
        w => Ok(w),
    }
}

/// Infer the DC-AE decoder config from official `DCAE_Decoder` keys under `prefix` (`""` or `"decoder."`).
pub fn guess_decoder(t: &TensorMap, prefix: &str) -> Result<DecoderConfig> {
    let get = |k: &str| t.get(&format!("{prefix}{k}"));
    let has_under = |p: &str| {
        let full = format!("{prefix}{p}");
        t.keys().any(|n| n.starts_with(&full))
    };
    let conv = |k: &str| conv_at(t, prefix, k);

    // project_in
    let (pin, in_shortcut) = if let Some(w) = conv("project_in.main.conv.weight")? {
        let sc = if has_under("project_in.shortcut.") { SHORTCUT_INTERPOLATE } else { SHORTCUT_DUPLICATING };
        (w, Some(sc.to_string()))
    } else if let Some(w) = conv("project_in.conv.weight")? {
        (w, None)
    } else {
        return Err(err(format!("no {prefix}project_in")));
    };
    let latent = pin.shape[1];
    let mut c = pin.shape[0];

    // project_out: OpSequential([norm?, act?, conv | upsample])
    let mut out: Option<(usize, bool, &RawTensor)> = None;
    for n in 0..3 {
        if let Some(w) = conv(&format!("project_out.op_list.{n}.conv.conv.weight"))? {
            out = Some((n, true, w));
            break;
        }
        if let Some(w) = conv(&format!("project_out.op_list.{n}.conv.weight"))? {
            out = Some((n, false, w));
            break;
        }
    }
    let (out_idx, out_up, out_w) = out.ok_or_else(|| err(format!("no {prefix}project_out conv")))?;
    let out_norm = if get("project_out.op_list.0.running_mean").is_some() {
        Some("bn2d")
    } else if out_idx > 0 && get("project_out.op_list.0.weight").is_some() {
        Some("trms2d")
    } else {
        None
    };
    let out_act = (out_idx > usize::from(out_norm.is_some())).then_some("relu");

    // stages present in the keys
    let stage_prefix = format!("{prefix}stages.");
    let present: BTreeSet<usize> = t
        .keys()
        .filter_map(|k| k.strip_prefix(&stage_prefix))
        .filter_map(|rest| rest.split('.').next().and_then(|i| i.parse().ok()))
        .collect();
    let n_stages = match (present.last(), out_up) {
        (Some(&m), false) => m + 1,
        (Some(&m), true) => m + 2,
        (None, true) => 2,
        (None, false) => {
            return Err(err("no stages, and project_out does not upsample (stage 0 must then have blocks)".into()));
        }
    };

    let mut width = vec![0; n_stages];
    let mut depth = vec![0; n_stages];
    let mut blocks = vec![BlockType::ResBlock; n_stages];
    let mut norms: Vec<Option<String>> = vec![Some("trms2d".into()); n_stages];
    let mut up_type: Option<UpsampleType> = None;
    let mut up_shortcut: Option<Option<String>> = None;
    for k in 0..n_stages {
        let sid = n_stages - 1 - k;
        if !present.contains(&k) {
            // empty stage: the channels flow through unchanged
            width[sid] = c;
            continue;
        }
        let op = |j: usize, rest: &str| format!("stages.{k}.op_list.{j}.{rest}");
        let ops: BTreeSet<usize> = t
            .keys()
            .filter_map(|n| n.strip_prefix(&format!("{prefix}stages.{k}.op_list.")))
            .filter_map(|rest| rest.split('.').next().and_then(|i| i.parse().ok()))
            .collect();
        let n_ops = ops.last().map_or(0, |m| m + 1);
        if ops.len() != n_ops {
            return Err(err(format!("stages.{k}: op_list indices {ops:?} have gaps")));
        }
        // the upsample block, first op of every non-empty stage but the deepest
        let (up, shortcut) = if let Some(w) = conv(&op(0, "main.conv.conv.weight"))? {
            let sc = if has_under(&op(0, "shortcut.")) { SHORTCUT_INTERPOLATE } else { SHORTCUT_DUPLICATING };
            (Some(w), Some(sc.to_string()))
        } else if let Some(w) = conv(&op(0, "conv.conv.weight"))? {
            (Some(w), None)
        } else {
            (None, None)
        };
        match (k, up.is_some()) {
            (0, true) => return Err(err("stages.0 (the deepest stage) has an upsample block".into())),
            (k, false) if k > 0 => {
                return Err(err(format!(
                    "stages.{k} has blocks but no upsample block (op_list.0.main.conv / op_list.0.conv)"
                )));
            }
            _ => {}
        }
        let j0 = usize::from(up.is_some());
        depth[sid] = n_ops - j0;
        if depth[sid] == 0 {
            return Err(err(format!(
                "stages.{k} has an upsample block and no blocks (the official builder cannot make this)"
            )));
        }
        let mut kind: Option<BlockType> = None;
        for j in j0..n_ops {
            let (bk, w) = if let Some(w) = conv(&op(j, "main.conv1.conv.weight"))? {
                (BlockType::ResBlock, w.shape[0])
            } else if let Some(w) = conv(&op(j, "context_module.main.qkv.conv.weight"))? {
                (BlockType::EvitGlu, w.shape[1])
            } else if let Some(w) = conv(&op(j, "main.conv2.conv.weight"))? {
                (BlockType::ResBlock, w.shape[0])
            } else {
                return Err(err(format!("stages.{k}.op_list.{j}: neither a ResBlock nor an EViT_GLU block")));
            };
            if kind.is_some_and(|b| b != bk) || (j > j0 && w != width[sid]) {
                return Err(err(format!("stages.{k}: blocks of different types or widths in one stage")));
            }
            kind = Some(bk);
            width[sid] = w;
        }
        blocks[sid] = kind.unwrap_or(BlockType::ResBlock);
        norms[sid] = match blocks[sid] {
            BlockType::ResBlock => {
                if get(&op(j0, "main.conv2.norm.running_mean")).is_some() {
                    Some("bn2d".into())
                } else if get(&op(j0, "main.conv2.norm.weight")).is_some() {
                    Some("trms2d".into())
                } else {
                    None
                }
            }
            BlockType::EvitGlu => {
                if get(&op(j0, "context_module.main.proj.norm.running_mean")).is_some() {
                    Some("bn2d".into())
                } else if get(&op(j0, "context_module.main.proj.norm.weight")).is_some() {
                    Some("ln2d".into())
                } else {
                    // trms2d reaches the EViT block as a module instance: no norm (official quirk)
                    Some("trms2d".into())
                }
            }
        };
        if let Some(w) = up {
            let rows = w.shape[0];
            let ty = if rows == 4 * width[sid] {
                UpsampleType::ConvPixelShuffle
            } else if rows == width[sid] {
                UpsampleType::InterpolateConv
            } else {
                return Err(err(format!(
                    "stages.{k}: upsample conv writes {rows} channels for blocks of width {}",
                    width[sid]
                )));
            };
            if up_type.is_some_and(|u| u != ty) || up_shortcut.as_ref().is_some_and(|s| *s != shortcut) {
                return Err(err("upsample blocks of different types or shortcuts (one setting for all stages)".into()));
            }
            up_type = Some(ty);
            up_shortcut = Some(shortcut);
        }
        c = width[sid];
    }

    // project_out's image channels, and its upsample type when no stage shows one
    let rows = out_w.shape[0];
    let (in_channels, up_type) = if out_up {
        // no stage shows the type: ConvPixelShuffle writes 4 rows per image channel, InterpolateConv one; take
        // the reading that gives RGB, then RGBA, then grey, then ConvPixelShuffle (the official default)
        let reading = |ch: usize| {
            if rows % 4 == 0 && rows / 4 == ch {
                Some(UpsampleType::ConvPixelShuffle)
            } else {
                (rows == ch).then_some(UpsampleType::InterpolateConv)
            }
        };
        let fallback = if rows % 4 == 0 { UpsampleType::ConvPixelShuffle } else { UpsampleType::InterpolateConv };
        let ty = up_type.unwrap_or_else(|| [3, 4, 1].into_iter().find_map(reading).unwrap_or(fallback));
        (if ty == UpsampleType::ConvPixelShuffle { rows / 4 } else { rows }, ty)
    } else {
        (rows, up_type.unwrap_or(UpsampleType::ConvPixelShuffle))
    };
    if out_up {
        // stage 0 is empty and unused (project_out reads width_list[1])
        width[0] = width[1];
    }
    let collapse = |v: Vec<Option<String>>| {
        if v.iter().all(|x| *x == v[0]) { vec![v[0].clone()] } else { v }
    };
    let all_same = blocks.iter().all(|b| *b == blocks[0]);
    let cfg = DecoderConfig {
        in_channels,
        latent_channels: latent,
        width_list: width,
        depth_list: depth,
        block_type: if all_same { vec![blocks[0]] } else { blocks },
        norm: collapse(norms),
        act: vec![Some("silu".into())],
        upsample_block_type: up_type,
        upsample_shortcut: up_shortcut.unwrap_or(Some(SHORTCUT_DUPLICATING.into())),
        in_shortcut,
        upsample_match_channel: true,
        out_norm: out_norm.map(str::to_string),
        out_act: out_act.map(str::to_string),
    };
    cfg.validate()?;
    Ok(cfg)
}
