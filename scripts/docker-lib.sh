# Shared by the docker scripts (source it): a running Docker engine and a compose command.
#   ensure_docker    install docker.io (Debian/Ubuntu, as root) when missing; start dockerd when it
#                    is not running and set DOCKERD_PID (the caller stops it with stop_dockerd)
#   ensure_compose   set COMPOSE to "docker compose" (v2) or "docker-compose" (v1, installed when
#                    neither is there)
#   wait_ready, wait_healthy   wait for a container's /readyz, or its HEALTHCHECK, within a limit
#   SAMPLE_CLIP      the real clip the checks POST: the example shipped in examples/ (angry, RAVDESS)

DOCKERD_PID=""
SAMPLE_CLIP=examples/angry.flac

apt_install() {
    echo "installing: $*"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
}

ensure_docker() {
    if ! command -v docker >/dev/null 2>&1 || ! command -v dockerd >/dev/null 2>&1; then
        apt_install docker.io
    fi
    if docker info >/dev/null 2>&1; then
        return 0
    fi
    echo "starting dockerd (log: /tmp/dockerd.log)"
    setsid dockerd > /tmp/dockerd.log 2>&1 < /dev/null &
    DOCKERD_PID=$!
    for _ in $(seq 120); do docker info >/dev/null 2>&1 && return 0; sleep 0.5; done
    echo "error: dockerd did not start, see /tmp/dockerd.log" >&2
    return 1
}

stop_dockerd() {
    if [ -n "$DOCKERD_PID" ]; then
        kill "$DOCKERD_PID" 2>/dev/null || true
        wait "$DOCKERD_PID" 2>/dev/null || true
        DOCKERD_PID=""
    fi
}

ensure_compose() {
    if docker compose version >/dev/null 2>&1; then
        COMPOSE="docker compose"
    else
        command -v docker-compose >/dev/null 2>&1 || apt_install docker-compose
        COMPOSE="docker-compose"
    fi
    echo "compose: $($COMPOSE version 2>/dev/null | head -1)"
}

# Seconds since $1 (a `date +%s.%N` stamp), to a tenth.
elapsed() { awk -v t0="$1" -v t1="$(date +%s.%N)" 'BEGIN { printf "%.1f", t1 - t0 }'; }

# A free TCP port on 127.0.0.1.
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# Wait until $1/readyz answers 200 while container $2 runs, at most $3 s after the stamp $4.
wait_ready() {
    until curl -fsS "$1/readyz" >/dev/null 2>&1; do
        [ "$(docker inspect -f '{{.State.Running}}' "$2")" = true ] || { echo "container $2 exited" >&2; return 1; }
        [ "$(elapsed "$4" | cut -d. -f1)" -lt "$3" ] || { echo "$1/readyz not ready in $3 s" >&2; return 1; }
        sleep 0.1
    done
}

# Wait until container $1's HEALTHCHECK says healthy, at most $2 s after the stamp $3.
wait_healthy() {
    local health
    while :; do
        health=$(docker inspect -f '{{.State.Health.Status}}' "$1") || return 1
        [ "$health" != healthy ] || return 0
        [ "$health" != unhealthy ] || { echo "container $1: unhealthy" >&2; return 1; }
        [ "$(elapsed "$3" | cut -d. -f1)" -lt "$2" ] || { echo "container $1 not healthy in $2 s ($health)" >&2; return 1; }
        sleep 1
    done
}
