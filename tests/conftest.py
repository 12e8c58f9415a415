"""Shared pytest configuration: the `cuda` and `slow` markers, and a fixed seed per test."""

import pytest
import torch


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "cuda: needs a CUDA GPU; skipped when none is visible")
    config.addinivalue_line("markers", "slow: takes seconds (torch.compile and the like)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Skipped rather than failed, so a CPU-only machine reports what it could not run.
    if torch.cuda.is_available():
        return
    skip_cuda = pytest.mark.skip(reason="CUDA is not available on this machine")
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip_cuda)


@pytest.fixture(autouse=True)
def _seed() -> None:
    # Every test draws the same random operands, whatever ran before it.
    torch.manual_seed(0)
