"""The pipeline decodes each clip once, untrimmed; a model's windowing decides the trim."""

from __future__ import annotations

import numpy as np

from pipeline.run import decode_corpus
from service.audio import SAMPLE_RATE, load_audio
from training.frozen_teacher import WINDOW
from training.records import Utterance
from training.train_student import StudentConfig


def test_the_pipeline_trims_only_where_the_windowing_says_so(ravdess_clip):
    rec = Utterance(id="a", path=str(ravdess_clip), speaker="ravdess:01", label="angry", corpus="ravdess")
    clip = decode_corpus([rec])["a"]
    np.testing.assert_array_equal(clip, load_audio(ravdess_clip))   # the leading silence is still there
    untrimmed = StudentConfig(trim_silence=False).windowing
    assert len(untrimmed.trimmed(clip)) == len(clip) and untrimmed.windows(clip)[1][0] == 0.0
    trimmed = StudentConfig(trim_silence=True).windowing
    assert len(trimmed.trimmed(clip)) < len(clip) - SAMPLE_RATE // 4   # RAVDESS opens with ~1 s of silence
    assert WINDOW.trim_silence and WINDOW.windows(clip)[1][0] > 0.25   # the frozen teacher trims its own
