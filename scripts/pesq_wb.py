#!/usr/bin/env python3
"""PESQ-WB (ITU-T P.862.2) of pairs of 16 kHz mono 16-bit WAV files, with PyPI's `pesq`.

Usage: pesq_wb.py LIST   (LIST: one "reference<TAB>degraded" pair per line)
Prints one score per line, in the order of LIST ("nan" when PESQ finds no speech).
`scripts/install-deps.sh --quality` installs numpy and pesq.
"""
import sys
import wave

import numpy as np
from pesq import pesq


def read(path):
    with wave.open(path) as w:
        if w.getframerate() != 16000 or w.getnchannels() != 1 or w.getsampwidth() != 2:
            sys.exit(f"{path}: want 16 kHz mono 16-bit")
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32)


def main():
    with open(sys.argv[1]) as pairs:
        for line in pairs:
            if not line.strip():
                continue
            ref, deg = line.rstrip("\n").split("\t")
            try:
                score = pesq(16000, read(ref), read(deg), "wb")
            except Exception as e:  # NoUtterancesError and friends
                print(f"{ref}: {e}", file=sys.stderr)
                score = float("nan")
            print(f"{score:.4f}", flush=True)


if __name__ == "__main__":
    main()
