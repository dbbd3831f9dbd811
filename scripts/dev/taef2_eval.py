"""Developer script (not run by CI): the "peer row" of docs/RESULTS.md -- TAEF2, the tiny autoencoder for the
FLUX.2 latent space by Ollin Boer Bohan (madebyollin), on our held-out photos with `dino-sae eval`'s protocol.

Weights (MIT licence, Copyright (c) 2023 Ollin Boer Bohan; not shipped here):
  github.com/madebyollin/taesd, files taef2_encoder.pth (2,704,692 bytes, sha256 10a4e102...f147b6) and
  taef2_decoder.pth (2,704,756 bytes, sha256 0a44a31e...be0ab5) at commit 5cccb12dc72074a4be35680c3b108548a7c69978
  (2025-12-27). Each is a PyTorch zip state dict of float16 tensors (1,338,528 / 1,338,499 parameters), read here
  with a small restricted unpickler (only torch's tensor-rebuild function is allowed): torch is not needed.
  Get them with e.g. `git clone https://github.com/madebyollin/taesd` (or the repo snapshot) and pass
  --weights-dir to that folder.

Model (written from the facts of the repo's taesd.py, not its code; float32 maths in numpy, NCHW, batch 1):
  image in [0, 1] RGB (no normalisation) -> encoder -> latent [32, H/8, W/8] (f8 x 32 channels) -> decoder ->
  clamp to [0, 1]. conv = 3x3, padding 1. Block(x) = ReLU(conv(ReLU(conv(ReLU(conv(x))))) + x) (64 -> 64, identity
  skip); a "mid-block" (the flux_2 variant) first does x += conv1x1(ReLU(GroupNorm(4 groups, eps 1e-5)(conv1x1(x)))),
  64 -> 256 -> 64, both 1x1 without bias. Encoder: conv 3->64, Block, then 3 x [conv stride 2 (no bias), 3 Blocks]
  (the last three are mid-blocks), conv 64->32. Decoder: tanh(z/3)*3, conv 32->64, ReLU, 3 mid-blocks, then
  3 x [nearest upsample x2, conv (no bias), Blocks (3, 3, then 1)], conv 64->3. The latent stays float (as our
  model's latent does in `dino-sae eval`); --quantize-latents rounds it to 8 bits the way taesd.py's demo stores it
  (z / 6 + 0.5, clamped to [0, 1], times 255, rounded, and back).
  Cross-checked against the original PyTorch code (the TAESD class of taesd.py at the commit above, run as
  TAESD(taef2_encoder.pth, taef2_decoder.pth), i.e. 32 latent channels and the flux_2 mid-blocks, float32 on CPU,
  torch 2.15.0) on the 256 x 256 crops of chelsea.png, Path.jpg and astronaut.png: max |latent difference|
  6.2e-6, max |reconstruction difference| 5.7e-6, PSNR and SSIM equal to 4 and 5 decimals.

Protocol, mirrored from engine/src/train/data.rs (PhotoSet::load / center), engine/src/eval.rs and
engine/src/metrics.rs (`dino-sae eval --size 256`):
  * every file of the folder, sorted by name, that decodes as an image (others skipped with a message);
    decoded to 8-bit RGB with the EXIF orientation applied, grey expanded, alpha composited over white;
  * a photo whose longer side is over 1024 is downscaled with the image crate's resize, FilterType::Triangle, to
    (trunc(w * s), trunc(h * s)), s = 1024 / max(w, h) in f32;
  * centre square crop: side s = min(w, h), offsets ((w - s) / 2, (h - s) / 2) (integer division), then the image
    crate's resize to size x size with FilterType::Lanczos3;
    both resizes are re-implemented here exactly as image 0.25.10 does them (separable, vertical pass first into
    f32 without clamping, then horizontal, clamped to [0, 255] and rounded half away from zero; kernel weights
    in f32, normalised to sum 1, support scaled by the downscale ratio; taps accumulated in the same order);
  * original = u8 / 255 (f32); reconstruction = decoder output clamped to [0, 1] (f32, not rounded to 8 bits);
  * PSNR per photo in dB, peak 1.0, MSE over all H x W x 3 values (f64); SSIM per photo = mean over the 3 channels
    of the mean SSIM map, 11-tap Gaussian window (sigma 1.5), 'valid' filtering (no padding), C1 = 0.01^2,
    C2 = 0.03^2, data range 1; the row = arithmetic mean over photos of the per-photo dB and SSIM values.
Known differences: JPEGs are decoded by Pillow (libjpeg-turbo) here and by zune-jpeg in the engine; the two can
differ by a level or so on some pixels (effect not measured here: no Rust build was run; expected to be small, as
the crop is downscaled and TAEF2 reconstructs whichever input it gets). Against Pillow's own Lanczos resize the
crops here differ by 0.2 levels on average (max 1) on chelsea.png, the size of a rounding difference. sin() in the
Lanczos weights and the numpy matmul order may differ from Rust in the last bit of f32. Teacher cosine, Frechet
distance and LPIPS-VGG-like are not computed (TAEF2 has no DINO latent; LPIPS would need the engine).

Measured with this script (photos v2 of scripts/photos.tsv, --size 256): val 31.49 dB / SSIM 0.9108 (7 photos),
val2 30.14 dB / SSIM 0.8935 (13 photos); with --quantize-latents 31.41 / 0.9103 and 30.08 / 0.8928.

Usage (Pillow and numpy only; ~10 s a photo on two shared cores):
    python3 scripts/dev/taef2_eval.py --weights-dir PATH/TO/taesd \
        --photos ~/.cache/dino-sae/photos/val ~/.cache/dino-sae/photos/val2 --size 256
"""

