"""The ML tests run torch with one intra-op thread.

Their tensors are tiny, so a second thread gains nothing, and on a shared 2-core machine under load
an OpenMP team of two waits on a descheduled partner at every operation: the same tests then took
10-20x longer. Results stay meaningful: a member's bit-for-bit equality alone and in an ensemble is
compared within one thread setting, as it is in any real run. ``test_set_threads_*`` changes the
count itself and restores it.
"""

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_intra_op_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
