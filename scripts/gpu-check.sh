#!/usr/bin/env bash
# One self-contained GPU check (issue 19): every fixture set with `--backend wgpu`, then `dino-sae bench --backend
# wgpu` for the default model and the released architecture (random weights), within a time budget; prints one
# table. Meant for a lent GPU machine with a Vulkan driver and no network: it needs only a prebuilt `dino-sae`
# binary and this repository's tests/fixtures and assets/default-model (no cargo, no downloads).
#
#   bash scripts/gpu-check.sh [--bin PATH] [--budget SECONDS] [--repeats N] [--presets "default released"] [--no-verify]
#   bash scripts/gpu-check.sh --pack DIR    # copy a stripped binary into DIR/bin to carry to the GPU machine
#
# Defaults: --bin $DINO_SAE_BIN, else DIR/bin/dino-sae of an earlier --pack into the repository's .gpu-check, else
# ${CARGO_TARGET_DIR:-target}/{release,debug}/dino-sae; --budget 540 (9 minutes in all: a step that would start
# with less than 20 s left is skipped and reported as such; every step runs under `timeout` of the time left);
# --repeats 5. Exit code 0 when every fixture set that ran passed, 1 otherwise.
# On a CPU-only machine `--backend wgpu` takes a software Vulkan adapter (Mesa's lavapipe) when one is installed:
# the fixtures pass there too, and a small --budget tests the script itself.
set -uo pipefail
cd "$(dirname "$0")/.."

bin="${DINO_SAE_BIN:-}"
budget=540
repeats=5
presets="default released"
pack=""
verify=1
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) bin="$2"; shift 2 ;;
    --budget) budget="$2"; shift 2 ;;
    --repeats) repeats="$2"; shift 2 ;;
    --presets) presets="$2"; shift 2 ;;
    --pack) pack="$2"; shift 2 ;;
    --no-verify) verify=0; shift ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "gpu-check: unknown argument $1 (see --help)" >&2; exit 64 ;;
  esac
done

find_bin() {
  local t="${CARGO_TARGET_DIR:-target}"
  for c in "$bin" .gpu-check/bin/dino-sae "$t/release/dino-sae" "$t/debug/dino-sae"; do
    if [ -n "$c" ] && [ -x "$c" ]; then echo "$c"; return 0; fi
  done
  return 1
}

if ! b="$(find_bin)"; then
  echo "gpu-check: no dino-sae binary (build the workspace, or pass --bin / DINO_SAE_BIN)" >&2
  exit 66
fi

if [ -n "$pack" ]; then
  mkdir -p "$pack/bin"
  cp "$b" "$pack/bin/dino-sae"
  strip "$pack/bin/dino-sae" 2>/dev/null || echo "gpu-check: strip not found; binary copied unstripped" >&2
  du -sh "$pack/bin/dino-sae" assets/default-model tests/fixtures
  exit 0
fi

start=$(date +%s)
rows=()
status=0
left() { echo $((budget - ($(date +%s) - start))); }

# run NAME CMD...: run CMD under `timeout` of the time left, output in $out, seconds in $secs, exit code in $rc.
run() {
  local name="$1"; shift
  local l; l=$(left)
  if [ "$l" -lt 20 ]; then
    rows+=("| $name | skipped (budget) | - | - |")
    rc=125
    return
  fi
  local t0; t0=$(date +%s.%N)
  out="$(timeout "$l" "$@" 2>&1)"
  rc=$?
  secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
}

echo "gpu-check: $b, budget ${budget}s, repeats $repeats, presets: $presets"
if command -v vulkaninfo >/dev/null; then
  vulkaninfo --summary 2>/dev/null | grep -E "deviceName|driverName|apiVersion" | sed 's/^/  /' | sort -u
fi
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader

# 1. Correctness: every fixture set on wgpu.
sets=(tests/fixtures/dinosae-setA tests/fixtures/dinov2-evit-setA tests/fixtures/dit-setA tests/fixtures/decoder-configs-*)
[ "$verify" = 1 ] || sets=()
for d in "${sets[@]}"; do
  [ -d "$d" ] || continue
  name="verify $(basename "$d")"
  run "$name" "$b" verify-fixture "$d" --backend wgpu
  [ "$rc" = 125 ] && continue
  adapter=$(grep -m1 '^backend' <<<"$out" | cut -c9-)
  summary=$(grep -m1 '^verify-fixture:' <<<"$out" | cut -d' ' -f2-)
  worst=$(grep -m1 -o 'worst max_abs/max(1,|ref|) = [0-9.e+-]*' <<<"$out" | awk '{print $NF}')
  if [ "$rc" = 0 ]; then verdict="pass"; elif [ "$rc" = 124 ]; then verdict="TIMEOUT"; status=1; else verdict="FAIL ($rc)"; status=1; fi
  rows+=("| $name | $verdict: ${summary:-no summary} | $secs | worst ${worst:-?}; ${adapter:-?} |")
  if [ "$rc" != 0 ] && [ "$rc" != 124 ]; then tail -n 5 <<<"$out" | sed 's/^/    /' >&2; fi
done

# 2. Speed: the bench rows on wgpu (encode, decode, preview, steer preview, DiT step, 25-step sample).
for p in $presets; do
  run "bench $p" "$b" bench --preset "$p" --backend wgpu --repeats "$repeats" --json
  [ "$rc" = 125 ] && continue
  if [ "$rc" != 0 ]; then
    rows+=("| bench $p | $([ "$rc" = 124 ] && echo 'TIMEOUT (rows so far below)' || echo "FAIL ($rc)") | $secs | |")
  fi
  while IFS= read -r line; do
    [[ "$line" == \{* ]] || continue
    row=$(python3 - "$line" <<'EOF' 2>/dev/null || echo "$line"
import json, sys
r = json.loads(sys.argv[1])
gf = f"{r['flops'] / 1e9 / (r['median_ms'] / 1e3):.0f} GFLOP/s" if r.get("flops") else ""
print(f"| {r['name']} ({r['backend']}) | median {r['median_ms']:.1f} ms (p10 {r['p10_ms']:.1f}, p90 {r['p90_ms']:.1f}) | | {gf} |")
EOF
)
    rows+=("$row")
  done <<<"$out"
done

echo
echo "| step | result | s | notes |"
echo "|---|---|---|---|"
printf '%s\n' "${rows[@]}"
echo
echo "gpu-check: $(( $(date +%s) - start )) s of ${budget} s; $([ $status = 0 ] && echo 'all fixture sets that ran passed' || echo 'FAILURES above')"
exit $status
