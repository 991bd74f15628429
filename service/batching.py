"""Windows from many live streams through one model, in batches, on a thread of its own."""

from __future__ import annotations

import asyncio
import queue
import threading

import numpy as np

from service.inference import OnnxModel

WAITING_BATCHES = 4   # windows of all streams queued for one model: this many of its batches


class WindowBatcher:
    """`await (await batcher.probs(window))` -> the window's (C,) calibrated probabilities.

    One worker thread per model takes every window waiting and runs them as one batch of at
    most the model's `max_batch`: the event loop never runs a model, and a hundred streams cost
    a few batched calls per hop instead of a hundred small ones. The bundles' per-window
    normalisation makes a window's output independent of its batch. A row that is not finite
    comes back as NaN. At most WAITING_BATCHES batches of windows wait, whatever the number of
    streams: a stream that would add one waits for room (and stops reading its socket).
    """

    def __init__(self, model: OnnxModel):
        self.model, self.max_batch = model, model.max_batch
        self._room = asyncio.Semaphore(WAITING_BATCHES * self.max_batch)
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name=f"stream-{model.bundle.role}", daemon=True)
        self._thread.start()

    async def probs(self, window: np.ndarray) -> asyncio.Future:
        """Queues the window once there is room; the future is its result."""
        await self._room.acquire()
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        future.add_done_callback(lambda _: self._room.release())
        self._queue.put((window, future, loop))
        return future

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(10)

    def _work(self) -> None:
        while (batch := self._take()) is not None:
            # one run per window length: with pad "none" a stream's last window may be shorter
            for length in {len(w) for w, _, _ in batch}:
                same = [item for item in batch if len(item[0]) == length]
                try:
                    results = list(self.model.window_probs(np.stack([w for w, _, _ in same])))
                except Exception as e:   # reaches each waiting stream, which reports it
                    results = [e] * len(same)
                for (_, future, loop), result in zip(same, results):
                    loop.call_soon_threadsafe(_settle, future, result)

    def _take(self) -> list | None:
        """Block for one window, then take what else is waiting, up to max_batch; None to stop."""
        first = self._queue.get()
        if first is None:
            return None
        batch = [first]
        while len(batch) < self.max_batch:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                self._queue.put(None)   # stop after this batch
                break
            batch.append(item)
        return batch


def _settle(future: asyncio.Future, result) -> None:
    if future.cancelled():   # the stream ended meanwhile
        return
    if isinstance(result, Exception):
        future.set_exception(result)
    else:
        future.set_result(result)
