"""Dynamic batching: group texts of similar token length so batches waste little on padding."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from kgemb.errors import ConfigError


def plan_batches(
    lengths: Sequence[int], max_tokens: int, max_size: int, min_tokens: int | None = None
) -> list[np.ndarray]:
    """Split item indices into batches, longest first, each within a padded-token budget.

    A batch costs ``len(batch) * longest`` padded tokens; it is closed before that exceeds ``max_tokens`` or it
    holds ``max_size`` items. Given ``min_tokens``, once it holds that many tokens it is also closed where the length changes, so
    most batches are of one length and carry no padding at all (a shorter item joins only a batch too small to
    run efficiently). An item longer than the budget gets a batch of its own. Callers write each batch's
    results back at the returned indices, which restores the input order.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    if lengths.size == 0:
        return []
    order = np.argsort(-lengths, kind="stable")
    batches: list[np.ndarray] = []
    start = 0
    for position in range(1, len(order) + 1):
        size = position - start
        longest = int(lengths[order[start]])  # sorted longest first: the batch's first item sets its width
        if (
            position == len(order)
            or size >= max_size
            or longest * (size + 1) > max_tokens
            or (
                min_tokens is not None and lengths[order[position]] < longest and longest * size >= min_tokens
            )
        ):
            batches.append(order[start:position])
            start = position
    return batches


def available_cores() -> int:
    """CPU cores this process may run on (the affinity mask, not the machine's total)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def resolve_threads(threads: int | None) -> int:
    """The thread count to use: all usable cores by default, never more than there are."""
    cores = available_cores()
    if threads is None:
        return cores
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ConfigError(f"threads={threads!r} is not a positive whole number: pass e.g. threads={cores}")
    return min(threads, cores)
