"""The argument check every model constructor shares."""

from __future__ import annotations

from .._checks import check_allocation, check_int


def check_num_classes(model: str, num_classes, in_features: int) -> None:
    """num_classes an int >= 1 whose classifier (num_classes x in_features) fits in memory."""
    check_int(model, "num_classes", num_classes, 1)
    check_allocation(model, "argument 'num_classes'", (num_classes, in_features))
