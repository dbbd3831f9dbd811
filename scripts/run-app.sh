#!/usr/bin/env bash
# Runs DINO-SAE Studio (installs the window's runtime libraries on a fresh Debian machine first).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --gui
if [ -z "${CARGO_TARGET_DIR:-}" ] && [ -d /work/cargo-target ]; then export CARGO_TARGET_DIR=/work/cargo-target; fi
exec cargo run -p dino-sae-studio -- "$@"
