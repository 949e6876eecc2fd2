#!/usr/bin/env bash
# Measures audio quality through the real server with PESQ-WB (README "Audio quality under loss
# and noise"): loss/jitter with and without Opus FEC, and noise suppression per SNR.
#
#   bash scripts/measure-quality.sh                 # both tables, about 20 minutes
#   bash scripts/measure-quality.sh loss            # or one: loss | noise
#   bash scripts/measure-quality.sh noise --keep DIR    # keep the WAVs it scored
#
# Not part of the test suite (scripts/test.sh); installs pesq (PyPI), sox and espeak-ng.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/install-deps.sh --quality
cargo build --release --quiet --bin earshot --example quality
dirty=""
git diff --quiet HEAD -- . 2>/dev/null || dirty=" with uncommitted changes"
echo "commit $(git rev-parse --short HEAD)${dirty}, $(date -u +'%Y-%m-%d %H:%M UTC')"
"${CARGO_TARGET_DIR:-target}/release/examples/quality" "$@"
