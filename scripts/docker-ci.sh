#!/usr/bin/env bash
# CI for the deployment, from a fresh clone on a fresh Debian/Ubuntu machine (as root):
#   1. a Docker engine (docker.io installed and dockerd started when missing) and compose;
#   2. the base: python:3.11-slim when it can be pulled, else the local Debian base
#      (scripts/docker-base.sh, reused for 7 days: it only changes with Debian's updates);
#   3. scripts/docker-smoke.sh: build (no layer cache), no root, no torch, `docker run` to
#      ready (timed), a real clip, the HEALTHCHECK, SIGTERM; then the image size against the
#      base (at most BUDGET_MB more);
#   4. `api` up through docker-compose.yml (read-only root, models mounted): healthy, real
#      clips, /metrics;
#   5. promtool on the Prometheus config and rules; a real Prometheus with that config pointed
#      at the container; under traffic, every dashboard and alert query (scripts/check_queries.py);
#   6. `compose stop` while a long request is in flight: it must complete with 200.
#
#   scripts/docker-ci.sh
#
# Environment: BASE_IMAGE (skips the choice in step 2), DOCKER_CACHE (when set, reuse build
# layers), IMAGE (default speech-emotion-distill:ci), CLIP (default SAMPLE_CLIP of
# scripts/docker-lib.sh; a generated tone when missing),
# BUDGET_MB (default 250), PYTHON (default .venv/bin/python, else python3; needs PyYAML).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/docker-lib.sh

IMAGE=${IMAGE:-speech-emotion-distill:ci}
CLIP=${CLIP:-$SAMPLE_CLIP}
BUDGET_MB=${BUDGET_MB:-250}
PROJECT=ser-ci-$$
if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
if ! "$PYTHON" -c 'import yaml' 2>/dev/null; then   # scripts/check_queries.py reads the rules
    command -v /usr/bin/python3 >/dev/null && /usr/bin/python3 -c 'import yaml' 2>/dev/null || apt_install python3 python3-yaml
    PYTHON=/usr/bin/python3
fi
t_start=$(date +%s.%N)
tmp=$(mktemp -d /tmp/ser-docker-ci.XXXXXX)
prom_pid=""; traffic_pid=""; previous=""

say() { printf '\n== %s\n' "$*"; }
fail() {
    echo "DOCKER CI FAILED: $*" >&2
    [ -n "${COMPOSE:-}" ] && $COMPOSE -p "$PROJECT" logs --no-color --tail 30 api >&2 2>/dev/null || true
    [ -f "$tmp/prometheus.log" ] && tail -20 "$tmp/prometheus.log" >&2
    exit 1
}
cleanup() {
    for pid in $traffic_pid $prom_pid; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
    [ -n "${COMPOSE:-}" ] && SER_IMAGE=$IMAGE $COMPOSE -p "$PROJECT" down -v --remove-orphans >/dev/null 2>&1 || true
    rm -rf "$tmp"
    # The last run's image, untagged by this run's build: drop it so runs do not pile up on the disk.
    if [ -n "$previous" ] && [ "$previous" != "$(docker image inspect -f '{{.Id}}' "$IMAGE" 2>/dev/null)" ]; then
        docker rmi "$previous" >/dev/null 2>&1 || true
    fi
    stop_dockerd
}
trap cleanup EXIT

# -- 1, 2: engine and base -------------------------------------------------------------------
say "docker engine, compose, promtool"
ensure_docker
ensure_compose
bash scripts/install-test-deps.sh >/dev/null
command -v promtool >/dev/null || fail "promtool missing after scripts/install-test-deps.sh"

if [ -z "${BASE_IMAGE:-}" ]; then
    if timeout 60 docker pull -q python:3.11-slim >/dev/null 2>&1; then
        BASE_IMAGE=python:3.11-slim
    else
        BASE_IMAGE=ser-base:bookworm
        created=$(docker image inspect -f '{{.Created}}' "$BASE_IMAGE" 2>/dev/null || echo "")
        if [ -z "$created" ] || [ $(( $(date +%s) - $(date -d "$created" +%s) )) -gt $(( 7 * 86400 )) ]; then
            say "python:3.11-slim cannot be pulled: building $BASE_IMAGE (scripts/docker-base.sh)"
            scripts/docker-base.sh
        else
            say "python:3.11-slim cannot be pulled: reusing $BASE_IMAGE built $created"
        fi
    fi
fi
echo "base image: $BASE_IMAGE"

