"""Fixtures of the daemon-level reliability suite: a real daemon (circus + workers) on the temporary
test profile, the PIDs of its workers, and waiting with a timeout that fails with the daemon's log.

Every test here is slow (seconds to minutes): run the suite with

    OMP_NUM_THREADS=1 python -m pytest tests/reliability -q -p no:cacheprovider

See docs/reliability.md.
"""

from __future__ import annotations

import pytest
from daemon_tools import NUDGES, set_workers


@pytest.fixture(autouse=True)
def _profile(aiida_profile):
    yield aiida_profile


@pytest.fixture(autouse=True)
def _count_broker_nudges(request):
    """Put the broker nudges this test needed on its report (tests/broker_nudges.py prints them)."""
    before = len(NUDGES)
    yield
    if len(NUDGES) > before:
        request.node.user_properties.append(("broker_nudges", len(NUDGES) - before))


@pytest.fixture
def two_workers(daemon_client):
    """The daemon with exactly two workers."""
    set_workers(daemon_client, 2)
    yield daemon_client


@pytest.fixture
def one_worker(daemon_client):
    """The daemon with exactly one worker, so that killing it certainly kills the process it holds."""
    set_workers(daemon_client, 1)
    yield daemon_client
