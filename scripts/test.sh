#!/usr/bin/env bash
# The project's test command (README). Builds the workspace once (dev profile, optimised dependencies) and runs
# every test. Reuses a persistent target directory outside the clone when one exists.
set -euo pipefail
cd "$(dirname "$0")/.."
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
# The photo split (scripts/photos.tsv): well-formed, disjoint by whole photo and scene, held-out sets fixed.
bash scripts/fetch-photos.sh --check
cargo clippy --workspace --all-targets -- -D warnings
bash scripts/fetch-teacher.sh
bash scripts/fetch-lpips.sh
cargo test --workspace
# The CLI parity check on the fixture copies (the same sets the shared fixtures hold).
bin="${CARGO_TARGET_DIR:-target}/debug/dino-sae"
"$bin" verify-fixture tests/fixtures/dinosae-setA
"$bin" verify-fixture tests/fixtures/dinov2-evit-setA
"$bin" verify-fixture tests/fixtures/dit-setA
# Every kind of decoder configuration the official DCAE_Decoder builds (scripts/make_decoder_fixtures.py).
for d in tests/fixtures/decoder-configs-*/; do
  "$bin" verify-fixture "$d"
done