# -- 3: build and smoke-test the image; size budget ------------------------------------------
smoke_port=$(free_port)
previous=$(docker image inspect -f '{{.Id}}' "$IMAGE" 2>/dev/null || true)
# No layer cache unless asked (DOCKER_CACHE=1): every run proves the from-scratch pip install.
NO_CACHE=$([ -n "${DOCKER_CACHE:-}" ] || echo 1) BASE_IMAGE=$BASE_IMAGE IMAGE=$IMAGE CLIP=$CLIP PORT=$smoke_port \
    scripts/docker-smoke.sh

docker run --rm --entrypoint sleep "$IMAGE" 0 || fail "no sleep in the image (the Kubernetes preStop hook runs it)"
base_size=$(docker image inspect -f '{{.Size}}' "$BASE_IMAGE")
size=$(docker image inspect -f '{{.Size}}' "$IMAGE")
added=$(( (size - base_size) / 1000000 ))
say "image size: $(( size / 1000000 )) MB, $added MB over $BASE_IMAGE ($(( base_size / 1000000 )) MB); budget $BUDGET_MB MB"
docker history --format '  {{.Size}}\t{{.CreatedBy}}' "$IMAGE" | grep -v '^  0B' | cut -c1-110
[ "$added" -le "$BUDGET_MB" ] || fail "the image adds $added MB over its base, more than $BUDGET_MB MB"

# -- 4: api through docker-compose.yml -------------------------------------------------------
port=$(free_port)
export SER_IMAGE=$IMAGE SER_PORT=$port BASE_IMAGE
export GRAFANA_ADMIN_PASSWORD=${GRAFANA_ADMIN_PASSWORD:-ci-$RANDOM$RANDOM}   # compose requires one, even for api alone
base=http://127.0.0.1:$port
say "$COMPOSE -p $PROJECT up -d api (port $port)"
t_up=$(date +%s.%N)
$COMPOSE -p "$PROJECT" up -d --no-build api
cid=$($COMPOSE -p "$PROJECT" ps -q api)
wait_ready "$base" "$cid" 90 "$t_up" || fail "the api did not become ready"
echo "time to ready: $(elapsed "$t_up") s from compose up to /readyz 200"
wait_healthy "$cid" 120 "$t_up" || fail "the compose healthcheck did not pass"
echo "compose healthcheck: healthy after $(elapsed "$t_up") s"
[ "$(docker inspect -f '{{.HostConfig.ReadonlyRootfs}} {{.HostConfig.NanoCpus}}' "$cid")" = "true 2000000000" ] \
    || fail "api is not read-only with 2 CPUs"

if [ -f "$CLIP" ]; then clip=$CLIP; else
    clip=$tmp/tone.wav
    docker run --rm --entrypoint python "$IMAGE" -c 'import io, sys, numpy as np, soundfile as sf
t = np.arange(32000) / 16000; out = io.BytesIO()
sf.write(out, 0.3 * np.sin(2 * np.pi * 220 * t), 16000, format="WAV"); sys.stdout.buffer.write(out.getvalue())' > "$clip"
fi
for model in auto student teacher; do
    body=$(curl -fsS -F "file=@$clip" "$base/predict?model=$model") || fail "POST /predict?model=$model"
    printf '%s' "$body" | "$PYTHON" -c 'import json, sys
d = json.load(sys.stdin); m = sys.argv[1]
assert d["label"] in ("angry", "disgust", "fear", "happy", "sad", "neutral"), d
assert abs(sum(d["probabilities"].values()) - 1) < 1e-3, d
assert m == "auto" or d["model"]["role"] == m, d
print("  model=%s: %s %.2f by the %s %s" % (m, d["label"], d["confidence"], d["model"]["role"], d["model"]["name"]))' "$model" \
        || fail "bad answer for model=$model: $body"
done
code=$(curl -sS -o "$tmp/bad.json" -w '%{http_code}' --data-binary 'not audio' -H 'Content-Type: audio/wav' "$base/predict")
grep -q '"code":"unsupported_audio"' "$tmp/bad.json" && [ "$code" = 415 ] || fail "bad upload: $code $(cat "$tmp/bad.json")"
echo "  bad upload: 415 unsupported_audio"
curl -fsS "$base/metrics" > "$tmp/metrics.txt"
for m in 'ser_predictions_total{' 'ser_request_duration_seconds_bucket{' 'ser_inference_duration_seconds_bucket{' \
         'ser_errors_total{code="unsupported_audio"}' 'ser_model_info{'; do
    grep -qF "$m" "$tmp/metrics.txt" || fail "/metrics has no $m"
done
echo "  /metrics: predictions, latency histograms, errors by code, model info"

# -- 5: promtool, a real Prometheus, every query ---------------------------------------------
say "promtool"
promtool check config deploy/prometheus/prometheus.yml
promtool check rules deploy/prometheus/rules/ser-alerts.yml
promtool test rules deploy/prometheus/rules/ser-alerts.test.yml

