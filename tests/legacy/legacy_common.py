"""Shared fixture of the legacy-style suite: one 64 MiB region per test module."""
import pytest

from pyshm import ShareMem


@pytest.fixture(scope="module")
def shm():
    with ShareMem(64 * 1024 * 1024) as shm:
        yield shm
