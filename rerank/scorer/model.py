"""The chunked listwise scorer (torch): compare candidates with each other, then calibrate.

Tokens: [query, c_1 .. c_C]. A candidate token is built from comparisons with the query at
full width (elementwise product, whose sum is the cosine, and absolute difference), the
first-stage score, and local-feature evidence (best cell-to-cell cosines of the spatial
cells, and the colour cell's cosine, which also enters the logit linearly; masked when
either side has none).
Candidates attend to each other (compare) unless `cross_attention` is off (ablation).

One relevance logit per candidate: the calibrated cosine (a * cos + b, learned) plus a
correction from the compared tokens. Two outputs are read from it: `listwise`, the logit
within its chunk (softmax over the chunk is the listwise policy, trained with the listwise
and policy-gradient losses), and `calibrated`, the same logit as an absolute score
(sigmoid gives P(relevant), trained with binary cross-entropy), which is what makes
scores from different chunks comparable, so merging chunks is a sort. The correction
starts at zero, so an untrained scorer keeps the refine order, and so does a scorer whose
`correction_weight` (chosen after training, on check lists) is zero; training on the
embedder's own (train) identities moves it only as far as the lists teach. Measured: a
separate listwise head with the final order read from the calibrated head alone, trained
10 epochs, ranked below refine on unseen identities (-0.7 / -2.0 points R@1).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F

SCALARS = 6  # first stage, cosine, local mean, local min, colour, local present


@dataclass(frozen=True)
class ScorerConfig:
    width: int = 512
    cells: int = 4
    local_dim: int = 64
    d_model: int = 128
    heads: int = 4
    layers: int = 2
    use_local: bool = True
    # the elementwise comparisons (product, absolute difference) as token inputs; they
    # read the embedder's coordinates, the scalars do not (an ablation and a choice)
    use_vectors: bool = True
    cross_attention: bool = True
    # the last local row is the item's colour descriptor (LocalSpec.colour), compared
    # whole instead of matched cell to cell
    colour: bool = False
    # how much of the learned correction (tokens + colour term) the logit keeps: chosen
    # after training on check lists (`rerank.train.gate`); 0 keeps the first-stage order
    correction_weight: float = 1.0
    # Platt scaling of the final logit, fitted on the same check lists after the weight:
    # a weight below 1 changes the logit's scale, and sigmoid(logit) must stay P(relevant)
    calibration_scale: float = 1.0
    calibration_bias: float = 0.0

    @property
    def spatial_cells(self) -> int:
        return self.cells - int(self.colour)

    def to_json(self) -> dict:
        return asdict(self)


class Block(nn.Module):
    """Pre-norm attention + MLP, written with plain matmuls so ONNX export is trivial."""

    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.out = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.mlp = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).reshape(b, t, 3, self.heads, d // self.heads).unbind(2)
        q, k, v = (z.transpose(1, 2) for z in (q, k, v))  # (B, H, T, dh)
        attn = (q @ k.transpose(-1, -2)) / (d // self.heads) ** 0.5 + bias[:, None]
        x = x + self.out((attn.softmax(-1) @ v).transpose(1, 2).reshape(b, t, d))
        return x + self.mlp(self.norm2(x))


class ListwiseScorer(nn.Module):
    def __init__(self, config: ScorerConfig) -> None:
        super().__init__()
        self.config = config
        d = config.d_model
        # Only comparisons of query and candidate enter the tokens (their product and
        # absolute difference), never a raw vector: raw vectors let the scorer memorise
        # train identities, which never come back at test time.
        self.inter_proj = nn.Linear(config.width, d)
        self.diff_proj = nn.Linear(config.width, d)
        self.scalar_proj = nn.Linear(SCALARS, d)
        self.type_embedding = nn.Parameter(torch.zeros(2, d))
        self.blocks = nn.ModuleList(Block(d, config.heads) for _ in range(config.layers))
        self.norm = nn.LayerNorm(d)
        self.correction_head = nn.Linear(d, 1)
        nn.init.zeros_(self.correction_head.weight)
        nn.init.zeros_(self.correction_head.bias)
        # the logit starts from the calibrated cosine: a * cos + b (learned)
        self.cos_scale = nn.Parameter(torch.tensor(10.0))
        self.cos_bias = nn.Parameter(torch.tensor(-7.0))
        # colour agreement enters the logit linearly too, starting at zero
        self.colour_scale = nn.Parameter(torch.tensor(0.0))

    def _local_evidence(self, query_local: torch.Tensor, query_mask: torch.Tensor,
                        cand_local: torch.Tensor, cand_mask: torch.Tensor
                        ) -> tuple[torch.Tensor, ...]:
        """(mean and min of each query cell's best cell match, colour cosine, present),
        each (B, C) and zero where either side has no local features."""
        spatial = self.config.spatial_cells
        # (B, C, Kq, Kc) cell cosines; cells are unit vectors already
        sims = torch.einsum("bkd,bcld->bckl", query_local[:, :spatial],
                            cand_local[:, :, :spatial])
        best = sims.max(dim=-1).values  # each query cell's best match
        present = (query_mask[:, None] * cand_mask).to(sims.dtype)  # (B, C)
        if not self.config.use_local:
            present = present * 0
        colour = torch.zeros_like(present)
        if self.config.colour:
            colour = torch.einsum("bd,bcd->bc", query_local[:, -1], cand_local[:, :, -1])
        return (best.mean(-1) * present, best.min(-1).values * present, colour * present,
                present)

    def forward(self, query: torch.Tensor, query_local: torch.Tensor, query_local_mask:
                torch.Tensor, cands: torch.Tensor, cand_local: torch.Tensor,
                cand_local_mask: torch.Tensor, first_stage: torch.Tensor,
                valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cosine = (cands * query[:, None]).sum(-1)  # (B, C)
        local_mean, local_min, colour, present = self._local_evidence(
            query_local, query_local_mask, cand_local, cand_local_mask)
        scalars = torch.stack([first_stage, cosine, local_mean, local_min, colour, present],
                              -1)
        tokens = self.scalar_proj(scalars) + self.type_embedding[1]
        if self.config.use_vectors:
            tokens = (tokens + self.inter_proj(cands * query[:, None])
                      + self.diff_proj((cands - query[:, None]).abs()))
        # shape taken from a tensor (not len()) so the exported graph keeps a dynamic batch
        query_token = (query[:, :1] * 0).unsqueeze(-1) + self.type_embedding[0]
        x = torch.cat([query_token, tokens], 1)
        bias = self._attention_bias(valid)
        for block in self.blocks:
            x = block(x, bias)
        h = self.norm(x[:, 1:])
        correction = self.correction_head(h).squeeze(-1) + self.colour_scale * colour
        calibrated = (self.config.correction_weight * correction
                      + self.cos_scale * cosine + self.cos_bias)
        calibrated = self.config.calibration_scale * calibrated + self.config.calibration_bias
        return calibrated.masked_fill(~valid, -1e4), calibrated

    def _attention_bias(self, valid: torch.Tensor) -> torch.Tensor:
        """(B, T, T) additive mask: padding never attended; without cross-attention a
        candidate sees only the query and itself."""
        b, c = valid.shape
        keys = torch.cat([torch.ones_like(valid[:, :1]), valid], 1)  # (B, T)
        allowed = keys[:, None, :].expand(b, c + 1, c + 1)
        if not self.config.cross_attention:
            # arange comparison, not torch.eye: a bool EyeLike has no ONNX Runtime kernel
            index = torch.arange(c + 1, device=valid.device)
            own = index[:, None] == index[None, :]
            own[:, 0] = True  # everyone sees the query token
            allowed = allowed & own[None]
        return torch.zeros(allowed.shape, dtype=torch.float32).masked_fill(~allowed, -1e4)


def listwise_loss(listwise: torch.Tensor, calibrated: torch.Tensor, labels: torch.Tensor,
                  valid: torch.Tensor, bce_weight: float = 1.0) -> torch.Tensor:
    """Softmax cross-entropy over each chunk that holds a relevant candidate, plus binary
    cross-entropy of the calibrated logit on every real candidate."""
    has_positive = (labels * valid).sum(-1) > 0
    target = labels * valid / (labels * valid).sum(-1, keepdim=True).clamp(min=1)
    softmax = -(target * F.log_softmax(listwise, -1)).sum(-1)
    softmax = (softmax * has_positive).sum() / has_positive.sum().clamp(min=1)
    bce = F.binary_cross_entropy_with_logits(calibrated, labels.float(), reduction="none")
    bce = (bce * valid).sum() / valid.sum().clamp(min=1)
    return softmax + bce_weight * bce
