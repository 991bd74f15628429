"""A generated corpus of hostile and odd requests, sent to a running service over raw HTTP.

    ser serve --port 8000 &          # best with SER_UPLOAD_TIMEOUT_S=3: one case waits for it
    python -m devtools.hostile --url http://127.0.0.1:8000 [--pid PID] [--only bomb]   # needs the dev extras (psutil)

Every case is built here from generated audio (nothing is committed as a blob) and names the
answer it must get: a 200, or a 4xx JSON error with a given stable code. Requests go through
a raw socket so that malformed HTTP (a Content-Length that lies, a missing boundary, a 1 MB
header) reaches the server unchanged. With --pid, the server's resident memory is reported
before and after, and its peak while the corpus ran. Loopback only; exits 1 on any mismatch.
"""

from __future__ import annotations

import argparse
import functools
import json
import struct
import sys
import time
from dataclasses import dataclass
from typing import Callable
from urllib.parse import urlparse

import numpy as np

from devtools.audio import encode, flac_total_samples, float_wav_with, silence_file, voice, wav_bytes, wav_header
from devtools.http import Request, chunked, form, part, raw, send
from devtools.process import peak_rss_mb, reset_peak, rss_mb

OK = (200, None)


@dataclass(frozen=True)
class Case:
    name: str
    group: str
    build: Callable[[], Request]
    expect: tuple[tuple[int, str | None], ...]   # acceptable (status, error code); code None: no JSON needed


@dataclass
class Result:
    case: Case
    status: int
    code: str | None
    seconds: float
    ok: bool
    detail: str = ""


@functools.cache
def bombs() -> dict[str, bytes]:
    """Small files that decode to far more audio than the service accepts (about 15 s to build)."""
    return {
        "flac_1h_48k_stereo": silence_file(3600, 48_000, 2, "FLAC"),
        "ogg_vorbis_10min_48k_stereo": silence_file(600, 48_000, 2, "OGG", "VORBIS"),
        "ogg_opus_10min_48k_stereo": silence_file(600, 48_000, 2, "OGG", "OPUS"),
        "mp3_1h_8k": silence_file(3600, 8_000, 1, "MP3", "MPEG_LAYER_III"),
        # WAV cannot compress: the upload limit bounds it, so the slowest rate fills it with the most time.
        "wav_u8_4k_40min": encode(np.zeros(4_000 * 2_400, np.float32), 4_000, "WAV", "PCM_U8"),
    }


def err(status: int, *codes: str) -> tuple[tuple[int, str], ...]:
    return tuple((status, c) for c in codes)


# ---------- the corpus ----------

