"""Named, independent random streams derived from one seed."""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np


def substream(seed: int, name: str) -> np.random.Generator:
    """A generator for one named purpose; the same (seed, name) always gives the same stream."""
    return np.random.default_rng([int(seed), zlib.crc32(name.encode("utf-8"))])


def fault_count(base: float, scale: float) -> int:
    """How many faults of a kind to inject: grows gently (square root) with scale, at least 1."""
    return max(1, round(base * scale**0.5))


def exact_flags(rng: np.random.Generator, n: int, fraction: float) -> np.ndarray:
    """Boolean mask with exactly round(fraction * n) True values at random positions."""
    flags = np.zeros(n, dtype=bool)
    k = min(n, max(0, round(fraction * n)))
    flags[rng.permutation(n)[:k]] = True
    return flags


def largest_remainder(total: int, weights: np.ndarray) -> np.ndarray:
    """Split ``total`` into integers proportional to ``weights`` (Hamilton method)."""
    w = np.asarray(weights, dtype=float)
    raw = w / w.sum() * total
    base = np.floor(raw).astype(int)
    rest = total - int(base.sum())
    order = np.argsort(-(raw - base), kind="stable")
    base[order[:rest]] += 1
    return base


def weighted_choice(rng: np.random.Generator, options: tuple, n: int | None = None) -> Any:
    """Draw from ((value, probability), ...) pairs."""
    values = [o[0] for o in options]
    p = np.array([o[1] for o in options], dtype=float)
    idx = rng.choice(len(values), size=n, p=p / p.sum())
    if n is None:
        return values[int(idx)]
    return [values[int(i)] for i in idx]
