"""``cnnops train``: train a model of cnnops.models on a data set of cnnops.data.

One process, or several under torchrun (DistributedDataParallel over torch.distributed:
gloo on the CPU, nccl on CUDA):

    cnnops train                                        # simple_cnn on digits, 3 epochs
    cnnops train --model cifar_cnn --dataset shapes --epochs 5 --viz
    torchrun --nproc-per-node 2 -m cnnops.train --batch-size 64

Adam with a one-cycle learning-rate schedule, cross-entropy. Each epoch ends with the test
accuracy; DIR/best.pt keeps the best epoch, DIR/last.pt the latest state (also on Ctrl-C,
which stops after the current batch); ``--resume`` continues from either. ``--batch-size``
is the global batch: each of N processes takes batch/N, and the DistributedSampler hands
process r the r-th of every N images of the same shuffled order a single process would
use, so a run on N processes equals a single-process run up to rounding.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import math
import os
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset
from torch.utils.data.distributed import DistributedSampler

from . import __version__
from . import data as _data
from ._train_runtime import (CheckpointError, TrainError, _all_sum, _Progress, _say,
                             _SkipSampler, _start_world, _StopOnSignal, _World)

__all__ = ["CheckpointError", "MODELS", "TrainConfig", "TrainError", "build_model", "fit",
           "load_checkpoint", "main", "run"]

# name -> (input channels, input size). All take num_classes.
MODELS: dict[str, tuple[int, int]] = {
    "simple_cnn": (1, 28),
    "lenet5": (1, 28),
    "cifar_cnn": (3, 32),
    "vgg11": (3, 32),
    "vgg13": (3, 32),
    "vgg16": (3, 32),
    "vgg19": (3, 32),
    "mobilenet_v1": (3, 32),
}

CHECKPOINT_FORMAT = "cnnops-train-checkpoint"
CHECKPOINT_VERSION = 1

# Options a resumed run takes from its checkpoint unless the command line names them.
_FROM_CHECKPOINT = ("model", "dataset", "epochs", "batch_size", "lr", "schedule", "weight_decay",
                    "seed", "limit", "max_batches", "data_dir")


@dataclasses.dataclass
class TrainConfig:
    """Everything a training run depends on; stored in every checkpoint."""

    model: str = "simple_cnn"
    dataset: str = "digits"
    epochs: int = 3
    batch_size: int = 16
    lr: float = 2e-3
    schedule: str = "onecycle"
    weight_decay: float = 0.0
    device: str = "cpu"
    threads: int | None = None
    seed: int = 0
    out: str | None = None
    json: str | None = None
    resume: str | None = None
    compare_native: bool = False
    viz: bool = False
    data_dir: str = "data"
    download: bool = False
    limit: int | None = None
    max_batches: int | None = None

    @property
    def out_dir(self) -> Path:
        return Path(self.out or f"runs/{self.model}-{self.dataset}")


# --------------------------------------------------------------------------------------
# Models and the learning-rate schedule.


def build_model(name: str, num_classes: int) -> nn.Module:
    """A fresh ``cnnops.models.<name>`` for ``num_classes`` classes (drawn from torch's
    global random generator: seed it first for a reproducible start)."""
    if name not in MODELS:
        raise TrainError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    try:
        from . import models
    except ImportError as error:
        raise TrainError(f"cnnops.models is not available in this build: {error}") from error
    factory = getattr(models, name)
    kwargs = {"num_classes": num_classes} if "num_classes" in inspect.signature(
        factory).parameters else {}
    try:
        return factory(**kwargs)
    except AttributeError as error:  # a layer this build lacks
        raise TrainError(f"{name} cannot be built with this cnnops: {error}") from error


def learning_rate(step: int, total_steps: int, lr: float, schedule: str) -> float:
    """The rate for optimiser step ``step`` (from 0) of ``total_steps``.

    'onecycle' is torch's OneCycleLR shape, as a pure function of the step so that a resumed
    run (even with more epochs) needs no scheduler state: a cosine warm-up from lr/25 to lr
    over the first 30% of the steps, then a cosine decay to lr/25e4. 'constant' is lr.
    """
    if schedule == "constant":
        return lr
    progress = min(step / max(total_steps - 1, 1), 1.0)
    warmup, start, end = 0.3, lr / 25, lr / 25e4
    if progress < warmup:
        return start + (lr - start) * (1 - math.cos(math.pi * progress / warmup)) / 2
    return end + (lr - end) * (1 + math.cos(math.pi * (progress - warmup) / (1 - warmup))) / 2


# --------------------------------------------------------------------------------------
# Checkpoints.


def _checkpoint_dict(config: TrainConfig, info: _data.DatasetInfo, model: nn.Module,
                     optimizer: torch.optim.Optimizer, epoch: int, batch: int, step: int,
                     history: list[dict], best: float | None, world: _World,
                     partial: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> dict:
    return {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "cnnops_version": __version__,
        "torch_version": str(torch.__version__),
        "config": dataclasses.asdict(config),
        "data": dataclasses.asdict(info),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "epoch": epoch,          # epochs completed
        "batch": batch,          # batches completed of epoch `epoch` (0: at an epoch's end)
        "step": step,            # optimiser steps so far
        "partial": list(partial),  # (loss sum, correct, images) of the unfinished epoch
        "history": history,
        "best_test_accuracy": best,
        "world_size": world.size,
        # Dropout's random stream, so a resumed single-process run goes on exactly.
        "rng_state": torch.get_rng_state() if world.size == 1 else None,
    }


def _save(state: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    torch.save(state, partial)
    os.replace(partial, path)  # never leave a half-written checkpoint behind


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Reads a checkpoint of ``cnnops train``; :class:`CheckpointError` with the reason when
    the file is missing, corrupt or not such a checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at '{path}'")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several kinds for a damaged file
        lines = str(error).strip().splitlines()
        reason = f"{type(error).__name__}: {lines[0] if lines else ''}"[:300]
        raise CheckpointError(f"'{path}' is not a readable checkpoint (corrupt or truncated?): "
                              f"{reason}") from error
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"'{path}' is not a checkpoint written by cnnops train")
    if state.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(f"'{path}' is a version {state.get('version')} checkpoint; "
                              f"this cnnops reads version {CHECKPOINT_VERSION}")
    for key in ("config", "data", "state_dict", "optimizer", "epoch", "batch", "step"):
        if key not in state:
            raise CheckpointError(f"'{path}' lacks '{key}': not a complete checkpoint")
    return state


def model_from_checkpoint(state: dict) -> tuple[nn.Module, _data.DatasetInfo]:
    """The trained model of a checkpoint (on the CPU, in eval mode) and its data set info."""
    info = _data.DatasetInfo(**{k: tuple(v) if isinstance(v, list) else v
                                for k, v in state["data"].items()})
    model = build_model(state["config"]["model"], info.num_classes)
    _load_weights(model, state, "checkpoint")
    return model.eval(), info


def _load_weights(model: nn.Module, state: dict, where: str) -> None:
    try:
        model.load_state_dict(state["state_dict"])
    except RuntimeError as error:
        detail = " ".join(str(error).split())
        raise CheckpointError(f"the {where}'s weights do not fit "
                              f"{state['config']['model']}: {detail[:400]}") from error


def _merge_resume(config: TrainConfig, given: set[str], state: dict, path: str) -> TrainConfig:
    """The resumed run's configuration: the checkpoint's, except what the command line
    named; a different model or data set is refused."""
    saved = state["config"]
    for key in ("model", "dataset"):
        if key in given and getattr(config, key) != saved.get(key):
            raise CheckpointError(
                f"'{path}' holds {saved.get('model')} trained on {saved.get('dataset')}; it "
                f"cannot go on as {config.model} on {config.dataset} (leave out --model and "
                f"--dataset to continue it)")
    changes = {key: saved[key] for key in _FROM_CHECKPOINT if key not in given and key in saved}
    if "out" not in given:  # go on writing beside the checkpoint
        changes["out"] = str(Path(path).parent)
    config = dataclasses.replace(config, **changes)
    if config.model not in MODELS or config.dataset not in _data.DATASETS:
        raise CheckpointError(f"'{path}' names an unknown model or data set "
                              f"({config.model}, {config.dataset})")
    return config


# --------------------------------------------------------------------------------------
# Training.


@torch.no_grad()
def evaluate(model: nn.Module, dataset: Dataset, world: _World, batch_size: int = 256
             ) -> tuple[float, float]:
    """(accuracy, mean loss) over ``dataset``; each process scores every N-th image and the
    counts are summed, so the result is exact with any number of processes."""
    shard = Subset(dataset, range(world.rank, len(dataset), world.size))
    was_training = model.training
    model.eval()
    correct = total_loss = 0.0
    for images, labels in DataLoader(shard, batch_size=batch_size):
        images, labels = images.to(world.device), labels.to(world.device)
        logits = model(images)
        total_loss += F.cross_entropy(logits, labels, reduction="sum").item()
        correct += (logits.argmax(1) == labels).sum().item()
    model.train(was_training)
    correct, total_loss = _all_sum(world, [correct, total_loss])
    return correct / len(dataset), total_loss / len(dataset)


def fit(model: nn.Module, train_set: Dataset, test_set: Dataset, config: TrainConfig,
        info: _data.DatasetInfo, *, world: _World | None = None, resume: dict | None = None,
        checkpoints: Path | None = None, label: str = "cnnops", progress: bool = True) -> dict:
    """Trains ``model`` for ``config.epochs`` epochs (from ``resume``'s position when given)
    and returns the metrics. Writes best.pt and last.pt into ``checkpoints`` (process 0)."""
    world = world or _World()
    model.to(world.device)
    if config.batch_size % world.size:
        raise TrainError(f"--batch-size {config.batch_size} (the global batch) must be a "
                         f"multiple of the number of processes, {world.size}")
    local_batch = config.batch_size // world.size
    if len(train_set) < config.batch_size:
        raise TrainError(f"--batch-size {config.batch_size} is larger than the training set "
                         f"({len(train_set)} images)")
    trained = nn.parallel.DistributedDataParallel(model) if world.distributed else model
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr,
                                 weight_decay=config.weight_decay)
    # The same shuffled order for any number of processes: rank r takes every N-th image.
    sampler = DistributedSampler(train_set, num_replicas=world.size, rank=world.rank,
                                 shuffle=True, seed=config.seed, drop_last=True)

    def batches(skip: int) -> DataLoader:
        """The epoch's batches from batch ``skip`` on (a resumed epoch draws no skipped
        image). A generator of its own keeps the loader off torch's global random stream,
        which is dropout's."""
        return DataLoader(train_set, batch_size=local_batch, drop_last=True,
                          sampler=_SkipSampler(sampler, skip * local_batch),
                          generator=torch.Generator().manual_seed(config.seed),
                          pin_memory=world.device.type == "cuda")

    full_epoch = len(sampler) // local_batch
    steps_per_epoch = min(full_epoch, config.max_batches or full_epoch)
    total_steps = config.epochs * steps_per_epoch

    start_epoch, skip, step, history, best = 0, 0, 0, [], None
    partial = (0.0, 0.0, 0.0)  # an interrupted epoch's (loss sum, correct, images), summed
    if resume is not None:
        try:
            optimizer.load_state_dict(resume["optimizer"])
        except (ValueError, KeyError, RuntimeError) as error:
            raise CheckpointError(f"the checkpoint's optimiser state does not fit "
                                  f"{config.model}: {error}") from error
        start_epoch, skip, step = resume["epoch"], resume["batch"], resume["step"]
        partial = tuple(resume.get("partial") or (0.0, 0.0, 0.0))
        history, best = list(resume.get("history") or []), resume.get("best_test_accuracy")
        if resume.get("rng_state") is not None and world.size == 1:
            torch.set_rng_state(resume["rng_state"])

    def checkpoint(epoch: int, batch: int, partial=(0.0, 0.0, 0.0)) -> dict:
        return _checkpoint_dict(config, info, model, optimizer, epoch, batch, step, history,
                                best, world, partial)

    interrupted = False
    started = time.perf_counter()
    train_seconds = 0.0
    images_seen = 0
    train_loss = history[-1]["train_loss"] if history else float("nan")
    test_accuracy = history[-1]["test_accuracy"] if history else None
    with _StopOnSignal() as stop, _Progress(progress and world.main) as bars:
        for epoch in range(start_epoch, config.epochs):
            sampler.set_epoch(epoch)
            trained.train()
            advance = bars.epoch(f"{label} epoch {epoch + 1}/{config.epochs}", steps_per_epoch,
                                 skip)
            # Sums over this process's images, kept on the device (no sync per batch); a
            # resumed epoch starts from the saved totals, which already count every process
            # (so only process 0 takes them).
            start = partial if world.main else (0.0, 0.0, 0.0)
            sums = torch.tensor(start, dtype=torch.float64, device=world.device)
            partial_seen, seen = start[2], start[2]
            partial = (0.0, 0.0, 0.0)
            batch = skip
            shown = 0.0
            epoch_start = time.perf_counter()
            for index, (images, labels) in enumerate(batches(skip), start=skip):
                if index >= steps_per_epoch:
                    break
                images = images.to(world.device, non_blocking=True)
                labels = labels.to(world.device, non_blocking=True)
                for group in optimizer.param_groups:
                    group["lr"] = learning_rate(step, total_steps, config.lr, config.schedule)
                optimizer.zero_grad(set_to_none=True)
                logits = trained(images)
                loss = F.cross_entropy(logits, labels)
                loss.backward()
                optimizer.step()
                step, batch = step + 1, index + 1
                sums[0] += loss.detach() * len(labels)
                sums[1] += (logits.detach().argmax(1) == labels).sum()
                seen += len(labels)
                now = time.perf_counter()
                if now - shown > 0.2 or batch == steps_per_epoch:  # the bar's refresh rate
                    shown = now
                    loss_sum, correct = sums.tolist()[:2]
                    advance(f"loss {loss_sum / seen:.3f}  acc {100 * correct / seen:5.1f}%  "
                            f"{(seen - partial_seen) * world.size / (now - epoch_start):,.0f} "
                            f"img/s", batch)
                stop_now = stop.requested
                if world.distributed:  # every process must leave at the same batch
                    stop_now = _all_sum(world, [float(stop_now)])[0] > 0
                if stop_now:
                    interrupted = True
                    break
            skip = 0
            train_seconds += time.perf_counter() - epoch_start
            sums[2] = seen
            loss_sum, correct, seen = _all_sum(world, sums.tolist())
            partial_seen = _all_sum(world, [partial_seen])[0]
            images_seen += int(seen - partial_seen)
            if interrupted:
                if world.main and checkpoints is not None:
                    _save(checkpoint(epoch, batch, (loss_sum, correct, seen)),
                          checkpoints / "last.pt")
                _say(world, f"{label}: stopped in epoch {epoch + 1} after batch {batch} of "
                            f"{steps_per_epoch}" + (f"; saved {checkpoints / 'last.pt'}"
                                                    if checkpoints is not None else ""))
                break
            epoch_seconds = time.perf_counter() - epoch_start
            train_loss = loss_sum / max(seen, 1)
            if world.distributed:
                # Batch norm's running statistics follow each process's own last batches;
                # score every shard with process 0's (the ones its checkpoint keeps).
                for buffer in model.buffers():
                    dist.broadcast(buffer, 0)
            test_accuracy, test_loss = evaluate(model, test_set, world)
            history.append({"epoch": epoch + 1, "train_loss": train_loss,
                            "train_accuracy": correct / max(seen, 1),
                            "test_accuracy": test_accuracy, "test_loss": test_loss,
                            "images_per_second": (seen - partial_seen) / max(epoch_seconds,
                                                                              1e-9)})
            is_best = best is None or test_accuracy > best
            best = test_accuracy if is_best else best
            saved = ""
            if world.main and checkpoints is not None:
                state = checkpoint(epoch + 1, 0)
                _save(state, checkpoints / "last.pt")
                if is_best:
                    _save(state, checkpoints / "best.pt")
                    saved = f"  saved {checkpoints / 'best.pt'}"
            _say(world, f"{label} epoch {epoch + 1}/{config.epochs}: train loss "
                        f"{train_loss:.4f}  acc {100 * correct / max(seen, 1):.1f}%  |  test "
                        f"acc {100 * test_accuracy:.2f}%  loss {test_loss:.4f}  |  "
                        f"{(seen - partial_seen) / max(epoch_seconds, 1e-9):,.0f} img/s{saved}")
    return {
        "model": config.model,
        "dataset": config.dataset,
        "layers": label,
        "test_accuracy": test_accuracy,
        "best_test_accuracy": best,
        "train_loss": train_loss,
        "epochs": len(history),
        "seconds": time.perf_counter() - started,
        "train_seconds": train_seconds,
        "images_per_second": images_seen / train_seconds if train_seconds > 0 else None,
        "interrupted": interrupted,
        "processes": world.size,
        "history": history,
    }


