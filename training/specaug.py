"""SpecAugment (Park et al. 2019) for (B, F, T) features, used in training only by the
student (on its filterbank) and the Whisper teacher (on its log-mel): zeroed bands of
channels and frames, so a model cannot lean on one formant region or one syllable."""

from __future__ import annotations

import torch


def spec_augment(x: torch.Tensor, freq_masks: int, freq_width: int, time_masks: int, time_width: int) -> torch.Tensor:
    """x with, per example, ``freq_masks`` bands of up to ``freq_width`` channels and
    ``time_masks`` bands of up to ``time_width`` frames set to 0."""
    B, F, T = x.shape
    mask = torch.ones_like(x)
    for n, width, size, dim in ((freq_masks, freq_width, F, 1), (time_masks, time_width, T, 2)):
        for _ in range(n):
            w = torch.randint(0, width + 1, (B, 1, 1), device=x.device)
            start = (torch.rand(B, 1, 1, device=x.device) * (size - w).clamp(min=1)).long()
            pos = torch.arange(size, device=x.device).view((1, -1, 1) if dim == 1 else (1, 1, -1))
            mask = mask * ~((pos >= start) & (pos < start + w))
    return x * mask
