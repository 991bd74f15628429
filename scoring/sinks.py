"""Where the rows go, one row group at a time, so that an interrupted run keeps what it wrote.

Parquet: `--out` is a folder of part files (the layout Ray, Spark, pandas, polars and DuckDB
read as one table), one row group each. A part is written under a temporary name and renamed
when complete, so a `kill -9` loses at most the row group being written. CSV and JSON lines:
one file, appended and fsynced per row group; a line cut short by a kill is dropped on resume.
Each sink also tells which paths it already holds, for `--resume`.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

FORMATS = ("parquet", "csv", "jsonl")
EXTENSIONS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
PART = re.compile(r"part-(\d{6})\.parquet$")


def format_for(out: str, given: str | None) -> str:
    """--format, else from --out: a name without an extension (or .parquet) is a Parquet dataset folder."""
    if given:
        return given
    ext = os.path.splitext(out.rstrip("/"))[1].lower()
    fmt = EXTENSIONS.get(ext) or ("parquet" if not ext else None)
    if fmt is None:
        raise ValueError(f"--out {out}: cannot tell the format from the extension; name a folder "
                         f"(a Parquet dataset), or a .csv or .jsonl file, or pass --format")
    return fmt


def dataset_note(out: str) -> str | None:
    """What to tell a user whose Parquet --out is named like one file: it is a folder."""
    if os.path.splitext(out.rstrip("/"))[1].lower() in (".parquet", ".pq"):
        return (f"--out {out} is a folder of Parquet part files (a dataset), not one file; read it as one "
                f"table (pd.read_parquet, or '{out.rstrip('/')}/*.parquet')")
    return None


def _folder(out: str) -> tuple[pafs.FileSystem, str]:
    return pafs.FileSystem.from_uri(out) if "://" in out else (pafs.LocalFileSystem(), os.path.abspath(out))


def folder_has_files(out: str) -> bool:
    fs, path = _folder(out)
    if fs.get_file_info(path).type == pafs.FileType.NotFound:
        return False
    return any(i.type == pafs.FileType.File for i in fs.get_file_info(pafs.FileSelector(path, recursive=True)))


def paths_in_folder(out: str) -> set[str]:
    """The paths in a folder of Parquet parts, local or at a pyarrow filesystem URI (none if it does not exist)."""
    fs, path = _folder(out)
    if fs.get_file_info(path).type == pafs.FileType.NotFound:
        return set()
    infos = fs.get_file_info(pafs.FileSelector(path, recursive=True))
    return existing_paths(sorted(i.path for i in infos if i.path.endswith(".parquet")), fs)


def existing_paths(parts: list, fs: pafs.FileSystem | None = None) -> set[str]:
    done: set[str] = set()
    for part in parts:
        try:
            done.update(pq.read_table(part, columns=["path"], filesystem=fs)["path"].to_pylist())
        except (pa.ArrowInvalid, OSError) as e:
            raise ValueError(f"{part}: not a readable Parquet file ({e}); a write interrupted by a "
                             f"crash leaves one: remove it and run again") from e
    return done


class ParquetParts:
    def __init__(self, folder: Path, schema: pa.Schema, *, resume: bool):
        self.folder, self.schema = folder, schema
        _refuse_existing(folder, resume)
        folder.mkdir(parents=True, exist_ok=True)
        for tmp in folder.glob(".part-*.tmp"):
            tmp.unlink()   # a row group whose write was interrupted
        parts = sorted(folder.glob("*.parquet"))
        for part in parts[:1]:
            _same_columns(pq.read_schema(part).names, schema.names, part)
        self.done = existing_paths(parts)
        numbers = [int(m.group(1)) for p in parts if (m := PART.search(p.name))]
        self.next = max(numbers, default=-1) + 1

    def write(self, table: pa.Table) -> None:
        name = f"part-{self.next:06d}.parquet"
        tmp = self.folder / f".{name}.tmp"
        pq.write_table(table, tmp, row_group_size=max(1, len(table)))
        os.replace(tmp, self.folder / name)
        self.next += 1

    def close(self) -> None:
        pass


class LineSink:
    """CSV or JSON lines in one file."""

    def __init__(self, path: Path, schema: pa.Schema, fmt: str, *, resume: bool):
        self.path, self.schema, self.fmt = path, schema, fmt
        _refuse_existing(path, resume)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.done = self._recover() if path.exists() else set()
        self.file = open(path, "a", newline="")
        if self.fmt == "csv" and self.file.tell() == 0:
            csv.writer(self.file).writerow(schema.names)

    def _recover(self) -> set[str]:
        """Paths already written; a last line without its newline (a kill mid-write) is cut off."""
        data = self.path.read_bytes()
        complete = data[:data.rfind(b"\n") + 1]
        if len(complete) < len(data):
            with open(self.path, "r+b") as f:
                f.truncate(len(complete))
        text = complete.decode()
        if self.fmt == "jsonl":
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
            if rows:
                _same_columns(list(rows[0]), self.schema.names, self.path)
            return {r["path"] for r in rows}
        rows = list(csv.reader(io.StringIO(text)))
        if rows:
            _same_columns(rows[0], self.schema.names, self.path)
        return {r[0] for r in rows[1:]}

    def write(self, table: pa.Table) -> None:
        rows = table.to_pylist()
        if self.fmt == "jsonl":
            self.file.write("".join(json.dumps(r) + "\n" for r in rows))
        else:
            w = csv.writer(self.file)
            w.writerows([_csv_value(r[n]) for n in self.schema.names] for r in rows)
        self.file.flush()
        os.fsync(self.file.fileno())

    def close(self) -> None:
        self.file.close()


def _csv_value(v):
    return json.dumps(v) if isinstance(v, (list, dict)) else v   # segments: a JSON list in one cell


def open_sink(out: str, fmt: str, schema: pa.Schema, *, resume: bool) -> ParquetParts | LineSink:
    if fmt == "parquet":
        return ParquetParts(Path(out), schema, resume=resume)
    return LineSink(Path(out), schema, fmt, resume=resume)


def _refuse_existing(path: Path, resume: bool) -> None:
    if path.exists() and not resume and (path.is_file() or any(path.iterdir())):
        raise ValueError(f"{path} exists; pass --resume to add the files it lacks, or remove it")


def _same_columns(found: list[str], expected: list[str], where: Path) -> None:
    if list(found) != list(expected):
        raise ValueError(f"{where}: its columns {list(found)} are not this run's {list(expected)} "
                         "(another model, --segments or manifest?); write to a new --out")
