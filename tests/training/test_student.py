"""LiteCNN: shapes, size, front-end initialisation, loss, and a few real optimisation steps."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from service.labels import LABELS
from devtools.audio import voice
from training.student import LiteCNN, LiteCNNConfig, count_parameters, gabor_init
from training.train_student import StudentConfig, kd_loss, train_student


def test_default_student_is_small():
    assert count_parameters(LiteCNN()) <= 1_100_000


@pytest.mark.parametrize("samples", [16_000, 48_000, 48_001, 80_000])
def test_shapes(samples):
    out = LiteCNN().eval()(torch.randn(3, samples))
    assert out.shape == (3, 6) and torch.isfinite(out).all()


def test_loudness_does_not_change_the_answer():
    m = LiteCNN().eval()
    x = torch.randn(2, 16_000) * 0.01
    assert torch.allclose(m(x), m(x * 30), atol=1e-3)


def test_filterbank_starts_mel_like():
    cfg = LiteCNNConfig()
    w = gabor_init(cfg)[: cfg.n_filters, 0]            # cosine filters (F, L)
    spectrum = np.abs(np.fft.rfft(w.numpy(), n=4096, axis=1))
    peaks = np.fft.rfftfreq(4096, 1 / 16_000)[spectrum.argmax(axis=1)]
    assert np.all(np.diff(peaks) >= 0) and peaks[0] < 150 and peaks[-1] > 7000
    assert np.all(np.diff(np.diff(peaks)) > -40)        # spacing grows with frequency (mel), up to FFT bin noise


def test_kd_loss():
    logits, y = torch.randn(4, 6), torch.tensor([0, 1, 2, 3])
    assert torch.allclose(kd_loss(logits, y, torch.zeros(4, 6), 1.0, 2.0), torch.nn.functional.cross_entropy(logits, y))
    # a student equal to its teacher pays only the CE part
    assert torch.allclose(kd_loss(logits, y, logits, 0.3, 2.0), 0.3 * torch.nn.functional.cross_entropy(logits, y))


def test_config_rejects_unknown_keys():
    with pytest.raises(ValueError, match="unknown StudentConfig keys"):
        StudentConfig.from_dict({"epochz": 3})


def test_a_few_steps_reduce_the_loss():
    torch.manual_seed(0)
    m = LiteCNN(LiteCNNConfig(channels=[32, 32], bottleneck=32, hidden=32, dropout=0.0))
    x, y = torch.randn(8, 16_000), torch.arange(8) % 6
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        loss = kd_loss(m(x), y, torch.zeros(8, 6), 1.0, 1.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] * 0.7


def test_random_crop_repeat_mode_has_no_silence():
    from training.data import random_crop

    rng = np.random.default_rng(0)
    x = np.arange(1, 101, dtype=np.float32)
    for _ in range(20):
        crop = random_crop(x, 250, rng, pad="repeat")
        assert len(crop) == 250 and crop.min() > 0
        assert np.all((np.diff(crop) == 1) | (np.diff(crop) == -99))   # the clip, wrapped around
    assert (random_crop(x, 250, rng) == 0).sum() == 150


def test_shortened_windows_are_filled_as_the_service_fills_them():
    from service.audio import fill
    from training.data import shorten

    rng = np.random.default_rng(0)
    x = np.arange(1, 301, dtype=np.float32)
    assert shorten(x, rng, 0.0, 80, "repeat") is x
    lengths = set()
    for _ in range(50):
        y = shorten(x, rng, 1.0, 80, "repeat")
        period = int(np.argmax(np.diff(y) != 1)) + 1           # where the span starts over
        span = y[:period]
        assert 80 <= period < 300 and np.all(np.diff(span) == 1)
        np.testing.assert_array_equal(y, fill(span, 300, "repeat"))
        lengths.add(period)
    assert len(lengths) > 20                                    # lengths are drawn, not fixed
    z = shorten(x, np.random.default_rng(1), 1.0, 80, "zero")
    assert z[-1] == 0 and len(z) == 300                         # zero fill: the span, then silence
    with pytest.raises(ValueError, match="short_min_s"):
        StudentConfig(short_p=0.3, short_min_s=3.0)


def test_unlabeled_examples_learn_only_from_the_teacher():
    logits, teacher = torch.randn(4, 6), torch.randn(4, 6)
    y = torch.tensor([0, 1, -100, -100])
    full = kd_loss(logits, y, teacher, 0.5, 2.0)
    ce = torch.nn.functional.cross_entropy(logits[:2], y[:2])
    kl = torch.nn.functional.kl_div(torch.log_softmax(logits / 2, 1), torch.log_softmax(teacher / 2, 1),
                                    log_target=True, reduction="batchmean")
    assert torch.allclose(full, 0.5 * ce + 0.5 * 4 * kl)
    all_unlabeled = kd_loss(logits, torch.full((4,), -100), teacher, 0.5, 2.0)
    assert torch.allclose(all_unlabeled, 0.5 * 4 * kl)


def test_class_weights_make_every_class_count_the_same():
    from service.labels import LABELS
    from training.data import class_weights

    labels = ["angry"] * 4 + ["neutral"] * 2 + ["sad"] * 4 + [""] * 5     # "" = unlabeled, ignored
    w = dict(zip(LABELS, class_weights(labels).tolist()))
    assert w["neutral"] == pytest.approx(2 * w["angry"]) and w["angry"] == pytest.approx(w["sad"])
    assert w["happy"] == 0 and sum(w.values()) == pytest.approx(3)             # mean 1 over present classes
    assert torch.allclose(class_weights(LABELS * 3), torch.ones(len(LABELS)))


def test_balanced_kd_loss_weights_the_hard_labels():
    logits, y = torch.randn(4, 6), torch.tensor([0, 0, 0, 5])
    weight = torch.tensor([1.0, 1, 1, 1, 1, 3.0])
    expected = torch.nn.functional.cross_entropy(logits, y, weight=weight)
    assert torch.allclose(kd_loss(logits, y, torch.zeros(4, 6), 1.0, 2.0, weight), expected)
    assert not torch.allclose(expected, kd_loss(logits, y, torch.zeros(4, 6), 1.0, 2.0))


def test_training_is_reproducible_for_a_seed(tmp_path):
    """Same data, seed and thread count: the same weights, bit for bit (augmentation, crops,
    shuffling, dropout and SpecAugment all draw from seeded generators)."""
    clips = [voice(1.5, seed=i) for i in range(12)]
    labels = [LABELS[i % len(LABELS)] for i in range(12)]
    cfg = StudentConfig.from_dict({"epochs": 2, "batch_size": 4, "window_s": 1.0, "threads": 1,
                                   "model": {"channels": [16, 16], "bottleneck": 16, "hidden": 16}})
    train, val = (clips, labels), (clips[:6], labels[:6])
    runs = [train_student(cfg, train, val, tmp_path / str(i)).state_dict() for i in range(2)]
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    other = train_student(dataclasses.replace(cfg, seed=1), train, val, tmp_path / "seed1").state_dict()
    assert not torch.equal(runs[0]["head.4.weight"], other["head.4.weight"])


def test_a_stopped_run_resumes_where_it_stopped(tmp_path, monkeypatch):
    """Killed after its first epoch, training started again goes on from last.pt and ends with
    the weights of a run that was never stopped; cached views (`views`) are rendered once."""
    import training.train_student as ts

    clips = [voice(1.5, seed=i) for i in range(12)]
    labels = [LABELS[i % len(LABELS)] for i in range(12)]
    ids = [f"clip{i}" for i in range(12)]
    cfg = StudentConfig.from_dict({"epochs": 3, "batch_size": 4, "window_s": 1.0, "threads": 1, "views": 2,
                                   "model": {"channels": [16, 16], "bottleneck": 16, "hidden": 16}})
    kw = {"ids": ids, "views_root": tmp_path / "views"}
    whole = train_student(cfg, (clips, labels), (clips[:6], labels[:6]), tmp_path / "whole", **kw).state_dict()
    rendered = sorted((tmp_path / "views").rglob("*.npy"))
    assert len(rendered) == 12 and np.load(rendered[0]).shape == (2, 16_000)

    calls = []
    real = ts.predict_probs

    def killed_in_second_epoch(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(ts, "predict_probs", killed_in_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        train_student(cfg, (clips, labels), (clips[:6], labels[:6]), tmp_path / "stopped", **kw)
    assert torch.load(tmp_path / "stopped" / "last.pt", weights_only=False)["epoch"] == 0
    monkeypatch.setattr(ts, "predict_probs", real)
    resumed = train_student(cfg, (clips, labels), (clips[:6], labels[:6]), tmp_path / "stopped", **kw).state_dict()
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)   # the best epoch's weights
    last = [torch.load(tmp_path / d / "last.pt", weights_only=False)["model"] for d in ("whole", "stopped")]
    assert all(torch.equal(last[0][k], last[1][k]) for k in last[0])   # and the last epoch's
    history = json.loads((tmp_path / "stopped" / "history.json").read_text())
    assert [h["epoch"] for h in history] == [0, 1, 2]


def test_feature_distillation_trains_a_projection_that_is_never_exported(tmp_path):
    """feature_kd > 0: a training-only projection of the pooled features learns the teacher's
    per-clip features (the cosine distance falls); student.pt and the ONNX graph are a plain LiteCNN's."""
    import onnx

    from export.onnx_export import export_onnx
    from training.train_student import feature_loss, standardise

    t = np.arange(24_000) / 16_000
    # a tone whose pitch the student can hear, and a teacher feature vector, per class
    clips = [voice(1.5, seed=i) + 0.2 * np.sin(2 * np.pi * 300 * (1 + i % 6) * t).astype(np.float32) for i in range(12)]
    labels = [LABELS[i % len(LABELS)] for i in range(12)]
    rng = np.random.default_rng(0)
    targets = (rng.normal(size=(6, 8))[np.arange(12) % 6] + 0.1 * rng.normal(size=(12, 8))).astype(np.float32)
    cfg = StudentConfig.from_dict({"epochs": 20, "batch_size": 4, "window_s": 1.0, "threads": 1, "feature_kd": 1.0,
                                   "augment": False, "lr": 1e-2,
                                   "model": {"channels": [16, 16], "bottleneck": 16, "hidden": 16}})
    with pytest.raises(ValueError, match="teacher_features"):
        train_student(cfg, (clips, labels), (clips[:6], labels[:6]), tmp_path / "none")
    model = train_student(cfg, (clips, labels), (clips[:6], labels[:6]), tmp_path / "fkd", teacher_features=targets)

    x = torch.from_numpy(np.stack([c[:16_000] for c in clips]))
    y = torch.from_numpy(standardise(targets))
    last = torch.load(tmp_path / "fkd" / "last.pt", weights_only=False)
    trained, fresh = LiteCNN(cfg.model), LiteCNN(cfg.model)
    trained.load_state_dict(last["model"])
    proj = torch.nn.Linear(trained.feature_dim, 8)
    with torch.no_grad():
        before = feature_loss(proj(fresh.eval().features(x)), y)
        proj.load_state_dict(last["projection"])
        after = feature_loss(proj(trained.eval().features(x)), y)
    assert after < 0.8 * before, (before, after)

    assert torch.load(tmp_path / "fkd" / "student.pt", weights_only=True)["state_dict"].keys() == fresh.state_dict().keys()
    graphs = [onnx.load(str(export_onnx(m.eval(), tmp_path / f"{name}.onnx", window_s=1.0))).graph
              for name, m in (("fkd", model), ("plain", fresh))]
    io = [[(v.name, str(v.type)) for v in [*g.input, *g.output]] for g in graphs]
    ops = [[n.op_type for n in g.node if n.op_type not in ("Identity", "Constant")] for g in graphs]
    assert io[0] == io[1] and ops[0] == ops[1]


