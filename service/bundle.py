"""Model bundles: a folder with `model.onnx`, `bundle.json` and `MODEL_CARD.md`.

`load_bundle(path)` is the only way in. Export writes `bundle.json` with `write_bundle`,
so the schema checked here is the schema written there.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from service.audio import SAMPLE_RATE, Windowing

DEFAULT_VERSION = "0.1.0"   # a bundle's version unless its export names one

MODEL_FILE, META_FILE, CARD_FILE = "model.onnx", "bundle.json", "MODEL_CARD.md"
ROLES = ("student", "teacher")


class BundleError(RuntimeError):
    """A bundle folder that cannot be served; the message names the file and the problem."""


@dataclass(frozen=True)
class Bundle:
    path: Path
    name: str
    version: str
    role: str
    labels: tuple[str, ...]
    sample_rate: int
    windowing: Windowing             # how audio is cut into the model's inputs, as it was trained
    input: dict[str, Any]            # {"name": ..., "shape": ["batch", "samples"]}
    output: dict[str, Any]           # {"name": ..., "shape": ["batch", 6]}
    temperature: float = 1.0         # calibration: probabilities = softmax(logits / T)
    # A student's: the logit margin below which `auto` asks the teacher, chosen for its recipe by
    # `ser pipeline` (pipeline.fallback); None: service.fallback's default.
    fallback_threshold: float | None = None
    parameters: int = 0
    sha256: str = ""
    precision: str = "float32"
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    license: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def model_path(self) -> Path:
        return self.path / MODEL_FILE

    def to_json(self) -> dict[str, Any]:
        """bundle.json's content: the windowing's keys at the top level, as bundles have always had them."""
        d = {}
        for k, v in asdict(self).items():
            d.update(v if k == "windowing" else {k: v})
        d.pop("path")
        if self.fallback_threshold is None:   # only a student chosen for a recipe names one
            d.pop("fallback_threshold")
        d["labels"] = list(self.labels)
        return d


REQUIRED = ("name", "version", "role", "labels", "sample_rate", "window_s", "hop_s", "input", "output")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_bundle(path: str | Path, *, verify: bool = True) -> Bundle:
    """Read and validate a bundle folder; with `verify`, check model.onnx against its sha256."""
    root = Path(path)
    if not root.is_dir():
        raise BundleError(f"{root.resolve()}: no such bundle folder")
    meta_path, model_path = root / META_FILE, root / MODEL_FILE
    if not meta_path.is_file():
        raise BundleError(f"{meta_path}: missing; a bundle folder holds {MODEL_FILE}, {META_FILE}, {CARD_FILE}")
    if not model_path.is_file():
        raise BundleError(f"{model_path}: missing")
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BundleError(f"{meta_path}: not valid JSON ({e})") from e
    missing = [k for k in REQUIRED if k not in meta]
    if missing:
        raise BundleError(f"{meta_path}: missing keys {missing}")
    try:
        windowing = Windowing.from_json(meta)
    except (TypeError, ValueError) as e:
        raise BundleError(f"{meta_path}: {e}") from e
    own = {f for f in Bundle.__dataclass_fields__ if f not in ("path", "windowing", "extra")}
    extra = {k: v for k, v in meta.items() if k not in {*own, *windowing.to_json(), "extra"}}
    bundle = Bundle(path=root, windowing=windowing, **{k: meta[k] for k in own if k in meta},
                    extra={**meta.get("extra", {}), **extra})
    bundle = _validated(bundle, meta_path)
    if verify and bundle.sha256:
        actual = sha256_file(model_path)
        if actual != bundle.sha256:
            raise BundleError(f"{model_path}: sha256 {actual} does not match {bundle.sha256} in {META_FILE}; "
                              "the model file is corrupt or was replaced")
    return bundle


def _validated(b: Bundle, where: Path) -> Bundle:
    if b.role not in ROLES:
        raise BundleError(f"{where}: role {b.role!r}; expected one of {ROLES}")
    if b.sample_rate != SAMPLE_RATE:
        raise BundleError(f"{where}: sample_rate {b.sample_rate}; the front end produces {SAMPLE_RATE}")
    if len(b.labels) < 2 or len(set(b.labels)) != len(b.labels):
        raise BundleError(f"{where}: labels must be >= 2 distinct names, got {b.labels}")
    if not b.temperature > 0:
        raise BundleError(f"{where}: temperature must be > 0, got {b.temperature}")
    if b.fallback_threshold is not None and not 0 <= b.fallback_threshold <= 100:
        raise BundleError(f"{where}: fallback_threshold must be a logit margin in [0, 100], got {b.fallback_threshold}")
    return Bundle(**{**b.__dict__, "labels": tuple(b.labels)})


def write_bundle(folder: str | Path, meta: dict[str, Any], card: str) -> Bundle:
    """Write bundle.json (sha256 of model.onnx filled in) and MODEL_CARD.md next to model.onnx."""
    root = Path(folder)
    meta = {**meta, "sha256": sha256_file(root / MODEL_FILE)}
    (root / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    (root / CARD_FILE).write_text(card)
    return load_bundle(root)
