"""Shared pytest fixtures."""

import pytest
import torch

from pipeline.runtime import offline_environment

# As every entry point does: nothing downloads, caches are writable, and ultralytics loads
# weights with its safe loader (it reads ULTRALYTICS_SAFE_LOAD once, when first imported).
offline_environment()


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for the module: on 2 shared cores, OpenMP spinning made small
    convolutions 10-100x slower with 2 threads (measured)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