def test_per_view_targets_follow_the_view_drawn(tmp_path):
    """Targets given per cached view, (N, k, D): each item's target is the row of the very view
    it returns; per-clip targets (N, D) stay one row for every view; without views it is refused."""
    from training.data import ViewDataset
    from training.train_student import standardise

    files = []
    for i in range(3):
        files.append(tmp_path / f"{i}.npy")
        np.save(files[-1], np.stack([np.full(1000, 10 * i + j, np.float16) for j in range(4)]))
    soft = np.array([[[10 * i + j] * 2 for j in range(4)] for i in range(3)], np.float32)
    ds = ViewDataset(files, ["angry"] * 3, soft=soft)
    seen = set()
    for epoch in range(6):
        ds.epoch = epoch
        for i in range(3):
            x, _, target = ds[i]
            assert torch.all(x == x[0]) and torch.all(target == x[0])
            seen.add(float(x[0]))
    assert len(seen) > 3   # more than one view per clip was drawn
    _, _, target = ViewDataset(files, ["angry"] * 3, soft=soft[:, 0])[2]
    assert torch.all(target == 20)

    feats = np.random.default_rng(0).normal(3.0, 2.0, size=(5, 4, 8))
    assert np.allclose(standardise(feats), standardise(feats.reshape(20, 8)).reshape(5, 4, 8), atol=1e-5)

    cfg = StudentConfig.from_dict({"epochs": 1, "batch_size": 4, "window_s": 1.0, "threads": 1, "alpha": 0.5,
                                   "model": {"channels": [16, 16], "bottleneck": 16, "hidden": 16}})
    clips, labels = [voice(1.5, seed=i) for i in range(4)], ["angry", "sad"] * 2
    with pytest.raises(ValueError, match="per view"):
        train_student(cfg, (clips, labels), (clips, labels), tmp_path / "s", teacher_logits=np.zeros((4, 2, 6), np.float32))


