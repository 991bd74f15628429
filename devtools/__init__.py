"""Plumbing that tests, benchmarks and long-running checks share; nothing here is a test, and
`service/` never imports it.

    data     where the shared corpora and the sample RAVDESS clip are
    audio    generated speech-like audio, encoded in any format; hand-made WAV headers
    http     raw HTTP requests over a socket (malformed framing reaches the server unchanged)
    server   a server on a free 127.0.0.1 port: started, waited for until ready, stopped
    process  a process's CPU time and memory (psutil), the one place they are read
    hostile  the generated corpus of hostile requests (`python -m devtools.hostile`)
    nonspeech  the fixed non-speech set the speech gate must refuse (silence, noise, tones, DTMF, chords)

Run from the repository root (`python -m devtools.hostile`, `python -m benchmarks.load`), so
`devtools` imports without any change to sys.path. It needs the dev extras (httpx, psutil):
`pip install -e '.[dev]'`.
"""
