"""Shared pytest configuration: the `cuda`, `slow`, `large` and `heavy` markers, a fixed seed
per test, and the hypothesis profiles of the property tests (tests/test_fuzz.py)."""

import os

import pytest
import torch
from hypothesis import HealthCheck, settings

# `ci`, the default: the same examples on every run (derandomized, no example database), few
# enough that tests/test_fuzz.py runs in well under a minute on 2 cores. No deadline: an
# example's time depends on the machine's load, which is not what these tests measure.
settings.register_profile(
    "ci", max_examples=25, derandomize=True, database=None, deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow])
# `long`, for local runs (pytest --hypothesis-profile=long): new random examples each run,
# failures remembered in .hypothesis/ and replayed first.
settings.register_profile(
    "long", max_examples=1000, deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci")  # hypothesis' --hypothesis-profile option overrides this

# Opt-in markers: their tests run only when `-m` names the marker (`-m large`) or the
# environment variable is 1; the default run skips them.
OPT_IN = {
    "large": ("CNNOPS_LARGE", "tensors of more than 2**31 elements (tens of GB: a GPU machine)"),
    "heavy": ("CNNOPS_HEAVY", "minutes of torch.compile(backend='inductor') on 2 cores"),
}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "cuda: needs a CUDA GPU; skipped when none is visible")
    config.addinivalue_line("markers", "slow: takes seconds (torch.compile and the like)")
    for marker, (variable, what) in OPT_IN.items():
        config.addinivalue_line(
            "markers", f"{marker}: {what}; skipped unless -m {marker} or {variable}=1")


def _opted_in(config: pytest.Config, marker: str) -> bool:
    expression = config.getoption("markexpr", "") or ""
    named = marker in expression.split() and f"not {marker}" not in expression
    return named or os.environ.get(OPT_IN[marker][0]) == "1"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for marker, (variable, _) in OPT_IN.items():
        if _opted_in(config, marker):
            continue
        skip = pytest.mark.skip(reason=f"opt-in: run with -m {marker} or {variable}=1")
        for item in items:
            if item.get_closest_marker(marker) is not None:
                item.add_marker(skip)
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
