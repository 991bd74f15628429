"""training.ema: the moving average the teacher is judged and kept by."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from training.ema import WeightEMA  # noqa: E402


def test_ema_averages_the_weights_and_swaps_them_in_only_inside_the_block():
    model = torch.nn.Linear(2, 1, bias=False)
    torch.nn.init.zeros_(model.weight)
    ema = WeightEMA(model, decay=0.5)
    for value in (1.0, 3.0):               # two "optimizer steps"
        model.weight.data.fill_(value)
        ema.update()
    assert torch.allclose(ema.shadow[0], torch.full((1, 2), 1.75))   # 0 -> 0.5 -> 1.75
    with ema.applied():
        assert torch.allclose(model.weight, torch.full((1, 2), 1.75))
    assert torch.allclose(model.weight, torch.full((1, 2), 3.0))

    other = WeightEMA(model, decay=0.9)
    other.load_state_dict(ema.state_dict())
    assert torch.equal(other.shadow[0], ema.shadow[0])


def test_ema_rejects_a_decay_outside_0_1():
    with pytest.raises(ValueError, match="decay"):
        WeightEMA(torch.nn.Linear(2, 1), decay=1.0)
