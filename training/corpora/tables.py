"""The one reader of corpus tables (manifests and metadata CSVs), so every adapter reads them
the same way: UTF-8 with or without a byte-order mark (spreadsheets add one), header names
stripped, the columns an adapter needs checked before any row is used."""

from __future__ import annotations

import csv
from pathlib import Path


def read_table(path: str | Path, columns: tuple[str, ...]) -> list[dict[str, str]]:
    """The rows of the CSV file `path` as dicts; an error names the missing columns and the found ones."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        found = [c.strip() for c in reader.fieldnames or []]
        missing = [c for c in columns if c not in found]
        if missing:
            raise ValueError(f"{path}: missing columns {missing}; found {found}, expected at least {list(columns)}")
        reader.fieldnames = found
        return list(reader)
