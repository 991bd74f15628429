"""The Open Inference Protocol (KServe V2) over HTTP: reading an inference request, in JSON or
with the binary-data extension, and writing its response; the metadata the /v2 routes give.

Framework-free: service/routes/v2.py reads the body and calls these. A request holds one input,
one row per clip: `audio`, BYTES [B] (or [B, 1]), each element an encoded file as /predict
takes it; or `waveform`, FP32 [B, N], samples at 16 kHz. In JSON mode an `audio` element is
the file in base64 (RFC 4648, standard alphabet), since JSON strings are text. The answer has
`probabilities` FP32 [B, C] (the columns in the order of the model's `labels` parameter),
`label` BYTES [B] and `model` BYTES [B] (the role that answered: `auto` may fall back).

Binary-data extension: the body is the JSON header, `Inference-Header-Content-Length` bytes
long, followed by the tensors of the inputs that carry `parameters.binary_data_size`, in input
order; FP32 as little-endian float32, row-major; BYTES as each element's length (uint32,
little-endian) followed by its bytes.
"""

from __future__ import annotations

import base64
import binascii
import json
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from service.answer import Answer, ModelChoice
from service.labels import LabelSetError, parse_label_set
from service.audio import SAMPLE_RATE
from service.errors import ApiError, validation_problems
from service.inference import OnnxModel

HEADER_LENGTH = "Inference-Header-Content-Length"
EXTENSIONS = ["binary_tensor_data"]
PLATFORM = "onnxruntime_onnx"   # Triton's name for ONNX models on onnxruntime
# The model names of the protocol: the two bundles, and `auto`, the student with the teacher as fallback.
MODEL_NAMES: tuple[ModelChoice, ...] = ("student", "teacher", "auto")
INPUTS = {"audio": ("BYTES", [-1]), "waveform": ("FP32", [-1, -1])}
OUTPUTS = {"probabilities": "FP32", "label": "BYTES", "model": "BYTES"}
OutputName = Literal["probabilities", "label", "model"]
LENGTH = struct.Struct("<I")   # the length before each BYTES element in binary form


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int] = Field(description="-1: any size (the first dimension is the batch)")


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata] = Field(description="Send one of them")
    outputs: list[TensorMetadata]
    parameters: dict[str, str | int | float | bool] = Field(
        description="`labels`: the columns of `probabilities`, comma-separated; the audio front end's "
                    "`sample_rate`, `window_s`, `hop_s`; for `auto`, `fallback_threshold` and `fallback`")


class Liveness(BaseModel):
    live: bool


class ServerReadiness(BaseModel):
    ready: bool


class ModelReadiness(BaseModel):
    name: str
    ready: bool


class RequestInput(BaseModel):
    model_config = ConfigDict(strict=True)
    name: Literal["audio", "waveform"]
    shape: list[int] = Field(description="audio: [B] or [B, 1]; waveform: [B, N]")
    datatype: Literal["BYTES", "FP32"] = Field(description="audio: BYTES; waveform: FP32")
    parameters: dict[str, Any] = Field({}, description="`binary_data_size`: the bytes of this tensor after the "
                                                       "JSON header (binary-data extension); omit `data` then")
    data: list[Any] | None = Field(None, description="Row-major values (flat or nested); an audio element in "
                                                     "base64")


class RequestOutput(BaseModel):
    model_config = ConfigDict(strict=True)
    name: OutputName
    parameters: dict[str, Any] = Field({}, description="`binary_data`: true for this output in binary form")


class InferRequestBody(BaseModel):
    model_config = ConfigDict(strict=True)
    id: str | None = Field(None, description="Echoed in the response")
    parameters: dict[str, Any] = Field({}, description="`binary_data_output`: true for every output in binary "
                                                       "form, unless an output says otherwise; `labels`: answer over "
                                                       "these labels only, comma-separated (as /predict?labels=)")
    inputs: list[RequestInput] = Field(min_length=1, max_length=1, description="One input: `audio` or `waveform`")
    outputs: list[RequestOutput] | None = Field(None, description="Which outputs, in which order; all when omitted")


