"""The plumbing of ``cnnops train``: the processes of a torchrun job, stopping on Ctrl-C,
the progress bar, and the errors reported in one line."""

from __future__ import annotations

import dataclasses
import itertools
import os
import signal
import sys
import threading
from collections.abc import Callable

import torch
import torch.distributed as dist


class TrainError(RuntimeError):
    """A request that cannot be carried out: reported in one line, no traceback."""


class CheckpointError(TrainError):
    """A checkpoint that cannot be read, or that does not fit the run asked for."""


# --------------------------------------------------------------------------------------
# Processes: one, or one of several under torchrun.


@dataclasses.dataclass
class _World:
    rank: int = 0
    size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def _resolve_device(name: str, local_rank: int) -> torch.device:
    if name == "cpu":
        return torch.device("cpu")
    if name != "cuda":
        raise TrainError(f"--device must be cpu or cuda, got {name!r}")
    from ._ops import _C
    if not torch.cuda.is_available():
        raise TrainError("--device cuda: no CUDA GPU is visible to torch")
    if not _C.with_cuda():
        raise TrainError("--device cuda: this cnnops build has no CUDA kernels (it was built "
                         "with USE_CUDA=0 or without a CUDA toolkit); rebuild with FORCE_CUDA=1")
    return torch.device("cuda", local_rank % torch.cuda.device_count())


def _start_world(device: str) -> _World:
    """Joins the torchrun process group when torchrun started this process."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    world = _World(int(os.environ.get("RANK", "0")), size, _resolve_device(device, local_rank))
    if size > 1 and not dist.is_initialized():
        if world.device.type == "cuda":
            torch.cuda.set_device(world.device)
        dist.init_process_group("nccl" if world.device.type == "cuda" else "gloo")
    return world


def _all_sum(world: _World, values: list[float]) -> list[float]:
    if not world.distributed:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=world.device)
    dist.all_reduce(tensor)
    return tensor.tolist()


class _SkipSampler(torch.utils.data.Sampler):
    """``sampler``'s indices less the first ``skip``."""

    def __init__(self, sampler: torch.utils.data.Sampler, skip: int) -> None:
        self.sampler, self.skip = sampler, skip

    def __iter__(self):
        return itertools.islice(iter(self.sampler), self.skip, None)

    def __len__(self) -> int:
        return max(len(self.sampler) - self.skip, 0)


class _StopOnSignal:
    """Ctrl-C (SIGINT) or SIGTERM asks the loop to stop after the current batch; a second
    Ctrl-C stops at once. Only the main thread can install signal handlers; elsewhere this
    does nothing."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, object] = {}

    def _handle(self, signum, frame) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True
        print("\nstopping after this batch (Ctrl-C again to stop at once)", file=sys.stderr,
              flush=True)

    def __enter__(self) -> _StopOnSignal:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


# --------------------------------------------------------------------------------------
# Progress: a rich bar on a terminal, nothing per batch otherwise.


class _Progress:
    def __init__(self, enabled: bool) -> None:
        self._progress = None
        if enabled and sys.stderr.isatty():
            try:
                from rich.console import Console
                from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                           TimeElapsedColumn, TimeRemainingColumn)
            except ImportError:
                return
            self._progress = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[stats]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                console=Console(stderr=True), transient=True)

    def __enter__(self) -> _Progress:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.stop()

    def epoch(self, description: str, total: int, done: int = 0) -> Callable[[str, int], None]:
        """Starts an epoch's bar; returns the function that sets its statistics and the
        number of batches done."""
        if self._progress is None:
            return lambda stats, done: None
        task = self._progress.add_task(description, total=total, completed=done, stats="")

        def advance(stats: str, done: int) -> None:
            self._progress.update(task, completed=done, stats=stats)
        return advance


def _say(world: _World, message: str) -> None:
    if world.main:
        print(message, flush=True)