def corpus(max_upload_bytes: int = 10_000_000) -> list[Case]:
    c: list[Case] = []

    def add(name, group, build, *expect):
        c.append(Case(name, group, build, tuple(expect)))

    too_long = (413, "audio_too_long")
    for name in ("flac_1h_48k_stereo", "ogg_vorbis_10min_48k_stereo", "ogg_opus_10min_48k_stereo", "mp3_1h_8k",
                 "wav_u8_4k_40min"):
        add(f"bomb_{name}", "bomb", lambda n=name: form(part("file", bombs()[n])), too_long)
    add("bomb_flac_raw_body_teacher", "bomb", lambda: raw(bombs()["flac_1h_48k_stereo"], "audio/flac",
                                                          "/predict/teacher"), too_long, (503, "teacher_unavailable"))
    add("bomb_in_batch_is_one_items_error", "bomb",
        lambda: form(part("files", wav_bytes(1.0)), part("files", bombs()["mp3_1h_8k"], "b.mp3"), path="/predict/batch"), OK)
    add("bomb_wav_streamed_size", "bomb", lambda: raw(_streamed(bombs()["wav_u8_4k_40min"])), too_long)
    add("flac_header_says_1s_holds_120s", "header", lambda: raw(flac_total_samples(
        silence_file(120, 16_000, 1, "FLAC"), 16_000), "audio/flac"), OK)
    add("flac_without_length", "header", lambda: raw(flac_total_samples(encode(voice(2.0), 16_000, "FLAC"), 0),
                                                     "audio/flac"), (415, "unsupported_audio"))
    add("mp3_header_says_10s_holds_500s", "header", lambda: raw(
        encode(np.zeros(80_000, np.float32), 8_000, "MP3", "MPEG_LAYER_III") * 50, "audio/mpeg"), OK)

    # multipart oddities
    add("two_file_parts_on_predict", "multipart", lambda: form(part("file", wav_bytes()), part("file", wav_bytes())),
        (400, "invalid_request"))
    add("thousand_tiny_parts", "multipart", lambda: form(*[part(f"f{i}", b"x", None, "") for i in range(1000)],
                                                         part("file", wav_bytes())), (400, "invalid_request"))
    add("thousand_tiny_files_on_batch", "multipart", lambda: form(*[part("files", b"x", f"{i}.wav") for i in range(1000)],
                                                                  path="/predict/batch"), (400, "invalid_request"))
    add("one_mb_http_header", "multipart", lambda: Request(wav_bytes(), {"Content-Type": "audio/wav", "X-Big": "a" * 1_000_000}),
        (400, None), (431, None))
    add("one_mb_part_header", "multipart", lambda: form(part("file", wav_bytes(), extra=b"X-Big: " + b"a" * 1_000_000 + b"\r\n")),
        (400, "invalid_request"), OK)
    add("missing_boundary", "multipart", lambda: form(part("file", wav_bytes()), ctype="multipart/form-data"),
        (400, "invalid_request"), (400, "missing_audio"))
    add("boundary_not_in_body", "multipart", lambda: form(part("file", wav_bytes()), ctype="multipart/form-data; boundary=other"),
        (400, "missing_audio"), (400, "invalid_request"))
    add("unterminated_multipart", "multipart", lambda: form(part("file", wav_bytes()), close=False),
        (400, "invalid_request"), (400, "missing_audio"), OK)
    add("empty_multipart", "multipart", lambda: form(), (400, "missing_audio"))
    add("file_part_of_zero_bytes", "multipart", lambda: form(part("file", b"")), (400, "empty_audio"))
    add("wrong_field_name", "multipart", lambda: form(part("audio", wav_bytes())), (400, "missing_audio"))
    add("part_without_filename", "multipart", lambda: form(part("file", wav_bytes(), None)), (400, "missing_audio"),
        (400, "invalid_request"))
    add("filename_with_dotdot", "multipart", lambda: form(part("file", wav_bytes(), "../../../etc/passwd")), OK)
    add("filename_invalid_utf8", "multipart", lambda: form(part("file", wav_bytes(), b"\xff\xfe\xc3(.wav")), OK)
    add("filename_invalid_utf8_in_batch", "multipart", lambda: form(part("files", wav_bytes(), b"\xff\xfe\xc3(.wav"),
                                                                     path="/predict/batch"), OK)
    add("filename_very_long", "multipart", lambda: form(part("file", wav_bytes(), "a" * 50_000 + ".wav")), OK,
        (400, "invalid_request"))
    add("part_base64_encoded", "multipart", lambda: form(part("file", __import__("base64").b64encode(wav_bytes()),
                                                              extra=b"Content-Transfer-Encoding: base64\r\n")),
        (415, "unsupported_audio"))
    add("batch_over_file_limit", "multipart", lambda: form(*[part("files", wav_bytes(0.2), f"{i}.wav") for i in range(17)],
                                                           path="/predict/batch"), (400, "invalid_request"))
    add("content_length_larger_than_body", "framing",
        lambda: Request(wav_bytes(), {"Content-Type": "audio/wav", "Content-Length": str(len(wav_bytes()) + 5000)}, auto_length=False),
        (408, "upload_timeout"))
    add("content_length_smaller_than_body", "framing",
        lambda: Request(wav_bytes(), {"Content-Type": "audio/wav", "Content-Length": "2000"}, auto_length=False),
        (400, "truncated_audio"), (400, "audio_too_short"))
    add("content_length_not_a_number", "framing",
        lambda: Request(wav_bytes(), {"Content-Type": "audio/wav", "Content-Length": "lots"}, auto_length=False), (400, None))
    add("content_length_over_limit", "framing",
        lambda: Request(b"x" * 100, {"Content-Type": "audio/wav", "Content-Length": str(max_upload_bytes + 1)},
                        auto_length=False), (413, "upload_too_large"))
    add("chunked_upload", "framing", lambda: chunked(wav_bytes(2.0)), OK)
    add("chunked_upload_over_limit", "framing", lambda: chunked(b"\0" * (max_upload_bytes + 100_000)),
        (413, "upload_too_large"))
    add("multipart_over_limit_without_length", "framing", lambda: _as_chunked(form(part("file", b"\0" * (max_upload_bytes + 1000)))),
        (413, "upload_too_large"))

    # headers that lie
    add("wav_data_chunk_says_4gb", "header", lambda: raw(wav_header(data_size=0xFFFFFFF0)), (400, "truncated_audio"))
    add("wav_list_chunk_says_4gb", "header", lambda: raw(wav_header(extra_chunk=b"LIST" + struct.pack("<I", 0xFFFFFF00))),
        (400, "truncated_audio"))
    add("wav_rate_1hz", "header", lambda: raw(wav_header(sr=1)), (415, "unsupported_audio"))
    add("wav_rate_10mhz", "header", lambda: raw(wav_header(sr=10_000_000)), (415, "unsupported_audio"))
    add("wav_rate_zero", "header", lambda: raw(wav_header(sr=0)), (415, "unsupported_audio"))
    add("wav_zero_channels", "header", lambda: raw(wav_header(channels=0)), (415, "unsupported_audio"))
    add("wav_1000_channels", "header", lambda: raw(wav_header(channels=1000, data=b"\0" * 64_000)),
        (415, "unsupported_audio"))
    add("wav_one_sample", "header", lambda: raw(wav_header(data=b"\x10\x00")), (400, "audio_too_short"))
    add("wav_no_samples", "header", lambda: raw(wav_header(data=b"")), (400, "empty_audio"))
    add("wav_bits_per_sample_7", "header", lambda: raw(wav_header(bits=7)), (415, "unsupported_audio"), OK)
    add("wav_unknown_format_code", "header", lambda: raw(wav_header(fmt_code=0x1234)), (415, "unsupported_audio"))
    add("wav_riff_size_wrong", "header", lambda: raw(b"RIFF" + struct.pack("<I", 0x7FFFFFFF) + wav_bytes(1.0)[8:]), OK)
    add("wav_only_riff_magic", "header", lambda: raw(b"RIFF\x00\x00\x00\x00WAVE"), (400, "truncated_audio"))
    add("wav_header_then_noise", "header", lambda: raw(b"RIFF" + bytes(np.random.default_rng(1).integers(0, 256, 4000, np.uint8))),
        (415, "unsupported_audio"))
    add("flac_cut_in_half", "header", lambda: raw(encode(voice(2.0), 16_000, "FLAC")[:6000], "audio/flac"),
        OK, (415, "unsupported_audio"), (400, "audio_too_short"))
    add("ogg_cut_in_half", "header", lambda: raw(encode(voice(2.0), 16_000, "OGG", "VORBIS")[:3000], "audio/ogg"),
        OK, (415, "unsupported_audio"), (400, "audio_too_short"), (400, "empty_audio"))
    add("mp3_id3_tag_only", "header", lambda: raw(b"ID3\x04\x00\x00\x00\x00\x00\x10" + b"\0" * 16, "audio/mpeg"),
        (415, "unsupported_audio"), (400, "empty_audio"))
    add("random_bytes", "header", lambda: raw(bytes(np.random.default_rng(0).integers(0, 256, 50_000, np.uint8)),
                                              "application/octet-stream"), (415, "unsupported_audio"))
    add("text_as_audio", "header", lambda: raw(b"hello, this is not audio\n" * 100, "audio/wav"), (415, "unsupported_audio"))

    # odd but valid audio
    add("silence_3s", "valid", lambda: raw(encode(np.zeros(48_000, np.float32), 16_000)), OK)
    add("dc_offset_3s", "valid", lambda: raw(encode(np.full(48_000, 0.5, np.float32), 16_000, "WAV", "FLOAT")), OK)
    add("clipped_square", "valid", lambda: raw(encode(np.sign(voice(3.0)) * 1.0, 16_000, "WAV", "PCM_16")), OK)
    add("float_beyond_full_scale", "valid", lambda: raw(encode(voice(3.0) * 40, 16_000, "WAV", "FLOAT")), OK)
    add("float_huge_finite", "valid", lambda: raw(float_wav_with(3e38)), OK, (400, "invalid_audio"))
    add("telephone_8k_ulaw", "valid", lambda: raw(wav_bytes(3.0, 8_000, subtype="ULAW")), OK)
    add("telephone_8k_alaw", "valid", lambda: raw(wav_bytes(3.0, 8_000, subtype="ALAW")), OK)
    add("rate_4k", "valid", lambda: raw(wav_bytes(3.0, 4_000)), OK)
    add("rate_96k_24bit", "valid", lambda: raw(wav_bytes(3.0, 96_000, subtype="PCM_24")), OK)
    add("rate_192k", "valid", lambda: raw(wav_bytes(2.0, 192_000)), OK)
    add("channels_8", "valid", lambda: raw(wav_bytes(3.0, 16_000, 8)), OK)
    add("channels_9", "valid", lambda: raw(wav_bytes(0.5, 16_000, 9)), (415, "unsupported_audio"))
    add("duration_59_9s", "valid", lambda: raw(wav_bytes(59.9, 8_000)), OK)
    add("duration_60_5s", "valid", lambda: raw(wav_bytes(60.5, 8_000)), too_long)
    add("duration_0_1s", "valid", lambda: raw(wav_bytes(0.1)), OK)
    add("duration_0_09s", "valid", lambda: raw(wav_bytes(0.09)), (400, "audio_too_short"))
    add("segments_of_59s", "valid", lambda: raw(wav_bytes(59.0, 8_000), path="/predict?segments=true&model=student"), OK)
    add("float_nan", "nonfinite", lambda: raw(float_wav_with(np.nan)), (400, "invalid_audio"))
    add("float_pos_inf", "nonfinite", lambda: raw(float_wav_with(np.inf)), (400, "invalid_audio"))
    add("double_neg_inf", "nonfinite", lambda: raw(float_wav_with(-np.inf, "DOUBLE")), (400, "invalid_audio"))
    add("float_all_nan", "nonfinite", lambda: raw(encode(np.full(16_000, np.nan, np.float32), 16_000, "WAV", "FLOAT")),
        (400, "invalid_audio"))

    # every content type
    for fmt, sub, ctype in [("FLAC", None, "audio/flac"), ("OGG", "VORBIS", "audio/ogg"), ("OGG", "OPUS", "audio/opus"),
                            ("MP3", "MPEG_LAYER_III", "audio/mpeg"), ("WAV", "PCM_16", "application/octet-stream"),
                            ("WAV", "PCM_16", "audio/x-wav; charset=binary"), ("WAV", "PCM_16", "AUDIO/WAV")]:
        add(f"raw_{fmt.lower()}_{ctype.split(';')[0].replace('/', '_').lower()}", "ctype",
            lambda f=fmt, s=sub, t=ctype: raw(encode(voice(2.0, 48_000 if s == "OPUS" else 16_000),
                                                     48_000 if s == "OPUS" else 16_000, f, s), t), OK)
    for ctype in ("text/plain", "application/json", "image/png", "multipart/mixed; boundary=x", "text/html"):
        add(f"ctype_{ctype.split(';')[0].replace('/', '_')}", "ctype", lambda t=ctype: raw(wav_bytes(), t),
            (415, "unsupported_media_type"))
    add("ctype_missing_with_body", "ctype", lambda: raw(wav_bytes(), None), (400, "missing_audio"))
    add("ctype_urlencoded", "ctype", lambda: raw(b"file=abc", "application/x-www-form-urlencoded"), (400, "missing_audio"))
    add("ctype_audio_but_empty", "ctype", lambda: raw(b"", "audio/wav"), (400, "missing_audio"))

    # routes and parameters
    add("get_on_predict", "route", lambda: Request(b"", {}, "/predict", "GET"), (405, "method_not_allowed"))
    add("top_k_zero", "route", lambda: raw(wav_bytes(), path="/predict?top_k=0"), (422, "invalid_parameter"))
    add("model_bogus", "route", lambda: raw(wav_bytes(), path="/predict?model=bogus"), (422, "invalid_parameter"))
    add("path_traversal_url", "route", lambda: Request(b"", {}, "/../../etc/passwd", "GET"), (404, "not_found"),
        (400, None))
    return c


