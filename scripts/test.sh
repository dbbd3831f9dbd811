#!/usr/bin/env bash
# The project's test command (README). Builds the workspace once (dev profile, optimised dependencies) and runs
# every test. Reuses a persistent target directory outside the clone when one exists.
set -euo pipefail
cd "$(dirname "$0")/.."
# Snapshots are compared, never rewritten by the test command: UPDATE_SNAPSHOTS would make egui_kittest overwrite
# docs/snapshots and pass. Rewrite them deliberately with `UPDATE_SNAPSHOTS=1 cargo test -p dino-sae-studio --test
# app_snapshots`, look at the diff, and commit it.
if [ -n "${UPDATE_SNAPSHOTS+set}" ]; then
  echo "scripts/test.sh: UPDATE_SNAPSHOTS is set; refusing to run (it would rewrite the snapshots instead of comparing)" >&2
  exit 1
fi
# A private runtime directory for the UI tests (Mesa and the windowing code warn on every start when
# XDG_RUNTIME_DIR is missing or not owned by the user, which buries real failures).
if [ -z "${XDG_RUNTIME_DIR:-}" ] || [ ! -d "$XDG_RUNTIME_DIR" ] || [ ! -O "$XDG_RUNTIME_DIR" ]; then
  XDG_RUNTIME_DIR="$(mktemp -d "${TMPDIR:-/tmp}/dino-sae-runtime.XXXXXX")"
  chmod 700 "$XDG_RUNTIME_DIR"
  export XDG_RUNTIME_DIR
  trap 'rm -rf "$XDG_RUNTIME_DIR"' EXIT
fi
bash scripts/setup.sh --gui
# The integration tests live in the top-level tests/, shared by the crates; cargo discovers tests only inside a
# package, so each crate lists its own as [[test]]. A file in no crate's list would never run: refuse it.
for f in tests/*.rs; do
  grep -qsF "path = \"../$f\"" */Cargo.toml || {
    echo "$f is no crate's [[test]]: add it to engine/, cli/ or app/Cargo.toml" >&2
    exit 1
  }
done
# Build the workspace as a whole first (building one crate alone would re-resolve features).
cargo build --workspace --all-targets
# Lint gates: one formatting (rustfmt.toml) and clippy with every warning an error (unwrap_used included; tests may
# unwrap, clippy.toml).
cargo fmt --all --check
# The engine's layers (scripts/check-layers.py, README "Architecture"): no import cycle between its modules, each
# module imports only lower layers, no `unsafe` in the library.
python3 scripts/check-layers.py --self-test
python3 scripts/check-layers.py
# The photo split (scripts/photos.tsv): well-formed, disjoint by whole photo and scene, held-out sets fixed.
bash scripts/fetch-photos.sh --check
cargo clippy --workspace --all-targets -- -D warnings
bash scripts/fetch-teacher.sh
bash scripts/fetch-lpips.sh
cargo test --workspace
# The same pictures and numbers on other core counts: the UI snapshots and the parity checks again on one core
# (affinity) and with four worker threads (the CPU backend's rayon pool), so a user's 1-, 4- or 16-core machine
# sees what this one does.
if command -v taskset >/dev/null; then
  taskset -c 0 cargo test --workspace --test app_snapshots -- panel_snapshots_match_the_committed_ones
  taskset -c 0 cargo test --workspace --test parity
else
  echo "taskset (util-linux) not found: the one-core rerun is skipped" >&2
fi
RAYON_NUM_THREADS=4 cargo test --workspace --test app_snapshots -- panel_snapshots_match_the_committed_ones
RAYON_NUM_THREADS=4 cargo test --workspace --test parity
# The engine's quickstart (engine/examples/quickstart.rs): default model, a photo, encode, steer, decode, PNG.
"${CARGO_TARGET_DIR:-target}/debug/examples/quickstart" assets/samples/chelsea.png "${TMPDIR:-/tmp}/dino-sae-quickstart.png"
# The CLI parity check on the fixture copies (the same sets the shared fixtures hold).
bin="${CARGO_TARGET_DIR:-target}/debug/dino-sae"
"$bin" verify-fixture tests/fixtures/dinosae-setA
"$bin" verify-fixture tests/fixtures/dinov2-evit-setA
"$bin" verify-fixture tests/fixtures/dit-setA
# Every kind of decoder configuration the official DCAE_Decoder builds (scripts/make_decoder_fixtures.py).
for d in tests/fixtures/decoder-configs-*/; do
  "$bin" verify-fixture "$d"
done