@pytest.mark.parametrize("pad", ["repeat", "zero"])
def test_a_teacher_hears_each_view_without_its_fill(tmp_path, pad):
    """teacher_inputs gives back, from the stored views, the audio each view was cut from: a long
    clip's view as it is, a short clip once, without the zeros or the repetition that filled it."""
    from training.data import Augment
    from training.views import render_views, teacher_inputs
    from service.audio import Windowing

    win = Windowing(1.0, 0.5, False, pad)
    short, long = voice(0.6, seed=1), voice(1.8, seed=2)
    files = render_views([short, long], ["short", "long"], win, None, 0, 3, tmp_path)
    heard = [teacher_inputs(np.load(f), clip, cid, None, 0, pad) for f, clip, cid in
             zip(files, [short, long], ["short", "long"])]
    assert all(np.array_equal(x, short.astype(np.float16).astype(np.float32)) for x in heard[0])
    assert all(np.array_equal(x, v.astype(np.float32)) for x, v in zip(heard[1], np.load(files[1])))

    augment = Augment(speed=0.1, noise_p=0.5, reverb_p=0.5)   # lengths change: each replayed from its draws
    files = render_views([short], ["short"], win, augment, 0, 4, tmp_path / "aug")
    views = np.load(files[0]).astype(np.float32)
    for x, v in zip(teacher_inputs(np.load(files[0]), short, "short", augment, 0, pad), views):
        assert 0.5 * 16_000 < len(x) < 16_000
        filled = np.resize(x, 2 * len(v)) if pad == "repeat" else np.concatenate([x, np.zeros(len(v), np.float32)])
        assert any(np.array_equal(np.roll(filled, s)[:len(v)] if pad == "zero" else filled[s:s + len(v)], v)
                   for s in range(len(v) - len(x) + 1 if pad == "zero" else len(x)))
