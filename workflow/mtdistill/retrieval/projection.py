"""The teacher's projection head into the knowledge base's key space (ReAugKD's step 1), trained with
a token-level supervised contrastive loss (Khosla et al. 2020): two target positions are positives
when the teacher's next token there is the same.

Frequent tokens (punctuation, EOS, function words) would otherwise make most pairs positives and the
loss uninformative, so each next token keeps at most `max_per_token` positions.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def supervised_contrastive(z: torch.Tensor, labels: torch.Tensor, temperature: float) -> torch.Tensor:
    """Mean over anchors with a positive of -1/|P(i)| sum_{p in P(i)} log(exp(s_ip/t) / sum_{a != i} exp(s_ia/t)),
    s the cosine; anchors with no positive in the batch do not count."""
    z = F.normalize(z.float(), dim=-1)
    logits = z @ z.T / temperature
    self_mask = torch.eye(len(z), dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    positives = (labels[:, None] == labels[None, :]) & ~self_mask
    counts = positives.sum(1)
    anchors = counts > 0
    if not anchors.any():
        return z.sum() * 0.0
    per_anchor = -(log_prob.masked_fill(~positives, 0.0).sum(1)[anchors] / counts[anchors])
    return per_anchor.mean()


def subsample(next_tokens: np.ndarray, max_per_token: int, rng: np.random.Generator) -> np.ndarray:
    """Indices keeping at most `max_per_token` positions of each next token, drawn at random, sorted."""
    order = rng.permutation(len(next_tokens))
    seen: dict[int, int] = {}
    kept = []
    for i in order:
        token = int(next_tokens[i])
        if seen.get(token, 0) < max_per_token:
            seen[token] = seen.get(token, 0) + 1
            kept.append(i)
    return np.sort(np.array(kept, dtype=np.int64))


def train_projection(states: np.ndarray, next_tokens: np.ndarray, dim: int, temperature: float, epochs: int,
                     batch_size: int, lr: float, max_per_token: int, seed: int) -> tuple[torch.nn.Linear, dict]:
    """A linear head states -> dim trained with the contrastive loss; its per-epoch losses."""
    from tqdm import tqdm

    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    kept = subsample(next_tokens, max_per_token, rng)
    x = torch.from_numpy(np.ascontiguousarray(states[kept], dtype=np.float32))
    y = torch.from_numpy(next_tokens[kept].astype(np.int64))
    head = torch.nn.Linear(x.shape[1], dim)
    optimizer = torch.optim.Adam(head.parameters(), lr=lr)
    history = []
    for _ in tqdm(range(epochs), desc="projection", mininterval=30):
        order = torch.from_numpy(rng.permutation(len(x)))
        total, batches = 0.0, 0
        for start in range(0, len(x), batch_size):
            batch = order[start:start + batch_size]
            loss = supervised_contrastive(head(x[batch]), y[batch], temperature)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total, batches = total + loss.item(), batches + 1
        history.append(total / max(batches, 1))
    return head.eval(), {"tokens": int(len(next_tokens)), "kept_tokens": int(len(kept)),
                         "token_types": int(len(np.unique(next_tokens))), "loss_per_epoch": history}


@torch.no_grad()
def project(head: torch.nn.Linear, states: np.ndarray, batch: int = 65536) -> np.ndarray:
    """Normalised keys of `states`, float32."""
    out = [F.normalize(head(torch.from_numpy(np.ascontiguousarray(states[i:i + batch], dtype=np.float32))), dim=-1)
           for i in range(0, len(states), batch)]
    return torch.cat(out).numpy() if out else np.zeros((0, head.out_features), dtype=np.float32)
