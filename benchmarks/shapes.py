"""The public reference shapes, re-exported from their one home, cnnops.bench_shapes (which
`cnnops bench` uses too)."""

from cnnops.bench_shapes import *  # noqa: F401,F403
from cnnops.bench_shapes import __all__  # noqa: F401