def _describe(result: dict) -> str:
    accuracy = result["test_accuracy"]
    accuracy = "n/a" if accuracy is None else f"{100 * accuracy:.2f}%"
    speed = result["images_per_second"]
    speed = "n/a" if speed is None else f"{speed:,.0f}"
    return (f"{result['layers']:7s}  test accuracy {accuracy:>7s}  after {result['epochs']} "
            f"epoch(s)  {result['seconds']:7.1f} s  {speed:>8s} images/s")


def run(config: TrainConfig, given: set[str] | None = None, progress: bool = True) -> dict:
    """The whole of ``cnnops train``: returns what ``--json`` writes.

    ``given``: the options named on the command line (a resumed run takes the others from
    its checkpoint).
    """
    given = set(dataclasses.asdict(config)) if given is None else given
    if config.threads is not None:
        if config.threads < 1:
            raise TrainError(f"--threads must be at least 1, got {config.threads}")
        torch.set_num_threads(config.threads)
    for name in ("epochs", "batch_size"):
        if getattr(config, name) < 1:
            raise TrainError(f"--{name.replace('_', '-')} must be at least 1, got "
                             f"{getattr(config, name)}")
    if config.max_batches is not None and config.max_batches < 1:
        raise TrainError(f"--max-batches must be at least 1, got {config.max_batches}")
    if config.lr <= 0:
        raise TrainError(f"--lr must be positive, got {config.lr}")
    resume = None
    if config.resume is not None:
        resume = load_checkpoint(config.resume)
        config = _merge_resume(config, given, resume, config.resume)
        if resume["epoch"] >= config.epochs and resume["batch"] == 0:
            raise TrainError(f"'{config.resume}' has already trained {resume['epoch']} of "
                             f"{config.epochs} epochs; give --epochs N with N > "
                             f"{resume['epoch']} to train on")
    if config.model not in MODELS:
        raise TrainError(f"unknown model {config.model!r}; choose one of {', '.join(MODELS)}")
    if config.compare_native and resume is not None:
        raise TrainError("--compare-native trains both models from the same start; it does "
                         "not combine with --resume")
    world = _start_world(config.device)
    if config.compare_native and world.distributed:
        raise TrainError("--compare-native runs in one process; leave out torchrun")
    try:
        channels, size = MODELS[config.model]
        load = dict(data_dir=config.data_dir, seed=config.seed, channels=channels, size=size,
                    limit=config.limit)
        if config.download and world.distributed:  # process 0 fetches, the others wait
            if world.main:
                _data.load(config.dataset, download=True, **load)
            dist.barrier()
        train_set, test_set, info = _data.load(
            config.dataset, download=config.download and not world.distributed, **load)
        _say(world, f"{config.model} on {config.dataset}: {len(train_set)} training and "
                    f"{len(test_set)} test images of {info.channels}x{info.size}x{info.size}, "
                    f"{info.num_classes} classes; batch {config.batch_size}"
                    + (f" over {world.size} processes" if world.distributed else "")
                    + f", {torch.get_num_threads()} thread(s) per process, {world.device}")
        torch.manual_seed(config.seed)
        model = build_model(config.model, info.num_classes)
        initial = None
        if config.compare_native:
            from .convert import convert
            initial = convert(model, to="torch")
        if resume is not None:
            _load_weights(model, resume, f"checkpoint '{config.resume}'")
            _say(world, f"resuming '{config.resume}' at epoch {resume['epoch'] + 1}, batch "
                        f"{resume['batch']}")
        # Dropout differs across processes, as it would for their different images.
        torch.manual_seed(config.seed + world.rank)
        out_dir = config.out_dir
        result = fit(model, train_set, test_set, config, info, world=world, resume=resume,
                     checkpoints=out_dir, progress=progress)
        result["config"] = dataclasses.asdict(config)
        result["checkpoint"] = str(out_dir / "best.pt")
        report = [_describe(result)]
        if initial is not None and not result["interrupted"]:
            torch.manual_seed(config.seed)
            native = fit(initial, train_set, test_set, config, info, world=world,
                         label="torch", progress=progress)
            result["native"] = {k: v for k, v in native.items() if k != "history"}
            if native["images_per_second"] and result["images_per_second"]:
                result["speedup"] = result["images_per_second"] / native["images_per_second"]
            report.append(_describe(native))
            if "speedup" in result:
                report.append(f"cnnops trains at {result['speedup']:.2f}x the speed of torch's "
                              f"own layers")
        if world.main:
            print("\n".join(report), flush=True)
            if config.json:
                Path(config.json).parent.mkdir(parents=True, exist_ok=True)
                Path(config.json).write_text(json.dumps(result, indent=2) + "\n")
            if config.viz and result["epochs"] > 0:
                from . import viz
                written = viz.visualize(model.cpu().eval(), test_set, info.classes,
                                        out_dir / "viz", info.unnormalize,
                                        title=f"{config.model} on {config.dataset}: ")
                print(f"wrote {len(written)} pictures into {out_dir / 'viz'}")
        if world.distributed:
            # Leave together: a process tearing its gloo connections down while another is
            # still busy can abort the other ("terminate called without an active exception").
            dist.barrier()
        return result
    finally:
        if world.distributed and dist.is_initialized():
            dist.destroy_process_group()


