#!/usr/bin/env bash
# Set up aiida-physgen on a fresh Debian machine with Python 3.11 (run as root for the system
# libraries). Safe to run again: every step is skipped or quick when already done.
#   bash scripts/setup.sh            # libraries, Python packages, an AiiDA profile
#   bash scripts/setup.sh --no-profile   # the same without creating a profile (tests make their own)
#   bash scripts/setup.sh --postgres     # the same with the production profile as default: PostgreSQL + RabbitMQ
#                                        # (scripts/postgres_profile.sh --rabbitmq, docs/scale.md)
#   bash scripts/setup.sh --postgres-zeromq   # PostgreSQL with AiiDA's built-in ZeroMQ broker instead
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

# GPAW's system libraries (libxc, OpenBLAS), Graphviz for `verdi node graph generate`, and SLURM, munge and
# sshd for the one-node test cluster (scripts/localhost_cluster.sh, tests/cluster/), PostgreSQL and RabbitMQ for the
# production profile and its tests (scripts/postgres_profile.sh, tests/production/); needs root
APT_PACKAGES="libxc-dev libopenblas-dev graphviz slurm-wlm munge openssh-server postgresql rabbitmq-server"
if ! dpkg -s ${APT_PACKAGES} >/dev/null 2>&1; then
    apt-get update -qq
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ${APT_PACKAGES} >/dev/null
fi

# torch first, pinned to the CPU build on this disk: anything else pulls a CUDA build of several GB
"$PYTHON" -m pip install -q torch==2.13.0
# GPAW's C++ extension builds only with CC=g++ ("algorithm: No such file" otherwise)
CC=g++ "$PYTHON" -m pip install -q -e ".[gpaw,tests,bench,cheap,vasp,carbon,mp]"

if [ "${1:-}" = "--postgres" ]; then
    # the production stack: queried while it runs, several daemon workers, anything large (docs/scale.md)
    bash scripts/postgres_profile.sh --rabbitmq
elif [ "${1:-}" = "--postgres-zeromq" ]; then
    bash scripts/postgres_profile.sh --zeromq
elif [ "${1:-}" != "--no-profile" ]; then
    # a profile with SQLite storage and AiiDA's built-in broker: no external service needed (--use-zeromq: without
    # it verdi presto takes RabbitMQ whenever one runs, as after scripts/rabbitmq.sh)
    if ! verdi profile show >/dev/null 2>&1; then
        verdi presto --use-zeromq
    fi
    # the daemon's controller answers slowly while workers are busy on 2 cores: AiiDA's 2 s made
    # `verdi daemon restart` time out mid-screening (3 of 3 tries) and leave the daemon down
    verdi config set daemon.timeout 20 >/dev/null
fi
echo "aiida-physgen is set up"
