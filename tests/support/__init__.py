"""What the tests share (fixtures' factories and long checks); nothing here is a test. What the
benchmarks share too lives in devtools/ (servers, raw HTTP, generated audio, process memory).

    bundles    tiny real ONNX bundles and tiny transformers teachers
    corpora    tiny generated corpora (real audio files) and records
    client     the app in-process: a TestClient with the given bundles and settings
    prometheus a real Prometheus server on a free port
    browser    the headless Chromium the page tests drive
    fuzz       the long fuzz run of the decoder (`python -m tests.support.fuzz`)
    openapi_examples   writes the OpenAPI examples from a real clip (`python -m tests.support.openapi_examples`)
    whisper    the converted Whisper encoder checked against CTranslate2

Run the tools from the repository root (`python -m tests.support.NAME`), so `tests` imports
without any change to sys.path.
"""
