#!/usr/bin/env bash
# Installs what Earshot needs on Debian 12, idempotently and quietly when already present:
# cmake (libopus is built from source), a C toolchain, pkg-config; for tests also Chromium,
# espeak-ng and sox. Needs root (or sudo) only when something is missing.
set -euo pipefail

want=(cmake build-essential pkg-config)
if [[ "${1:-}" == "--test" ]]; then
    want+=(chromium espeak-ng sox libsox-fmt-all)
fi

# --quality: what scripts/measure-quality.sh needs (not the test suite): sox and espeak-ng, and
# pip for PyPI's `pesq` (PESQ-WB) and numpy, installed at the end of this script.
if [[ "${1:-}" == "--quality" ]]; then
    want+=(espeak-ng sox libsox-fmt-all)
    python3 -m pip --version >/dev/null 2>&1 || want+=(python3-pip python3-dev)
fi

missing=()
for p in "${want[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    sudo=""
    [[ $(id -u) -ne 0 ]] && sudo="sudo"
    echo "installing: ${missing[*]}" >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
    if [[ -x "$HOME/.cargo/bin/cargo" ]]; then
        export PATH="$HOME/.cargo/bin:$PATH"
    else
        echo "installing the Rust toolchain with rustup" >&2
        curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y -q --profile minimal -c clippy,rustfmt
        export PATH="$HOME/.cargo/bin:$PATH"
    fi
fi

if [[ "${1:-}" == "--quality" ]] && ! python3 -c "import numpy, pesq" >/dev/null 2>&1; then
    echo "installing numpy and pesq with pip" >&2
    # numpy first: pesq's build imports it.
    python3 -m pip install --quiet numpy 2>/dev/null ||
        python3 -m pip install --quiet --break-system-packages numpy
    python3 -m pip install --quiet pesq 2>/dev/null ||
        python3 -m pip install --quiet --break-system-packages pesq
fi
