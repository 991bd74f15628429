"""The audio front end: bytes or file -> 16 kHz mono float32 -> fixed windows.

One torch-free implementation shared by training, evaluation and serving, so that the
accuracy measured offline is the accuracy the service gives (docs/design.md, "Audio front end").
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from typing import BinaryIO
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from service.pcm_wav import PcmWav, pcm16_wav, wav_chunks

SAMPLE_RATE = 16_000          # every model graph takes 16 kHz mono float32
MIN_DURATION_S = 0.1          # shorter clips carry no usable prosody
TRIM_FRAME_S = 0.025          # silence-trim analysis frame
TRIM_TOP_DB = 40.0            # frames this far below the loudest frame count as silence
MIN_LAST_WINDOW = 0.5         # keep a final partial window holding >= this fraction of a window
# How audio shorter than a window is filled up to it; "none": not at all (a short clip is one
# window of its own length, and the last window of a long clip ends where the audio ends).
PAD_MODES = ("zero", "repeat", "none")

# Bounds on what is decoded at all (see load_audio): memory and work stay bounded per request.
MIN_SAMPLE_RATE = 4_000       # below this no speech band is left
MAX_SAMPLE_RATE = 192_000     # studio rates; speech needs 16 kHz
MAX_CHANNELS = 8              # 7.1 surround
# Decoding costs CPU per sample of every channel, so the duration limit alone does not bound
# it (60 s of 192 kHz x 32 channels of Vorbis is 72 kB and 3 s of CPU). Per second of
# SER_MAX_DURATION_S, a file may hold at most this many samples x channels: 48 kHz stereo.
DECODE_VALUES_PER_S = 48_000 * 2
BLOCK_VALUES = 1 << 18        # samples x channels decoded per step: 1 MB of float32
HEADER_SLACK_S = 1.0          # MP3/OGG lengths in a header are estimates; the exact limit applies while decoding
UNKNOWN_LENGTH = 1 << 62      # libsndfile reports SF_COUNT_MAX frames for a stream without a length
FORMATS = "WAV, FLAC, OGG/Vorbis, OGG/Opus, MP3"
LIBSNDFILE_FORMATS = {"WAV", "WAVEX", "FLAC", "OGG", "MP3"}   # what libsndfile reports for them


class AudioError(ValueError):
    """Audio that cannot be used; `code` is the stable API error code."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def open_audio(data: bytes | str | Path) -> sf.SoundFile | PcmWav:
    """Open a WAV, FLAC, OGG or MP3 file, reading only its header; the caller closes it.
    An upload of 16-bit PCM WAV is decoded by numpy (service/pcm_wav.py), the rest by libsndfile.

    Only those formats reach libsndfile: they are told apart by their first bytes, so the
    parsers of the other formats libsndfile has (AIFF, AU, CAF, W64, RF64, ...) never see
    the data. Refuses what the front end cannot decode within bounded memory and work:
    sample rates outside [MIN_SAMPLE_RATE, MAX_SAMPLE_RATE], more than MAX_CHANNELS
    channels, and streams that do not declare their length. A path that is not a file
    raises FileNotFoundError.
    """
    if isinstance(data, bytes):
        if not data:
            raise AudioError("empty_audio", f"the uploaded file is empty; accepted formats: {FORMATS}")
        _check_wav_complete(data)
        _check_magic(io.BytesIO(data))
        if (pcm := pcm16_wav(data)) is not None:
            _check_layout(pcm)
            return pcm
        source: io.BytesIO | str = io.BytesIO(data)
    else:
        if not Path(data).is_file():   # libsndfile would only say "System error."
            raise FileNotFoundError(f"{data}: {'not a file' if Path(data).exists() else 'no such file'}")
        with open(data, "rb") as head:
            _check_magic(head)
        source = str(data)
    try:
        f = sf.SoundFile(source)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
        raise _undecodable(e) from e
    try:
        _check_layout(f)
    except AudioError:
        f.close()
        raise
    return f


