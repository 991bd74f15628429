"""Prometheus metrics (all named ser_*), one registry per app so tests can build many apps."""

from __future__ import annotations

import os
import tempfile

from prometheus_client import (CollectorRegistry, Counter, Gauge, Histogram, Info, disable_created_metrics,
                               generate_latest, multiprocess, values)

# Off unless wanted: a `*_created` series per counter and histogram doubles what is scraped and
# says only when the process started. prometheus_client's own switch brings them back:
# PROMETHEUS_DISABLE_CREATED_SERIES=false.
if "PROMETHEUS_DISABLE_CREATED_SERIES" not in os.environ:
    disable_created_metrics()

# Fine at the low end: the student answers in a few ms, and a p99 must be readable there.
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05,
                   0.075, 0.1, 0.15, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0)
DURATION_BUCKETS = (0.1, 0.5, 1, 2, 3, 5, 10, 20, 30, 60, 120, 300)
MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"   # prometheus_client's name for the folder of every process's counts


def count_across_processes() -> str:
    """Before any metric exists: every process of this one's tree (the workers of `ser serve
    --workers N`, service/workers.py) counts into files of one new folder, which a scrape adds up.
    Returns the folder."""
    folder = tempfile.mkdtemp(prefix="ser-metrics-")
    os.environ[MULTIPROC_DIR_ENV] = folder
    values.ValueClass = values.MultiProcessValue()
    return folder


class Metrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.request_latency = Histogram(
            "ser_request_duration_seconds", "HTTP request latency", ["route", "method", "status"],
            buckets=LATENCY_BUCKETS, registry=r)
        self.inference_latency = Histogram(
            "ser_inference_duration_seconds", "Model forward time for one clip (all its windows)", ["model"],
            buckets=LATENCY_BUCKETS, registry=r)
        self.audio_duration = Histogram(
            "ser_audio_duration_seconds", "Duration of accepted audio", buckets=DURATION_BUCKETS, registry=r)
        self.predictions = Counter("ser_predictions_total", "Predictions by answering model and label",
                                   ["model", "label"], registry=r)
        self.fallbacks = Counter("ser_fallbacks_total", "auto requests answered by the teacher", registry=r)
        self.errors = Counter("ser_errors_total", "Error responses, and streams refused or ended by an error, by code",
                              ["code"], registry=r)
        self.in_flight = Gauge("ser_requests_in_flight", "HTTP requests being handled", registry=r, multiprocess_mode="livesum")
        self.upload_bytes = Gauge("ser_upload_bytes_in_flight", "Request body bytes reserved (SER_MAX_INFLIGHT_BYTES)",
                                  registry=r, multiprocess_mode="livesum")
        self.model_info = Info("ser_model", "Loaded model bundles", ["role"], registry=r)
        self.streams_open = Gauge("ser_streams_open", "Open /stream WebSocket streams", registry=r, multiprocess_mode="livesum")
        self.stream_windows = Counter("ser_stream_windows_total", "Window events sent on /stream, by answering model",
                                      ["model"], registry=r)
        self.stream_event_lag = Histogram(
            "ser_stream_event_lag_seconds", "From the arrival of a window's last sample to sending its event",
            buckets=LATENCY_BUCKETS, registry=r)
        self.stream_closes = Counter("ser_stream_closes_total", "Closed /stream streams, by WebSocket close code",
                                     ["code"], registry=r)

    def exposition(self) -> bytes:
        """The text a scrape gets. Under `ser serve --workers N` (service/workers.py) the counts of
        every worker, summed (the gauges too: what is in flight in all of them); the model info,
        which prometheus_client's multiprocess mode does not carry, is this worker's, the same in each."""
        folder = os.environ.get(MULTIPROC_DIR_ENV)
        if not folder:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=folder)
        registry.register(self.model_info)
        return generate_latest(registry)
