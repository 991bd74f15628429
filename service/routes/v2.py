"""The Open Inference Protocol (KServe V2) over REST, beside /predict: health, metadata and
inference for the models `student`, `teacher` and `auto` (the student, and the teacher when the
student is unsure, as /predict's model=auto). The protocol's request and response forms live in
service/oip.py; its errors, `{"error": "<code>: <message>"}`, come from the one error table.
"""

from __future__ import annotations

from importlib.metadata import version
from typing import Annotated

from fastapi import APIRouter, Path, Request, status
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from service import oip
from service.answer import Answer, ModelChoice
from service.audio import AudioError
from service.deps import RuntimeDep
from service.errors import ApiError, error_responses
from service.runtime import Runtime
from service.upload import read_body

TAGS = ["open inference protocol"]
router = APIRouter(prefix="/v2", tags=TAGS)
# Inference only: the app puts it behind SER_API_KEY when that is set (service/app.py); probes and
# metadata stay open, as /healthz, /readyz and /v1/models do.
infer_router = APIRouter(prefix="/v2", tags=TAGS)

# A str checked by oip.model_choice, not a Literal: an unknown model is a 404, as the protocol's servers answer.
ModelName = Annotated[str, Path(description="`student`, `teacher`, or `auto`: the student, and the teacher when "
                                            "the student's logit margin is below SER_FALLBACK_THRESHOLD",
                                json_schema_extra={"enum": list(oip.MODEL_NAMES)})]
MODEL_ERRORS = error_responses("oip_model", protocol=True)
BINARY = {"schema": {"type": "string", "format": "binary"}}
INFER_BODY = {"requestBody": {"required": True, "description": (
    "JSON; or, with the binary-data extension, the JSON header (`Inference-Header-Content-Length` bytes) "
    "followed by the tensors whose `parameters.binary_data_size` is set"), "content": {
        "application/json": {"schema": oip.inline_schema(oip.InferRequestBody)},
        "application/octet-stream": BINARY}}}
INFER_RESPONSES = {
    **error_responses("body", "tensor", "clip", "auth", "model", "oip_model", protocol=True),
    status.HTTP_200_OK: {
        "description": "JSON; binary outputs follow the JSON header (binary-data extension)",
        "content": {"application/octet-stream": BINARY},
        "headers": {oip.HEADER_LENGTH: {"description": "Bytes of the JSON header, when binary outputs follow",
                                        "schema": {"type": "integer"}}}}}


@router.get("", response_model=oip.ServerMetadata)
async def get_server_metadata() -> dict:
    """Server metadata: name, version and the protocol extensions it speaks (`binary_tensor_data`)."""
    return oip.server_metadata(version("speech-emotion-distill"))


@router.get("/health/live", response_model=oip.Liveness)
async def get_server_live() -> dict:
    """Liveness: the process answers (a Kubernetes livenessProbe)."""
    return {"live": True}


@router.get("/health/ready", response_model=oip.ServerReadiness, responses=error_responses("ready", protocol=True))
async def get_server_ready(runtime: RuntimeDep) -> dict:
    """Readiness: the bundles are loaded and warmed up; 503 `not_ready` until then (a readinessProbe)."""
    if not runtime.ready:
        raise ApiError("not_ready")
    return {"ready": True}


@router.get("/models/{model_name}", response_model=oip.ModelMetadata, responses=MODEL_ERRORS)
async def get_model_metadata(runtime: RuntimeDep, model_name: ModelName) -> dict:
    """The model's inputs (send one: `audio`, encoded files as BYTES, or `waveform`, FP32 samples at
    16 kHz), its outputs, and in `parameters` the label order of `probabilities`."""
    choice = oip.model_choice(model_name)
    model = runtime.model_for(choice)
    if choice != "auto":
        return oip.model_metadata(choice, model)
    return oip.model_metadata(choice, model, runtime.teacher, runtime.loaded.threshold)


@router.get("/models/{model_name}/ready", response_model=oip.ModelReadiness, responses=MODEL_ERRORS)
async def get_model_ready(runtime: RuntimeDep, model_name: ModelName) -> dict:
    """200 when the model can answer; 503 while loading, or for `teacher` on a student-only service."""
    runtime.model_for(oip.model_choice(model_name))
    return {"name": model_name, "ready": True}


@infer_router.post("/models/{model_name}/infer", response_model=oip.InferResponseBody, openapi_extra=INFER_BODY,
                   responses=INFER_RESPONSES)
async def infer(request: Request, runtime: RuntimeDep, model_name: ModelName) -> Response:
    """Emotion of each row: an encoded file (`audio`, BYTES, any format /predict takes; base64 in
    JSON) or a waveform (`waveform`, FP32 [B, N] at 16 kHz), through /predict's windows and
    calibration. At most SER_MAX_BATCH_FILES rows; one that cannot be used fails the request.

    `tritonclient.http`: `InferInput("audio", [1], "BYTES").set_data_from_numpy(np.array([open("clip.flac",
    "rb").read()], dtype=object))`, then `client.infer("student", [that])`."""
    choice = oip.model_choice(model_name)
    model = runtime.model_for(choice)
    body = await read_body(request)
    # In a worker thread: a JSON waveform of a full upload is millions of values to check.
    req = await run_in_threadpool(oip.parse_infer, body, request.headers, runtime.settings.max_batch_files)
    subset = oip.label_subset(req.parameters, model.bundle.labels)
    answers = await answer_rows(runtime, req.rows, choice, subset)
    body, headers = oip.infer_response(choice, model.bundle.version, subset or model.bundle.labels, answers, req)
    return Response(body, headers=headers)


async def answer_rows(runtime: Runtime, rows: list, choice: ModelChoice,
                      labels: tuple[str, ...] | None = None) -> list[Answer]:
    """/predict's answer for each row (over `labels`), in order; a row's audio error names the row
    when there are several."""
    answers = []
    for i, row in enumerate(rows):
        try:
            answers.append(await runtime.answer(row, choice, labels))
        except AudioError as e:
            if len(rows) == 1:
                raise
            raise AudioError(e.code, f"row {i}: {e.message}") from e
    return answers
