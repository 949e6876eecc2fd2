#!/usr/bin/env bash
# Runs every check and test: formatting, clippy, unit tests, and the end-to-end tests that
# drive real headless Chromium against a real server on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/install-deps.sh --test
cargo fmt --all --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo test --workspace --all-targets