def _check_magic(src: BinaryIO) -> None:
    """RIFF/WAVE, fLaC, OggS, or an MPEG audio frame (after an ID3v2 tag, if any)."""
    head = src.read(12)
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE" or head[:4] in (b"fLaC", b"OggS") or _mpeg_sync(head):
        return
    if head[:3] == b"ID3" and len(head) >= 10:
        # libsndfile skips the tag and then guesses again: what follows must be MPEG too.
        size = sum((b & 0x7F) << (7 * (3 - i)) for i, b in enumerate(head[6:10]))   # syncsafe
        src.seek(10 + size + (10 if head[5] & 0x10 else 0))   # + the footer, when flagged
        after = src.read(4096).lstrip(b"\0")   # padding some taggers leave
        if _mpeg_sync(after):
            return
    raise AudioError("unsupported_audio", f"could not decode the audio (Format not recognised.); accepted formats: {FORMATS}")


def _mpeg_sync(b: bytes) -> bool:
    """An MPEG audio frame header: 11 sync bits, a version and a layer that are not reserved."""
    return len(b) >= 2 and b[0] == 0xFF and b[1] & 0xE0 == 0xE0 and b[1] & 0x18 != 0x08 and b[1] & 0x06 != 0


def _check_wav_complete(data: bytes) -> None:
    """libsndfile silently decodes a WAV cut short; reject one whose data chunk is truncated."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return
    for chunk_id, offset, size in wav_chunks(data):
        if chunk_id == b"data":
            # 0 and 0xFFFFFFFF mark a streamed WAV whose size was never filled in.
            if size not in (0, 0xFFFFFFFF) and offset + size > len(data):
                raise AudioError(
                    "truncated_audio",
                    f"the WAV file is truncated: its header announces {size} bytes of audio "
                    f"but only {len(data) - offset} are present",
                )
            return
    raise AudioError("truncated_audio", "the WAV file has no complete data chunk")


def _undecodable(e: Exception) -> AudioError:
    # error_string: libsndfile's reason without the "Error opening <BytesIO object at 0x...>" prefix
    return AudioError("unsupported_audio", f"could not decode the audio ({getattr(e, 'error_string', e)}); "
                                           f"accepted formats: {FORMATS}")


def _check_layout(f: sf.SoundFile | PcmWav) -> None:
    if f.format not in LIBSNDFILE_FORMATS:   # the magic bytes decide the parser; this holds them to it
        raise AudioError("unsupported_audio", f"{f.format_info} is not accepted; accepted formats: {FORMATS}")
    if not MIN_SAMPLE_RATE <= f.samplerate <= MAX_SAMPLE_RATE:
        raise AudioError("unsupported_audio", f"sample rate {f.samplerate} Hz; accepted: "
                                              f"{MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE} Hz")
    if not 1 <= f.channels <= MAX_CHANNELS:
        raise AudioError("unsupported_audio", f"{f.channels} channels; accepted: 1 to {MAX_CHANNELS}")
    if f.frames >= UNKNOWN_LENGTH:
        raise AudioError("unsupported_audio", "the stream does not declare its length (a FLAC written "
                                              "while streaming?); send a file with a complete header")


def mono_blocks(f: sf.SoundFile | PcmWav, max_frames: int | None = None) -> Iterator[np.ndarray]:
    """Decode an open file block by block: yields (n,) float32 mono blocks of at most
    BLOCK_VALUES decoded values each. Raises audio_too_long as soon as more than
    `max_frames` frames have been decoded, so a length that lies stops here."""
    block, seen = max(1, BLOCK_VALUES // f.channels), 0
    while True:
        try:
            x = f.read(block, dtype="float32", always_2d=True)   # (n, C)
        except (sf.LibsndfileError, RuntimeError) as e:
            raise _undecodable(e) from e
        if not len(x):
            return
        seen += len(x)
        if max_frames is not None and seen > max_frames:
            raise _too_long(f"more than {max_frames / f.samplerate:.1f} s", max_frames / f.samplerate)
        yield to_mono(x)


def _too_long(lasts: str, limit_s: float) -> AudioError:
    return AudioError("audio_too_long", f"the clip lasts {lasts}; at most {limit_s:g} s is accepted (SER_MAX_DURATION_S)")


def to_mono(samples: np.ndarray) -> np.ndarray:
    """(N, C) or (N,) -> (N,) float32, the mean of the channels."""
    if samples.ndim == 2 and samples.shape[1] == 1:   # the mean of one value is that value: skip the pass
        return samples[:, 0].astype(np.float32, copy=False)
    return samples.mean(axis=1, dtype=np.float32) if samples.ndim == 2 else samples.astype(np.float32)


def trim_bounds(x: np.ndarray, sr: int = SAMPLE_RATE, top_db: float = TRIM_TOP_DB) -> tuple[int, int]:
    """(start, end) sample indices without the leading/trailing frames more than `top_db`
    below the loudest frame.

    Acted corpora start with ~1 s of silence; models trained on trimmed audio must see
    trimmed audio in serving too, so this lives here and is switched on by the bundle.
    """
    frame = max(1, int(TRIM_FRAME_S * sr))
    n = len(x) // frame
    if n < 2:
        return 0, len(x)
    rms = np.sqrt(np.mean(x[: n * frame].reshape(n, frame) ** 2, axis=1) + 1e-12)
    db = 20 * np.log10(rms)
    loud = np.flatnonzero(db > db.max() - top_db)
    if not len(loud):   # energies overflowed float32 (samples near 1e38): nothing to compare, keep all
        return 0, len(x)
    start, end = int(loud[0]) * frame, (int(loud[-1]) + 1) * frame
    if end - start < MIN_DURATION_S * sr:   # never trim a clip down to nothing
        return 0, len(x)
    return start, end


def trim_silence(x: np.ndarray, sr: int = SAMPLE_RATE, top_db: float = TRIM_TOP_DB) -> np.ndarray:
    start, end = trim_bounds(x, sr, top_db)
    return x[start:end]


def load_audio(data: bytes | str | Path, *, max_duration_s: float | None = None) -> np.ndarray:
    """Decode -> mono -> 16 kHz float32 (N,). Raises AudioError with a stable code.

    Decoding and resampling run block by block, so memory is bounded by the 16 kHz mono
    output (64 kB per second) plus one block, whatever the file claims: a header that
    declares more than `max_duration_s` (with HEADER_SLACK_S for estimated lengths) is
    refused before decoding, and decoding stops once the decoded audio passes the limit.
    """
    with open_audio(data) as f:
        sr = f.samplerate
        max_frames = None if max_duration_s is None else _max_frames(f, max_duration_s)
        x, frames = _resampled(mono_blocks(f, max_frames), sr)
    if frames == 0:
        raise AudioError("empty_audio", "the file decodes to zero samples")
    _check_usable(x, frames / sr)
    return x


def checked_waveform(x: np.ndarray, *, max_duration_s: float | None = None) -> np.ndarray:
    """A waveform sent as samples, (N,) at 16 kHz: float32, held to the limits a decoded file
    is held to (duration, finite values). Raises AudioError with a stable code."""
    if x.ndim != 1 or not len(x):
        raise AudioError("empty_audio", f"the waveform has shape {list(x.shape)}; expected samples (N,) with N > 0")
    seconds = len(x) / SAMPLE_RATE
    if max_duration_s is not None and seconds > max_duration_s:
        raise _too_long(f"{seconds:.1f} s", max_duration_s)
    x = x.astype(np.float32, copy=False)
    _check_usable(x, seconds)
    return x


def _check_usable(x: np.ndarray, seconds: float) -> None:
    if seconds < MIN_DURATION_S:
        raise AudioError("audio_too_short", f"the clip lasts {seconds:.3f} s; at least {MIN_DURATION_S} s is needed")
    if not np.isfinite(x).all():
        raise AudioError("invalid_audio", "the audio contains NaN or infinite sample values")


def _max_frames(f: sf.SoundFile | PcmWav, max_duration_s: float) -> int:
    """The most frames of `f` that may be decoded; refuses, from the header alone, a file that
    declares more time than `max_duration_s`, or more decoding work than that many seconds of
    DECODE_VALUES_PER_S (with HEADER_SLACK_S for estimated lengths)."""
    sr, channels = f.samplerate, f.channels
    declared = f.frames / sr
    if declared > max_duration_s + HEADER_SLACK_S:
        raise _too_long(f"{declared:.1f} s", max_duration_s)
    work_s = f.frames * channels / DECODE_VALUES_PER_S
    if work_s > max_duration_s + HEADER_SLACK_S:
        raise AudioError("audio_too_long", f"the clip lasts {declared:.1f} s at {sr} Hz with {channels} channels: as much "
                                           f"to decode as {work_s:.0f} s of 48 kHz stereo; at most {max_duration_s:g} s "
                                           "of that is accepted (SER_MAX_DURATION_S)")
    return int(min(max_duration_s * sr, max_duration_s * DECODE_VALUES_PER_S / channels))


def _resampled(blocks: Iterator[np.ndarray], sr: int) -> tuple[np.ndarray, int]:
    """Mono blocks at `sr` -> (16 kHz audio (N,), input frames). Streaming soxr gives the
    same samples as one-shot `resample` on the whole clip."""
    stream = resampler(sr)
    parts, frames = [], 0
    for b in blocks:
        frames += len(b)
        parts.append(b if stream is None else stream.resample_chunk(b))
    if stream is not None:
        parts.append(stream.resample_chunk(np.zeros(0, np.float32), last=True))
    return (np.concatenate(parts) if parts else np.zeros(0, np.float32)), frames


def resampler(sr: int) -> soxr.ResampleStream | None:
    """soxr's streaming resampler from `sr` to 16 kHz mono float32 (None at 16 kHz): chunks
    of any size in, the same samples out as one pass over the whole signal."""
    return None if sr == SAMPLE_RATE else soxr.ResampleStream(sr, SAMPLE_RATE, 1, dtype="float32", quality="HQ")


def fill(x: np.ndarray, n: int, pad: str = "zero") -> np.ndarray:
    """(len <= n,) -> (n,) float32: zero-padded at the end, or the audio repeated ("repeat").

    Repeating keeps a short clip free of artificial silence, whose share of the window would
    otherwise tell the model how long the clip is rather than how it sounds.
    """
    if pad not in PAD_MODES:
        raise ValueError(f"pad mode {pad!r}; expected one of {PAD_MODES}")
    if pad == "none":
        return x[:n].astype(np.float32)   # a window that ends with the audio is never short
    if pad == "repeat" and len(x):
        return np.resize(x, n).astype(np.float32)
    out = np.zeros(n, np.float32)   # not np.pad: this runs per window, and np.pad costs ~20 us a call
    out[:len(x)] = x
    return out


def window_starts(n: int, win: int, hop: int, pad: str = "zero") -> list[int]:
    """Start samples of the windows over `n` samples: every `hop`, plus a final
    partial window when audio is left uncovered and it holds at least MIN_LAST_WINDOW of a
    window (with pad "none", moved back to end with the audio); one window at 0 when `n` <= `win`.
    A live stream emits the whole windows as they fill and asks this for the rest at its end."""
    if n <= win:
        return [0]
    starts = list(range(0, n - win + 1, hop))
    tail = starts[-1] + hop   # where a final, partial window would start
    if starts[-1] + win < n and n - tail >= MIN_LAST_WINDOW * win:
        starts.append(n - win if pad == "none" else tail)
    return starts


@dataclass(frozen=True)
class Windowing:
    """How a model cuts audio into its inputs. Carried by the training configs, written into
    every bundle (bundle.json keys window_s, hop_s, trim_silence, pad) and read back from it,
    so a model is served with the windows it was trained on."""

    window_s: float               # model input length (s)
    hop_s: float                  # step between the windows of long audio (s)
    trim_silence: bool = False    # leading/trailing silence trimmed first (trim_bounds)
    pad: str = "zero"             # how audio shorter than a window fills it (fill, PAD_MODES)

    def __post_init__(self) -> None:
        if not 0 < self.hop_s <= self.window_s:
            raise ValueError(f"need 0 < hop_s <= window_s, got hop_s={self.hop_s}, window_s={self.window_s}")
        if self.pad not in PAD_MODES:
            raise ValueError(f"pad {self.pad!r}; expected one of {PAD_MODES}")

    @property
    def samples(self) -> int:
        """Samples in one window."""
        return round(self.window_s * SAMPLE_RATE)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> Windowing:
        """From a dict holding (at least) window_s and hop_s; other keys are ignored, so a whole
        bundle.json will do. A bundle written before trim_silence and pad existed gets the defaults."""
        return cls(**{f.name: d[f.name] for f in fields(cls) if f.name in d})

    def bounds(self, x: np.ndarray) -> tuple[int, int]:
        """(start, end) of the samples of `x` that are cut into windows."""
        return trim_bounds(x) if self.trim_silence else (0, len(x))

    def trimmed(self, x: np.ndarray) -> np.ndarray:
        """`x` as its windows see it (a view, not a copy): trimmed when trim_silence says so."""
        start, end = self.bounds(x)
        return x[start:end]

    def windows(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The model input for a clip (N,): (windows (W, samples) float32, start times (W,) in
        seconds from the start of the clip)."""
        [(windows, starts)] = self.batches(x, batch=None)
        return windows, starts

    def batches(self, x: np.ndarray, batch: int | None = 32) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """`windows`, `batch` windows at a time (see `window_batches`)."""
        start, end = self.bounds(x)   # x[start:end] is a view, not a copy
        for windows, starts in window_batches(x[start:end], self, batch=batch):
            yield windows, starts + start / SAMPLE_RATE


