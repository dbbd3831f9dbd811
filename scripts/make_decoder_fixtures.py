#!/usr/bin/env python3
"""Reference fixtures for every kind of DC-AE decoder configuration the official DINO-SAE code can build.

Runs the *official* `DCAE_Decoder` (wkdgnsgo/dino-sae `src/model.py`, with its vendored efficientvit package for
EViT_GLU) on tiny random weights and non-square latents, and writes one fixture set per configuration in the
layout `dino-sae verify-fixture` reads:

    OUT/decoder-configs-<name>/decoder/config.json        the official DecoderConfig (`decoder_config`)
    OUT/decoder-configs-<name>/decoder/model.safetensors  the DCAE_Decoder state dict (official key names)
    OUT/decoder-configs-<name>/decoder/io.safetensors     latents, project_in / per-op / per-stage outputs,
                                                           EViT internals, outputs ("" and "small." inputs)
    OUT/decoder-configs-<name>/README.md                  config, shapes, float32-vs-float64 deviation

Usage:
    python scripts/make_decoder_fixtures.py --official PATH/TO/dino-sae [--out tests/fixtures] [--only NAME ...]

`--official` (or env DINO_SAE_OFFICIAL) is a checkout of https://github.com/wkdgnsgo/dino-sae (the folder holding
`src/model.py`); the fixtures in tests/fixtures were made from commit 38a78abe6da61f91e27b6edf33cfee9e200d0656.
Nothing of it is copied here: the script imports it. Needs torch, numpy, safetensors, omegaconf (PyPI, CPU is
enough). The only stand-in is `efficientvit.apps.trainer.run_config` (imported by efficientvit's drop-path helper,
which pulls in torchvision and training code): a module holding a `Scheduler` class with `PROGRESS = 0`,
unused at inference.
"""

import argparse
import contextlib
import copy
import importlib.util
import io
import json
import os
import subprocess
import sys
import types

import torch
import torch.nn as nn
from safetensors.torch import save_file

# name -> (DecoderConfig kwargs, seed, main latent (B, h, w), small latent (B, h, w), what it covers)
CONFIGS = {
    "empty-first": (
        dict(in_channels=3, latent_channels=64, width_list=[8, 8, 16, 16, 32], depth_list=[0, 1, 1, 1, 1],
             block_type="ResBlock", upsample_block_type="ConvPixelShuffle", in_shortcut=None),
        11, (1, 3, 4), (2, 1, 2),
        "stage 0 empty: no stage-0 keys, project_out upsamples (ConvPixelShuffle) from width_list[1]; in_shortcut null",
    ),
    "empty-last": (
        dict(in_channels=3, latent_channels=64, width_list=[8, 16, 32, 32, 64], depth_list=[1, 1, 1, 1, 0],
             block_type=["ResBlock", "ResBlock", "ResBlock", "EViT_GLU", "EViT_GLU"],
             upsample_block_type="InterpolateConv"),
        12, (1, 3, 4), (2, 1, 2),
        "deepest stage empty (no `stages.0` keys: project_in feeds stage 3's upsample), InterpolateConv, duplicating "
        "shortcuts, mixed ResBlock / EViT_GLU (linear attention on the main input, quadratic on the small one)",
    ),
    "both-empty-interp-shortcut": (
        dict(in_channels=3, latent_channels=64, width_list=[8, 16, 16, 32, 32], depth_list=[0, 1, 1, 1, 0],
             block_type=["ResBlock", "ResBlock", "ResBlock", "EViT_GLU", "ResBlock"],
             upsample_block_type="InterpolateConv", upsample_shortcut="InterpolateConv", in_shortcut=None),
        13, (1, 4, 3), (2, 2, 1),
        "first and last stages empty, InterpolateConv upsampling with InterpolateConv shortcuts, in_shortcut null, "
        "InterpolateConv project_out",
    ),
    "nomatch-noshortcut": (
        dict(in_channels=3, latent_channels=64, width_list=[16, 16, 16, 16, 16], depth_list=[1, 1, 2, 1, 1],
             block_type="ResBlock", upsample_block_type="ConvPixelShuffle", upsample_match_channel=False,
             upsample_shortcut=None, in_shortcut=None),
        14, (1, 3, 4), (2, 1, 2),
        "upsample_match_channel false, upsample blocks without shortcut (`op_list.0.conv.conv`), in_shortcut null, "
        "ConvPixelShuffle",
    ),
    "empty-middle-6stage": (
        dict(in_channels=3, latent_channels=64, width_list=[8, 8, 16, 16, 32, 64], depth_list=[1, 1, 0, 1, 1, 0],
             block_type=["ResBlock", "ResBlock", "ResBlock", "ResBlock", "EViT_GLU", "ResBlock"],
             upsample_block_type="InterpolateConv"),
        15, (1, 3, 4), (2, 1, 2),
        "six stages, a middle stage and the deepest empty (gaps in the `stages.k` indices), mixed blocks, "
        "duplicating shortcuts",
    ),
    "acts-norms": (
        dict(in_channels=3, latent_channels=64, width_list=[8, 16, 16, 32, 32], depth_list=[1, 1, 1, 1, 1],
             block_type=["ResBlock", "ResBlock", "ResBlock", "EViT_GLU", "EViT_GLU"],
             norm=["bn2d", None, "trms2d", "ln2d", "bn2d"], act=["relu", "tanh", "sigmoid", "gelu", "hswish"],
             upsample_block_type="InterpolateConv", in_shortcut=None, out_norm="bn2d", out_act=None),
        16, (1, 3, 4), (2, 1, 2),
        "per-stage norms (bn2d, null, trms2d; EViT_GLU with ln2d and bn2d) and activations (relu, tanh, sigmoid; "
        "EViT_GLU with gelu(tanh) and hswish), out_norm bn2d, out_act null (project_out's conv at op_list.1); "
        "activations leave no keys, so this one needs its config.json",
    ),
}


