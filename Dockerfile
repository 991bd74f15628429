# The serving image: the FastAPI service on onnxruntime with the bundles in models/.
# Only the `serve` extras are installed (no torch), at the versions and hashes of requirements/serve.txt.
#
#   docker build -t ser .                                      # on python:3.11-slim
#   docker build --network host --build-arg BASE_IMAGE=ser-base:bookworm -t ser .
#                                                              # on the local base (scripts/docker-base.sh)
#   docker run --rm -p 8000:8000 ser
#
# Behind a TLS-intercepting proxy, give pip the proxy's CA for the build (it is not kept in
# the image): --build-arg CA_CERT="$(cat proxy-ca.crt)", or --build-arg PIP_CERT=/path/in/base.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

# Optional, empty by default: only used when given.
ARG CA_CERT=""
ARG PIP_CERT=""

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

COPY pyproject.toml README.md /tmp/src/
COPY requirements/serve.txt /tmp/src/requirements/
COPY service/ /tmp/src/service/
RUN set -eu; \
    if [ -n "$CA_CERT" ]; then \
        printf '%s\n' "$CA_CERT" > /tmp/build-ca.crt; export PIP_CERT=/tmp/build-ca.crt; \
    fi; \
    if [ -z "${PIP_CERT:-}" ]; then unset PIP_CERT; fi; \
    pip install --require-hashes -r /tmp/src/requirements/serve.txt; \
    pip install --no-deps /tmp/src; \
    if pip show torch >/dev/null 2>&1; then echo "torch must not be in the serving image" >&2; exit 1; fi; \
    rm -rf /tmp/src /tmp/build-ca.crt; \
    groupadd --gid 10001 ser; \
    useradd --uid 10001 --gid 10001 --home-dir /app --no-create-home --shell /usr/sbin/nologin ser

WORKDIR /app
COPY models/ /app/models/

# The package is installed in site-packages, with no models/ beside it: SER_MODELS_DIR names
# the folder of the default bundles (student/, teacher/).
# onnxruntime sizes its thread pools from the host's cores, not the container's CPU limit,
# so the threads are always set; `ser serve` starts a process per CPU of the limit (--cpus).
ENV SER_MODELS_DIR=/app/models \
    SER_INTRA_OP_THREADS=1 \
    SER_INTER_OP_THREADS=1 \
    SER_MAX_CONCURRENCY=2 \
    OMP_NUM_THREADS=1 \
    HEALTHCHECK_PORT=8000

USER 10001:10001
EXPOSE 8000

# No curl in slim images: python's urllib. A non-2xx /readyz raises, so the check fails.
# HEALTHCHECK_PORT follows the port when CMD is overridden with another --port.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/readyz' % os.environ.get('HEALTHCHECK_PORT', '8000'), timeout=2)"

# Exec form: `ser` is PID 1 and gets docker stop's SIGTERM; in-flight requests get up to 30 s
# to finish, so stop with `docker stop -t 35`.
CMD ["ser", "serve", "--host", "0.0.0.0", "--port", "8000"]
