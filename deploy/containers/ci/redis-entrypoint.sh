#!/bin/sh
# The official redis image serves other containers out of the box (protected mode off).
set -eu
if [ "${1:-}" = redis-server ]; then
    set -- "$@" --protected-mode no
fi
exec "$@"