def import_official(root):
    """Import the official src/model.py (and its efficientvit package) from a checkout at `root`."""
    src = os.path.join(root, "src")
    if not os.path.exists(os.path.join(src, "model.py")):
        sys.exit(f"{src}/model.py not found: --official must point at a checkout of wkdgnsgo/dino-sae")
    sys.path.insert(0, src)
    # stand-in for the training-only module efficientvit's drop.py imports (see the docstring)
    for name in ["efficientvit.apps", "efficientvit.apps.trainer", "efficientvit.apps.trainer.run_config"]:
        stub = types.ModuleType(name)
        stub.__path__ = []
        sys.modules.setdefault(name, stub)
    sys.modules["efficientvit.apps.trainer.run_config"].Scheduler = type("Scheduler", (), {"PROGRESS": 0})
    spec = importlib.util.spec_from_file_location("official_dinosae_model", os.path.join(src, "model.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def official_commit(root):
    try:
        return subprocess.check_output(["git", "-C", root, "rev-parse", "HEAD"], stderr=subprocess.DEVNULL).decode().strip()
    except Exception:
        return os.environ.get("DINO_SAE_OFFICIAL_COMMIT", "unknown")


@torch.no_grad()
def randomise(dec, mod, seed):
    """Make every parameter matter: norms away from identity, non-zero biases, BatchNorm running statistics."""
    g = torch.Generator().manual_seed(seed + 1000)

    def randn(shape):
        return torch.randn(shape, generator=g)

    for m in dec.modules():
        if isinstance(m, nn.Conv2d) and m.bias is not None:
            m.bias.add_(0.05 * randn(m.bias.shape))
        elif isinstance(m, mod.RMSNorm2d):
            m.weight.copy_(1.0 + 0.25 * randn(m.weight.shape))
        elif isinstance(m, nn.BatchNorm2d):
            m.weight.copy_(1.0 + 0.25 * randn(m.weight.shape))
            m.bias.copy_(0.1 * randn(m.bias.shape))
            m.running_mean.copy_(0.2 * randn(m.running_mean.shape))
            m.running_var.copy_(0.5 + 1.5 * torch.rand(m.running_var.shape, generator=g))
            m.num_batches_tracked.fill_(7)
        elif isinstance(m, nn.LayerNorm):  # efficientvit's LayerNorm2d subclasses it
            m.weight.copy_(1.0 + 0.25 * randn(m.weight.shape))
            m.bias.copy_(0.1 * randn(m.bias.shape))


def build(mod, kwargs, seed):
    torch.manual_seed(seed)  # PyTorch's default init draws from the global generator
    with contextlib.redirect_stdout(io.StringIO()):  # DCAE_Decoder prints the upsample blocks it builds
        dec = mod.DCAE_Decoder(mod.DecoderConfig(**kwargs))
    randomise(dec, mod, seed)
    return dec.eval()


def latent(b, c, h, w, g):
    """LayerNorm-output-like latent: per-channel scale and offset around N(0, 1)."""
    z = torch.randn(b, c, h, w, generator=g)
    return z * (1.0 + 0.3 * torch.randn(1, c, 1, 1, generator=g)) + 0.2 * torch.randn(1, c, 1, 1, generator=g)


@torch.no_grad()
def run(dec, z, details):
    """Forward with hooks: project_in, every op of every non-empty stage, every stage, EViT internals."""
    evit_cls = sys.modules["efficientvit.models.nn.ops"].EfficientViTBlock
    cap, hooks = {}, []

    def out_hook(name):
        return lambda m, i, o: cap.__setitem__(name, o.detach().clone())

    def in_hook(name):
        return lambda m, i: cap.__setitem__(name, i[0].detach().clone())

    hooks.append(dec.project_in.register_forward_hook(out_hook("project_in_out")))
    last = max(k for k, st in enumerate(dec.stages) if len(st.op_list) > 0)
    for k, st in enumerate(dec.stages):
        if len(st.op_list) == 0:
            continue
        hooks.append(st.register_forward_hook(out_hook(f"stages.{k}_out")))
        if not details or k == last:  # the full-resolution stage: its output only (keeps the files small)
            continue
        for j, op in enumerate(st.op_list):
            if j < len(st.op_list) - 1:
                hooks.append(op.register_forward_hook(out_hook(f"stages.{k}.op_list.{j}_out")))
            if isinstance(op, evit_cls):
                p = f"evit.stages.{k}.op_list.{j}."
                att, glu = op.context_module.main, op.local_module.main
                hooks.append(att.qkv.register_forward_hook(out_hook(p + "qkv_out")))
                hooks.append(att.proj.register_forward_pre_hook(in_hook(p + "attn_out_pre_proj")))
                hooks.append(op.context_module.register_forward_hook(out_hook(p + "context_module_out")))
                hooks.append(glu.point_conv.register_forward_pre_hook(in_hook(p + "glu.gated")))
    y = dec(z)
    for h in hooks:
        h.remove()
    cap["output"] = y.detach().clone()
    return cap


def maxabs(a, b):
    return float((a.double() - b.double()).abs().max())


def make_set(mod, name, out_root, commit, spec=None):
    kwargs, seed, main, small, what = spec or CONFIGS[name]
    set_dir = os.path.join(out_root, f"decoder-configs-{name}")
    d = os.path.join(set_dir, "decoder")
    os.makedirs(d, exist_ok=True)
    dec = build(mod, kwargs, seed)
    dec64 = copy.deepcopy(dec).double().eval()
    sd = {k: v.detach().clone().contiguous() for k, v in dec.state_dict().items()}
    save_file(sd, os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
    cfg = {k: (list(v) if isinstance(v, tuple) else v) for k, v in mod.DecoderConfig(**kwargs).__dict__.items()}
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump({"class": "src/model.py::DCAE_Decoder", "official_commit": commit, "decoder_config": cfg,
                   "state_dict_prefix_in_DINOSphericalAutoencoder": "decoder."}, f, indent=2)

    g = torch.Generator().manual_seed(seed + 2000)
    tensors, checks = {}, {}
    for tag, (b, h, w), details in [("", main, True), ("small.", small, False)]:
        z = latent(b, kwargs["latent_channels"], h, w, g)
        cap = run(dec, z, details)
        cap64 = run(dec64, z.double(), details)
        tensors[tag + "latent"] = z
        for k, v in cap.items():
            tensors[tag + k] = v.float().contiguous()
        checks[tag + "output_shape"] = list(cap["output"].shape)
        checks[tag + "output_absmax"] = float(cap["output"].abs().max())
        checks[tag + "worst_intermediate_absmax"] = max(float(v.abs().max()) for v in cap.values())
        checks[tag + "f32_vs_f64_output_maxabs"] = maxabs(cap["output"], cap64["output"])
        checks[tag + "f32_vs_f64_worst_maxabs"] = max(maxabs(cap[k], cap64[k]) for k in cap)
    save_file(tensors, os.path.join(d, "io.safetensors"), metadata={"format": "pt"})

    rows = "\n".join(f"| `{k}` | {list(v.shape)} |" for k, v in sorted(tensors.items()))
    checks_md = "\n".join(f"| {k} | {v if not isinstance(v, float) else f'{v:.3g}'} |" for k, v in checks.items())
    n_params = sum(v.numel() for k, v in sd.items() if not k.endswith("num_batches_tracked"))
    with open(os.path.join(set_dir, "README.md"), "w") as f:
        f.write(f"""# Decoder fixture set `{name}`

{what}.

Made by `scripts/make_decoder_fixtures.py --only {name}` with the official `DCAE_Decoder` of
wkdgnsgo/dino-sae@{commit} (`src/model.py` + its efficientvit package), PyTorch {torch.__version__}, CPU, float32,
seed {seed}: PyTorch's default init, then RMSNorm2d / BatchNorm2d / LayerNorm2d weights 1 + 0.25 N(0,1), norm
biases 0.1 N(0,1), BatchNorm running means 0.2 N(0,1) and variances U(0.5, 2), conv biases + 0.05 N(0,1); eval
mode. {n_params} parameters.

`decoder/config.json` holds the official `DecoderConfig`; `decoder/model.safetensors` the state dict (official
names; under `decoder.` in `DINOSphericalAutoencoder`); `decoder/io.safetensors` the inputs and references. The
`small.` input runs without per-op hooks. Check: `dino-sae verify-fixture tests/fixtures/decoder-configs-{name}`
(tolerance 1e-4 * max(1, max|ref|)).

```json
{json.dumps(cfg)}
```

| tensor | shape |
|---|---|
{rows}

| check (float32 run vs the same module in float64) | value |
|---|---|
{checks_md}
""")
    size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
    print(f"{name}: {size / 1e3:.0f} kB, output {checks['output_shape']}, f32 vs f64 {checks['f32_vs_f64_worst_maxabs']:.2e}")


def random_spec(rng):
    """A random DecoderConfig of the kinds the official builder accepts (it may still refuse or fail to run it;
    the caller skips those)."""
    pick = rng.choice
    s = rng.randint(1, 6)
    depth = [pick([0, 0, 1, 1, 2]) for _ in range(s)]
    if s == 1:
        depth[0] = max(depth[0], 1)
    match = rng.random() < 0.7
    width = [0] * s
    width[s - 1] = pick([16, 32, 48, 64])
    flow = width[s - 1]
    for i in range(s - 2, -1, -1):
        if depth[i] == 0:
            width[i] = flow  # an empty stage passes the channels through
        elif match:
            width[i] = pick([8, 16, 32, 48, 64])
            flow = width[i]
        else:
            width[i] = flow  # blocks need in == out
    blocks = [pick(["ResBlock", "EViT_GLU"]) if w >= 32 else "ResBlock" for w in width]
    default_acts = rng.random() < 0.5
    norms = [pick(["trms2d", "bn2d", None] + (["ln2d"] if b == "EViT_GLU" else [])) for b in blocks]
    acts = ["silu" if default_acts else pick(["relu", "relu6", "hswish", "silu", "gelu"] if b == "EViT_GLU"
                                             else ["relu", "silu", "tanh", "sigmoid", None]) for b in blocks]
    one = lambda v: v[0] if rng.random() < 0.3 and all(x == v[0] for x in v) else v  # noqa: E731
    latent = pick([8, 16, 32])
    in_shortcut = pick(["duplicating", None]) if width[s - 1] % latent == 0 else None
    kwargs = dict(in_channels=pick([3, 3, 3, 4]), latent_channels=latent, width_list=width, depth_list=depth,
                  block_type=one(blocks), norm=one(norms), act=one(acts),
                  upsample_block_type=pick(["ConvPixelShuffle", "InterpolateConv"]), upsample_match_channel=match,
                  upsample_shortcut=pick(["duplicating", "InterpolateConv", None]), in_shortcut=in_shortcut,
                  out_norm="trms2d" if default_acts else pick(["trms2d", "bn2d", None]),
                  out_act="relu" if default_acts else pick(["relu", "silu", "tanh", "sigmoid", None]))
    grid = lambda: (rng.randint(1, 2), rng.randint(1, 4), rng.randint(1, 4))  # noqa: E731
    return kwargs, rng.randint(0, 10**6), grid(), grid(), "random configuration"


def make_random(mod, n, seed, out_root, commit):
    """`n` random configurations the official code builds and runs, as `decoder-configs-random-SEED-I` sets."""
    import random

    rng = random.Random(seed)
    made = tries = 0
    while made < n and tries < 50 * n:
        tries += 1
        spec = random_spec(rng)
        try:
            dec = build(mod, spec[0], spec[1])
            b, h, w = spec[2]
            run(dec, latent(b, spec[0]["latent_channels"], h, w, torch.Generator().manual_seed(0)), True)
        except Exception:  # the official builder or forward refuses this one
            continue
        make_set(mod, f"random-{seed}-{made}", out_root, commit, spec)
        made += 1


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--official", default=os.environ.get("DINO_SAE_OFFICIAL"),
                    help="checkout of wkdgnsgo/dino-sae (env DINO_SAE_OFFICIAL)")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures"))
    ap.add_argument("--only", nargs="*", choices=sorted(CONFIGS), help="make only these sets")
    ap.add_argument("--random", type=int, default=0, metavar="N",
                    help="instead: N random configurations the official code builds and runs (for a sweep outside "
                         "the repository, e.g. --out /tmp/sweep; see tests/decoder_configs.rs)")
    ap.add_argument("--seed", type=int, default=0, help="seed of --random")
    a = ap.parse_args()
    if not a.official:
        sys.exit("give --official PATH (a checkout of https://github.com/wkdgnsgo/dino-sae) or set DINO_SAE_OFFICIAL")
    torch.set_num_threads(1)
    mod = import_official(a.official)
    commit = official_commit(a.official)
    if a.random:
        make_random(mod, a.random, a.seed, a.out, commit)
        return
    for name in a.only or CONFIGS:
        make_set(mod, name, a.out, commit)


if __name__ == "__main__":
    main()
