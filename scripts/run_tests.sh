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
# torch, 10-15x slower). The slowest tests are listed at the end of every run.
workers="${PHYSGEN_TEST_WORKERS:-$(($(nproc) + 1))}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
# the tests' files (the AiiDA test profile's SQLite database and file repository, the jobs' folders, PostgreSQL's data)
# go to a RAM disk when there is one with room: each SQLite commit there takes 0.05 ms against 1 ms on this machine's
# disk, and a file of AiiDA tests ran in 0.80 of the time (median of 3 pairs). PHYSGEN_TEST_BASETEMP chooses another
# folder; a later --basetemp on the command line wins.
basetemp="${PHYSGEN_TEST_BASETEMP:-}"
if [ -z "$basetemp" ] && [ -d /dev/shm ] && [ "$(df -Pk /dev/shm | awk 'NR == 2 {print $4}')" -gt 4000000 ]; then
    basetemp="$(mktemp -d /dev/shm/physgen-tests.XXXXXX)"
    trap 'rm -rf "$basetemp"' EXIT
fi
python3 -m pytest -q tests -n "$workers" --dist loadgroup --durations=25 ${basetemp:+--basetemp="$basetemp"} "$@"
