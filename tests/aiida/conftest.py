"""Every test in this folder runs against the temporary AiiDA profile."""

import pytest


@pytest.fixture(autouse=True)
def _profile(aiida_profile):
    yield aiida_profile
