"""Data-parallel training (kgemb.distributed): two gloo ranks started by `kgemb train --nproc 2` train the same
weights as one process, with and without sampled negatives (sparse gradients) and with the fused model's text
loss; checkpoints written by rank 0 resume with two ranks where an uninterrupted run ends."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from kgemb import distributed

ATOL = 2e-4  # float sums in another order, through a few Adam steps


def _train(graph: str, out, *extra: str, nproc: int = 1) -> None:
    command = [sys.executable, "-m", "kgemb", "train", graph, "--out", str(out), "--quiet", "--threads", "1",
               "--no-early-stopping", "--seed", "3", *extra]  # fmt: skip
    if nproc > 1:
        command += ["--nproc", str(nproc)]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]


def _weights(out) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    found = sorted(p for p in out.iterdir() if p.suffix == ".safetensors")
    assert found, list(out.iterdir())
    tensors: dict[str, torch.Tensor] = {}
    for path in found:
        tensors.update({f"{path.name}:{k}": v for k, v in load_file(path).items()})
    return tensors


def _assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name, x in a.items():
        y = b[name]
        assert x.shape == y.shape, name
        if x.is_floating_point() or x.is_complex():
            np.testing.assert_allclose(
                y.float().numpy(), x.float().numpy(), atol=ATOL, rtol=1e-3, err_msg=name
            )
        else:
            assert torch.equal(x, y), name


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory, tiny_kg):
    path = tmp_path_factory.mktemp("tiny") / "graph"
    tiny_kg.split(valid=0.1, test=0.1, seed=0).save(path)
    return str(path)


@pytest.mark.parametrize(
    "options",
    [
        ["--mode", "structure", "--negatives", "6", "--batch-size", "16", "--epochs", "4"],  # sparse rows
        ["--mode", "fused", "--batch-size", "32", "--epochs", "3", "--dim", "32"],  # 1-N, text loss
    ],
    ids=["structure-sampled", "fused-1N"],
)
def test_two_gloo_ranks_train_the_weights_of_one_process(tmp_path, tiny_dir, options) -> None:
    _train(tiny_dir, tmp_path / "one", *options)
    _train(tiny_dir, tmp_path / "two", *options, nproc=2)
    one, two = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    _assert_same(one, two)
    initial = tmp_path / "untrained"
    _train(tiny_dir, initial, *[o if o not in ("4", "3") else "1" for o in options])
    assert any(  # the comparison can fail: one epoch less gives other weights
        not torch.allclose(v.float(), _weights(initial)[k].float(), atol=ATOL)
        for k, v in one.items()
        if v.is_floating_point()
    )


def test_checkpoints_of_two_ranks_resume_where_an_uninterrupted_run_ends(tmp_path, tiny_dir) -> None:
    options = ["--mode", "structure", "--negatives", "6", "--batch-size", "16", "--checkpoint-every", "2"]
    _train(tiny_dir, tmp_path / "whole", *options, "--epochs", "4", nproc=2)
    _train(tiny_dir, tmp_path / "cut", *options, "--epochs", "2", nproc=2)
    assert (tmp_path / "cut" / "checkpoint" / "checkpoint.json").is_file()
    _train(tiny_dir, tmp_path / "cut", *options, "--epochs", "4", "--resume", nproc=2)
    _assert_same(_weights(tmp_path / "whole"), _weights(tmp_path / "cut"))


def test_shard_blocks_cover_every_item_once_in_whole_batches() -> None:
    for n in (0, 1, 7, 256, 1000, 1025):
        for count in (1, 2, 3, 7):
            blocks = [distributed.shard_block(n, (i, count), unit=256) for i in range(count)]
            assert blocks[0][0] == 0 and blocks[-1][1] == n
            for (a, b), (c, _) in itertools.pairwise(blocks):
                assert b == c and a <= b
                assert b % 256 == 0 or b == n
    assert distributed.parse_shard("1/3") == (1, 3)
    for bad in ("3/3", "-1/2", "a/b", "1"):
        with pytest.raises(Exception, match="--shard"):
            distributed.parse_shard(bad)