import argparse
import collections
import os
import pickle
import sys
import time
import zipfile

import numpy as np
from PIL import Image, ImageOps

# ----------------------------------------------------------------------------------------------- weights


def load_state_dict(path):
    """A PyTorch zip checkpoint (a dict of tensors) as {name: float32 numpy array}, without torch."""
    zf = zipfile.ZipFile(path)
    pkl = next(n for n in zf.namelist() if n.endswith("/data.pkl"))
    root = pkl[: -len("/data.pkl")]
    kinds = {"FloatStorage": np.float32, "HalfStorage": np.float16, "DoubleStorage": np.float64}

    def rebuild(storage, offset, size, stride, *_):
        view = np.lib.stride_tricks.as_strided(
            storage[offset:], shape=tuple(size), strides=tuple(s * storage.itemsize for s in stride)
        )
        return np.array(view, dtype=np.float32)

    class Restricted(pickle.Unpickler):
        def find_class(self, module, name):
            if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
                return rebuild
            if (module, name) == ("collections", "OrderedDict"):
                return collections.OrderedDict
            if module == "torch" and name in kinds:
                return name
            raise pickle.UnpicklingError(f"{path}: refusing {module}.{name}")

        def persistent_load(self, pid):
            _tag, kind, key, _location, numel = pid
            return np.frombuffer(zf.read(f"{root}/data/{key}"), dtype=kinds[kind])[:numel]

    with zf.open(pkl) as f:
        return dict(Restricted(f).load())


# ----------------------------------------------------------------------------------------------- model


class Params:
    """Hands out tensors by key and remembers which were used (all must be)."""

    def __init__(self, sd, what):
        self.sd, self.what, self.used = sd, what, set()

    def __call__(self, key):
        if key not in self.sd:
            raise KeyError(f"{self.what}: missing {key}")
        self.used.add(key)
        return self.sd[key]

    def opt(self, key):
        return self(key) if key in self.sd else None

    def check_all_used(self):
        left = sorted(set(self.sd) - self.used)
        if left:
            raise ValueError(f"{self.what}: unused tensors {left[:6]}{'...' if len(left) > 6 else ''}")


def conv3x3(x, w, b=None, stride=1):
    """x [C, H, W], w [O, C, 3, 3], padding 1."""
    c, h, wd = x.shape
    ho, wo = (h - 1) // stride + 1, (wd - 1) // stride + 1
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1)))
    out = np.zeros((w.shape[0], ho * wo), np.float32)
    for dy in range(3):
        for dx in range(3):
            tap = xp[:, dy : dy + stride * (ho - 1) + 1 : stride, dx : dx + stride * (wo - 1) + 1 : stride]
            out += w[:, :, dy, dx] @ tap.reshape(c, -1)
    if b is not None:
        out += b[:, None]
    return out.reshape(-1, ho, wo)


