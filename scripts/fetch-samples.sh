#!/usr/bin/env bash
# Re-creates assets/samples from the scikit-image wheel on PyPI (public-domain / CC0 photos; see assets/NOTICE).
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
pip download --no-deps -q -d "$tmp" scikit-image==0.26.0
python3 - "$tmp" <<'PY'
import glob, sys, zipfile
whl = glob.glob(sys.argv[1] + "/scikit_image-0.26.0-*.whl")[0]
z = zipfile.ZipFile(whl)
for n in ["astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg"]:
    open("assets/samples/" + n, "wb").write(z.read("skimage/data/" + n))
PY
rm -rf "$tmp"
