#!/usr/bin/env python3
"""PyTorch reference benchmark for the DINO-SAE engine (developer tool, NOT run by CI).

It builds the engine's models again in plain PyTorch, written from the engine's own maths
(engine/src/model/*.rs, sampler.rs), with the same weights and the same key names:

- ``default``: ``assets/default-model`` (DINOv2-S/14 blocks behind the hierarchical conv stem, learned
  37x37 position table interpolated bicubically to the token grid, the small DC-AE decoder) and its
  tiny LightningDiT in ``assets/default-model/dit`` (Riemannian flow matching on spheres).
- ``small`` / ``released``: ``SaeConfig::small_dinov2()`` / ``SaeConfig::released()`` (DINOv3 ViT-L/16 with
  axial RoPE and 4 registers + the released decoder) with random weights of the same shapes, for timing.

Then it

1. checks numerical parity against the engine binary (``--parity``, default preset only):
   a. ``dino-sae encode``: the engine's latent and CLS vs ours on the same PNG (checked here);
   b. ``dino-sae decode`` of OUR latent: the engine's 8-bit PNG vs our decoder output quantised the same way;
   c. ``dino-sae verify-fixture``: we write a fixture folder (our inputs, intermediates and outputs of the
      SAE and of one DiT forward) and the engine compares itself to it in float32; we pass at
      ``max|engine - torch| <= 1e-3 * max(1, max|torch|)`` and also print the engine's stricter 1e-4 verdict;
   d. ``dino-sae sample`` (25 steps, seed 0, class 0): we regenerate the engine's seeded host noise
      (rand 0.9 ``StdRng`` = ChaCha12 seeded through PCG32, Box-Muller as ``rfm::gaussian``), run the same
      Euler + projection sampler and decode, and compare the 8-bit PNGs.
2. times the same calls as ``dino-sae bench`` (``encode_<size>_<preset>``, ``decode_<size>_<preset>``, and with
   the generator ``dit_step_<px>_<preset>`` / ``sample25_<px>_<preset>`` at its training grid and at size/16):
   one warm-up, then ``--repeats`` timed runs; median / p10 / p90
   (the engine's quantile rule), peak RSS, and FLOPs as ``torch.utils.flop_counter`` counts them
   (matmuls, convolutions, attention; multiply-add = 2, the engine's convention).
3. prints ``engine ms | pytorch ms | engine/pytorch`` per call, from ``--engine-json FILE`` (the output of
   ``dino-sae bench --json``) or ``--run-engine``.

Examples (from the repository root)::

    python3 scripts/bench_pytorch.py --preset default --parity --run-engine
    python3 scripts/bench_pytorch.py --preset released --repeats 2 --engine-json released.jsonl --json

Timing caveat: on a small machine, keep it otherwise idle. With another busy process, torch's OpenMP workers
(``--threads`` >= the free cores) spin-wait and can slow down 10-100x; use ``--threads 1`` then (it also sets
RAYON_NUM_THREADS=1 for ``--run-engine``).

Needs: torch, numpy, safetensors (Pillow is optional; PNGs are read with a small built-in decoder).
Nothing here is copied from the reference repositories; it follows the engine's Rust code.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

REPO = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = REPO / "assets" / "default-model"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Tolerances of the parity checks done here (the engine's own verify-fixture uses 1e-4 * max(1, max|ref|)).
TOL_REL = 1e-3  # max|engine - torch| / max|torch| for float tensors
TOL_U8 = 2  # 8-bit levels for PNG outputs (rounding at a .5 boundary flips one level)

Tensors = dict[str, torch.Tensor]


# ---------------------------------------------------------------------------------------------------
# Configurations (mirrors of engine::model::sae::SaeConfig presets; the default model reads config.json)


def vit_preset(name: str) -> dict:
    """DINOv2 (`dinov2.rs`) and DINOv3 (`dinov3.rs`) presets used here."""
    if name == "dinov2_vits14":
        return dict(family="dinov2", dim=384, depth=12, heads=6, ffn="mlp", ffn_hidden=1536, registers=0,
                    patch_size=14, layer_norm_eps=1e-6, layerscale=True, qkv_bias=True, rope_base=100.0,
                    pos_grid=37, pos_antialias=False, pos_offset=0.0)
    if name == "dinov3_vitl16":
        return dict(family="dinov3", dim=1024, depth=24, heads=16, ffn="mlp", ffn_hidden=4096, registers=4,
                    patch_size=16, layer_norm_eps=1e-5, layerscale=True, qkv_bias=True, rope_base=100.0,
                    pos_grid=0, pos_antialias=False, pos_offset=0.0)
    raise ValueError(name)


def decoder_preset(c: int, widths: list[int], depths: list[int]) -> dict:
    return dict(in_channels=3, latent_channels=c, width_list=widths, depth_list=depths,
                block_type=["ResBlock", "ResBlock", "ResBlock", "EViT_GLU", "EViT_GLU"],
                upsample_block_type="InterpolateConv", upsample_shortcut="duplicating",
                in_shortcut="duplicating")


def sae_config(preset: str) -> dict:
    """`{"encoder": ..., "decoder": ...}` as in the engine's config.json."""
    if preset == "default":
        return json.loads((DEFAULT_MODEL / "config.json").read_text())["sae"]
    if preset == "small":
        return dict(encoder=vit_preset("dinov2_vits14"), decoder=decoder_preset(384, [24, 48, 96, 192, 384], [0, 1, 2, 2, 2]))
    if preset == "released":
        return dict(encoder=vit_preset("dinov3_vitl16"),
                    decoder=decoder_preset(1024, [256, 512, 512, 1024, 1024], [5, 5, 3, 3, 3]))
    raise SystemExit(f"unknown preset {preset} (default, small, released)")


def block_of(dcfg: dict, stage_id: int) -> str:
    bt = dcfg["block_type"]
    return bt if isinstance(bt, str) else (bt[0] if len(bt) == 1 else bt[stage_id])


# ---------------------------------------------------------------------------------------------------
# Parameter tables: every key, its shape and the engine's random init (weights.rs `Init`)

EVIT_DIM = 32  # LiteMLA head dim; H*W <= 32 takes the quadratic branch
EVIT_EPS = 1e-15
RMS2D_EPS = 1e-6


def vit_params(cfg: dict, p: str) -> dict:
    """Keys of `Vit::load(ws, p, cfg, stem=true)`: shape and init (`("fanin", n)`, `("normal", std)`, ...)."""
    d, f = cfg["dim"], cfg["ffn_hidden"]
    t = {}
    chans, ks = [3, 64, 128, 256, d], [7, 3, 3, 3]
    for i in range(4):
        t[f"{p}.patch_embed.cnn.{i}.conv.weight"] = ([chans[i + 1], chans[i], ks[i], ks[i]], ("fanin", chans[i] * ks[i] ** 2))
        if i < 3:
            t[f"{p}.patch_embed.cnn.{i}.norm.weight"] = ([1, chans[i + 1], 1, 1], ("const", 1.0))
    t[f"{p}.cls_token"] = ([1, 1, d], ("normal", 0.02))
    if cfg["registers"] > 0:
        t[f"{p}.storage_tokens"] = ([1, cfg["registers"], d], ("normal", 0.02))
    if cfg["family"] == "dinov2":
        m = cfg["pos_grid"]
        t[f"{p}.pos_embed"] = ([1, 1 + m * m, d], ("normal", 0.02))

    def lin(k, i, o, bias=True):
        t[f"{k}.weight"] = ([o, i], ("fanin", i))
        if bias:
            t[f"{k}.bias"] = ([o], ("const", 0.0))

    def ln(k):
        t[f"{k}.weight"] = ([d], ("const", 1.0))
        t[f"{k}.bias"] = ([d], ("const", 0.0))

    for i in range(cfg["depth"]):
        b = f"{p}.blocks.{i}"
        ln(f"{b}.norm1")
        lin(f"{b}.attn.qkv", d, 3 * d, cfg["qkv_bias"])
        lin(f"{b}.attn.proj", d, d)
        ln(f"{b}.norm2")
        if cfg["ffn"] == "mlp":
            lin(f"{b}.mlp.fc1", d, f)
            lin(f"{b}.mlp.fc2", f, d)
        else:
            lin(f"{b}.mlp.w1", d, f)
            lin(f"{b}.mlp.w2", d, f)
            lin(f"{b}.mlp.w3", f, d)
        if cfg["layerscale"]:
            t[f"{b}.ls1.gamma"] = ([d], ("const", 1e-5))
            t[f"{b}.ls2.gamma"] = ([d], ("const", 1e-5))
    ln(f"{p}.norm")
    return t


