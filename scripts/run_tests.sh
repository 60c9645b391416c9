#!/usr/bin/env bash
# Run the test suite (sets up first, so it also works on a fresh machine). Tests make their own
# temporary AiiDA profile; they run real training steps and real GPAW.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --no-profile
# one test worker per usable core (pytest-xdist), a file's tests on one worker so that its module fixtures
# are built once, and one thread each: the workers share the cores (oversubscribed torch runs 10-15x slower)
workers="${PHYSGEN_TEST_WORKERS:-$(nproc)}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
python3 -m pytest -q tests -n "$workers" --dist loadfile "$@"
