#!/bin/sh
# CI's local images, from Debian packages: no container registry is reachable in CI.
#   deploy/containers/ci/build-images.sh [base|services|all] [PREFIX]    (all, virusgame-ci)
# - PREFIX/base: Debian 12 (minbase) with Python 3.11 and venv, what the app's Dockerfile needs
#   of python:3.11-slim (BASE=PREFIX/base). It trusts this machine's own CA certificates
#   (/usr/local/share/ca-certificates): HTTPS from containers here goes through a
#   TLS-intercepting egress. The real python:3.11-slim needs no such step.
# - PREFIX/postgres, PREFIX/redis, PREFIX/nginx: stand-ins for the official images
#   (Dockerfile beside this script), built on PREFIX/base.
# Uses $DOCKER (default: docker) and DOCKER_HOST, with the classic builder: a docker client
# on PATH may lack buildx.
set -eu
what=${1:-all}
prefix=${2:-virusgame-ci}
docker=${DOCKER:-docker}
here=$(cd "$(dirname "$0")" && pwd)
export DOCKER_BUILDKIT=0

base() {
    mmdebstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
        --dpkgopt='path-exclude=/usr/share/man/*' \
        --dpkgopt='path-exclude=/usr/share/doc/*' \
        --dpkgopt='path-include=/usr/share/doc/*/copyright' \
        --dpkgopt='path-exclude=/usr/share/locale/*' \
        --customize-hook='copy-in /usr/local/share/ca-certificates /usr/local/share' \
        --customize-hook='chroot "$1" update-ca-certificates >/dev/null' \
        bookworm - \
        'deb http://deb.debian.org/debian bookworm main' \
        'deb http://deb.debian.org/debian bookworm-updates main' \
        'deb http://deb.debian.org/debian-security bookworm-security main' \
        | "$docker" import --change 'CMD ["/bin/bash"]' - "$prefix/base"
}

services() {
    for target in postgres redis nginx; do
        "$docker" build -q --build-arg "BASE=$prefix/base" --target "$target" -t "$prefix/$target" "$here"
    done
}

case $what in
    base) base ;;
    services) services ;;
    all) base && services ;;
    *) echo "usage: $0 [base|services|all] [PREFIX]" >&2; exit 2 ;;
esac