class ResponseOutput(BaseModel):
    name: str
    datatype: str
    shape: list[int]
    parameters: dict[str, Any] | None = Field(None, description="`binary_data_size` when the data follows the "
                                                                "JSON header in binary form")
    data: list[Any] | None = None


class InferResponseBody(BaseModel):
    model_name: str
    model_version: str
    id: str | None = None
    outputs: list[ResponseOutput]


@dataclass(frozen=True)
class InferRequest:
    id: str | None
    parameters: dict[str, Any]          # the request's parameters, for options beyond the protocol's
    rows: list[bytes] | list[np.ndarray]   # per clip: an encoded file, or a (N,) float32 waveform
    outputs: list[tuple[str, bool]]     # (output name, in binary form), in the order to answer


def model_choice(name: str) -> ModelChoice:
    """The model a /v2 path names; 404 `model_not_found` for any other name."""
    if name not in MODEL_NAMES:
        raise ApiError("model_not_found", f"no model named {name[:64]!r}; the models are student, teacher and auto")
    return name


def invalid(message: str) -> ApiError:
    return ApiError("invalid_inference_request", message)


def label_subset(parameters: Mapping[str, Any], labels: Sequence[str]) -> tuple[str, ...] | None:
    """The request's `parameters.labels`, the caller's label set (service.labels), checked against `labels`."""
    text = parameters.get("labels")
    if text is not None and not isinstance(text, str):
        raise invalid("parameters.labels is a string of labels, comma-separated, such as 'angry,happy,neutral,sad'")
    try:
        return parse_label_set(text, labels)
    except LabelSetError as e:
        raise invalid(f"parameters.labels: {e}") from None


def inline_schema(model: type[BaseModel]) -> dict:
    """`model`'s JSON schema with its nested models written in place, for an OpenAPI requestBody."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def resolve(node):
        if isinstance(node, dict):
            if "$ref" in node:
                return resolve(defs[node["$ref"].rsplit("/", 1)[-1]])
            return {k: resolve(v) for k, v in node.items()}
        return [resolve(v) for v in node] if isinstance(node, list) else node

    return resolve(schema)


def parse_infer(body: bytes, headers: Mapping[str, str], max_rows: int) -> InferRequest:
    """An inference request from its body and headers; ApiError `invalid_inference_request`
    (or `unsupported_media_type` for a compressed body) naming what does not fit."""
    encoding = headers.get("content-encoding", "identity").strip().lower()
    if encoding != "identity":
        raise ApiError("unsupported_media_type", f"Content-Encoding {encoding!r} is not accepted; send the "
                                                 "inference request uncompressed")
    header, binary = _split(body, headers.get(HEADER_LENGTH.lower()))
    try:
        req = InferRequestBody.model_validate_json(header)
    except ValidationError as e:
        raise invalid(validation_problems(e.errors(), ("body",))) from None
    [tensor] = req.inputs
    data, rest = _tensor_bytes(tensor, binary)
    if rest:
        raise invalid(f"{len(rest)} bytes follow the tensors that the JSON header announces")
    rows = _audio_rows(tensor, data, max_rows) if tensor.name == "audio" else _waveform_rows(tensor, data, max_rows)
    return InferRequest(req.id, req.parameters, rows, _outputs(req))


def _split(body: bytes, declared: str | None) -> tuple[bytes, bytes]:
    """(JSON header, binary tensors) of the body."""
    if not body:
        raise invalid("the body is empty; send an inference request (JSON, or a JSON header with "
                      f"{HEADER_LENGTH} and binary tensors)")
    if declared is None:
        return body, b""
    digits = declared.strip()
    # ASCII and short before int(): int() takes other scripts' digits, and refuses very long strings
    if not (digits.isascii() and digits.isdigit() and len(digits) <= 18) or int(digits) > len(body):
        raise invalid(f"{HEADER_LENGTH} is {declared[:32]!r}; expected the byte length of the JSON header, "
                      f"at most the body's {len(body)} bytes")
    n = int(digits)
    return body[:n], body[n:]


def _tensor_bytes(tensor: RequestInput, binary: bytes) -> tuple[bytes | list[Any], bytes]:
    """(the tensor's data: its binary bytes or its JSON values, the binary bytes left after it)."""
    size = tensor.parameters.get("binary_data_size")
    if size is None:
        if tensor.data is None:
            raise invalid(f"input '{tensor.name}' has neither 'data' nor parameters.binary_data_size")
        return tensor.data, binary
    if tensor.data is not None:
        raise invalid(f"input '{tensor.name}' has both 'data' and parameters.binary_data_size; send one")
    if type(size) is not int or not 0 <= size <= len(binary):
        raise invalid(f"input '{tensor.name}': binary_data_size is {size!r}; expected a byte count of at most "
                      f"the {len(binary)} bytes after the JSON header")
    return binary[:size], binary[size:]


def _shape_fits(name: str, shape: list[int]) -> bool:
    if any(d < 0 for d in shape):
        return False
    if name == "audio":
        return len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)
    return len(shape) == 2


