#!/usr/bin/env bash
# Builds and runs Earshot with its embedded defaults (SQLite and recordings in ./data, the
# built-in interviewer). Open the demo invite link it prints. Extra arguments go to `serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/install-deps.sh
cargo build --release --quiet --bin earshot
exec target/release/earshot serve "$@"