def _streamed(data: bytes) -> bytes:
    """The WAV as a streaming writer leaves it: data size never filled in."""
    d = bytearray(data)
    pos = d.index(b"data")
    d[pos + 4:pos + 8] = struct.pack("<I", 0xFFFFFFFF)
    return bytes(d)


def _as_chunked(r: Request) -> Request:
    c = chunked(r.body, r.headers["Content-Type"])
    return Request(c.body, c.headers, r.path, auto_length=False)


# ---------- checking ----------

def check(case: Case, status: int, headers: dict, body: bytes) -> tuple[str | None, bool, str]:
    code, payload = None, {}
    if "json" in headers.get("content-type", ""):
        try:
            payload = json.loads(body)
            code = (payload.get("error") or {}).get("code") if isinstance(payload, dict) else None
        except ValueError:
            return None, False, "invalid JSON body"
    for want_status, want_code in case.expect:
        if status == want_status and (want_code is None or code == want_code):
            if want_code is not None and status >= 400 and not payload["error"].get("message"):
                return code, False, "error without a message"
            return code, True, ""
    return code, False, f"expected one of {case.expect}"


def run_corpus(url: str, cases: list[Case] | None = None, timeout_s: float = 60) -> list[Result]:
    u = urlparse(url)
    host, port = u.hostname, u.port or 80
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit("the corpus is only sent to a service on the loopback address")
    results = []
    for case in cases if cases is not None else corpus():
        r = case.build()
        t0 = time.perf_counter()
        try:
            status, headers, body = send(host, port, r, timeout_s)
        except OSError as e:
            results.append(Result(case, 0, None, time.perf_counter() - t0, False, f"{type(e).__name__}: {e}"))
            continue
        code, ok, detail = check(case, status, headers, body)
        results.append(Result(case, status, code, time.perf_counter() - t0, ok, detail))
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default="http://127.0.0.1:8000")
    ap.add_argument("--pid", type=int, help="the server's process id: report its memory")
    ap.add_argument("--only", help="run only the cases whose name or group contains this")
    args = ap.parse_args()
    cases = [c for c in corpus() if not args.only or args.only in c.name or args.only == c.group]
    before = rss_mb(args.pid) if args.pid else None
    if args.pid:
        reset_peak(args.pid)
    results = run_corpus(args.url, cases)
    print("| case | group | status | code | s | ok |\n|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r.case.name} | {r.case.group} | {r.status} | {r.code or ''} | {r.seconds:.2f} | "
              f"{'yes' if r.ok else 'NO: ' + r.detail} |")
    bad = [r for r in results if not r.ok]
    five = [r for r in results if r.status >= 500 or r.status == 0]
    print(f"\n{len(results)} cases, {len(results) - len(bad)} as expected, {len(five)} with a 5xx or no answer")
    if args.pid:
        print(f"server RSS: {before:.0f} MB before, {rss_mb(args.pid):.0f} MB after, "
              f"peak during the corpus {peak_rss_mb(args.pid):.0f} MB")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