def _rows_of(tensor: RequestInput, max_rows: int) -> int:
    """The batch size of `tensor`, checked against its datatype and the allowed shapes."""
    datatype, _ = INPUTS[tensor.name]
    if tensor.datatype != datatype:
        raise invalid(f"input '{tensor.name}' is {datatype}, got {tensor.datatype}")
    shape = tensor.shape
    if not _shape_fits(tensor.name, shape):
        expected = "[B] or [B, 1]" if tensor.name == "audio" else "[B, N]"
        raise invalid(f"input '{tensor.name}' has shape {shape}; expected {expected}")
    if not 1 <= shape[0] <= max_rows:
        raise invalid(f"input '{tensor.name}' has {shape[0]} rows; send 1 to {max_rows} (SER_MAX_BATCH_FILES)")
    return shape[0]


def _audio_rows(tensor: RequestInput, data: bytes | list[Any], max_rows: int) -> list[bytes]:
    n = _rows_of(tensor, max_rows)
    files = _bytes_elements(data, n) if isinstance(data, bytes) else [_base64(i, v) for i, v in enumerate(_flat(data))]
    if len(files) != n:
        raise invalid(f"input 'audio': its shape {tensor.shape} holds {n} elements but the data has "
                      f"{'more' if len(files) > n else len(files)}")
    return files


def _bytes_elements(data: bytes, n: int) -> list[bytes]:
    """BYTES elements in binary form: each a uint32 little-endian length, then that many bytes.
    Reads at most `n` + 1 of them: enough to tell that there are more than `n`."""
    out, i = [], 0
    while i < len(data) and len(out) <= n:
        if i + LENGTH.size > len(data):
            raise invalid(f"input 'audio': a BYTES element's length is cut short at byte {i}")
        (size,) = LENGTH.unpack_from(data, i)
        i += LENGTH.size
        if i + size > len(data):
            raise invalid(f"input 'audio': element {len(out)} announces {size} bytes but {len(data) - i} are left")
        out.append(data[i:i + size])
        i += size
    return out


def _base64(i: int, value: Any) -> bytes:
    if not isinstance(value, str):
        raise invalid(f"input 'audio': element {i} is {type(value).__name__}; in JSON an audio file is a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise invalid(f"input 'audio': element {i} is not base64 (RFC 4648); in JSON an audio file is sent as "
                      "base64 text, or send it in binary form (binary_data_size)") from None


def _waveform_rows(tensor: RequestInput, data: bytes | list[Any], max_rows: int) -> list[np.ndarray]:
    b = _rows_of(tensor, max_rows)
    n = tensor.shape[1]
    if isinstance(data, bytes):
        if len(data) != b * n * 4:
            raise invalid(f"input 'waveform': its shape {tensor.shape} needs {b * n * 4} bytes of FP32 but "
                          f"binary_data_size is {len(data)}")
        return list(np.frombuffer(data, "<f4").reshape(b, n).astype(np.float32))
    values = _flat(data)
    if len(values) != b * n:
        raise invalid(f"input 'waveform': its shape {tensor.shape} holds {b * n} values but 'data' has {len(values)}")
    if not all(type(v) in (int, float) for v in values):
        raise invalid("input 'waveform': 'data' holds values that are not numbers")
    try:
        samples = np.asarray(values, np.float32)
    except OverflowError:   # an integer beyond any float; a float beyond float32 becomes inf, refused later
        raise invalid("input 'waveform': 'data' holds an integer too large for FP32") from None
    return list(samples.reshape(b, n))