# --------------------------------------------------------------------------------------
# The command line (shared by `cnnops train` and `python -m cnnops.train` for torchrun).


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``cnnops train``. Options left unset are None here and filled in from
    TrainConfig's defaults (or a resumed checkpoint) by :func:`config_from_args`."""
    defaults = TrainConfig()
    add = parser.add_argument
    add("--model", choices=list(MODELS), help=f"default {defaults.model}")
    add("--dataset", choices=list(_data.DATASETS), help=f"default {defaults.dataset} "
        "(scikit-learn's, no download); shapes: generated; mnist, fashion_mnist, cifar10: "
        "from --data-dir")
    add("--epochs", type=int, help=f"default {defaults.epochs}")
    add("--batch-size", type=int, help=f"the global batch, split over torchrun's processes "
        f"(default {defaults.batch_size})")
    add("--lr", type=float, help=f"Adam's peak learning rate (default {defaults.lr})")
    add("--schedule", choices=["onecycle", "constant"],
        help=f"learning-rate schedule (default {defaults.schedule})")
    add("--weight-decay", type=float, help=f"default {defaults.weight_decay}")
    add("--device", choices=["cpu", "cuda"], help=f"default {defaults.device}")
    add("--threads", type=int, help="CPU threads per process (default: torch's)")
    add("--seed", type=int, help=f"default {defaults.seed}")
    add("--out", metavar="DIR", help="where best.pt and last.pt go (default "
        "runs/MODEL-DATASET)")
    add("--json", metavar="PATH", help="write the final metrics here")
    add("--resume", metavar="CHECKPOINT", help="continue from best.pt or last.pt")
    add("--compare-native", action="store_true", default=None,
        help="also train the same model with torch.nn layers from the same seed; report both")
    add("--viz", action="store_true", default=None,
        help="write pictures of filters, feature maps and the confusion matrix into DIR/viz")
    add("--data-dir", metavar="DIR", help=f"the folder of mnist, fashion_mnist, cifar10 "
        f"(default {defaults.data_dir})")
    add("--download", action="store_true", default=None,
        help="fetch a missing mnist, fashion_mnist or cifar10 into --data-dir (needs a network)")
    add("--limit", type=int, metavar="N", help="use only the first N images of each split")
    add("--max-batches", type=int, metavar="N", help="at most N batches per epoch")
    add("--no-progress", action="store_true", help="no progress bar")


def config_from_args(args: argparse.Namespace) -> tuple[TrainConfig, set[str]]:
    """The configuration, and the names of the options given on the command line."""
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    given = {k: v for k, v in vars(args).items() if k in fields and v is not None}
    return TrainConfig(**given), set(given)


def main_from_args(args: argparse.Namespace) -> int:
    config, given = config_from_args(args)
    try:
        result = run(config, given, progress=not args.no_progress)
    except (TrainError, _data.DataError) as error:
        print(f"cnnops train: error: {error}", file=sys.stderr)
        return 2
    return 130 if result["interrupted"] else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cnnops.train", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return main_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
