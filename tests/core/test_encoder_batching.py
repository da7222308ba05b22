"""Dynamic batching: every item once, longest first, within the padded-token budget and the size cap."""

from __future__ import annotations

import numpy as np
import pytest

from kgemb.encoders.batching import plan_batches, resolve_threads
from kgemb.errors import ConfigError


def test_batches_cover_every_item_once_within_budget() -> None:
    lengths = np.random.default_rng(0).integers(1, 300, size=1000)
    batches = plan_batches(lengths, max_tokens=2048, max_size=64)
    seen = np.concatenate(batches)
    assert sorted(seen.tolist()) == list(range(1000))
    for batch in batches:
        width = lengths[batch].max()
        assert len(batch) <= 64
        assert len(batch) == 1 or width * len(batch) <= 2048
        assert lengths[batch[0]] == width  # longest first within a batch
    firsts = [lengths[b[0]] for b in batches]
    assert firsts == sorted(firsts, reverse=True)
    # short items share batches: far fewer batches than items
    assert len(batches) < 200


def test_batches_close_where_the_length_changes_once_big_enough() -> None:
    lengths = np.random.default_rng(1).integers(3, 60, size=3000)
    batches = plan_batches(lengths, max_tokens=8192, max_size=128, min_tokens=1024)
    padded = sum(int(lengths[b].max()) * len(b) for b in batches)
    assert padded <= 1.02 * lengths.sum()  # almost no padding
    loose = plan_batches(lengths, max_tokens=8192, max_size=128)
    assert padded < sum(int(lengths[b].max()) * len(b) for b in loose)
    mixed = [b for b in batches if len(set(lengths[b].tolist())) > 1]
    assert all(int(lengths[b].max()) * (len(b) - 1) < 1024 for b in mixed)  # only small batches mix lengths


def test_item_over_budget_gets_its_own_batch() -> None:
    batches = plan_batches([5000, 10, 10], max_tokens=512, max_size=8)
    assert [b.tolist() for b in batches] == [[0], [1, 2]]
    assert plan_batches([], max_tokens=512, max_size=8) == []


def test_threads_default_to_cores_and_are_capped() -> None:
    cores = resolve_threads(None)
    assert cores >= 1
    assert resolve_threads(10_000) == cores
    assert resolve_threads(1) == 1
    with pytest.raises(ConfigError, match="threads"):
        resolve_threads(0)
