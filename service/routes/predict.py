"""POST /predict, /predict/teacher, /predict/batch."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from service.audio import AudioError
from service.deps import RuntimeDep
from service.errors import ApiError, error_responses
from service.runtime import ModelChoice
from service.schemas import AnswerJSON, BatchItem, BatchResponse, PredictResponse, answer_fields, to_response
from service.upload import read_uploads

# The app adds the API key dependency when SER_API_KEY is set (service/app.py).
router = APIRouter(tags=["predict"])

MAX_TOP_K = 64
TopK = Annotated[int, Query(ge=1, le=MAX_TOP_K, description="How many labels to list in `top_k`")]
Segments = Annotated[bool, Query(description="Add per-window results with start/end times")]
Labels = Annotated[str | None, Query(
    description="Answer over these labels only: at least two of the model's labels (`GET /models`), comma-separated. "
                "Probabilities are renormalised over them and the label is the most likely of them: for a task "
                "with fewer classes. An unknown label is a 422 `invalid_parameter` that names the valid ones",
    examples=["angry,happy,neutral,sad"])]
# What the decoder reads; a client that cannot tell may send application/octet-stream.
AUDIO_TYPES = ["audio/wav", "audio/x-wav", "audio/flac", "audio/ogg", "audio/mpeg", "application/octet-stream"]
BINARY = {"type": "string", "format": "binary"}


def _form(field: str, schema: dict) -> dict:
    return {"schema": {"type": "object", "required": [field], "properties": {field: schema}},
            "encoding": {field: {"contentType": ", ".join(AUDIO_TYPES)}}}


AUDIO_BODY = {"requestBody": {"required": True, "content": {
    "multipart/form-data": _form("file", BINARY), **{t: {"schema": BINARY} for t in AUDIO_TYPES}}}}
# maxItems is SER_MAX_BATCH_FILES, filled in per app by `limit_batch_files`.
BATCH_BODY = {"requestBody": {"required": True, "content": {
    "multipart/form-data": _form("files", {"type": "array", "items": BINARY, "minItems": 1})}}}
ONE_CLIP_ERRORS = error_responses("request", "clip", "auth", "model")
BATCH_ERRORS = error_responses("request", "auth", "model")


def limit_batch_files(openapi: dict, max_files: int) -> dict:
    """Write the app's SER_MAX_BATCH_FILES into the batch body's schema."""
    form = openapi["paths"]["/predict/batch"]["post"]["requestBody"]["content"]["multipart/form-data"]
    form["schema"]["properties"]["files"]["maxItems"] = max_files
    return openapi


def declare_labels(openapi: dict, labels: tuple[str, ...]) -> dict:
    """Write the model's labels into every `labels` query parameter: an array of at least two of
    them, comma-separated (style form, not exploded), so that clients and testers know the valid values."""
    for operation in (op for path in openapi["paths"].values() for op in path.values()):
        for param in operation.get("parameters", []):
            if param["name"] == "labels" and param["in"] == "query":
                param.update(style="form", explode=False, schema={
                    "type": "array", "items": {"type": "string", "enum": list(labels)}, "minItems": 2, "uniqueItems": True})
    return openapi


async def predict_one(request: Request, runtime: RuntimeDep, choice: ModelChoice, top_k: int, segments: bool,
                      labels: str | None) -> AnswerJSON:
    subset = runtime.label_set(labels)
    [(_, data)] = await read_uploads(request, ("file",), max_files=1)
    return AnswerJSON(answer_fields(await runtime.answer(data, choice, subset), top_k=top_k, segments=segments))


@router.post("/predict", response_model=PredictResponse, openapi_extra=AUDIO_BODY, responses=ONE_CLIP_ERRORS)
async def predict(request: Request, runtime: RuntimeDep, model: ModelChoice = "auto",
                  top_k: TopK = 3, segments: Segments = False, labels: Labels = None) -> AnswerJSON:
    """Emotion of one clip. `model=auto`: the student answers, and the teacher when the
    student's logit margin is below SER_FALLBACK_THRESHOLD. A clip without speech is
    answered `"no_speech": true` with a null `label`.

    `curl -F file=@03-01-05-01-01-01-01.flac http://127.0.0.1:8000/predict`, or the raw
    bytes: `curl --data-binary @clip.flac -H 'Content-Type: audio/flac' .../predict`."""
    return await predict_one(request, runtime, model, top_k, segments, labels)


@router.post("/predict/teacher", response_model=PredictResponse, openapi_extra=AUDIO_BODY, responses=ONE_CLIP_ERRORS)
async def predict_teacher(request: Request, runtime: RuntimeDep, top_k: TopK = 3, segments: Segments = False,
                          labels: Labels = None) -> AnswerJSON:
    """Emotion of one clip from the teacher alone (slower, more accurate); 503
    `teacher_unavailable` when the service runs student-only.

    `curl -F file=@03-01-05-01-01-01-01.flac http://127.0.0.1:8000/predict/teacher`"""
    return await predict_one(request, runtime, "teacher", top_k, segments, labels)


@router.post("/predict/batch", response_model=BatchResponse, openapi_extra=BATCH_BODY, responses=BATCH_ERRORS)
async def predict_batch(request: Request, runtime: RuntimeDep, model: ModelChoice = "auto",
                        top_k: TopK = 3, segments: Segments = False, labels: Labels = None) -> BatchResponse:
    """Several clips, at most SER_MAX_BATCH_FILES (multipart field `files`, repeated; `file`
    fields are taken too), answered in form order. A file that cannot be used gets its own
    `error` entry and the rest are still answered; overload and a missing teacher fail the
    whole request.

    `curl -F files=@a.flac -F files=@b.wav http://127.0.0.1:8000/predict/batch`"""
    subset = runtime.label_set(labels)
    uploads = await read_uploads(request, ("files", "file"), max_files=runtime.settings.max_batch_files)
    items = []
    for name, data in uploads:
        try:
            answer = await runtime.answer(data, model, subset)
            items.append(BatchItem(filename=name, result=to_response(answer, top_k=top_k, segments=segments)))
        except (ApiError, AudioError) as e:   # both carry a code from ERRORS and a message
            if e.code in ("overloaded", "teacher_unavailable", "not_ready"):
                raise   # a whole-request condition, not a property of this file
            runtime.metrics.errors.labels(code=e.code).inc()
            items.append(BatchItem(filename=name, error={"code": e.code, "message": e.message}))
    return BatchResponse(results=items)
