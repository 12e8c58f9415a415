"""Small helpers shared by test modules (tests/ is on sys.path under pytest's default import
mode)."""

import contextlib

import torch


@contextlib.contextmanager
def num_threads(n: int):
    """Runs the block with torch.set_num_threads(n), then restores the previous count."""
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
