#!/usr/bin/env bash
# Run the test suite (sets up first, so it also works on a fresh machine). Tests make their own
# temporary AiiDA profile; they run real training steps and real GPAW.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --no-profile
# one test worker per usable core and one more (pytest-xdist), a file's tests on one worker so that its module
# fixtures are built once (--dist loadgroup with one group per file, tests/scheduling.py; the study-script files are
# spread test by test), and one thread each. The slow tests wait much of their time on daemons, SLURM's walltime
# checks and subprocesses, and the extra worker fills those waits (on 2 cores: the full suite took 1,103 s with 3
# workers, 1,310 s with 2, and 1,136 s with 4 where 3 gave 856-928 s; more threads per worker would oversubscribe
# torch, 10-15x slower). The slowest tests are listed at the end of every run. The tests' files on a RAM disk
# (--basetemp under /dev/shm) were measured too: a file of AiiDA tests alone ran in 0.80 of the time, but the whole
# suite took 1,065 s (fresh clone, quiet), inside the 1,007-1,126 s of runs on disk, so they stay on disk.
workers="${PHYSGEN_TEST_WORKERS:-$(($(nproc) + 1))}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
python3 -m pytest -q tests -n "$workers" --dist loadgroup --durations=25 "$@"