def conv1x1(x, w):
    c, h, wd = x.shape
    return (w[:, :, 0, 0] @ x.reshape(c, -1)).reshape(-1, h, wd)


def relu(x):
    return np.maximum(x, 0, out=x)


def group_norm(x, groups, gamma, beta, eps=1e-5):
    c, h, w = x.shape
    g = x.reshape(groups, -1).astype(np.float64)
    mean = g.mean(axis=1, keepdims=True)
    var = g.var(axis=1, keepdims=True)
    y = ((g - mean) / np.sqrt(var + eps)).astype(np.float32).reshape(c, h, w)
    return y * gamma[:, None, None] + beta[:, None, None]


def block(p, key, x):
    w_pool = p.opt(f"{key}.pool.0.weight")
    if w_pool is not None:  # the flux_2 mid-block: a pooled-statistics residual before the convs
        t = conv1x1(x, w_pool)
        t = relu(group_norm(t, 4, p(f"{key}.pool.1.weight"), p(f"{key}.pool.1.bias")))
        x = x + conv1x1(t, p(f"{key}.pool.3.weight"))
    t = relu(conv3x3(x, p(f"{key}.conv.0.weight"), p(f"{key}.conv.0.bias")))
    t = relu(conv3x3(t, p(f"{key}.conv.2.weight"), p(f"{key}.conv.2.bias")))
    t = conv3x3(t, p(f"{key}.conv.4.weight"), p(f"{key}.conv.4.bias"))
    if f"{key}.skip.weight" in p.sd:
        raise ValueError("a Block with a 1x1 skip: not a TAEF2 checkpoint")
    return relu(t + x)


def encode(p, x):
    """x [3, H, W] in [0, 1] -> latent [32, H/8, W/8]. Sequential indices as in the state dict."""
    x = conv3x3(x, p("0.weight"), p("0.bias"))
    x = block(p, "1", x)
    for down, blocks in ((2, (3, 4, 5)), (6, (7, 8, 9)), (10, (11, 12, 13))):
        x = conv3x3(x, p(f"{down}.weight"), stride=2)
        for k in blocks:
            x = block(p, str(k), x)
    return conv3x3(x, p("14.weight"), p("14.bias"))


def decode(p, z):
    """latent [32, h, w] -> image [3, 8h, 8w], not yet clamped."""
    x = np.tanh(z / 3) * 3
    x = relu(conv3x3(x, p("1.weight"), p("1.bias")))
    for k in (3, 4, 5):
        x = block(p, str(k), x)
    for up, blocks in ((7, (8, 9, 10)), (12, (13, 14, 15)), (17, (18,))):
        x = x.repeat(2, axis=1).repeat(2, axis=2)  # nearest x2
        x = conv3x3(x, p(f"{up}.weight"))
        for k in blocks:
            x = block(p, str(k), x)
    return conv3x3(x, p("19.weight"), p("19.bias"))


# ----------------------------------------------------------------------------------------------- resize (image crate)


def _kernel(name, x):
    x = x.astype(np.float32)
    if name == "triangle":
        return np.where(np.abs(x) < 1, np.float32(1) - np.abs(x), np.float32(0)).astype(np.float32)

    def sinc(t):
        a = t * np.float32(np.pi)
        with np.errstate(invalid="ignore", divide="ignore"):
            s = np.sin(a) / a
        return np.where(t == 0, np.float32(1), s).astype(np.float32)

    return np.where(np.abs(x) < 3, sinc(x) * sinc(x / np.float32(3)), np.float32(0)).astype(np.float32)


def _taps(n_in, n_out, name):
    """Per output index: (left, f32 weights) as image 0.25.10's horizontal_sample / vertical_sample compute them."""
    support = np.float32({"triangle": 1.0, "lanczos3": 3.0}[name])
    ratio = np.float32(n_in) / np.float32(n_out)
    sratio = np.float32(1) if ratio < 1 else ratio
    src_support = support * sratio
    out = []
    for o in range(n_out):
        centre = (np.float32(o) + np.float32(0.5)) * ratio
        left = min(max(int(np.floor(centre - src_support)), 0), n_in - 1)
        right = min(max(int(np.ceil(centre + src_support)), left + 1), n_in)
        centre = centre - np.float32(0.5)
        w = _kernel(name, (np.arange(left, right, dtype=np.float32) - centre) / sratio)
        total = np.float32(0)
        for v in w:  # sequential f32 sum, as Rust
            total = np.float32(total + v)
        out.append((left, (w / total).astype(np.float32)))
    return out


