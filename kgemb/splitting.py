"""Deterministic train / valid / test splits of a triple array, transductive or inductive."""

from __future__ import annotations

import numpy as np

from kgemb.errors import InputError


def _check_fractions(valid: float, test: float) -> None:
    if not (0 <= valid < 1 and 0 <= test < 1 and valid + test < 1):
        raise InputError(
            f"split fractions valid={valid}, test={test} are invalid: each must be in [0, 1) and their sum below 1"
        )


def transductive_split(
    triples: np.ndarray, num_entities: int, num_relations: int, valid: float, test: float, seed: int
) -> dict[str, np.ndarray]:
    """Shuffle with ``seed``, cut valid/test fractions, then move back to train every valid/test triple whose
    head, relation or tail train does not contain, so every evaluated entity and relation was seen in training."""
    _check_fractions(valid, test)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(triples))
    n_test = round(test * len(triples))
    n_valid = round(valid * len(triples))
    assign = np.zeros(len(triples), dtype=np.int8)  # 0 train, 1 valid, 2 test
    assign[order[:n_test]] = 2
    assign[order[n_test : n_test + n_valid]] = 1
    train = triples[assign == 0]
    seen_e = np.zeros(num_entities, dtype=bool)
    seen_r = np.zeros(num_relations, dtype=bool)
    seen_e[train[:, 0]] = True
    seen_e[train[:, 2]] = True
    seen_r[train[:, 1]] = True
    # Walk the held-out triples in shuffled order: an unseen one goes to train and makes its parts seen.
    held = order[: n_test + n_valid]
    for idx, (h, r, t) in zip(held.tolist(), triples[held].tolist(), strict=True):
        if not (seen_e[h] and seen_e[t] and seen_r[r]):
            assign[idx] = 0
            seen_e[h] = seen_e[t] = seen_r[r] = True
    return {name: triples[assign == code] for code, name in enumerate(("train", "valid", "test"))}


def inductive_split(
    triples: np.ndarray, num_entities: int, valid: float, test: float, seed: int
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Hold out whole entities: entities are drawn in seeded random order into the test set until the triples
    touching them reach the test fraction, then likewise for valid. Train keeps only triples between the remaining
    entities, so test (and valid) entities never appear in training. Returns (splits, held-out entity ids)."""
    _check_fractions(valid, test)
    rng = np.random.default_rng(seed)
    degree = np.bincount(triples[:, 0], minlength=num_entities) + np.bincount(
        triples[:, 2], minlength=num_entities
    )
    group = np.zeros(num_entities, dtype=np.int8)  # 0 train, 1 valid, 2 test
    order = iter(rng.permutation(num_entities))
    for code, fraction in ((2, test), (1, valid)):
        target = fraction * len(triples)
        covered = 0
        while covered < target:
            e = next(order, None)
            if e is None:
                break
            if degree[e] == 0:
                continue
            group[e] = code
            covered += degree[e]  # an upper bound (triples between two held-out entities count twice)
    gh, gt = group[triples[:, 0]], group[triples[:, 2]]
    triple_group = np.maximum(gh, gt)  # a triple touching a test entity is test; else valid entity -> valid
    splits = {name: triples[triple_group == code] for code, name in enumerate(("train", "valid", "test"))}
    held = {"valid": np.flatnonzero(group == 1), "test": np.flatnonzero(group == 2)}
    return splits, held
