"""A long fuzz run of the decoder and the upload path, outside the test suite.

    python -m tests.support.fuzz [--minutes 10] [--examples 5000] [--out fuzz-findings]

Two parts. (1) The hypothesis properties of tests/service/test_fuzz.py with --examples
examples each instead of the suite's 60. (2) A crash hunt the properties cannot do: a
mutation loop over valid WAV/FLAC/OGG/MP3 files that decodes each input in a child
process, so that a crash of the native decoder (a segfault in libsndfile) is caught, the
input that caused it saved under --out, and the loop restarted. Prints what it found.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from devtools.audio import encode, voice

ROOT = Path(__file__).resolve().parents[2]

# Valid files of every format the decoder reads: what the properties and the crash hunt mutate.
SEEDS = {
    "wav16": encode(voice(0.5), 16_000, "WAV", "PCM_16"),
    "wavf": encode(voice(0.5, 8_000, 2), 8_000, "WAV", "FLOAT"),
    "flac": encode(voice(0.5, 44_100), 44_100, "FLAC"),
    "vorbis": encode(voice(0.5), 16_000, "OGG", "VORBIS"),
    "opus": encode(voice(0.5, 48_000), 48_000, "OGG", "OPUS"),
    "mp3": encode(voice(0.5), 16_000, "MP3", "MPEG_LAYER_III"),
}

# Run in a child process from the repository root, so a native crash kills only the child.
CHILD = r"""
import random, sys
from service.audio import AudioError, load_audio
from tests.support.fuzz import SEEDS
rng = random.Random(int(sys.argv[1]))
current = sys.argv[2]
seeds = list(SEEDS.values())
n = 0
while True:
    data = bytearray(rng.choice(seeds))
    for _ in range(rng.randint(1, 8)):
        pos = rng.randrange(len(data)) if data else 0
        op = rng.random()
        if op < 0.5:
            data[pos:pos + 1] = bytes([rng.randrange(256)])
        elif op < 0.7:
            del data[pos:pos + rng.randint(1, 2048)]
        elif op < 0.85:
            data[pos:pos] = data[pos:pos + rng.randint(1, 2048)]
        else:
            data[pos:pos + 4] = rng.choice([b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\x7f\xff\xff\xff", b"\x80\x00\x00\x00"])
    with open(current, "wb") as f:
        f.write(data)
    try:
        load_audio(bytes(data), max_duration_s=60)
    except AudioError:
        pass
    n += 1
    if n % 500 == 0:
        print(n, flush=True)
"""


def crash_hunt(seconds: float, out: Path) -> tuple[int, list[Path]]:
    out.mkdir(parents=True, exist_ok=True)
    current, crashes, decoded, seed = out / "current.bin", [], 0, 0
    stop = time.monotonic() + seconds
    while time.monotonic() < stop:
        seed += 1
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(seed), str(current)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        try:
            stdout, stderr = child.communicate(timeout=max(1.0, stop - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            stdout, stderr = child.communicate()
            decoded += _count(stdout)
            break
        decoded += _count(stdout)
        saved = out / f"crash-{seed}-rc{child.returncode}.bin"
        current.rename(saved)
        crashes.append(saved)
        print(f"child died with status {child.returncode} (seed {seed}); input saved to {saved}\n{stderr[-2000:]}")
    return decoded, crashes


def _count(stdout: str) -> int:
    lines = stdout.split()
    return int(lines[-1]) if lines else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10, help="length of the crash hunt")
    ap.add_argument("--examples", type=int, default=5000, help="hypothesis examples per property")
    ap.add_argument("--out", type=Path, default=Path("fuzz-findings"))
    args = ap.parse_args()
    env = {**os.environ, "SER_FUZZ_EXAMPLES": str(args.examples)}
    t0 = time.monotonic()
    props = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                            "tests/service/test_fuzz.py"], cwd=ROOT, env=env)
    print(f"hypothesis properties, {args.examples} examples each: "
          f"{'passed' if props.returncode == 0 else 'FAILED'} in {time.monotonic() - t0:.0f} s")
    decoded, crashes = crash_hunt(args.minutes * 60, args.out)
    print(f"crash hunt: {decoded} mutated files decoded in {args.minutes:g} min, {len(crashes)} crashes")
    return 1 if crashes or props.returncode else 0


if __name__ == "__main__":
    sys.exit(main())
