"""Shared fixtures of the plugin tests."""

import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """Tiny convolutions on 2 shared cores: torch's thread pool thrashes under load (measured 15x slower)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