def decoder_params(dc: dict, p: str) -> dict:
    """Keys of `Decoder::load(ws, p, cfg)` (official DCAE_Decoder names)."""
    t = {}

    def conv(k, ci, co, ksz, groups=1, bias=True):
        t[f"{k}.weight"] = ([co, ci // groups, ksz, ksz], ("fanin", ci // groups * ksz * ksz))
        if bias:
            t[f"{k}.bias"] = ([co], ("const", 0.0))

    wl, dl, s, c = dc["width_list"], dc["depth_list"], len(dc["width_list"]), dc["latent_channels"]
    conv(f"{p}.project_in.main.conv", c, wl[s - 1], 3)
    for ki, stage_id in enumerate(reversed(range(s))):
        width, depth, j = wl[stage_id], dl[stage_id], 0
        if stage_id < s - 1 and depth > 0:
            conv(f"{p}.stages.{ki}.op_list.0.main.conv.conv", wl[stage_id + 1], width, 3)
            j = 1
        for _ in range(depth):
            q = f"{p}.stages.{ki}.op_list.{j}"
            if block_of(dc, stage_id) == "ResBlock":
                conv(f"{q}.main.conv1.conv", width, width, 3)
                conv(f"{q}.main.conv2.conv", width, width, 3, bias=False)
                t[f"{q}.main.conv2.norm.weight"] = ([1, width, 1, 1], ("const", 1.0))
            else:
                td, mid = (width // EVIT_DIM) * EVIT_DIM, 4 * width
                conv(f"{q}.context_module.main.qkv.conv", width, 3 * td, 1, bias=False)
                conv(f"{q}.context_module.main.proj.conv", td, width, 1, bias=False)
                conv(f"{q}.local_module.main.inverted_conv.conv", width, 2 * mid, 1)
                conv(f"{q}.local_module.main.depth_conv.conv", 2 * mid, 2 * mid, 3, groups=2 * mid)
                conv(f"{q}.local_module.main.point_conv.conv", mid, width, 1, bias=False)
            j += 1
    c_out = wl[0] if dl[0] > 0 else wl[1]
    t[f"{p}.project_out.op_list.0.weight"] = ([1, c_out, 1, 1], ("const", 1.0))
    if dl[0] > 0:
        conv(f"{p}.project_out.op_list.2.conv", c_out, dc["in_channels"], 3)
    else:
        conv(f"{p}.project_out.op_list.2.conv.conv", c_out, dc["in_channels"], 3)
    return t


def sae_params(cfg: dict) -> dict:
    return {**vit_params(cfg["encoder"], "dino_model"), **decoder_params(cfg["decoder"], "decoder")}


def random_weights(table: dict, seed: int = 0) -> Tensors:
    """Random weights with the engine's init rules (values differ: the engine draws with its own RNG)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, (shape, (kind, a)) in table.items():
        if kind == "fanin":
            b = 1.0 / math.sqrt(max(a, 1))
            out[k] = (torch.rand(shape, generator=g) * 2 - 1) * b
        elif kind == "normal":
            out[k] = torch.randn(shape, generator=g) * a
        else:
            out[k] = torch.full(shape, float(a))
    return out


def load_checked(path: Path, table: dict | None) -> Tensors:
    """Load a safetensors file as float32 and check it holds exactly the keys and shapes of `table`."""
    w = {k: v.float().contiguous() for k, v in load_file(str(path)).items()}
    if table is not None:
        missing = [k for k in table if k not in w]
        extra = [k for k in w if k not in table]
        bad = [k for k in table if k in w and list(w[k].shape) != table[k][0]]
        if missing or extra or bad:
            raise SystemExit(f"{path}: key table mismatch: missing {missing[:5]}, unexpected {extra[:5]}, shapes {bad[:5]}")
    return w


# ---------------------------------------------------------------------------------------------------
# Building blocks (functional, weights looked up by their checkpoint key)


def conv2d(w: Tensors, key: str, x: torch.Tensor, stride: int = 1, groups: int = 1) -> torch.Tensor:
    """Square-kernel conv, padding (k-1)/2, optional bias.

    # Shapes
    - x: `[B, C_in, H, W]` -> `[B, C_out, H/stride, W/stride]`
    """
    k = w[f"{key}.weight"]
    return F.conv2d(x, k, w.get(f"{key}.bias"), stride=stride, padding=(k.shape[-1] - 1) // 2, groups=groups)


def rms_norm2d(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """DINO-SAE's RMSNorm2d: ONE rms per sample over (C, H, W), weight (1, C, 1, 1), eps 1e-6.

    # Shapes
    - x: `[B, C, H, W]` -> same
    """
    ms = x.square().mean(dim=(1, 2, 3), keepdim=True)
    return x * torch.rsqrt(ms + RMS2D_EPS) * weight


def nearest_up2(x: torch.Tensor) -> torch.Tensor:
    """# Shapes
    - x: `[B, C, H, W]` -> `[B, C, 2H, 2W]`
    """
    return F.interpolate(x, scale_factor=2, mode="nearest")


def dup_shortcut(x: torch.Tensor, c_out: int, factor: int) -> torch.Tensor:
    """DC-AE "duplicating" shortcut: repeat_interleave channels, then pixel_shuffle(factor).

    # Shapes
    - x: `[B, C_in, H, W]` -> `[B, c_out, factor*H, factor*W]`
    """
    r = c_out * factor * factor // x.shape[1]
    y = x.repeat_interleave(r, dim=1) if r > 1 else x
    return F.pixel_shuffle(y, factor) if factor > 1 else y


# ---------------------------------------------------------------------------------------------------
# Encoder: hierarchical conv stem + DINOv2 / DINOv3 blocks


def stem_forward(w: Tensors, p: str, x: torch.Tensor, probe: Tensors | None = None) -> torch.Tensor:
    """HCPE: 4 bias-free stride-2 convs (k7, k3, k3, k3); RMSNorm2d + SiLU after the first three.

    # Shapes
    - x: `[B, 3, H, W]` -> `[B, D, H/16, W/16]`
    """
    for i in range(4):
        x = conv2d(w, f"{p}.cnn.{i}.conv", x, stride=2)
        if i < 3:
            x = F.silu(rms_norm2d(x, w[f"{p}.cnn.{i}.norm.weight"]))
        if probe is not None:
            probe[f"stem.cnn.{i}_out"] = x
    return x


def pos_table_for_grid(table: torch.Tensor, cfg: dict, h: int, w: int) -> torch.Tensor:
    """DINOv2 learned positions for an h x w grid (HF semantics: bicubic, align_corners False).

    # Shapes
    - table: `[1, 1 + M*M, D]` -> `[1, 1 + h*w, D]`
    """
    m = cfg["pos_grid"]
    if h == m and w == m:
        return table
    d = table.shape[2]
    grid = table[:, 1:].reshape(1, m, m, d).permute(0, 3, 1, 2)
    if cfg.get("pos_offset", 0.0):
        off = cfg["pos_offset"]  # official torch.hub variant: scale_factor (g + offset) / M
        g = F.interpolate(grid, scale_factor=((h + off) / m, (w + off) / m), mode="bicubic", align_corners=False)
        assert g.shape[-2:] == (h, w), "offset interpolation gave an unexpected grid"
    else:
        g = F.interpolate(grid, size=(h, w), mode="bicubic", align_corners=False, antialias=cfg["pos_antialias"])
    return torch.cat([table[:, :1], g.flatten(2).transpose(1, 2)], dim=1)


def dinov3_rope(head_dim: int, base: float, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Axial RoPE tables: periods base^(4j/Dh), coordinates 2((i+0.5)/h)-1, columns [y.., x.., y.., x..].

    # Shapes
    - returns sin, cos: `[h*w, Dh]`
    """
    q = head_dim // 4
    periods = base ** (4.0 * torch.arange(q, dtype=torch.float64) / head_dim)
    cy = 2.0 * (torch.arange(h, dtype=torch.float64) + 0.5) / h - 1.0
    cx = 2.0 * (torch.arange(w, dtype=torch.float64) + 0.5) / w - 1.0
    ay = 2 * math.pi * cy[:, None] / periods[None]  # [h, q]
    ax = 2 * math.pi * cx[:, None] / periods[None]  # [w, q]
    ang = torch.cat([ay[:, None, :].expand(h, w, q), ax[None, :, :].expand(h, w, q)], dim=-1).reshape(h * w, 2 * q)
    ang = torch.cat([ang, ang], dim=-1)
    return ang.sin().float(), ang.cos().float()


def rope_rotate(x: torch.Tensor, sin: torch.Tensor, cos: torch.Tensor, n_prefix: int) -> torch.Tensor:
    """Rotate tokens n_prefix.. of q or k: x cos + rotate_half(x) sin, rotate_half = cat(-x2, x1).

    # Shapes
    - x: `[B, H, T, Dh]` -> same
    """
    pre, p = x[:, :, :n_prefix], x[:, :, n_prefix:]
    x1, x2 = p.chunk(2, dim=-1)
    return torch.cat([pre, p * cos + torch.cat([-x2, x1], dim=-1) * sin], dim=2)


def vit_block(w: Tensors, b: str, cfg: dict, x: torch.Tensor, rope, n_prefix: int) -> torch.Tensor:
    """Pre-norm block: x + ls1 * attn(norm1 x), then x + ls2 * ffn(norm2 x).

    # Shapes
    - x: `[B, T, D]` -> `[B, T, D]`
    """
    bsz, t, d = x.shape
    h, eps = cfg["heads"], cfg["layer_norm_eps"]
    n1 = F.layer_norm(x, (d,), w[f"{b}.norm1.weight"], w[f"{b}.norm1.bias"], eps)
    qkv = F.linear(n1, w[f"{b}.attn.qkv.weight"], w.get(f"{b}.attn.qkv.bias"))
    q, k, v = qkv.reshape(bsz, t, 3, h, d // h).permute(2, 0, 3, 1, 4).unbind(0)
    if rope is not None:
        q, k = rope_rotate(q, *rope, n_prefix), rope_rotate(k, *rope, n_prefix)
    a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(bsz, t, d)
    o = F.linear(a, w[f"{b}.attn.proj.weight"], w[f"{b}.attn.proj.bias"])
    if cfg["layerscale"]:
        o = o * w[f"{b}.ls1.gamma"]
    x = x + o
    n2 = F.layer_norm(x, (d,), w[f"{b}.norm2.weight"], w[f"{b}.norm2.bias"], eps)
    if cfg["ffn"] == "mlp":
        m = F.linear(F.gelu(F.linear(n2, w[f"{b}.mlp.fc1.weight"], w[f"{b}.mlp.fc1.bias"])),
                     w[f"{b}.mlp.fc2.weight"], w[f"{b}.mlp.fc2.bias"])
    else:
        g = F.silu(F.linear(n2, w[f"{b}.mlp.w1.weight"], w[f"{b}.mlp.w1.bias"])) * \
            F.linear(n2, w[f"{b}.mlp.w2.weight"], w[f"{b}.mlp.w2.bias"])
        m = F.linear(g, w[f"{b}.mlp.w3.weight"], w[f"{b}.mlp.w3.bias"])
    if cfg["layerscale"]:
        m = m * w[f"{b}.ls2.gamma"]
    return x + m


def encode(w: Tensors, cfg: dict, x: torch.Tensor, probe: Tensors | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """`DinoSae::encode`: stem -> [CLS, registers, patches(+pos)] -> blocks -> final LayerNorm.

    # Shapes
    - x: `[B, 3, H, W]` normalised pixels -> latent `[B, C, H/16, W/16]` (normed patch tokens), CLS `[B, C]`
    """
    p, ec = "dino_model", cfg["encoder"]
    pe = stem_forward(w, f"{p}.patch_embed", x, probe)
    bsz, d, gh, gw = pe.shape
    patches = pe.flatten(2).transpose(1, 2)
    if probe is not None:
        probe["patch_embed_out"] = patches
    cls = w[f"{p}.cls_token"].expand(bsz, -1, -1)
    if ec["family"] == "dinov2":
        table = pos_table_for_grid(w[f"{p}.pos_embed"], ec, gh, gw)
        cls, patches = cls + table[:, :1], patches + table[:, 1:]
        if probe is not None:
            probe["pos_embed_interp"] = table
    parts = [cls]
    if ec["registers"] > 0:
        parts.append(w[f"{p}.storage_tokens"].expand(bsz, -1, -1))
    tokens = torch.cat(parts + [patches], dim=1)
    n_prefix = 1 + ec["registers"]
    rope = dinov3_rope(d // ec["heads"], ec["rope_base"], gh, gw) if ec["family"] == "dinov3" else None
    if probe is not None:
        probe["hidden_states.0"] = tokens
    h = tokens
    for i in range(ec["depth"]):
        h = vit_block(w, f"{p}.blocks.{i}", ec, h, rope, n_prefix)
        if probe is not None:
            probe[f"hidden_states.{i + 1}"] = h
    normed = F.layer_norm(h, (d,), w[f"{p}.norm.weight"], w[f"{p}.norm.bias"], ec["layer_norm_eps"])
    z = normed[:, n_prefix:].transpose(1, 2).reshape(bsz, d, gh, gw)
    if probe is not None:
        probe["last_hidden_state"] = normed
        probe["patch_tokens"] = normed[:, n_prefix:]
        probe["cls_token"] = normed[:, 0]
        probe["decoder_input"] = z
    return z, normed[:, 0]


# ---------------------------------------------------------------------------------------------------
# Decoder: DC-AE (ResBlock, EViT_GLU with ReLU linear attention, InterpolateConv + duplicating shortcut)


def res_block(w: Tensors, q: str, x: torch.Tensor) -> torch.Tensor:
    """x + RMSNorm2d(conv3x3_nobias(SiLU(conv3x3_bias(x))))

    # Shapes
    - x: `[B, C, H, W]` -> same
    """
    y = conv2d(w, f"{q}.main.conv2.conv", F.silu(conv2d(w, f"{q}.main.conv1.conv", x)))
    return x + rms_norm2d(y, w[f"{q}.main.conv2.norm.weight"])


def lite_mla(qkv: torch.Tensor) -> torch.Tensor:
    """ReLU linear attention per head of 32 (quadratic form when H*W <= 32), no normalisation.

    # Shapes
    - qkv: `[B, 3*heads*32, H, W]` -> `[B, heads*32, H, W]`
    """
    bsz, c3, h, w = qkv.shape
    n, heads = h * w, c3 // (3 * EVIT_DIM)
    qkv = qkv.reshape(bsz, heads, 3 * EVIT_DIM, n)  # per head [q | k | v]
    q, k, v = F.relu(qkv[:, :, :EVIT_DIM]), F.relu(qkv[:, :, EVIT_DIM:2 * EVIT_DIM]), qkv[:, :, 2 * EVIT_DIM:]
    if n > EVIT_DIM:
        vp = F.pad(v, (0, 0, 0, 1), value=1.0)  # [B, h, 33, N]
        o = (vp @ k.transpose(-1, -2)) @ q  # [B, h, 33, N]
        out = o[:, :, :EVIT_DIM] / (o[:, :, EVIT_DIM:] + EVIT_EPS)
    else:
        a = k.transpose(-1, -2) @ q  # [B, h, N keys, N queries]
        out = v @ (a / (a.sum(dim=2, keepdim=True) + EVIT_EPS))
    return out.reshape(bsz, heads * EVIT_DIM, h, w)


def evit_block(w: Tensors, q: str, x: torch.Tensor) -> torch.Tensor:
    """EfficientViT block without norms (official DINO-SAE quirk): x + LiteMLA(x), then x + GLUMBConv(x).

    # Shapes
    - x: `[B, C, H, W]` -> same
    """
    cm, lm = f"{q}.context_module.main", f"{q}.local_module.main"
    x = x + conv2d(w, f"{cm}.proj.conv", lite_mla(conv2d(w, f"{cm}.qkv.conv", x)))
    y = F.silu(conv2d(w, f"{lm}.inverted_conv.conv", x))
    y = conv2d(w, f"{lm}.depth_conv.conv", y, groups=y.shape[1])
    a, gate = y.chunk(2, dim=1)
    return x + conv2d(w, f"{lm}.point_conv.conv", a * F.silu(gate))


def upsample(w: Tensors, key: str, x: torch.Tensor, c_out: int, shortcut: bool) -> torch.Tensor:
    """InterpolateConv: conv3x3(nearest x2) (+ duplicating shortcut).

    # Shapes
    - x: `[B, C_in, H, W]` -> `[B, c_out, 2H, 2W]`
    """
    y = conv2d(w, key, nearest_up2(x))
    return y + dup_shortcut(x, c_out, 2) if shortcut else y


def decode(w: Tensors, cfg: dict, z: torch.Tensor, probe: Tensors | None = None) -> torch.Tensor:
    """`Decoder::forward`: project_in (+ duplicating shortcut), stages deepest first, RMSNorm2d -> ReLU ->
    conv3x3 (or an upsample block when stage 0 is empty).

    # Shapes
    - z: `[B, C, h, w]` -> image `[B, 3, 16h, 16w]` (the `pixels.output` convention: [0, 1] for `unit`)
    """
    dc, p = cfg["decoder"], "decoder"
    assert dc["upsample_block_type"] == "InterpolateConv", "only InterpolateConv is mirrored here"
    wl, dl, s = dc["width_list"], dc["depth_list"], len(dc["width_list"])
    x = conv2d(w, f"{p}.project_in.main.conv", z)
    if dc.get("in_shortcut"):
        x = x + dup_shortcut(z, wl[s - 1], 1)
    if probe is not None:
        probe["decoder.project_in_out"] = x
    for ki, stage_id in enumerate(reversed(range(s))):
        width, depth, j = wl[stage_id], dl[stage_id], 0
        if depth == 0:
            continue
        if stage_id < s - 1:
            x = upsample(w, f"{p}.stages.{ki}.op_list.0.main.conv.conv", x, width, bool(dc.get("upsample_shortcut")))
            j = 1
            if probe is not None:
                probe[f"decoder.stages.{ki}.op_list.0_out"] = x
        for jb in range(depth):
            q = f"{p}.stages.{ki}.op_list.{j + jb}"
            x = res_block(w, q, x) if block_of(dc, stage_id) == "ResBlock" else evit_block(w, q, x)
        if probe is not None:
            probe[f"decoder.stages.{ki}_out"] = x
    x = F.relu(rms_norm2d(x, w[f"{p}.project_out.op_list.0.weight"]))
    if dl[0] > 0:
        return conv2d(w, f"{p}.project_out.op_list.2.conv", x)
    return upsample(w, f"{p}.project_out.op_list.2.conv.conv", x, dc["in_channels"], False)


# ---------------------------------------------------------------------------------------------------
# LightningDiT (dit.rs, arch lightningdit) and the spherical sampler (sampler.rs)

NORM_EPS = 1e-6
T_FREQ_DIM = 256


def rms_norm(x: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """RMSNorm over the last dim, eps 1e-6 (DiT norms and qk-norm).

    # Shapes
    - x: `[..., d]` -> same
    """
    y = x * torch.rsqrt(x.square().mean(dim=-1, keepdim=True) + NORM_EPS)
    return y * weight if weight is not None else y


def sincos_pos_embed(dim: int, h: int, w: int) -> torch.Tensor:
    """MAE 2-D sin-cos table: first dim/2 channels encode the column, the rest the row, each [sin | cos].

    # Shapes
    - returns `[1, h*w, dim]`
    """
    q = dim // 4
    om = 1.0 / 10000 ** (torch.arange(q, dtype=torch.float64) / q)

    def enc(pos):
        a = pos[:, None] * om[None]
        return torch.cat([a.sin(), a.cos()], dim=1)

    rows, cols = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    return torch.cat([enc(cols.reshape(-1)), enc(rows.reshape(-1))], dim=1).float()[None]


def eva_rope(head_dim: int, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """EVA-02 style 2-D RoPE on adjacent pairs: first half of a head rotates with the row, second with the
    column, frequencies 10000^(-2j/(head_dim/2)) computed in float32.

    # Shapes
    - returns cos, sin: `[h*w, head_dim]`
    """
    d = head_dim // 2
    freqs = (1.0 / 10000.0 ** (torch.arange(0, d, 2, dtype=torch.float32) / d)).double()
    rows, cols = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    ang = torch.cat([rows.reshape(-1, 1) * freqs, cols.reshape(-1, 1) * freqs], dim=1)  # [N, hd/2]
    ang = ang.repeat_interleave(2, dim=1)
    return ang.cos().float(), ang.sin().float()


def eva_rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x cos + rot(x) sin with rot((x0, x1)) = (-x1, x0) on adjacent pairs.

    # Shapes
    - x: `[B, H, N, hd]` -> same
    """
    pairs = x.unflatten(-1, (-1, 2))
    rot = torch.stack([-pairs[..., 1], pairs[..., 0]], dim=-1).flatten(-2)
    return x * cos + rot * sin


class LightningDiT:
    """The engine's `Dit` for `arch = lightningdit` (adaLN-Zero, RMSNorm, SwiGLU, qk-norm, RoPE, sin-cos pos)."""

    def __init__(self, w: Tensors, cfg: dict):
        assert cfg["arch"] == "lightningdit" and cfg["patch_size"] == 1 and not cfg.get("learn_sigma")
        assert cfg["use_swiglu"] and cfg["use_rmsnorm"] and not cfg["wo_shift"], "only the default-model layout is mirrored"
        self.w, self.cfg = w, cfg
        self.d, self.heads = cfg["hidden_size"], cfg["num_heads"]
        self.g = cfg["input_size"] // cfg["patch_size"]

    def tables(self, gh: int, gw: int):
        """Position and RoPE tables: the stored ones on the native grid (as the reference), else generated."""
        w, native = self.w, (gh == self.g and gw == self.g)
        pos = w["pos_embed"] if native and "pos_embed" in w else sincos_pos_embed(self.d, gh, gw)
        if not self.cfg["use_rope"]:
            return pos, None
        if native and "feat_rope.freqs_cos" in w:
            return pos, (w["feat_rope.freqs_cos"], w["feat_rope.freqs_sin"])
        return pos, eva_rope(self.d // self.heads, gh, gw)

    def block(self, i: int, x: torch.Tensor, c: torch.Tensor, rope) -> torch.Tensor:
        """# Shapes
        - x: `[B, N, D]`, c: `[B, 1, D]` -> `[B, N, D]`
        """
        w, b = self.w, f"blocks.{i}"
        bsz, n, d = x.shape
        sh1, sc1, g1, sh2, sc2, g2 = F.linear(F.silu(c), w[f"{b}.adaLN_modulation.1.weight"],
                                              w[f"{b}.adaLN_modulation.1.bias"]).chunk(6, dim=2)
        hx = rms_norm(x, w[f"{b}.norm1.weight"]) * (1 + sc1) + sh1
        qkv = F.linear(hx, w[f"{b}.attn.qkv.weight"], w[f"{b}.attn.qkv.bias"])
        q, k, v = qkv.reshape(bsz, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        if self.cfg["use_qknorm"]:
            q, k = rms_norm(q, w[f"{b}.attn.q_norm.weight"]), rms_norm(k, w[f"{b}.attn.k_norm.weight"])
        if rope is not None:
            q, k = eva_rotate(q, *rope), eva_rotate(k, *rope)
        a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(bsz, n, d)
        x = x + g1 * F.linear(a, w[f"{b}.attn.proj.weight"], w[f"{b}.attn.proj.bias"])
        hx = rms_norm(x, w[f"{b}.norm2.weight"]) * (1 + sc2) + sh2
        x1, x2 = F.linear(hx, w[f"{b}.mlp.w12.weight"], w[f"{b}.mlp.w12.bias"]).chunk(2, dim=2)
        return x + g2 * F.linear(F.silu(x1) * x2, w[f"{b}.mlp.w3.weight"], w[f"{b}.mlp.w3.bias"])

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor, probe: Tensors | None = None) -> torch.Tensor:
        """Velocity at (x, t, y); t raw in [0, 1] (no x1000).

        # Shapes
        - x: `[B, C, H, W]`, t: `[B]`, y: `[B]` int -> `[B, C, H, W]`
        """
        w = self.w
        bsz, _, gh, gw = x.shape
        half = T_FREQ_DIM // 2
        f = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float64) / half).float()
        arg = t[:, None].float() * f[None]
        t_emb = F.linear(F.silu(F.linear(torch.cat([arg.cos(), arg.sin()], dim=1), w["t_embedder.mlp.0.weight"],
                                         w["t_embedder.mlp.0.bias"])), w["t_embedder.mlp.2.weight"], w["t_embedder.mlp.2.bias"])
        y_emb = w["y_embedder.embedding_table.weight"][y]
        c = t_emb + y_emb
        h = F.conv2d(x, w["x_embedder.proj.weight"], w["x_embedder.proj.bias"]).flatten(2).transpose(1, 2)
        if probe is not None:
            probe.update({"t_emb": t_emb, "y_emb": y_emb, "c": c, "x_patch": h})
        pos, rope = self.tables(gh, gw)
        if self.cfg.get("use_pos_embed", True):
            h = h + pos
        if probe is not None:
            probe["x_in"] = h
        c = c[:, None]
        for i in range(self.cfg["depth"]):
            h = self.block(i, h, c, rope)
            if probe is not None:
                probe[f"block_{i:02d}_out"] = h
        sh, sc = F.linear(F.silu(c), w["final_layer.adaLN_modulation.1.weight"], w["final_layer.adaLN_modulation.1.bias"]).chunk(2, dim=2)
        out = F.linear(rms_norm(h, w["final_layer.norm_final.weight"]) * (1 + sc) + sh,
                       w["final_layer.linear.weight"], w["final_layer.linear.bias"])
        if probe is not None:
            probe["trunk_out"] = h
            probe["final_tokens"] = out
        return out.transpose(1, 2).reshape(bsz, -1, gh, gw)


def project_to_radius(z: torch.Tensor, r: float) -> torch.Tensor:
    """Every patch (channel vector) rescaled to norm r.

    # Shapes
    - z: `[B, C, H, W]` -> same
    """
    return z / z.square().sum(dim=1, keepdim=True).sqrt().clamp_min(1e-12) * r


def shift_time(t: float, a: float) -> float:
    return a * t / (1.0 + (a - 1.0) * t)


def sample_sphere(dit: LightningDiT, noise: torch.Tensor, y: torch.Tensor, steps: int, shift: float,
                  final_radius: float, cfg_scale: float = 1.0, null_class: int | None = None) -> torch.Tensor:
    """Euler + projection on the spheres of radius sqrt(C), time shift(1 - k/steps) from 1 to 0, then every
    patch rescaled to `final_radius` (s_vae).

    # Shapes
    - noise: `[n, C, H, W]`, y: `[n]` -> `[n, C, H, W]`
    """
    r = math.sqrt(noise.shape[1])
    z = project_to_radius(noise, r)
    grid = [shift_time(1.0 - k / steps, shift) for k in range(steps + 1)]
    n = z.shape[0]
    for k in range(steps):
        t, tn = grid[k], grid[k + 1]
        if cfg_scale != 1.0 and null_class is not None:
            v = dit.forward(torch.cat([z, z]), torch.full((2 * n,), t), torch.cat([y, torch.full_like(y, null_class)]))
            v = v[n:] + cfg_scale * (v[:n] - v[n:])
        else:
            v = dit.forward(z, torch.full((n,), t), y)
        zz = z.square().sum(dim=1, keepdim=True).clamp_min(1e-12)
        v_tan = v - z * ((z * v).sum(dim=1, keepdim=True) / zz)
        z = project_to_radius(z + v_tan * (tn - t), r)
    return project_to_radius(z, final_radius)


# ---------------------------------------------------------------------------------------------------
# The engine's seeded host noise: rand 0.9 StdRng (ChaCha12, seeded via PCG32) + rfm::gaussian (Box-Muller)

M32, M64 = 0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF


def _chacha12_blocks(key: list[int], counter: int, nblocks: int) -> np.ndarray:
    """`nblocks` consecutive ChaCha12 blocks (64-bit counter in words 12-13, zero stream id).

    # Shapes
    - returns `[nblocks * 16]` uint32 words
    """
    st = np.zeros((16, nblocks), dtype=np.uint32)
    st[0:4, :] = np.array([0x61707865, 0x3320646E, 0x79622D32, 0x6B206574], dtype=np.uint32)[:, None]
    st[4:12, :] = np.array(key, dtype=np.uint32)[:, None]
    ctr = np.arange(counter, counter + nblocks, dtype=np.uint64)
    st[12, :] = (ctr & M32).astype(np.uint32)
    st[13, :] = (ctr >> np.uint64(32)).astype(np.uint32)
    x = st.copy()

    def rotl(v, c):
        return (v << np.uint32(c)) | (v >> np.uint32(32 - c))

    def qr(a, b, c, d):
        x[a] += x[b]; x[d] = rotl(x[d] ^ x[a], 16)  # noqa: E702
        x[c] += x[d]; x[b] = rotl(x[b] ^ x[c], 12)  # noqa: E702
        x[a] += x[b]; x[d] = rotl(x[d] ^ x[a], 8)  # noqa: E702
        x[c] += x[d]; x[b] = rotl(x[b] ^ x[c], 7)  # noqa: E702

    with np.errstate(over="ignore"):
        for _ in range(6):  # 12 rounds = 6 double rounds
            qr(0, 4, 8, 12); qr(1, 5, 9, 13); qr(2, 6, 10, 14); qr(3, 7, 11, 15)  # noqa: E702
            qr(0, 5, 10, 15); qr(1, 6, 11, 12); qr(2, 7, 8, 13); qr(3, 4, 9, 14)  # noqa: E702
        x += st
    return x.T.reshape(-1)


class EngineRng:
    """`StdRng::seed_from_u64(seed)` of rand 0.9 (ChaCha12Rng), enough for `next_u64`."""

    def __init__(self, seed: int):
        state, words = seed & M64, []
        for _ in range(8):  # rand_core's seed_from_u64: PCG32 output words fill the 32-byte seed
            state = (state * 6364136223846793005 + 11634580027462260723) & M64
            xorshifted = (((state >> 18) ^ state) >> 27) & M32
            rot = state >> 59
            words.append(((xorshifted >> rot) | (xorshifted << ((32 - rot) & 31))) & M32)
        self.key, self.counter, self.buf, self.pos = words, 0, np.zeros(0, dtype=np.uint32), 0

    def u64s(self, n: int) -> np.ndarray:
        """n successive `next_u64` values (low word first), as uint64. The 64-word buffer is always read in
        aligned pairs here, so `BlockRng`'s split-across-refill case never occurs."""
        need = 2 * n - (len(self.buf) - self.pos)
        if need > 0:
            nblocks = -(-need // 64) * 4  # whole 4-block refills, as rand_chacha
            self.buf = np.concatenate([self.buf[self.pos:], _chacha12_blocks(self.key, self.counter, nblocks)])
            self.counter += nblocks
            self.pos = 0
        w = self.buf[self.pos:self.pos + 2 * n].astype(np.uint64)
        self.pos += 2 * n
        return w[0::2] | (w[1::2] << np.uint64(32))


def engine_gaussian(seed: int, shape: tuple[int, ...]) -> torch.Tensor:
    """`rfm::gaussian_tensor(StdRng::seed_from_u64(seed), shape)`: Box-Muller pairs (cos, sin) in f64 with
    u1 = random_range(EPS..1.0) (rand 0.9 `UniformFloat::sample_single`: 52 random bits as a value in [1, 2),
    minus 1, times (1 - EPS), plus EPS) and u2 = random::<f64>() (53 bits times 2^-53).

    # Shapes
    - returns `shape` float32
    """
    n = int(np.prod(shape))
    raw = EngineRng(seed).u64s(2 * ((n + 1) // 2))  # draws alternate u1, u2
    eps = np.finfo(np.float64).eps
    m = (raw[0::2] >> np.uint64(12)).astype(np.float64) / 2.0 ** 52  # value1_2 - 1 in [0, 1), exact
    u1 = m * (1.0 - eps) + eps  # two roundings, as Rust (no fused multiply-add)
    u2 = (raw[1::2] >> np.uint64(11)).astype(np.float64) / 2.0 ** 53
    r, a = np.sqrt(-2.0 * np.log(u1)), 2.0 * np.pi * u2
    out = np.stack([r * np.cos(a), r * np.sin(a)], axis=1).reshape(-1)
    return torch.from_numpy(out[:n].astype(np.float32)).reshape(shape)


# ---------------------------------------------------------------------------------------------------
# Minimal PNG I/O (8-bit RGB / RGBA / grey, non-interlaced), so that Pillow is not needed


def read_png(path: Path) -> np.ndarray:
    """# Shapes
    - returns `[H, W, 3]` uint8
    """
    try:
        from PIL import Image  # optional

        return np.asarray(Image.open(path).convert("RGB"))
    except ImportError:
        pass
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path}: not a PNG"
    pos, idat, hdr = 8, [], None
    while pos < len(data):
        (length,), typ = struct.unpack(">I", data[pos:pos + 4]), data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        if typ == b"IHDR":
            hdr = struct.unpack(">IIBBBBB", body)
        elif typ == b"IDAT":
            idat.append(body)
        pos += 12 + length
    w, h, depth, ctype, _, _, interlace = hdr
    assert depth == 8 and interlace == 0 and ctype in (0, 2, 4, 6), f"{path}: unsupported PNG (depth {depth}, type {ctype})"
    bpp = {0: 1, 2: 3, 4: 2, 6: 4}[ctype]
    raw = np.frombuffer(zlib.decompress(b"".join(idat)), dtype=np.uint8).reshape(h, 1 + w * bpp)
    out = np.zeros((h, w * bpp), dtype=np.int32)
    prev = np.zeros(w * bpp, dtype=np.int32)
    for r in range(h):
        ft, line = raw[r, 0], raw[r, 1:].astype(np.int32)
        if ft == 0:
            cur = line
        elif ft == 1:
            cur = np.cumsum(line.reshape(w, bpp), axis=0).reshape(-1) & 255
        elif ft == 2:
            cur = (line + prev) & 255
        else:
            cur = line.copy()
            for i in range(0, w * bpp, bpp):
                a = cur[i - bpp:i] if i else np.zeros(bpp, dtype=np.int32)
                b = prev[i:i + bpp]
                if ft == 3:
                    cur[i:i + bpp] = (cur[i:i + bpp] + (a + b) // 2) & 255
                else:
                    c = prev[i - bpp:i] if i else np.zeros(bpp, dtype=np.int32)
                    pa, pb, pc = np.abs(b - c), np.abs(a - c), np.abs(a + b - 2 * c)
                    pred = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
                    cur[i:i + bpp] = (cur[i:i + bpp] + pred) & 255
        out[r], prev = cur, cur
    img = out.reshape(h, w, bpp).astype(np.uint8)
    if ctype in (0, 4):
        img = np.repeat(img[..., :1], 3, axis=2)  # grey (alpha dropped: our inputs are opaque)
    return img[..., :3]


def write_png(path: Path, img: np.ndarray) -> None:
    """# Shapes
    - img: `[H, W, 3]` uint8
    """
    h, w, _ = img.shape
    raw = b"".join(b"\x00" + img[r].tobytes() for r in range(h))

    def chunk(t, b):
        return struct.pack(">I", len(b)) + t + b + struct.pack(">I", zlib.crc32(t + b) & 0xFFFFFFFF)

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


def square_image(img: np.ndarray, size: int) -> np.ndarray:
    """Centre square crop, then box-downscale by an integer factor (or nearest otherwise) to size x size."""
    h, w, _ = img.shape
    s = min(h, w)
    img = img[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
    if s % size == 0:
        f = s // size
        return img.reshape(size, f, size, f, 3).astype(np.float64).mean(axis=(1, 3)).round().astype(np.uint8)
    idx = (np.arange(size) * s // size)
    return img[idx][:, idx]


def to_pixels(img: np.ndarray) -> torch.Tensor:
    """`image_io::to_tensor`: (rgb/255 - mean) / std.

    # Shapes
    - img: `[H, W, 3]` uint8 -> `[1, 3, H, W]`
    """
    x = torch.from_numpy(img.astype(np.float32)).permute(2, 0, 1)[None] / 255.0
    return (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


def to_u8(x: torch.Tensor) -> np.ndarray:
    """Decoder output ([0, 1], `unit`) to 8-bit the engine's way: round(clamp(v, 0, 1) * 255).

    # Shapes
    - x: `[1, 3, H, W]` -> `[H, W, 3]` uint8
    """
    return (x[0].clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


# ---------------------------------------------------------------------------------------------------
# The models of one preset


class Models:
    def __init__(self, preset: str):
        self.preset, self.cfg = preset, sae_config(preset)
        table = sae_params(self.cfg)
        if preset == "default":
            self.w = load_checked(DEFAULT_MODEL / "model.safetensors", table)
            dit_dir = DEFAULT_MODEL / "dit"
            self.dit_meta = json.loads((dit_dir / "config.json").read_text())
            self.dit = LightningDiT(load_checked(dit_dir / "model.safetensors", None), self.dit_meta["dit"])
        else:
            self.w = random_weights(table)
            self.dit_meta, self.dit = None, None
        self.n_params = sum(v.numel() for v in self.w.values())

    def sample(self, steps: int, seed: int = 0, cls: int = 0, grid: tuple[int, int] | None = None,
               noise: torch.Tensor | None = None) -> torch.Tensor:
        """`generate::sample_latents` with `SampleSpec { steps, count: 1, grid, ..Default }`, then decode.

        # Shapes
        - returns image `[1, 3, 16h, 16w]` (h, w = `grid`, default the generator's training grid)
        """
        m = self.dit_meta
        gh, gw = grid or m["grid"]
        if noise is None:
            noise = engine_gaussian(seed, (1, m["channels"], gh, gw))
        z = sample_sphere(self.dit, noise, torch.tensor([cls]), steps, m["objective"]["shift"], m["s_vae"])
        return decode(self.w, self.cfg, z)


# ---------------------------------------------------------------------------------------------------
# Engine binary


def find_engine(arg: str | None) -> Path | None:
    cands = [arg, os.environ.get("DINO_SAE_BIN")]
    for root in [os.environ.get("CARGO_TARGET_DIR"), str(REPO / "target")]:
        if root:
            cands += [f"{root}/release/dino-sae", f"{root}/debug/dino-sae"]
    for c in cands:
        if c and Path(c).is_file() and os.access(c, os.X_OK):
            return Path(c)
    return None


def run_engine(binary: Path, args: list[str], threads: int | None = None, check: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if threads:
        env["RAYON_NUM_THREADS"] = str(threads)
    cmd = [str(binary)] + [str(a) for a in args]
    print("  $", " ".join(cmd), file=sys.stderr)
    r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise SystemExit(f"engine failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r


# ---------------------------------------------------------------------------------------------------
# Parity


def rel_err(ours: torch.Tensor, ref: torch.Tensor) -> tuple[float, float, float]:
    """(max|a - b|, max|ref|, ratio)"""
    a, b = ours.double().reshape(-1), ref.double().reshape(-1)
    assert a.numel() == b.numel(), f"sizes {tuple(ours.shape)} vs {tuple(ref.shape)}"
    m, r = (a - b).abs().max().item(), b.abs().max().item()
    return m, r, m / max(r, 1e-30)


def parity(models: Models, binary: Path, image: Path, size: int, work: Path) -> bool:
    """Run the four parity checks (see the module docs). Returns True when all pass."""
    ok = True
    w, cfg = models.w, models.cfg

    def report(name, text, good):
        nonlocal ok
        ok &= good
        print(f"  {'ok  ' if good else 'FAIL'} {name:<44} {text}", file=sys.stderr)

    img = square_image(read_png(image), size)
    png = work / f"input_{size}.png"
    write_png(png, img)
    x = to_pixels(img)
    probe: Tensors = {}
    with torch.inference_mode():
        z, cls = encode(w, cfg, x, probe)
        recon = decode(w, cfg, z, probe)
    probe["recon"] = recon

    # a. engine encode vs ours
    lat_file = work / "engine_latent.safetensors"
    run_engine(binary, ["encode", png, "-o", lat_file, "-m", DEFAULT_MODEL])
    eng = load_file(str(lat_file))
    for key, ours in [("latent", z), ("cls", cls)]:
        m, r, q = rel_err(ours, eng[key])
        report(f"encode:{key} {tuple(ours.shape)}", f"max_abs {m:.3e}  max|ref| {r:.3e}  rel {q:.3e} (tol {TOL_REL:g})", q <= TOL_REL)

    # b. engine decode of OUR latent vs our decode (both 8-bit)
    ours_lat = work / "torch_latent.safetensors"
    save_file({"latent": z.contiguous(), "cls": cls.contiguous()}, str(ours_lat))
    dec_png = work / "engine_decode.png"
    run_engine(binary, ["decode", ours_lat, "-o", dec_png, "-m", DEFAULT_MODEL])
    d = np.abs(read_png(dec_png).astype(np.int32) - to_u8(recon).astype(np.int32))
    report(f"decode:png {size}x{size}", f"max |u8 diff| {d.max()}  pixels differing {(d > 0).mean() * 100:.3f}% (tol {TOL_U8} levels)", d.max() <= TOL_U8)

    # c. verify-fixture: the engine compares itself with our tensors in float32
    fx = work / "fixture"
    (fx / "sae").mkdir(parents=True, exist_ok=True)
    for f in ["model.safetensors", "config.json"]:
        (fx / "sae" / f).unlink(missing_ok=True)
        (fx / "sae" / f).symlink_to(DEFAULT_MODEL / f)
    io = {"pixel_values": x}
    io.update({k: v for k, v in probe.items()})
    save_file({k: v.float().contiguous().clone() for k, v in io.items()}, str(fx / "sae" / "io.safetensors"))
    if models.dit is not None:
        ld = fx / "lightningdit"
        ld.mkdir(exist_ok=True)
        (ld / "state_dict.safetensors").unlink(missing_ok=True)
        (ld / "state_dict.safetensors").symlink_to(DEFAULT_MODEL / "dit" / "model.safetensors")
        (fx / "config.json").write_text(json.dumps({"lightningdit": models.dit_meta["dit"]}, indent=1))
        g = models.dit.g
        gen = torch.Generator().manual_seed(7)
        xin = project_to_radius(torch.randn(2, models.dit_meta["channels"], g, g, generator=gen), math.sqrt(models.dit_meta["channels"]))
        t = torch.tensor([0.73, 0.21])
        y = torch.tensor([3, models.dit_meta["dit"]["num_classes"]])  # a class and the null class
        dprobe: Tensors = {}
        with torch.inference_mode():
            out = models.dit.forward(xin, t, y, dprobe)
        save_file({"x": xin, "t": t, "y": y.float()}, str(ld / "inputs.safetensors"))
        save_file({"out": out.contiguous()}, str(ld / "outputs.safetensors"))
        save_file({k: v.float().contiguous().clone() for k, v in dprobe.items()}, str(ld / "intermediates.safetensors"))
    r = run_engine(binary, ["verify-fixture", fx, "-v"], check=False)
    # Rows: `name  max_abs  err/max|ref|  ok|FAIL` (the name may contain spaces).
    worst: dict[str, tuple[float, str]] = {}
    n_checks, n_ours_bad = 0, 0
    for line in r.stdout.splitlines():
        parts = line.split()
        if len(parts) < 4 or parts[-1] not in ("ok", "FAIL") or ":" not in parts[0]:
            continue
        try:
            max_abs, rel = float(parts[-3]), float(parts[-2])
        except ValueError:
            continue
        n_checks += 1
        ref_max = max_abs / rel if rel > 0 else 0.0
        bad = not max_abs <= TOL_REL * max(1.0, ref_max)
        n_ours_bad += bad
        if parts[-1] == "FAIL" or bad:
            print(f"    {'FAIL' if bad else 'over 1e-4'}: {line.strip()}", file=sys.stderr)
        part = parts[0].split(":")[0]
        if part not in worst or rel > worst[part][0]:
            worst[part] = (rel, parts[0])
    for part, (rel, name) in sorted(worst.items()):
        print(f"    worst of part {part}: {name}  err/max|ref| = {rel:.3e}", file=sys.stderr)
    summary = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else r.stderr.strip()[-300:]
    report("verify-fixture", f"{n_checks} tensors, {n_ours_bad} over {TOL_REL:g} * max(1, max|ref|); "
           f"engine's own 1e-4 criterion: {summary}", n_checks > 0 and n_ours_bad == 0)

    # d. the whole sampler: seeded engine noise, 25 Euler+projection steps, decode
    if models.dit is not None:
        steps = 25
        with torch.inference_mode():
            ours = to_u8(models.sample(steps, seed=0, cls=0))
        spng = work / "engine_sample.png"
        run_engine(binary, ["sample", "--dit", DEFAULT_MODEL / "dit", "--sae", DEFAULT_MODEL, "--steps", steps,
                            "--n", 1, "--seed", 0, "--class", 0, "-o", spng])
        eng_img = read_png(spng)
        if eng_img.shape != ours.shape:
            report("sample25 png", f"shape {eng_img.shape} vs ours {ours.shape}", False)
        else:
            d = np.abs(eng_img.astype(np.int32) - ours.astype(np.int32))
            report(f"sample25:png seed 0 class 0 {ours.shape[1]}x{ours.shape[0]}",
                   f"max |u8 diff| {d.max()}  mean {d.mean():.3f}  pixels differing {(d > 0).mean() * 100:.2f}% (tol {TOL_U8} levels)",
                   d.max() <= TOL_U8)
    return ok


# ---------------------------------------------------------------------------------------------------
# Timing


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def count_flops(fn) -> float | None:
    try:
        from torch.utils.flop_counter import FlopCounterMode
    except ImportError:
        return None
    with FlopCounterMode(display=False) as fc:
        fn()
    return float(fc.get_total_flops())


def time_call(name: str, fn, repeats: int, flops: bool) -> dict:
    """One warm-up (under the FLOP counter), then `repeats` timed calls; the engine's quantile rule."""
    f = count_flops(fn) if flops else None
    if f is None:
        fn()
    ts = []
    for _ in range(max(repeats, 1)):
        t0 = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t0) * 1e3)
    ts.sort()

    def q(p):
        return ts[round((len(ts) - 1) * p)]

    return dict(name=name, backend="pytorch-cpu", median_ms=q(0.5), p10_ms=q(0.1), p90_ms=q(0.9), flops=f,
                peak_rss_mb=peak_rss_mb(), n=len(ts))


def bench(models: Models, size: int, repeats: int, flops: bool) -> list[dict]:
    """The calls of `dino-sae bench`, named the same way: encode and decode at `size`; with a generator,
    one DiT forward (t = 0.5, class 0) and a 25-step sample + decode, at the generator's grid and, when it
    differs, at the bench size's grid (size / 16)."""
    w, cfg, p = models.w, models.cfg, models.preset
    torch.manual_seed(0)
    x = torch.randn(1, 3, size, size)
    out = []

    def run(name, fn):
        out.append(time_call(f"{name}_{p}", fn, repeats, flops))
        _print_row(out[-1])

    with torch.inference_mode():
        z, _ = encode(w, cfg, x)
        run(f"encode_{size}", lambda: encode(w, cfg, x))
        run(f"decode_{size}", lambda: decode(w, cfg, z))
        if models.dit is not None:
            grids = [tuple(models.dit_meta["grid"])]
            if grids[0] != (size // 16, size // 16):
                grids.append((size // 16, size // 16))
            for gh, gw in grids:
                zz = torch.randn(1, models.dit_meta["channels"], gh, gw)
                t, y = torch.tensor([0.5]), torch.tensor([0])
                run(f"dit_step_{16 * gh}", lambda: models.dit.forward(zz, t, y))
                run(f"sample25_{16 * gh}", lambda: models.sample(25, grid=(gh, gw)))
    return out


def _print_row(r: dict) -> None:
    rate = ""
    if r["flops"]:
        rate = f", {r['flops'] / 1e9:.2f} GFLOP -> {r['flops'] / 1e9 / (r['median_ms'] / 1e3):.1f} GFLOP/s"
    print(f"{r['name']:<32} median {r['median_ms']:.1f} ms (p10 {r['p10_ms']:.1f}, p90 {r['p90_ms']:.1f}, n={r['n']}){rate}, "
          f"peak RSS {r['peak_rss_mb']:.0f} MiB", file=sys.stderr)


def json_line(r: dict) -> str:
    num = lambda v: "null" if v is None else f"{v:.1f}"  # noqa: E731
    return (f'{{"name":"{r["name"]}","backend":"{r["backend"]}","median_ms":{r["median_ms"]:.3f},"p10_ms":{r["p10_ms"]:.3f},'
            f'"p90_ms":{r["p90_ms"]:.3f},"flops":{num(r["flops"])},"peak_rss_mb":{num(r["peak_rss_mb"])}}}')


def read_engine_json(text: str) -> dict[str, dict]:
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                r = json.loads(line)
                out[r["name"]] = r
            except (json.JSONDecodeError, KeyError):
                pass
    return out


def comparison_table(engine: dict[str, dict], ours: list[dict]) -> str:
    g = lambda v: "-" if v is None else f"{v / 1e9:.2f}"  # noqa: E731
    head = f"| {'name':<30} | {'engine ms':>10} | {'pytorch ms':>10} | {'engine/pytorch':>14} | {'GFLOP engine':>12} | {'GFLOP torch':>11} |"
    lines = [head, "|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|"]
    for r in ours:
        e = engine.get(r["name"])
        em = e["median_ms"] if e else None
        ratio = f"{em / r['median_ms']:.2f}" if em else "-"
        lines.append(f"| {r['name']:<30} | {em if em is None else f'{em:.1f}':>10} | {r['median_ms']:>10.1f} | {ratio:>14} | "
                     f"{g(e.get('flops') if e else None):>12} | {g(r['flops']):>11} |")
    for name, e in engine.items():
        if name not in {r["name"] for r in ours}:
            lines.append(f"| {name:<30} | {e['median_ms']:>10.1f} | {'-':>10} | {'-':>14} | {g(e.get('flops')):>12} | {'-':>11} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------
# Interleaved A/B rounds


def interleaved(a) -> int:
    """`--rounds N`: each round runs PyTorch (this script with --json in a fresh process, so no OpenMP worker of it
    spins while the engine runs) and then every engine configuration (each --engine-bin, and each of those again with
    each --engine-env), one process at a time. The spread of a shared machine's load then falls on all columns alike;
    ratios are taken per round and their median reported."""
    bins = [find_engine(b) for b in (a.engine_bin or [None])]
    if any(b is None for b in bins):
        raise SystemExit("no dino-sae binary found (build it, or pass --engine-bin / DINO_SAE_BIN)")
    configs = [(f"engine[{i}]", b, {}) for i, b in enumerate(bins)]
    for kv in a.engine_env:
        name, _, value = kv.partition("=")
        configs += [(f"engine[{i}] {kv}", b, {name: value}) for i, b in enumerate(bins)]
    for label, b, env in configs:
        print(f"{label}: {b} {env or ''}", file=sys.stderr)
    cols: dict[str, list[dict[str, float]]] = {"pytorch": []}
    for label, _, _ in configs:
        cols[label] = []
    me = [sys.executable, str(Path(__file__).resolve()), "--preset", a.preset, "--size", str(a.size), "--repeats",
          str(a.repeats), "--threads", str(a.threads), "--json", "--no-flops"]
    for r in range(a.rounds):
        print(f"round {r + 1}/{a.rounds}: load {os.getloadavg()[0]:.2f}", file=sys.stderr)
        out = subprocess.run(me, cwd=REPO, capture_output=True, text=True)
        if out.returncode != 0:
            raise SystemExit(f"pytorch run failed:\n{out.stderr}")
        cols["pytorch"].append({k: v["median_ms"] for k, v in read_engine_json(out.stdout).items()})
        for label, b, env in configs:
            saved = {k: os.environ.get(k) for k in env}
            os.environ.update(env)
            try:
                res = run_engine(b, ["bench", "--preset", a.preset, "--backend", "cpu", "--size", a.size, "--repeats",
                                     a.repeats, "--json"], threads=a.threads)
            finally:
                for k, v in saved.items():
                    if v is None:
                        os.environ.pop(k, None)
                    else:
                        os.environ[k] = v
            cols[label].append({k: v["median_ms"] for k, v in read_engine_json(res.stdout).items()})
    names = [n for n in cols["pytorch"][0]] + sorted({n for rr in cols[configs[0][0]] for n in rr} - set(cols["pytorch"][0]))
    med = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
    head = "| call | " + " | ".join(f"{c} ms" for c in cols) + " | " + " | ".join(f"{c} / pytorch" for c, _, _ in configs) + " |"
    print(f"{a.rounds} interleaved rounds, {a.repeats} repeats each; per-round medians: median (min-max); "
          f"ratios: median of the per-round ratios (min-max)")
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for n in names:
        cells = []
        for c in cols:
            xs = [rr[n] for rr in cols[c] if n in rr]
            cells.append(f"{med(xs):.1f} ({min(xs):.0f}-{max(xs):.0f})" if xs else "-")
        for c, _, _ in configs:
            rs = [e[n] / p[n] for e, p in zip(cols[c], cols["pytorch"]) if n in e and n in p]
            cells.append(f"**{med(rs):.2f}** ({min(rs):.2f}-{max(rs):.2f})" if rs else "-")
        print(f"| {n} | " + " | ".join(cells) + " |")
    return 0


# ---------------------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="default", choices=["default", "small", "released"])
    ap.add_argument("--size", type=int, default=256, help="square input side in pixels (multiple of 16)")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (and RAYON_NUM_THREADS for --run-engine)")
    ap.add_argument("--json", action="store_true", help="print JSON lines in the engine's format (backend pytorch-cpu)")
    ap.add_argument("--engine-json", type=Path, help="output of `dino-sae bench --json` to compare with")
    ap.add_argument("--run-engine", action="store_true", help="run `dino-sae bench --json` with the same preset/size/repeats")
    ap.add_argument("--engine-bin", action="append", help="dino-sae binary (default: $DINO_SAE_BIN, then $CARGO_TARGET_DIR / target, "
                    "release then debug); with --rounds it may be given several times (e.g. before/after builds)")
    ap.add_argument("--rounds", type=int, default=0, help="interleaved A/B: N rounds of (PyTorch in a fresh process, then each "
                    "--engine-bin's `bench --json`), one process at a time; prints per-call medians and min-max over the rounds")
    ap.add_argument("--engine-env", action="append", default=[], help="with --rounds: NAME=VALUE for the engine runs; "
                    "`--engine-bin B --engine-env X=1` also runs B with it as a separate column (repeatable)")
    ap.add_argument("--parity", action="store_true", help="check parity with the engine (default preset only)")
    ap.add_argument("--image", type=Path, default=REPO / "assets" / "samples" / "astronaut.png", help="PNG for --parity")
    ap.add_argument("--no-bench", action="store_true", help="parity only")
    ap.add_argument("--no-flops", action="store_true", help="skip the FLOP counting pass")
    ap.add_argument("--keep", type=Path, help="keep the parity files (fixture folder, PNGs) here")
    a = ap.parse_args()
    if a.size % 16:
        raise SystemExit("--size must be a multiple of 16")

    if a.rounds:
        return interleaved(a)
    torch.set_num_threads(a.threads)
    torch.set_num_interop_threads(1)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, preset {a.preset}", file=sys.stderr)
    t0 = time.perf_counter()
    models = Models(a.preset)
    print(f"built {a.preset}: {models.n_params / 1e6:.1f} M SAE parameters in {time.perf_counter() - t0:.1f} s", file=sys.stderr)

    binary = find_engine(a.engine_bin[0] if a.engine_bin else None) if (a.parity or a.run_engine) else None
    if (a.parity or a.run_engine) and binary is None:
        raise SystemExit("no dino-sae binary found (build it, or pass --engine-bin / DINO_SAE_BIN)")

    status = 0
    if a.parity:
        if a.preset != "default":
            raise SystemExit("--parity needs --preset default (the other presets have random weights)")
        work = a.keep or Path(tempfile.mkdtemp(prefix="bench_pytorch_"))
        work.mkdir(parents=True, exist_ok=True)
        print(f"parity vs {binary} (files in {work}):", file=sys.stderr)
        good = parity(models, binary, a.image, a.size, work)
        print(f"parity: {'PASS' if good else 'FAIL'}", file=sys.stderr)
        status = 0 if good else 1
        if a.keep is None:
            shutil.rmtree(work, ignore_errors=True)

    if a.no_bench:
        return status
    ours = bench(models, a.size, a.repeats, not a.no_flops)
    if a.json:
        for r in ours:
            print(json_line(r))

    engine = {}
    if a.engine_json:
        engine = read_engine_json(a.engine_json.read_text())
    elif a.run_engine:
        r = run_engine(binary, ["bench", "--preset", a.preset, "--backend", "cpu", "--size", a.size, "--repeats", a.repeats, "--json"], threads=a.threads)
        engine = read_engine_json(r.stdout)
        if a.json:
            print(r.stdout.strip())
    if engine:
        print(comparison_table(engine, ours))
    return status


if __name__ == "__main__":
    sys.exit(main())
