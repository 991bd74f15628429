"""The Ray engine: the same rows as the local engine, as a Ray Data pipeline.

inputs -> `map_batches` on an actor pool (each actor holds its own onnxruntime sessions,
one thread each, through the same `Scorer`) -> `write_parquet` into the `--out` folder, which
may be any pyarrow filesystem URI the cluster can write (s3://...). Without `--ray-address`,
`ray.init()` joins the cluster of a `ray job submit` (RAY_ADDRESS) or starts a local one.
"""

from __future__ import annotations

import logging
import math
import os

import pyarrow as pa

from scoring.rows import Options, Scorer

MAX_ROWS_PER_BLOCK = 1000   # a block is one actor call's worth of files; small blocks spread the work


class ScoreBatch:
    """A Ray Data actor: one Scorer for its lifetime, applied to each batch of input rows."""

    def __init__(self, options: Options, schema: pa.Schema):
        self.scorer = Scorer(options, schema)

    def __call__(self, batch: pa.Table) -> pa.Table:
        return self.scorer.table(batch.to_pylist())


def start(address: str | None, workers: int | None, quiet: bool) -> int:
    """Connect to (or start) Ray; returns the number of actors to run: --workers or the cluster's CPUs."""
    starts_one = address is None and not os.environ.get("RAY_ADDRESS")   # a job's driver joins its cluster
    if starts_one:   # a Ray of its own is a single-node one, on the loopback interface (read when ray is imported)
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import ray

    local = dict(num_cpus=workers) if starts_one and workers else {}
    # "local": a new Ray, even where /tmp/ray names another (or a stopped) one that ray.init() would join
    ray.init(address="local" if starts_one else address, include_dashboard=False, log_to_driver=not quiet,
             logging_level="WARNING", **local)
    ray.data.DataContext.get_current().enable_progress_bars = not quiet
    if quiet:
        logging.getLogger("ray.data").setLevel(logging.ERROR)
    return workers or max(1, int(ray.cluster_resources().get("CPU", 1)))


def run(inputs: pa.Table, options: Options, schema: pa.Schema, out: str, *, workers: int,
        files_per_batch: int, rows_per_file: int) -> None:
    import ray

    rows = max(files_per_batch, min(MAX_ROWS_PER_BLOCK, math.ceil(len(inputs) / (workers * 4))))
    blocks = [inputs.slice(i, rows) for i in range(0, len(inputs), rows)]
    ds = ray.data.from_arrow(blocks)
    ds = ds.map_batches(ScoreBatch, fn_constructor_kwargs={"options": options, "schema": schema},
                        batch_size=files_per_batch, batch_format="pyarrow",
                        compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=1)
    # Writing is I/O: it takes no CPU of the actors' budget, or it would wait for them to finish.
    ds.write_parquet(out, min_rows_per_file=rows_per_file, ray_remote_args={"num_cpus": 0})
