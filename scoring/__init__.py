"""`ser score`: every file of an archive through /predict's code path, into a table.

inputs (files, folders, globs, manifests) -> rows (one per file, errors included) -> sinks
(Parquet parts, CSV, JSON lines); run by `local` (a process pool) or `ray_engine` (Ray Data).
"""
