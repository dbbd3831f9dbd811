#!/usr/bin/env bash
# One self-contained, resumable burst of DINO-SAE training on burn's wgpu backend (issue 26), for whenever a GPU is
# at hand: a prebuilt `dino-sae` binary, the teacher and the photos already on disk (no cargo, no network), and a
# time limit after which the run writes a checkpoint and stops cleanly. Run it again (same arguments) and it resumes
# exactly where it stopped; the run folder also resumes on the CPU (`dino-sae train` with the same flags), and a
# CPU run resumes here: checkpoints do not depend on the device that wrote them.
#
#   bash scripts/gpu-train.sh --run DIR [--minutes 9] [--bin PATH] [--teacher DIR] [--photos DIR] [--init MODEL]
#                             [--steps N] [--batch B] [--crop C] [--lr LR] [--backend wgpu|cpu] [-- more train flags]
#   bash scripts/gpu-train.sh --pack DIR    # a stripped binary, the teacher and the training photos (links resolved)
#                                           # copied into DIR, to carry to a GPU machine that has no network
#
# Defaults: --bin $DINO_SAE_BIN, else DIR/bin/dino-sae of a --pack into .gpu-train, else
# ${CARGO_TARGET_DIR:-target}/{release,debug}/dino-sae; --teacher/--photos from a --pack, else the cache of
# scripts/fetch-teacher.sh and fetch-photos.sh (${XDG_CACHE_HOME:-~/.cache}/dino-sae/{teacher-dinov2-s14,photos/train});
# --init assets/default-model for a new run (the shipped model, continued with a fresh cosine schedule);
# --minutes 9 (the whole burst, start-up included, stays under 10); --steps 1200 --batch 16 --crop 128 --lr 2e-4
# (batch 16 at 128 px: four CPU steps' photos per GPU step). The learning-rate schedule spans --steps, so bursts of
# one run continue one schedule. Exit code 0 when the burst ran (stopped at the time limit or finished).
# On a CPU-only machine `--backend wgpu` takes Mesa's lavapipe (scripts/setup.sh --gui installs it): far slower than
# the CPU backend, but the same shaders as a GPU: tests/cli.rs runs a short burst there.
set -uo pipefail
cd "$(dirname "$0")/.."
cache="${DINO_SAE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dino-sae}"

bin="${DINO_SAE_BIN:-}"
run=""
minutes=9
teacher=""
photos=""
init=""
steps=1200
batch=16
crop=128
lr=2e-4
backend=wgpu
pack=""
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --run) run="$2"; shift 2 ;;
    --minutes) minutes="$2"; shift 2 ;;
    --bin) bin="$2"; shift 2 ;;
    --teacher) teacher="$2"; shift 2 ;;
    --photos) photos="$2"; shift 2 ;;
    --init) init="$2"; shift 2 ;;
    --steps) steps="$2"; shift 2 ;;
    --batch) batch="$2"; shift 2 ;;
    --crop) crop="$2"; shift 2 ;;
    --lr) lr="$2"; shift 2 ;;
    --backend) backend="$2"; shift 2 ;;
    --pack) pack="$2"; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "gpu-train: unknown argument $1 (see --help)" >&2; exit 64 ;;
  esac
done

find_bin() {
  local t="${CARGO_TARGET_DIR:-target}"
  for c in "$bin" .gpu-train/bin/dino-sae "$t/release/dino-sae" "$t/debug/dino-sae"; do
    if [ -n "$c" ] && [ -x "$c" ]; then echo "$c"; return 0; fi
  done
  return 1
}

if [ -n "$pack" ]; then
  b=$(find_bin) || { echo "gpu-train: no dino-sae binary (cargo build --workspace first, or --bin)" >&2; exit 1; }
  t="${teacher:-$cache/teacher-dinov2-s14}"; p="${photos:-$cache/photos/train}"
  [ -d "$t" ] || { echo "gpu-train: no teacher at $t (scripts/fetch-teacher.sh)" >&2; exit 1; }
  [ -d "$p" ] || { echo "gpu-train: no photos at $p (scripts/fetch-photos.sh)" >&2; exit 1; }
  mkdir -p "$pack/bin" "$pack/teacher" "$pack/photos"
  cp "$b" "$pack/bin/dino-sae" && strip "$pack/bin/dino-sae" 2>/dev/null
  cp -rL "$t/." "$pack/teacher/"
  cp -rL "$p/." "$pack/photos/"
  echo "packed $(du -sh "$pack" | cut -f1) into $pack (binary, teacher, $(ls "$pack/photos" | wc -l) photos)"
  exit 0
fi

[ -n "$run" ] || { echo "gpu-train: --run DIR is required (see --help)" >&2; exit 64; }
b=$(find_bin) || { echo "gpu-train: no dino-sae binary (cargo build --workspace first, --bin, or --pack)" >&2; exit 1; }
if [ -z "$teacher" ]; then
  if [ -d .gpu-train/teacher ]; then teacher=.gpu-train/teacher; else teacher="$cache/teacher-dinov2-s14"; fi
fi
if [ -z "$photos" ]; then
  if [ -d .gpu-train/photos ]; then photos=.gpu-train/photos; else photos="$cache/photos/train"; fi
fi
[ -d "$teacher" ] || { echo "gpu-train: no teacher at $teacher (scripts/fetch-teacher.sh, or --teacher)" >&2; exit 1; }
[ -d "$photos" ] || { echo "gpu-train: no photos at $photos (scripts/fetch-photos.sh, or --photos)" >&2; exit 1; }
args=(train --stage 1 --backend "$backend" --teacher "$teacher" --photos "$photos" -o "$run" --steps "$steps"
      --batch "$batch" --crop "$crop" --lr "$lr" --warmup 20 --schedule cosine --align cosine
      --checkpoint-every 50 --time-limit "$minutes")
# a new run starts from --init (default: the shipped model); a run with a checkpoint resumes from it
if [ ! -s "$run/latest" ]; then args+=(--init "${init:-assets/default-model}"); fi
echo "gpu-train: $b ${args[*]} ${extra[*]}"
# the binary stops itself at the limit with a checkpoint; `timeout` (limit + 2 minutes) only guards a hung device
timeout "$(awk -v m="$minutes" 'BEGIN { printf "%d", m * 60 + 120 }')" "$b" "${args[@]}" "${extra[@]}"
rc=$?
[ -s "$run/latest" ] && echo "gpu-train: latest checkpoint $(cat "$run/latest") in $run"
exit $rc
