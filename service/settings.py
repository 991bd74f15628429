"""Service settings: environment variables with the SER_ prefix (one class, read once)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from service import shipped
from service.bundle import BundleError

UPLOAD_LARGE_SHARE = 0.75   # of SER_MAX_INFLIGHT_BYTES that uploads over 1 MB may hold together


class Settings(BaseSettings):
    # hide_input_in_errors: a bad SER_API_KEY must not be echoed into a start-up log.
    model_config = SettingsConfigDict(env_prefix="SER_", extra="forbid", hide_input_in_errors=True)

    # The default bundles' folder (service/shipped.py): the models/ shipped with the code.
    models_dir: Path = shipped.MODELS_DIR
    # None: student/ in models_dir. A relative path resolves from the working directory.
    student_bundle: Path | None = None
    # Unset: teacher/ in models_dir when it exists, else student-only. A folder named here must
    # exist (start-up fails naming it: a typo never turns the teacher off); "none" or None: student-only.
    teacher_bundle: Path | None = None
    intra_op_threads: int = Field(1, ge=1, le=64)     # per session; onnxruntime ignores cgroup limits
    inter_op_threads: int = Field(1, ge=1, le=64)
    # `ser serve` processes on one port (service/workers.py); each has the limits below of its own.
    # 0: one per CPU this process may use (its affinity and a container's CPU limit).
    workers: int = Field(0, ge=0, le=64)
    max_concurrency: int = Field(2, ge=1, le=64)      # inferences running at once
    max_queue: int = Field(16, ge=0, le=10_000)       # requests waiting beyond that get 503
    # Per loaded model: what its runs at once may take (each model's batch is sized to fit; service/memory.py)
    model_memory_mb: int = Field(192, ge=16, le=65_536)
    # auto: the teacher answers where the student's logit margin (the gap between its two largest
    # logits) is below this; 0: never. Unset: the student bundle's own, else service.fallback's default.
    fallback_threshold: float | None = Field(None, ge=0.0, le=100.0)
    # Windows without speech do not count, and a clip without any is answered "no speech"
    # (docs/speech-gate.md). Off: every window counts, for audio already cut to speech upstream.
    speech_gate: bool = True
    max_upload_bytes: int = Field(10_000_000, ge=1_000)
    upload_timeout_s: float = Field(30.0, gt=0, le=3600)   # the whole body must arrive within this
    # All request bodies held at once (arriving, queued, decoding), in memory; beyond it 503.
    max_inflight_bytes: int = Field(64_000_000, ge=1_000)
    max_duration_s: float = Field(60.0, gt=0.1, le=3600)
    max_batch_files: int = Field(16, ge=1, le=256)
    # /stream: open streams at once, stream time per stream, seconds without a frame, bytes per
    # frame, events computed but not yet taken by a client that has stopped reading.
    max_streams: int = Field(200, ge=1, le=10_000)
    stream_max_s: float = Field(3600.0, gt=0, le=86_400)
    stream_idle_s: float = Field(10.0, gt=0, le=3600)
    stream_max_frame_bytes: int = Field(262_144, ge=1_024, le=16_000_000)
    stream_send_queue: int = Field(64, ge=1, le=10_000)
    # A stream must bring this much audio per second of waiting for it, over every window of
    # this many seconds, or it is closed (stream_too_slow): slots are held with audio, not a trickle.
    stream_min_speed: float = Field(0.5, ge=0.0, le=100.0)
    stream_rate_window_s: float = Field(5.0, gt=0, le=3600)
    # Small frames (any kind, fragments included; under 640 bytes, counted the more the smaller) a
    # stream may send per second, a second's worth at once. Audio frames of 20 ms or more are free.
    stream_max_frames_per_s: int = Field(1000, ge=10, le=1_000_000)
    stream_max_per_client: int = Field(0, ge=0, le=10_000)   # 0: no cap per client address
    api_key: SecretStr | None = None
    cors_origins: list[str] = []
    # Host header values served (port aside); "*" for any. Anything else is refused (DNS rebinding).
    allowed_hosts: list[str] = ["localhost", "127.0.0.1", "::1"]
    # Proxies whose X-Forwarded-For names the client (for logs and SER_STREAM_MAX_PER_CLIENT); none by default.
    forwarded_allow_ips: list[str] = []

    @field_validator("teacher_bundle", mode="before")
    @classmethod
    def _none_is_student_only(cls, v: object) -> object:
        return None if v is None or str(v).strip().lower() == shipped.NO_TEACHER else v

    @model_validator(mode="after")
    def _default_bundles(self) -> Settings:
        if self.student_bundle is None:
            self.student_bundle = self.models_dir / shipped.STUDENT
        if "teacher_bundle" not in self.model_fields_set:
            default = self.models_dir / shipped.TEACHER
            self.teacher_bundle = default if default.is_dir() else None
        return self

    def student_folder(self) -> Path:
        """The student's bundle folder; BundleError naming it when it does not exist."""
        return _existing(self.student_bundle, "student", "set SER_STUDENT_BUNDLE (--student, --bundle), or "
                         f"SER_MODELS_DIR to a folder holding {shipped.STUDENT}/")

    def teacher_folder(self) -> Path | None:
        """The teacher's bundle folder, None for student-only; BundleError naming it when it does not exist."""
        if self.teacher_bundle is None:
            return None
        return _existing(self.teacher_bundle, "teacher", "set SER_TEACHER_BUNDLE (--teacher) to a bundle folder, "
                         f"or to '{shipped.NO_TEACHER}' to serve the student alone")

    @model_validator(mode="after")
    def _one_upload_fits_the_budget(self) -> Settings:
        if self.max_inflight_bytes < self.max_upload_bytes / UPLOAD_LARGE_SHARE:
            raise ValueError(f"SER_MAX_INFLIGHT_BYTES must be at least SER_MAX_UPLOAD_BYTES / {UPLOAD_LARGE_SHARE} "
                             "(large uploads may fill that share of it), or the largest upload can never be taken")
        return self

    @field_validator("api_key", mode="before")
    @classmethod
    def _key_usable(cls, v: object) -> object:
        """Surrounding whitespace is dropped (a key read from a file ends in a newline, which no
        client sends); what is left must be 16+ printable ASCII characters, as an HTTP header can carry."""
        secret = (v.get_secret_value() if isinstance(v, SecretStr) else str(v or "")).strip()
        if not secret:
            return None   # SER_API_KEY= (empty) means no key, not an empty key
        if len(secret) < 16:
            raise ValueError("SER_API_KEY must be at least 16 characters")
        if not (secret.isascii() and secret.isprintable()):
            raise ValueError("SER_API_KEY must be printable ASCII (no control or non-ASCII characters)")
        return SecretStr(secret)


def _existing(folder: Path, role: str, how: str) -> Path:
    if not folder.is_dir():
        raise BundleError(f"no {role} bundle folder at {folder.resolve()}: {how}")
    return folder


def settings_problems(e: ValidationError) -> str:
    """Pydantic's errors about settings in the words a user sets them:
    `SER_API_KEY: must be at least 16 characters`, without pydantic's dump and link."""
    def one(err: dict) -> str:
        msg, name = err["msg"].removeprefix("Value error, "), "SER_" + "_".join(map(str, err["loc"])).upper()
        return msg if not err["loc"] or msg.startswith(name) else f"{name}: {msg}"
    return "; ".join(one(err) for err in e.errors())
