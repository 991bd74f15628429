#!/usr/bin/env bash
# Build a local Python base image, ser-base:bookworm, from Debian bookworm with debootstrap,
# for machines that cannot pull python:3.11-slim from Docker Hub. Then:
#   docker build --network host --build-arg BASE_IMAGE=ser-base:bookworm -t ser:latest .
#
# The image has Debian's python3.11 with a virtual environment at /opt/venv first on PATH, so
# `python` and `pip` work as in the official image (Debian's own pip refuses system-wide
# installs, PEP 668). This machine's CA bundle (/etc/ssl/certs/ca-certificates.crt) is copied
# in and PIP_CERT points at it, so pip also works behind a TLS-intercepting proxy.
#
# Needs root and Debian/Ubuntu; installs debootstrap and docker.io with apt when missing.
# Environment: IMAGE (default ser-base:bookworm), DEBIAN_MIRROR (default
# http://deb.debian.org/debian), SECURITY_MIRROR (default http://deb.debian.org/debian-security),
# CA_BUNDLE (default /etc/ssl/certs/ca-certificates.crt).
set -euo pipefail

IMAGE=${IMAGE:-ser-base:bookworm}
SUITE=bookworm
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${SECURITY_MIRROR:-http://deb.debian.org/debian-security}
CA_BUNDLE=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}

if [ "$(id -u)" -ne 0 ]; then
    echo "error: debootstrap needs root" >&2
    exit 1
fi
[ -f "$CA_BUNDLE" ] || { echo "error: CA bundle $CA_BUNDLE not found" >&2; exit 1; }

. "$(dirname "$0")/docker-lib.sh"
command -v debootstrap >/dev/null 2>&1 || apt_install debootstrap
ensure_docker

work=$(mktemp -d /var/tmp/ser-base.XXXXXX)
rootfs=$work/rootfs
cleanup() {
    for m in proc sys dev/pts dev; do
        mountpoint -q "$rootfs/$m" 2>/dev/null && umount -l "$rootfs/$m" || true
    done
    rm -rf --one-file-system "$work"
}
trap cleanup EXIT

echo "debootstrap $SUITE from $DEBIAN_MIRROR into $rootfs"
debootstrap --variant=minbase --include=python3.11,python3-venv,python3-pip,ca-certificates \
    "$SUITE" "$rootfs" "$DEBIAN_MIRROR"

# Security and point-release updates: debootstrap only knows the release itself.
cat > "$rootfs/etc/apt/sources.list" <<EOF
deb $DEBIAN_MIRROR $SUITE main
deb $DEBIAN_MIRROR $SUITE-updates main
deb $SECURITY_MIRROR $SUITE-security main
EOF
cp /etc/resolv.conf "$rootfs/etc/resolv.conf"
mount -t proc proc "$rootfs/proc"
chroot "$rootfs" /bin/sh -euc '
    export DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8
    apt-get update -q
    apt-get -y -q -o Dpkg::Options::=--force-confold upgrade
    apt-get clean
    python3 -m venv /opt/venv                      # pip from ensurepip, no network
    /opt/venv/bin/python -m pip --version
'
umount "$rootfs/proc"

# This machine's CA bundle (with any proxy CA in it), after update-ca-certificates has run.
install -m 0644 "$CA_BUNDLE" "$rootfs/etc/ssl/certs/ca-certificates.crt"
# Slim it down: package lists, caches, docs, manuals, the host's resolver.
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb \
       "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
       "$rootfs"/var/log/*.log "$rootfs"/var/log/apt/* "$rootfs"/tmp/* "$rootfs"/root/.cache
: > "$rootfs/etc/resolv.conf"
find "$rootfs/opt/venv" "$rootfs/usr/lib/python3.11" -name __pycache__ -prune -exec rm -rf {} + 2>/dev/null || true

echo "importing $IMAGE"
tar --numeric-owner -C "$rootfs" -c . | docker import \
    --change 'ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV VIRTUAL_ENV=/opt/venv' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
    --change 'ENV PIP_DISABLE_PIP_VERSION_CHECK=1' \
    --change 'CMD ["python"]' \
    - "$IMAGE"

docker run --rm "$IMAGE" sh -c 'python --version && pip --version && echo "PIP_CERT=$PIP_CERT"'
docker image ls "$IMAGE"
