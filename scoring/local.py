"""The local engine: a pool of processes, each holding its own onnxruntime sessions (one
thread each, so N workers use N cores without oversubscribing them).

The parent hands out small chunks of files, gathers the rows and writes them a row group at a
time. Ctrl-C (or SIGTERM) stops handing out work; the chunks already running finish, their rows
are written, and the run ends; a second Ctrl-C ends it at once.
"""

from __future__ import annotations

import signal
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context

import pyarrow as pa

from scoring.progress import Progress
from scoring.rows import Options, Scorer

FILES_PER_TASK = 8      # few enough for an even spread, enough to amortise the hand-off
TASKS_PER_WORKER = 4    # queued ahead, so no worker waits for the parent

_scorer: Scorer | None = None   # one per worker process


def _start_worker(options: Options, schema: pa.Schema) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # Ctrl-C reaches the whole process group; the parent decides
    global _scorer
    _scorer = Scorer(options, schema)


def _score(items: list[dict]) -> list[dict]:
    return [_scorer.row(item) for item in items]


class StopRequest:
    """SIGINT/SIGTERM set a flag instead of raising in the middle of a write; a second SIGINT raises."""

    def __init__(self):
        self.asked = False
        self._old = {s: signal.signal(s, self._ask) for s in (signal.SIGINT, signal.SIGTERM)}

    def _ask(self, signum, frame) -> None:
        if self.asked and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.asked = True

    def restore(self) -> None:
        for s, handler in self._old.items():
            signal.signal(s, handler)


def run(inputs: pa.Table, options: Options, schema: pa.Schema, sink, *, workers: int,
        row_group: int, flush_s: float, progress: Progress) -> bool:
    """Score every input into `sink`. Returns False when stopped early."""
    chunks = (b.to_pylist() for b in inputs.to_batches(max_chunksize=FILES_PER_TASK))
    buffer: list[dict] = []
    flushed = time.monotonic()
    stop = StopRequest()
    pool = ProcessPoolExecutor(workers, mp_context=get_context("spawn"),   # no threads inherited by a fork
                               initializer=_start_worker, initargs=(options, schema))
    try:
        pending: set = set()
        while True:
            while not stop.asked and len(pending) < workers * TASKS_PER_WORKER:
                items = next(chunks, None)
                if items is None:
                    break
                pending.add(pool.submit(_score, items))
            if not pending:
                break
            finished, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            for f in finished:
                if f.cancelled():
                    continue
                rows = f.result()
                buffer += rows
                progress.add(len(rows), sum(r.get("error_code") is not None for r in rows))
            if stop.asked:
                pending = {f for f in pending if not f.cancel()}   # the running ones finish
            if len(buffer) >= row_group or (buffer and time.monotonic() - flushed >= flush_s):
                sink.write(pa.Table.from_pylist(buffer, schema=schema))
                buffer, flushed = [], time.monotonic()
    except BrokenProcessPool as e:
        raise RuntimeError("a worker process died (out of memory? its error, if it had one, is above); "
                           "what was scored is kept: run again with --resume") from e
    finally:
        if buffer:
            sink.write(pa.Table.from_pylist(buffer, schema=schema))
        pool.shutdown(wait=True, cancel_futures=True)
        stop.restore()
    progress.finish()
    return not stop.asked
