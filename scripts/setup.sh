#!/usr/bin/env bash
# Installs what building and running need on a fresh Debian machine (idempotent, quiet when all is there).
set -euo pipefail
need=()
command -v cargo >/dev/null || { echo "setup: cargo (rustup) is required" >&2; exit 1; }
command -v cc >/dev/null || need+=(gcc)
if [ "${1:-}" = "--gui" ]; then
  # Runtime libraries for the eframe window (X11, keyboard, Vulkan/lavapipe software rendering).
  for p in libxkbcommon-x11-0 libx11-xcb1 libxcursor1 libxrandr2 libxi6 mesa-vulkan-drivers libvulkan1 libgl1; do
    dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
  done
fi
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq "${need[@]}"
fi
