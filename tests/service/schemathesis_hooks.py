"""Schemathesis hooks: the request bodies it generates for audio media types are real clips.

A schema cannot say "decodable audio", so without this every generated upload is random
bytes and every positive case is a 415. With it, positive cases are real speech in the
declared format, and negative cases still probe everything else. Likewise a schema cannot say
that an inference request's data fills its shape: a positive body for /v2/models/{model_name}/infer
is a real request (a waveform in JSON, or a file in binary form), and negative ones are left as drawn.
"""

from __future__ import annotations

import json
import zlib

import schemathesis
from hypothesis import strategies as st
from schemathesis.core.parameters import ParameterLocation

from devtools.audio import encode, voice
from devtools.data import RAVDESS_DIR
from service.audio import load_audio
from service.oip import HEADER_LENGTH

FORMATS = {"audio/wav": ("WAV", "PCM_16"), "audio/x-wav": ("WAV", "PCM_16"), "audio/flac": ("FLAC", "PCM_16"),
           "audio/ogg": ("OGG", "VORBIS"), "audio/mpeg": ("MP3", "MPEG_LAYER_III"),
           "application/octet-stream": ("FLAC", "PCM_16")}


def _speech() -> list:
    """Three real clips (16 kHz) when the shared data is there, generated speech otherwise."""
    clips = sorted(RAVDESS_DIR.glob("Actor_0[1-3]/03-01-0[3-5]-01-01-01-*.flac"))[:3]
    return [load_audio(str(p)) for p in clips] or [voice(1.5, seed=s) for s in range(3)]


SPEECH = _speech()
for media_type, (fmt, subtype) in FORMATS.items():
    schemathesis.openapi.media_type(media_type, st.sampled_from([encode(x, 16_000, fmt, subtype) for x in SPEECH]))


INFER = "/v2/models/{model_name}/infer"


def infer_body(media_type: str, i: int) -> tuple[object, dict[str, str]]:
    """A real inference request for the middle second of clip `i`: its samples in JSON, or a FLAC
    file of them in binary form. One second: schemathesis's own work grows with the JSON body."""
    x = SPEECH[i % len(SPEECH)]
    x = x[max(0, len(x) // 2 - 8_000):][:16_000]
    if media_type == "application/json":
        return {"inputs": [{"name": "waveform", "datatype": "FP32", "shape": [1, len(x)], "data": x.tolist()}]}, {}
    data = encode(x, 16_000, "FLAC", "PCM_16")
    header = json.dumps({"inputs": [{"name": "audio", "datatype": "BYTES", "shape": [1],
                                     "parameters": {"binary_data_size": 4 + len(data)}}]}).encode()
    return header + len(data).to_bytes(4, "little") + data, {HEADER_LENGTH: str(len(header))}


@schemathesis.hook
def map_case(context, case):
    """Schemathesis (4.32) draws an encoded array property (`files`) as one bare value, which goes
    out as a part without a filename, i.e. a text field; send it as the one-file array it stands for."""
    form = getattr(case.body, "body", case.body)   # a form with per-part content types wraps the dict
    if isinstance(form, dict) and isinstance(form.get("files"), bytes):
        form["files"] = [form["files"]]
    if case.path == INFER and case.meta is not None and not case.meta.is_negative_at(ParameterLocation.BODY):
        case.body, headers = infer_body(case.media_type, zlib.crc32(case.id.encode()))
        case.headers.update(headers)
    return case
