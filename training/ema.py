"""An exponential moving average of a model's trainable weights (Polyak averaging).

Fine-tuning a pretrained encoder on a few speakers swings validation UA by several points
from one epoch to the next; the average of the recent weights is a smoother model to
evaluate and keep than any single step's weights."""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn


class WeightEMA:
    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema decay {decay!r}; expected 0 < decay < 1")
        self.decay = decay
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.shadow = [p.detach().clone() for p in self.params]

    @torch.no_grad()
    def update(self) -> None:
        """After each optimizer step: shadow <- decay * shadow + (1 - decay) * weights."""
        for s, p in zip(self.shadow, self.params):
            s.lerp_(p.detach(), 1.0 - self.decay)

    @contextmanager
    @torch.no_grad()
    def applied(self):
        """The model carries the averaged weights inside the block, its own weights after."""
        backup = [p.detach().clone() for p in self.params]
        for p, s in zip(self.params, self.shadow):
            p.copy_(s)
        try:
            yield
        finally:
            for p, b in zip(self.params, backup):
                p.copy_(b)

    def state_dict(self) -> list[torch.Tensor]:
        return [s.cpu() for s in self.shadow]

    @torch.no_grad()
    def load_state_dict(self, state: list[torch.Tensor]) -> None:
        for s, v in zip(self.shadow, state):
            s.copy_(v)