def window_batches(x: np.ndarray, windowing: Windowing, batch: int | None = 32) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Cut (N,) audio, already trimmed when the windowing says so, into windows, `batch` at a
    time (all at once for None): yields (windows (<= batch, win) float32, start times in s).
    Only one batch of windows exists at a time, so memory does not grow with the clip beyond
    the audio itself.

    Audio shorter than one window is padded once (`fill`); a final partial window is kept
    (padded) when audio is left uncovered and it holds at least MIN_LAST_WINDOW of a
    window of audio. With pad "none" nothing is padded: a short clip is one window of its
    own length, and that final window is moved back to end with the audio.
    """
    win, hop, pad = windowing.samples, round(windowing.hop_s * SAMPLE_RATE), windowing.pad
    if win <= 0 or hop <= 0:
        raise ValueError(f"window_s and hop_s must be at least one sample, got {windowing.window_s}, {windowing.hop_s}")
    if len(x) <= win:
        one = x.astype(np.float32) if pad == "none" else fill(x, win, pad)
        yield one[None, :], np.zeros(1)
        return
    starts = window_starts(len(x), win, hop, pad)
    step = batch or len(starts)
    for i in range(0, len(starts), step):
        chunk = starts[i:i + step]
        yield np.stack([fill(x[s:s + win], win, pad) for s in chunk]), np.asarray(chunk) / SAMPLE_RATE


def windows_for(x: np.ndarray, window_s: float, hop_s: float, trim: bool,
                pad: str = "zero") -> tuple[np.ndarray, np.ndarray]:
    """`Windowing(window_s, hop_s, trim, pad).windows(x)`: kept for the fixed reference
    benchmarks/naive_server.py, which must not change; everything else holds a Windowing."""
    return Windowing(window_s, hop_s, trim, pad).windows(x)
