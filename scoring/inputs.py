"""What `ser score` reads: audio files, folders, globs and manifests -> one table of inputs.

The table has a `path` column (what the output row names), a `SOURCE` column (where to read
the bytes: a local path or a pyarrow filesystem URI such as s3://bucket/key) and the other
columns of any manifest, carried through to the output.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.fs as pafs
import pyarrow.parquet as pq

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3")   # what the decoder reads
MANIFEST_EXTENSIONS = (".csv", ".parquet", ".pq")
SOURCE = "__source__"   # internal column: where the bytes are; never written


@dataclass(frozen=True)
class Inputs:
    table: pa.Table       # path, SOURCE, carried manifest columns
    other_files: int      # files in the folders that are not audio by their extension
    duplicates: int       # paths named more than once, kept once

    @property
    def carried(self) -> list[pa.Field]:
        return [f for f in self.table.schema if f.name not in ("path", SOURCE)]


def is_uri(s: str) -> bool:
    return "://" in s


def is_audio_name(name: str) -> bool:
    return name.lower().endswith(AUDIO_EXTENSIONS)


def collect(args: list[str]) -> Inputs:
    """Expand every INPUT. Raises ValueError for an argument that names nothing."""
    plain: list[str] = []
    manifests: list[pa.Table] = []
    other = 0
    for arg in args:
        if arg.lower().endswith(MANIFEST_EXTENSIONS):
            manifests.append(read_manifest(arg))
            continue
        found, skipped = _expand(arg)
        plain.extend(f if is_uri(f) else os.path.abspath(f) for f in found)   # rows name files wherever run
        other += skipped
    parts = manifests + ([pa.table({"path": plain, SOURCE: plain})] if plain else [])
    if not parts:
        raise ValueError("no inputs")
    table = pa.concat_tables(parts, promote_options="permissive") if len(parts) > 1 else parts[0]
    unique = _first_of_each_path(table)
    return Inputs(unique, other, len(table) - len(unique))


def _expand(arg: str) -> tuple[list[str], int]:
    """One file, folder or glob -> (files, files passed over in folders)."""
    if is_uri(arg):
        return _expand_uri(arg)
    p = Path(arg)
    if p.is_dir():
        return _walk(p)
    if p.is_file():
        return [arg], 0   # named explicitly: scored whatever its extension (not audio: an error row)
    if glob.has_magic(arg):
        files, other = [], 0
        for match in sorted(glob.glob(arg, recursive=True)):
            found, skipped = _walk(Path(match)) if os.path.isdir(match) else ([match], 0)
            files += found
            other += skipped
        if files or other:
            return files, other
    raise ValueError(f"{arg}: no such file or folder, and no file matches it")


def _walk(folder: Path) -> tuple[list[str], int]:
    files, other = [], 0
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        for name in sorted(names):
            if is_audio_name(name):
                files.append(os.path.join(root, name))
            else:
                other += 1
    return files, other


def _expand_uri(uri: str) -> tuple[list[str], int]:
    fs, path = pafs.FileSystem.from_uri(uri)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.File:
        return [uri], 0
    if info.type != pafs.FileType.Directory:
        raise ValueError(f"{uri}: no such file or folder")
    scheme = uri.split("://", 1)[0]
    infos = fs.get_file_info(pafs.FileSelector(path, recursive=True))
    names = sorted(i.path for i in infos if i.type == pafs.FileType.File)
    audio = [f"{scheme}://{n}" for n in names if is_audio_name(n)]
    return audio, len(names) - len(audio)


def read_manifest(where: str) -> pa.Table:
    """A CSV or Parquet table with a `path` column; relative paths are relative to the manifest."""
    fs, path = pafs.FileSystem.from_uri(where) if is_uri(where) else (pafs.LocalFileSystem(), os.path.abspath(where))
    try:
        if where.lower().endswith(".csv"):
            with fs.open_input_stream(path) as f:
                table = pacsv.read_csv(f, convert_options=pacsv.ConvertOptions(column_types={"path": pa.string()}))
        else:
            table = pq.read_table(path, filesystem=fs)
    except (pa.ArrowInvalid, OSError) as e:
        raise ValueError(f"{where}: cannot read it as a manifest ({e})") from e
    if "path" not in table.column_names:
        raise ValueError(f"{where}: a manifest needs a 'path' column; it has {table.column_names}")
    table = table.filter(pc.is_valid(table["path"]))
    base = where.rsplit("/", 1)[0] if is_uri(where) else os.path.dirname(path)
    sources = [_resolve(p, base) for p in table["path"].cast(pa.string()).to_pylist()]
    table = table.set_column(table.column_names.index("path"), "path", table["path"].cast(pa.string()))
    return table.append_column(SOURCE, pa.array(sources, pa.string()))


def _resolve(p: str, base: str) -> str:
    if is_uri(p) or os.path.isabs(p):
        return p
    return f"{base}/{p}" if is_uri(base) else os.path.join(base, p)


def _first_of_each_path(table: pa.Table) -> pa.Table:
    seen: set[str] = set()
    keep = []
    for i, p in enumerate(table["path"].to_pylist()):
        keep.append(p not in seen)
        seen.add(p)
    return table if all(keep) else table.filter(pa.array(keep))


def without(table: pa.Table, done: set[str]) -> pa.Table:
    """The inputs whose path is not in `done` (a resumed run)."""
    if not done:
        return table
    return table.filter(pc.invert(pc.is_in(table["path"], value_set=pa.array(sorted(done), pa.string()))))