def _flat(data: list[Any]) -> list[Any]:
    """Row-major values of a flat or nested list."""
    if not any(isinstance(v, list) for v in data):
        return data
    return [x for v in data for x in (_flat(v) if isinstance(v, list) else [v])]


def _flag(params: dict[str, Any], key: str, default: bool) -> bool:
    value = params.get(key, default)
    if not isinstance(value, bool):
        raise invalid(f"parameter {key!r} is {value!r}; expected true or false")
    return value


def _outputs(req: InferRequestBody) -> list[tuple[str, bool]]:
    binary = _flag(req.parameters, "binary_data_output", False)
    if not req.outputs:   # none named: all of them
        return [(name, binary) for name in OUTPUTS]
    names = [o.name for o in req.outputs]
    if len(set(names)) != len(names):
        raise invalid(f"outputs {names} name an output twice")
    return [(o.name, _flag(o.parameters, "binary_data", binary)) for o in req.outputs]


def infer_response(model_name: str, version: str, labels: Sequence[str], answers: list[Answer],
                   req: InferRequest) -> tuple[bytes, dict[str, str]]:
    """(body, headers) of the answer to `req`: one row per clip, `probabilities` in `labels`' order.
    A clip without speech (docs/speech-gate.md) has a row of zeros and the empty label."""
    values = {
        "probabilities": np.array([[a.prediction.probabilities.get(n, 0.0) for n in labels] for a in answers], np.float32),
        "label": [a.prediction.label or "" for a in answers],
        "model": [a.model.bundle.role for a in answers],
    }
    outputs, blobs = [], []
    for name, binary in req.outputs:
        out, blob = _output(name, values[name], binary)
        outputs.append(out)
        if blob is not None:
            blobs.append(blob)
    body = {"model_name": model_name, "model_version": version, **({"id": req.id} if req.id is not None else {}),
            "outputs": outputs}
    header = json.dumps(body, separators=(",", ":")).encode()
    if not blobs:
        return header, {"content-type": "application/json"}
    return b"".join([header, *blobs]), {"content-type": "application/octet-stream", HEADER_LENGTH: str(len(header))}


def _output(name: str, value: np.ndarray | list[str], binary: bool) -> tuple[dict, bytes | None]:
    datatype = OUTPUTS[name]
    shape = list(value.shape) if isinstance(value, np.ndarray) else [len(value)]
    out = {"name": name, "datatype": datatype, "shape": shape}
    if not binary:
        return {**out, "data": value.reshape(-1).tolist() if isinstance(value, np.ndarray) else value}, None
    if isinstance(value, np.ndarray):
        blob = value.astype("<f4").tobytes()
    else:
        blob = b"".join(LENGTH.pack(len(e)) + e for e in (s.encode() for s in value))
    return {**out, "parameters": {"binary_data_size": len(blob)}}, blob


def server_metadata(version: str) -> dict:
    return {"name": "speech-emotion-distill", "version": version, "extensions": EXTENSIONS}


def model_metadata(name: str, model: OnnxModel, fallback: OnnxModel | None = None,
                   fallback_threshold: float | None = None) -> dict:
    """What /v2/models/{model_name} says: `model` answers; for `auto`, `fallback` below the threshold."""
    b = model.bundle
    params: dict[str, str | int | float | bool] = {
        "labels": ",".join(b.labels), "sample_rate": SAMPLE_RATE, "window_s": b.windowing.window_s, "hop_s": b.windowing.hop_s,
        "bundle": b.name, "precision": b.precision}
    if fallback_threshold is not None:
        params |= {"fallback_threshold": fallback_threshold,
                   "fallback": fallback.bundle.name if fallback is not None else "none"}
    return {"name": name, "versions": [b.version], "platform": PLATFORM,
            "inputs": [{"name": k, "datatype": t, "shape": s} for k, (t, s) in INPUTS.items()],
            # -1 labels: a request's parameters.labels picks the columns
            "outputs": [{"name": k, "datatype": t, "shape": [-1, -1] if t == "FP32" else [-1]}
                        for k, t in OUTPUTS.items()],
            "parameters": params}
