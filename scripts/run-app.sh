#!/usr/bin/env bash
# Runs DINO-SAE Studio on the embedded default model (installs the window's runtime libraries on a fresh Debian
# machine first). Builds the workspace as a whole - the same artefacts the tests use, so running the app after the
# tests (or the other way round) does not rebuild dependencies with another feature set.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --gui
if [ -z "${CARGO_TARGET_DIR:-}" ] && [ -d /work/cargo-target ]; then export CARGO_TARGET_DIR=/work/cargo-target; fi
cargo build --workspace --all-targets
exec "${CARGO_TARGET_DIR:-target}/debug/dino-sae-studio" "$@"
