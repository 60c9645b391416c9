#!/usr/bin/env bash
# Run the test suite (sets up first, so it also works on a fresh machine). Tests make their own
# temporary AiiDA profile; they run real training steps and real GPAW.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --no-profile
python3 -m pytest -q tests "$@"
