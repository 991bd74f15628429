"""Configuration of every command, one precedence order: the dataclass's defaults, then a JSON
config file, then the flags the user actually gave (their argparse default is None, so an
absent flag never overrides the file). Torch-free: the CLIs use it while building parsers.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

CPU_THREADS = 2   # torch and onnxruntime threads while training and evaluating (these machines have 2 cores)


def from_dict(cls: type[T], values: dict) -> T:
    """An instance of the dataclass `cls` from `values`; an unknown key is an error that lists
    the fields. A field whose default is a dataclass takes a dict of its own fields."""
    known = [f.name for f in fields(cls)]
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys {unknown}; known: {known}")
    kw = dict(values)
    for f in fields(cls):
        nested = f.default_factory
        if f.name in kw and isinstance(kw[f.name], dict) and isinstance(nested, type) and is_dataclass(nested):
            kw[f.name] = from_dict(nested, kw[f.name])
    return cls(**kw)


def read_config(path: str | Path | None) -> dict:
    """The JSON object in `path` ({} without a path)."""
    if path is None:
        return {}
    values = json.loads(Path(path).read_text())
    if not isinstance(values, dict):
        raise ValueError(f"{path}: a config file holds one JSON object of field names and values")
    return values


def given(args: argparse.Namespace, *names: str) -> dict:
    """The flags among `names` that the user gave (argparse default None = not given)."""
    return {n: getattr(args, n) for n in names if getattr(args, n) is not None}


def resolve(cls: type[T], args: argparse.Namespace, *flags: str, **fixed) -> T:
    """`cls` from its defaults, then args.config (a JSON file), then the given `flags`, then
    `fixed` (what the command itself decides)."""
    return from_dict(cls, {**read_config(args.config), **given(args, *flags), **fixed})
