#!/usr/bin/env bash
# Installs what Earshot needs on Debian 12, idempotently and quietly when already present:
# cmake (libopus is built from source), a C toolchain, pkg-config; for tests also Chromium,
# Firefox ESR and PulseAudio (its audio output), espeak-ng, sox, iproute2 (the client matrix's
# network namespace), systemd (systemd-analyze checks the shipped unit), coturn (the TURN test), nginx-light (the reverse-proxy recipe's test), poppler-utils and unzip (the exports test reads PDFs and ZIPs back), nats-server (the NATS event bus tests start their own), postgresql (the store
# tests start a private server of their own from its initdb and postgres), a Python virtual environment with aiortc (the matrix's Python client) and moto's S3 server (the object storage tests), and
# geckodriver (drives Firefox). Needs root (or sudo) only when a Debian package is missing.
set -euo pipefail

# aiortc version the client matrix is verified with (tests/clients/aiortc_participant.py).
AIORTC_VERSION=1.16.0
# moto version the object storage tests run their S3-compatible server with (`moto_server`,
# tests/support/moto.rs), installed into the same venv.
MOTO_VERSION=5.2.5
# geckodriver version the client matrix is verified with (installed by cargo from crates.io).
GECKODRIVER_VERSION=0.37.1
# Where the Python client's virtual environment lives (tests/client_matrix.rs looks there,
# or at $AIORTC_PYTHON; no EARSHOT_ prefix: the server reads those as configuration).
AIORTC_VENV="${AIORTC_VENV:-$HOME/.cache/earshot/test-venv}"

want=(cmake build-essential pkg-config)
if [[ "${1:-}" == "--test" ]]; then
    want+=(chromium firefox-esr pulseaudio espeak-ng sox libsox-fmt-all iproute2 python3 python3-venv python3-pip systemd coturn nginx-light nats-server poppler-utils unzip postgresql)
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

if [[ "${1:-}" == "--test" ]]; then
    # aiortc in a virtual environment of its own (Debian's python3 refuses system-wide pip).
    venv_python="$AIORTC_VENV/bin/python3"
    if ! "$venv_python" -c "import aiortc, sys; sys.exit(aiortc.__version__ != '$AIORTC_VERSION')" 2>/dev/null; then
        echo "installing aiortc $AIORTC_VERSION into $AIORTC_VENV" >&2
        python3 -m venv "$AIORTC_VENV"
        "$venv_python" -m pip install --quiet --disable-pip-version-check "aiortc==$AIORTC_VERSION"
    fi
    if ! "$venv_python" -c "import moto, sys; sys.exit(moto.__version__ != '$MOTO_VERSION')" 2>/dev/null ||
        [[ ! -x "$AIORTC_VENV/bin/moto_server" ]]; then
        echo "installing moto[server] $MOTO_VERSION into $AIORTC_VENV" >&2
        "$venv_python" -m pip install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION"
    fi
    gecko="$(command -v geckodriver || echo "$HOME/.cargo/bin/geckodriver")"
    gecko_version="$("$gecko" --version 2>/dev/null || true)"
    if [[ "$gecko_version" != "geckodriver $GECKODRIVER_VERSION"* ]]; then
        echo "installing geckodriver $GECKODRIVER_VERSION with cargo" >&2
        cargo install --quiet --locked geckodriver --version "$GECKODRIVER_VERSION"
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