def _sample_axis0(a, n_out, name):
    """Resample axis 0 of a float32 array, accumulating taps in order (t += p * w, f32)."""
    taps = _taps(a.shape[0], n_out, name)
    width = max(len(w) for _, w in taps)
    lefts = np.array([l for l, _ in taps])
    ws = np.zeros((n_out, width), np.float32)
    for i, (_, w) in enumerate(taps):
        ws[i, : len(w)] = w
    extra = (1,) * (a.ndim - 1)
    t = np.zeros((n_out,) + a.shape[1:], np.float32)
    for k in range(width):
        idx = np.minimum(lefts + k, a.shape[0] - 1)  # beyond a row's taps the weight is 0
        t = t + a[idx] * ws[:, k].reshape((n_out,) + extra)
    return t


def round_u8(x):
    """f32 values in [0, 255] rounded half away from zero (Rust's f32::round), exactly."""
    r = np.trunc(x)
    return (r + (x - r >= 0.5)).astype(np.uint8)


def resize(img, w, h, name):
    """image::imageops::resize(img, w, h, filter) for an RGB8 HWC array."""
    if img.shape[:2] == (h, w):
        return img.copy()
    tmp = _sample_axis0(img.astype(np.float32), h, name)  # vertical first, kept in f32
    out = _sample_axis0(tmp.transpose(1, 0, 2), w, name).transpose(1, 0, 2)
    return round_u8(np.clip(out, 0, 255))


# ----------------------------------------------------------------------------------------------- photos


def load_rgb(path):
    im = Image.open(path)
    im.load()
    im = ImageOps.exif_transpose(im)
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        a = np.asarray(im, dtype=np.float64)
        a = np.clip(np.floor(a / 257.0 + 0.5), 0, 255).astype(np.uint8)
        return np.repeat(a[:, :, None], 3, axis=2)
    has_alpha = im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (im.mode == "P" and "transparency" in im.info)
    if has_alpha:
        a = np.asarray(im.convert("RGBA"), dtype=np.float32) / np.float32(255)
        alpha = a[:, :, 3:4]
        rgb = (a[:, :, :3] * alpha + (np.float32(1) - alpha)) * np.float32(255)
        return round_u8(rgb)
    return np.asarray(im.convert("RGB"), dtype=np.uint8)


def load_folder(folder, max_side=1024):
    names, imgs = [], []
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            continue
        try:
            img = load_rgb(path)
        except Exception as e:  # noqa: BLE001 -- like PhotoSet::load: reported, not fatal
            print(f"skipping {path}: {e}", file=sys.stderr)
            continue
        h, w = img.shape[:2]
        s = np.float32(max_side) / np.float32(max(w, h))
        if s < 1:
            img = resize(img, int(np.float32(w) * s), int(np.float32(h) * s), "triangle")
        names.append(name)
        imgs.append(img)
    if not imgs:
        raise SystemExit(f"no readable images in {folder}")
    return names, imgs


def centre(img, size):
    h, w = img.shape[:2]
    s = min(w, h)
    x0, y0 = (w - s) // 2, (h - s) // 2
    return resize(img[y0 : y0 + s, x0 : x0 + s], size, size, "lanczos3")


# ----------------------------------------------------------------------------------------------- metrics


def psnr(a, b):
    d = (a - b).astype(np.float64)  # difference in f32, as the engine
    mse = np.mean(d * d)
    return float("inf") if mse == 0 else 10 * np.log10(1 / mse)


def _gauss11():
    x = np.arange(11, dtype=np.float64) - 5
    k = np.exp(-x * x / (2 * 1.5 * 1.5))
    return k / k.sum()


def _blur_valid(img):
    k = _gauss11()
    h, w = img.shape
    tmp = sum(k[i] * img[:, i : i + w - 10] for i in range(11))
    return sum(k[i] * tmp[i : i + h - 10, :] for i in range(11))


def ssim(a, b):
    c1, c2 = 0.01**2, 0.03**2
    total = 0.0
    for ch in range(3):
        x, y = a[:, :, ch].astype(np.float64), b[:, :, ch].astype(np.float64)
        mx, my = _blur_valid(x), _blur_valid(y)
        vx = _blur_valid(x * x) - mx * mx
        vy = _blur_valid(y * y) - my * my
        cxy = _blur_valid(x * y) - mx * my
        m = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
        total += m.mean()
    return total / 3


