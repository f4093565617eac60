"""Deterministic data order and augmentation: functions of ``(seed, step)`` only.

:class:`StepBatchSampler` yields, for every global step, each rank's slice of a per-epoch
permutation together with a per-sample augmentation seed and the step's crop side;
:class:`SeededSamples` draws a sample's random augmentation from its seed. A run stopped at step
``k`` and resumed therefore sees exactly the batches of the uninterrupted run.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from colorization.train.config import ConfigError

__all__ = ["mix", "SeededSamples", "StepBatchSampler"]


def mix(*values: int) -> int:
    """Deterministic 63-bit hash of integers (SplitMix64 steps)."""
    x = 0x9E3779B97F4A7C15
    for v in values:
        x = (x ^ (int(v) & 0xFFFFFFFFFFFFFFFF)) & 0xFFFFFFFFFFFFFFFF
        x = (x + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
        z = x
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
        x = z ^ (z >> 31)
    return x & 0x7FFFFFFFFFFFFFFF


class SeededSamples(Dataset):
    """Wraps a dataset so that ``ds[(index, seed, crop)]`` draws its random augmentation from ``seed``.

    The torch, NumPy and ``random`` global generators are seeded for the duration of the call and
    restored afterwards, so the sample depends only on ``(index, seed)`` - in the main process or
    in any worker.
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int, int]) -> Any:
        index, seed, crop = key
        py_state = random.getstate()
        np_state = np.random.get_state()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            random.seed(seed)
            np.random.seed(seed % (2**32))
            saved_crop = self.dataset.crop
            self.dataset.crop = crop
            try:
                return self.dataset[index]
            finally:
                self.dataset.crop = saved_crop
                random.setstate(py_state)
                np.random.set_state(np_state)


class StepBatchSampler(Sampler[list[tuple[int, int, int]]]):
    """Endless batches of ``(index, sample_seed, crop)`` whose content depends only on ``(seed, step)``.

    Each global step consumes ``batch_size * world`` indices of a per-epoch permutation (seeded by
    ``seed`` and the epoch); rank ``r`` takes its contiguous slice.  Iteration starts at
    ``start_step`` so a resumed run continues the same sequence; ``crop_at(step)`` gives the
    step's crop side. With ``weights`` (``n`` positive per-image sampling weights), each epoch's
    ``n`` indices are drawn with replacement in proportion to them instead (seeded the same way).

    With ``segments`` (``[(start_step, pool of indices), ...]``, sorted, the first starting at 0),
    the steps from each start on draw from that segment's pool alone, in epochs of the pool
    counted from the segment's start and seeded by the segment too (stages that train on some
    groups of the data).
    """

    def __init__(
        self, n: int, batch_size: int, rank: int, world: int, seed: int, start_step: int,
        crop_at: Callable[[int], int], weights: Sequence[float] | None = None,
        segments: Sequence[tuple[int, Sequence[int]]] | None = None,
    ) -> None:
        self.crop_at = crop_at
        self.weights = None
        if weights is not None:
            w = torch.as_tensor(weights, dtype=torch.float64)
            if w.shape != (n,) or not bool(torch.isfinite(w).all()) or not bool((w > 0).all()):
                raise ConfigError(f"sampling weights must be {n} positive finite numbers, one per image")
            self.weights = w
        self.n, self.batch_size, self.rank, self.world = n, batch_size, rank, world
        self.seed, self.start_step = seed, start_step
        self.per_step = batch_size * world
        if n < self.per_step:
            raise ConfigError(
                f"the training data holds {n} images, fewer than one global batch "
                f"({batch_size} x {world} processes); lower batch_size or add data"
            )
        self.steps_per_epoch = n // self.per_step
        self.segments = None
        if segments is not None:
            if not segments or segments[0][0] != 0 or any(a[0] >= b[0] for a, b in zip(segments, segments[1:])):
                raise ConfigError("sampling segments must start at step 0 and be sorted by their first step")
            self.segments = [(int(start), torch.as_tensor(list(pool), dtype=torch.long)) for start, pool in segments]
            for start, pool in self.segments:
                if len(pool) < self.per_step:
                    raise ConfigError(
                        f"the photos of the stage starting at step {start} are {len(pool)}, fewer than one global "
                        f"batch ({batch_size} x {world} processes)"
                    )

    def __len__(self) -> int:  # pragma: no cover - endless; DataLoader only needs it for len()
        return 2**62

    def _order(self, step: int) -> tuple[tuple[int, int], int, Callable[[], list[int]]]:
        """``(epoch key, step within the epoch, a function drawing the epoch's order)``."""
        if self.segments is None:
            e, within = divmod(step, self.steps_per_epoch)
            pool, seed = None, mix(self.seed, e, 1)
        else:
            si = max(i for i, (start, _) in enumerate(self.segments) if start <= step)
            start, pool = self.segments[si]
            e, within = divmod(step - start, len(pool) // self.per_step)
            seed = mix(self.seed, e, 1, si + 1)
            e = (si, e)

        def draw() -> list[int]:
            gen = torch.Generator().manual_seed(seed)
            m = self.n if pool is None else len(pool)
            if self.weights is None:
                order = torch.randperm(m, generator=gen)
            else:
                w = self.weights if pool is None else self.weights[pool]
                order = torch.multinomial(w, m, replacement=True, generator=gen)
            return (order if pool is None else pool[order]).tolist()

        return e, within, draw

    def __iter__(self) -> Iterator[list[tuple[int, int, int]]]:
        step = self.start_step
        epoch, perm = None, None
        while True:
            e, within, draw = self._order(step)
            if e != epoch:
                perm = draw()
                epoch = e
            assert perm is not None
            lo = within * self.per_step + self.rank * self.batch_size
            crop = int(self.crop_at(step))
            yield [
                (perm[lo + j], mix(self.seed, step, self.rank * self.batch_size + j, 2), crop)
                for j in range(self.batch_size)
            ]
            step += 1
