"""What the tests, the benchmarks and the long-running checks share; nothing here is a test.

    data       where the shared corpora and the sample RAVDESS clip are
    audio      generated speech-like audio, encoded in any format; hand-made WAV headers
    bundles    tiny real ONNX bundles and tiny transformers teachers
    corpora    tiny generated corpora (real audio files) and records
    client     the app in-process: a TestClient with the given bundles and settings
    server     `ser serve` in a subprocess, waiting until it is ready, its memory from /proc
    http       raw HTTP requests over a socket (malformed framing reaches the server unchanged)
    hostile    the generated corpus of hostile requests (`python -m tests.support.hostile`)
    prometheus a real Prometheus server on a free port
    fuzz       the long fuzz run of the decoder (`python -m tests.support.fuzz`)
    openapi_examples   writes the OpenAPI examples from a real clip (`python -m tests.support.openapi_examples`)

Run the tools from the repository root (`python -m tests.support.NAME`), so `tests` imports
without any change to sys.path.
"""