# ----------------------------------------------------------------------------------------------- main


def reconstruct(enc, dec, img8, quantize):
    x = (img8.astype(np.float32) / np.float32(255)).transpose(2, 0, 1)
    z = encode(enc, x)
    if quantize:
        q = np.round(np.clip(z / 6 + 0.5, 0, 1) * 255) / 255
        z = ((q - 0.5) * 6).astype(np.float32)
    y = np.clip(decode(dec, z), 0, 1)
    return y.transpose(1, 2, 0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights-dir", help="folder holding taef2_encoder.pth and taef2_decoder.pth")
    ap.add_argument("--encoder", help="encoder .pth (overrides --weights-dir)")
    ap.add_argument("--decoder", help="decoder .pth (overrides --weights-dir)")
    ap.add_argument("--photos", nargs="+", required=True, help="photo folder(s), one table each")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--quantize-latents", action="store_true", help="8-bit latents as taesd.py's demo stores them")
    ap.add_argument("--save-dir", help="write each centre crop and its reconstruction (PNG, rounded) here")
    ap.add_argument("--name", default="TAEF2 (madebyollin/taesd, f8 x 32 ch)", help="row name of the mean table")
    a = ap.parse_args()
    if a.size % 8:
        raise SystemExit("--size must be a multiple of 8 (TAEF2 is f8)")
    enc_path = a.encoder or os.path.join(a.weights_dir or ".", "taef2_encoder.pth")
    dec_path = a.decoder or os.path.join(a.weights_dir or ".", "taef2_decoder.pth")
    enc = Params(load_state_dict(enc_path), enc_path)
    dec = Params(load_state_dict(dec_path), dec_path)
    n_params = sum(v.size for v in enc.sd.values()) + sum(v.size for v in dec.sd.values())
    print(f"TAEF2: {enc_path}, {dec_path}: {n_params:,} parameters", file=sys.stderr)

    summary = []
    for folder in a.photos:
        folder = os.path.expanduser(folder)
        set_name = os.path.basename(os.path.normpath(folder))
        names, imgs = load_folder(folder)
        rows = []
        for name, img in zip(names, imgs):
            t0 = time.time()
            crop = centre(img, a.size)
            rec = reconstruct(enc, dec, crop, a.quantize_latents)
            enc.check_all_used()
            dec.check_all_used()
            orig = crop.astype(np.float32) / np.float32(255)
            p, q = psnr(orig, rec), ssim(orig, rec)
            rows.append((name, p, q))
            h, w = img.shape[:2]
            print(f"{set_name:<6} {name:<34} {w:>5}x{h:<5} PSNR {p:6.2f}  SSIM {q:.4f}  ({time.time() - t0:.1f} s)",
                  file=sys.stderr)
            if a.save_dir:
                os.makedirs(os.path.join(a.save_dir, set_name), exist_ok=True)
                stem = os.path.splitext(name)[0]
                Image.fromarray(crop).save(os.path.join(a.save_dir, set_name, f"{stem}-crop.png"))
                rec8 = np.floor(rec * 255 + 0.5).astype(np.uint8)
                Image.fromarray(rec8).save(os.path.join(a.save_dir, set_name, f"{stem}-taef2.png"))
        mp = float(np.mean([r[1] for r in rows]))
        mq = float(np.mean([r[2] for r in rows]))
        summary.append((set_name, len(rows), mp, mq))
        print(f"| {set_name} photo | PSNR (dB) | SSIM |\n|---|---|---|")
        for name, p, q in rows:
            print(f"| {name} | {p:.2f} | {q:.4f} |")
        print(f"| **mean** | **{mp:.2f}** | **{mq:.4f}** |\n")
    print("| model | set | images | PSNR (dB) | SSIM |\n|---|---|---|---|---|")
    for set_name, n, mp, mq in summary:
        tag = ", 8-bit latents" if a.quantize_latents else ""
        print(f"| {a.name}{tag} | {set_name} | {n} at {a.size}x{a.size} | {mp:.2f} | {mq:.4f} |")


if __name__ == "__main__":
    main()
