"""The loss and the learning-rate schedule, shared by the clips' loop and the track's training."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float,
               known: torch.Tensor | None = None) -> torch.Tensor:
    """Mean focal loss over the (sample, class) targets, or over those ``known`` marks (1)."""
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    pt = p * target + (1 - p) * (1 - target)
    loss = ce * (1 - pt).pow(gamma)
    if known is None:
        return loss.mean()
    return (loss * known).sum() / known.sum().clamp(min=1)


def lr_factor(step: int, total: int, warmup: int, floor: float) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
