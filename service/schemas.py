"""Response models: they document the API in /docs and fix its JSON shape."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import JSONResponse

from service.answer import model_ref, scores, speech_fields
from service.answer import segments as answer_segments
from service.errors import ErrorBody
from service.runtime import Answer

# Real answers to a real clip (tests/support/openapi_examples.py writes them; a test keeps them true).
EXAMPLES = json.loads((Path(__file__).resolve().parent / "static" / "openapi-examples.json").read_text())


class LabelScore(BaseModel):
    label: str
    probability: float


class ModelRef(BaseModel):
    name: str
    version: str
    role: str
    precision: str


NO_SPEECH = "True when no speech was heard: then `label` and `confidence` are null and there are no probabilities"
SPEECH_SHARE = ("Share of the windows that hold speech, 0 to 1 (for one window: 1 or 0; docs/speech-gate.md); "
                "null when the speech gate is off (SER_SPEECH_GATE=false)")


class Segment(BaseModel):
    start_s: float
    end_s: float
    label: str | None = Field(description="Null when this window holds no speech")
    confidence: float | None
    probabilities: dict[str, float]
    no_speech: bool = Field(description="True when this window holds no speech: it does not count in the clip's answer")
    speech_share: float | None = Field(description=SPEECH_SHARE)


class PredictResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [EXAMPLES["predict"], EXAMPLES["no_speech"]]})
    label: str | None = Field(examples=["angry"], description="The emotion heard; null when no speech was heard")
    confidence: float | None = Field(description="Calibrated probability of `label`; null without speech")
    probabilities: dict[str, float] = Field(description="Calibrated probability of every label (of the `labels` "
                                                        "asked for, renormalised over them); empty without speech")
    top_k: list[LabelScore] = Field(description="The most likely labels; empty without speech")
    no_speech: bool = Field(description=NO_SPEECH)
    speech_share: float | None = Field(description=SPEECH_SHARE)
    model: ModelRef
    fell_back: bool = Field(description="True when model=auto and the teacher answered because the student was unsure")
    duration_s: float
    inference_ms: float
    segments: list[Segment] | None = None


class BatchItem(BaseModel):
    filename: str
    result: PredictResponse | None = Field(None, description="Set when this file was classified")
    error: ErrorBody | None = Field(None, description="Set instead of `result` when this file was refused")


class BatchResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [EXAMPLES["batch"]]})
    results: list[BatchItem]


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready"]
    models: list[str] = Field(description="Roles of the loaded bundles", examples=[["student", "teacher"]])


class ModelInfo(BaseModel):
    name: str
    version: str
    role: str
    precision: str
    labels: list[str]
    sample_rate: int
    window_s: float
    hop_s: float
    temperature: float
    parameters: int
    sha256: str
    metrics: dict


def answer_fields(a: Answer, *, top_k: int, segments: bool) -> dict:
    """PredictResponse's fields, in its order, as plain JSON values."""
    p = a.prediction
    probs = np.array([p.probabilities[n] for n in p.labels]) if not p.no_speech else None
    return {**scores(p.labels, probs, top_k), **speech_fields(p.no_speech, p.speech_share),
            "model": model_ref(a.model), "fell_back": a.fell_back,
            "duration_s": round(a.duration_s, 4), "inference_ms": round(a.inference_ms, 3),
            "segments": answer_segments(a) if segments else None}


def to_response(a: Answer, *, top_k: int, segments: bool) -> PredictResponse:
    return PredictResponse(**answer_fields(a, top_k=top_k, segments=segments))


class AnswerJSON(JSONResponse):
    """/predict's answer, written to JSON straight from `answer_fields`: the route still declares
    PredictResponse (its schema and /docs), but a request does not build and validate the
    pydantic model and then serialize it again (the tests hold the answers to the schema)."""
