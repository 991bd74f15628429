"""Response models: they document the API in /docs and fix its JSON shape."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from service.answer import model_ref, scores
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


class Segment(BaseModel):
    start_s: float
    end_s: float
    label: str
    confidence: float
    probabilities: dict[str, float]


class PredictResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [EXAMPLES["predict"]]})
    label: str = Field(examples=["angry"])
    confidence: float = Field(description="Calibrated probability of `label`")
    probabilities: dict[str, float] = Field(description="Calibrated probability of every label")
    top_k: list[LabelScore]
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


def to_response(a: Answer, *, top_k: int, segments: bool) -> PredictResponse:
    labels = a.model.bundle.labels
    probs = np.array([a.prediction.probabilities[n] for n in labels])
    return PredictResponse(
        **scores(labels, probs, top_k), model=model_ref(a.model), fell_back=a.fell_back,
        duration_s=round(a.duration_s, 4), inference_ms=round(a.inference_ms, 3),
        segments=answer_segments(a) if segments else None,
    )
