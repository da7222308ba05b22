"""Negatives for contrastive training: in-batch entities, text-similar (hard) entities, and uniform ones.

:class:`TextHardNegativeSampler` is a PyKEEN ``NegativeSampler``, so it plugs into PyKEEN's sLCWA training loop and
its filtering of false negatives. Hard negatives are entities whose text is close to the entity being replaced
(precomputed nearest neighbours of the pooled text features), the negatives a text-aware model most needs to see.
"""

from __future__ import annotations

import torch
from pykeen.sampling import NegativeSampler
from torch.nn import functional


def text_neighbours(
    pooled: torch.Tensor, k: int = 16, chunk: int = 2048, device: torch.device | str | None = None
) -> torch.Tensor:
    """The ``k`` most cosine-similar other entities of each entity, shape ``(n, k)`` on the CPU (computed on
    ``device`` in chunks of ``chunk`` rows, so memory stays O(n·chunk))."""
    n = pooled.shape[0]
    k = max(1, min(k, n - 1))
    x = functional.normalize(pooled.float().to(device or pooled.device), dim=1)
    out = torch.empty(n, k, dtype=torch.long)
    for start in range(0, n, chunk):
        sims = x[start : start + chunk] @ x.T
        rows = torch.arange(sims.shape[0], device=x.device)
        sims[rows, rows + start] = -torch.inf  # never the entity itself
        out[start : start + chunk] = sims.topk(k, dim=1).indices.cpu()
    return out


class TextHardNegativeSampler(NegativeSampler):
    """Corrupt heads (first half of each row's negatives) and tails (second half) with a mix of candidates.

    Of each half, a ``hard`` fraction comes from the text neighbours of the true entity, an ``in_batch`` fraction
    from the same position of other triples in the batch (the in-batch negatives of contrastive learning), and the
    rest uniformly from all entities. Use ``filtered=True`` (the default here) so true triples are never negatives.
    """

    def __init__(
        self,
        *,
        neighbours: torch.Tensor | None,
        hard: float = 0.25,
        in_batch: float = 0.25,
        filtered: bool = True,
        **kwargs,
    ) -> None:
        super().__init__(filtered=filtered, **kwargs)
        self.register_buffer("neighbours", neighbours if neighbours is not None else torch.empty(0, 0).long())
        self.hard = hard if neighbours is not None and neighbours.numel() else 0.0
        self.in_batch = in_batch

    def _kinds(self, width: int, device: torch.device) -> torch.Tensor:
        """Per negative slot of one side: 1 = hard, 2 = in-batch, 0 = uniform."""
        n_hard = round(width * self.hard)
        n_batch = min(width - n_hard, round(width * self.in_batch))
        kinds = torch.zeros(width, dtype=torch.long, device=device)
        kinds[:n_hard] = 1
        kinds[n_hard : n_hard + n_batch] = 2
        return kinds

    def corrupt_batch(self, positive_batch: torch.Tensor) -> torch.Tensor:
        batch_shape = positive_batch.shape[:-1]
        pos = positive_batch.reshape(-1, 3)
        b, n = pos.shape[0], self.num_negs_per_pos
        device = pos.device
        n_head = n // 2
        column = torch.full((n,), 2, dtype=torch.long, device=device)
        column[:n_head] = 0
        kinds = torch.cat([self._kinds(n_head, device), self._kinds(n - n_head, device)])
        true = torch.where(column == 0, pos[:, :1], pos[:, 2:])  # (b, n) entity being replaced
        uniform = torch.randint(self.num_entities - 1, (b, n), device=device)
        candidates = uniform + (uniform >= true).long()
        if self.hard > 0:
            pick = torch.randint(self.neighbours.shape[1], (b, n), device=device)
            candidates = torch.where(kinds == 1, self.neighbours[true, pick], candidates)
        if self.in_batch > 0 and b > 1:
            other = torch.randint(b, (b, n), device=device)
            from_batch = torch.where(column == 0, pos[other, 0], pos[other, 2])
            candidates = torch.where(kinds == 2, from_batch, candidates)
        negative = pos.unsqueeze(1).repeat(1, n, 1)
        negative[:, :, 0] = torch.where(column == 0, candidates, negative[:, :, 0])
        negative[:, :, 2] = torch.where(column == 2, candidates, negative[:, :, 2])
        return negative.view(*batch_shape, n, 3)
