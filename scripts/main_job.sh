#!/usr/bin/env bash
# Set everything up, then run the main job: a fast, complete C5H12O screening (train → generate →
# select → GPAW relax + DOS → unique minima → report).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
verdi run workchains/screen_fast.py