say "Prometheus with deploy/prometheus/prometheus.yml, pointed at the container"
mkdir -p "$tmp/prometheus"
cp -r deploy/prometheus/. "$tmp/prometheus/"
sed -i "s|\"api:8000\"|\"127.0.0.1:$port\"|" "$tmp/prometheus/prometheus.yml"
grep -q "127.0.0.1:$port" "$tmp/prometheus/prometheus.yml" || fail "could not point the config at the container"
prom_port=$(free_port)
prometheus --config.file="$tmp/prometheus/prometheus.yml" --storage.tsdb.path="$tmp/tsdb" \
    --web.listen-address=127.0.0.1:$prom_port --log.level=warn > "$tmp/prometheus.log" 2>&1 &
prom_pid=$!
# Traffic all along (every model choice, a bad upload and a live stream), so rate() over the
# 15 s scrapes has data. The stream's client runs in the container, its clip on the /tmp tmpfs.
in_ctr=/tmp/stream.${clip##*.}
docker exec -i "$cid" sh -c "cat > $in_ctr" < "$clip" || fail "could not copy the clip into the api container"
( while :; do
    for model in auto student teacher; do curl -s -o /dev/null -F "file=@$clip" "$base/predict?model=$model"; done
    curl -s -o /dev/null --data-binary 'not audio' -H 'Content-Type: audio/wav' "$base/predict"
    docker exec "$cid" ser stream "$in_ctr" --speed 0 --url http://127.0.0.1:8000 >/dev/null 2>&1
    sleep 1
  done ) &
traffic_pid=$!
t_q=$(date +%s.%N)
"$PYTHON" scripts/check_queries.py --prometheus "http://127.0.0.1:$prom_port" --wait 150 \
    || fail "the dashboard or alert queries do not work against the container"
echo "(after $(elapsed "$t_q") s of scraping)"
kill "$traffic_pid" "$prom_pid"; wait "$traffic_pid" "$prom_pid" 2>/dev/null || true; traffic_pid=""; prom_pid=""

# -- 6: the SIGTERM drain in the container ---------------------------------------------------
say "compose stop while a request is in flight"
docker run --rm -i --entrypoint python "$IMAGE" -c 'import io, sys, numpy as np, soundfile as sf
x, sr = sf.read(io.BytesIO(sys.stdin.buffer.read()), dtype="float32", always_2d=True)
x = np.tile(x.mean(axis=1), int(np.ceil(59 * sr / len(x))))[: 59 * sr]
out = io.BytesIO(); sf.write(out, x, sr, format="FLAC"); sys.stdout.buffer.write(out.getvalue())' \
    < "$clip" > "$tmp/long.flac"
( code=$(curl -sS -o "$tmp/drain.json" -w '%{http_code}' -F "file=@$tmp/long.flac" "$base/predict?model=teacher")
  echo "$code $(date +%s.%N)" > "$tmp/drain.done" ) &
drain_pid=$!
# In flight: the request being answered plus the /metrics request that asks.
until curl -fsS "$base/metrics" | grep -E '^ser_requests_in_flight [2-9]' >/dev/null; do
    [ -f "$tmp/drain.done" ] && fail "the long request finished before the stop: $(cat "$tmp/drain.done")"
    sleep 0.05
done
t_stop=$(date +%s.%N)
$COMPOSE -p "$PROJECT" stop api
echo "compose stop took $(elapsed "$t_stop") s"
wait "$drain_pid"
read -r code t_done < "$tmp/drain.done"
exit_code=$(docker inspect -f '{{.State.ExitCode}}' "$cid")
echo "in-flight request: HTTP $code, answered $(awk -v a="$t_done" -v b="$t_stop" 'BEGIN { printf "%.1f", a - b }') s after the stop began; exit code $exit_code"
[ "$code" = 200 ] && grep -q '"label"' "$tmp/drain.json" || fail "the in-flight request failed: $code $(cat "$tmp/drain.json")"
awk -v a="$t_done" -v b="$t_stop" 'BEGIN { exit !(a > b) }' || fail "the request was not in flight at the stop"
case "$exit_code" in 0|143) ;; *) fail "exit code $exit_code after SIGTERM (137: killed before the drain ended)";; esac
# One line per worker process: the one that held the request names it.
drained=$(docker logs "$cid" 2>&1 | grep '^draining:' | grep -v ' 0 open connection' | tail -1)
echo "api log: $drained"
[ -n "$drained" ] || fail "the api did not log a drain with the request open"

say "DOCKER CI OK in $(elapsed "$t_start") s: image $(( size / 1000000 )) MB (+$added MB over $BASE_IMAGE)"
