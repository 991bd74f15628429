#!/usr/bin/env bash
# Smoke-test the serving image end to end: build it, run it with one CPU, wait for /readyz,
# POST a real clip, check the answer has a label, stream it to /stream, wait for Docker's HEALTHCHECK to say
# healthy, stop it with SIGTERM (docker stop) and report the image size.
#
#   scripts/docker-smoke.sh                         # on ser-base:bookworm (built by docker-base.sh if missing)
#   BASE_IMAGE=python:3.11-slim scripts/docker-smoke.sh
#
# Environment: BASE_IMAGE (default ser-base:bookworm), IMAGE (default ser:smoke), NO_CACHE (when
# set, docker build --no-cache), PORT (default 18000), CLIP (default SAMPLE_CLIP of
# scripts/docker-lib.sh).
#
# The image serves the committed models/student; without it (or while an export rewrites
# it) there is nothing to build.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/docker-lib.sh

BASE_IMAGE=${BASE_IMAGE:-ser-base:bookworm}
IMAGE=${IMAGE:-ser:smoke}
PORT=${PORT:-18000}
CLIP=${CLIP:-$SAMPLE_CLIP}
NAME=ser-smoke-$$

say() { printf '\n== %s\n' "$*"; }
fail() { echo "SMOKE FAILED: $*" >&2; docker logs "$NAME" 2>&1 | tail -30 >&2 || true; exit 1; }

cleanup() { docker rm -f "$NAME" >/dev/null 2>&1 || true; }
trap cleanup EXIT

# -- docker daemon -------------------------------------------------------------------------
ensure_docker
if [ "$BASE_IMAGE" = ser-base:bookworm ] && ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    say "building $BASE_IMAGE (scripts/docker-base.sh)"
    scripts/docker-base.sh
fi

# -- build context -------------------------------------------------------------------------
if [ ! -f models/student/bundle.json ]; then
    echo "models/student has no bundle.json (restore it: git checkout models/; or an export is in progress); not building" >&2
    exit 1
fi

say "docker build --build-arg BASE_IMAGE=$BASE_IMAGE -t $IMAGE"
t0=$(date +%s)
docker build --force-rm ${NO_CACHE:+--no-cache} --network host --build-arg BASE_IMAGE="$BASE_IMAGE" -t "$IMAGE" .
echo "build took $(( $(date +%s) - t0 )) s"

say "static checks"
uid=$(docker run --rm "$IMAGE" id -u)
[ "$uid" != 0 ] || fail "the image runs as root"
echo "runs as uid $uid"
docker run --rm "$IMAGE" python -c "import importlib.util as u, sys; sys.exit(u.find_spec('torch') is not None)" \
    || fail "torch is installed in the serving image"
echo "no torch"

# -- run -----------------------------------------------------------------------------------
say "docker run --cpus 1 on port $PORT"
t_run=$(date +%s.%N)
docker run -d --name "$NAME" --network host --cpus 1 \
    -e SER_INTRA_OP_THREADS=1 -e SER_MAX_CONCURRENCY=2 -e HEALTHCHECK_PORT="$PORT" \
    "$IMAGE" ser serve --host 127.0.0.1 --port "$PORT" >/dev/null
base=http://127.0.0.1:$PORT
wait_ready "$base" "$NAME" 90 "$t_run" || fail "the container did not become ready"
echo "time to ready: $(elapsed "$t_run") s from docker run to /readyz 200"

if [ -f "$CLIP" ]; then
    say "POST $CLIP"
    body=$(curl -fsS -F "file=@$CLIP" "$base/predict")
else
    say "$CLIP not found: POST a generated 2 s tone"
    body=$(python3 -c 'import io, math, struct, sys, wave
b = io.BytesIO(); w = wave.open(b, "wb"); w.setnchannels(1); w.setsampwidth(2); w.setframerate(16000)
w.writeframes(b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * 220 * i / 16000))) for i in range(32000)))
w.close(); sys.stdout.buffer.write(b.getvalue())' | curl -fsS --data-binary @- -H 'Content-Type: audio/wav' "$base/predict")
fi
echo "$body"
label=$(printf '%s' "$body" | python3 -c 'import json, sys; d = json.load(sys.stdin); print(d["label"]) if d.get("label") in ("angry", "disgust", "fear", "happy", "sad", "neutral") else sys.exit(1)') \
    || fail "no valid label in the answer"
echo "label: $label"
# grep without -q reads to the end: -q would close the pipe early and fail curl (pipefail).
curl -fsS "$base/metrics" | grep '^ser_predictions_total{' >/dev/null || fail "/metrics has no ser_predictions_total"

say "WebSocket /stream (ser stream in the container)"
in_ctr=/tmp/stream-clip.wav
if [ -f "$CLIP" ]; then in_ctr=/tmp/$(basename "$CLIP"); docker cp "$CLIP" "$NAME:$in_ctr" >/dev/null; else
    docker exec "$NAME" python -c 'import numpy as np, soundfile as sf
sf.write("/tmp/stream-clip.wav", 0.3 * np.sin(2 * np.pi * 220 * np.arange(64000) / 16000), 16000)'
fi
last=$(docker exec "$NAME" ser stream "$in_ctr" --speed 0 --json --url "$base" | tail -1)
printf '%s' "$last" | python3 -c 'import json, sys; d = json.load(sys.stdin); sys.exit(d["type"] != "summary" or d["windows"] < 1)' \
    || fail "no summary with windows from /stream: $last"
echo "$last"

say "waiting for the HEALTHCHECK"
t_health=$(date +%s.%N)
wait_healthy "$NAME" 90 "$t_health" || fail "the HEALTHCHECK did not pass"
echo "health: healthy after $(elapsed "$t_health") s"

say "docker stop (SIGTERM)"
t0=$(date +%s)
docker stop -t 35 "$NAME" >/dev/null
code=$(docker inspect -f '{{.State.ExitCode}}' "$NAME")
echo "stopped in $(( $(date +%s) - t0 )) s, exit code $code"
case "$code" in 0|143) ;; *) fail "exit code $code after SIGTERM (137 = it had to be killed)";; esac
docker logs "$NAME" 2>&1 | tail -5

size=$(docker image inspect -f '{{.Size}}' "$IMAGE")
say "image $IMAGE on $BASE_IMAGE: $(( size / 1000000 )) MB"
echo "SMOKE OK"
