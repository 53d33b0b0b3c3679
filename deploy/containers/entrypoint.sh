#!/bin/sh
# The image's entrypoint. For daphne (the default command) it adds where to listen:
# - DAPHNE_SOCKET set (compose.yaml): that unix socket, with --proxy-headers, as the systemd
#   unit does: only nginx reaches the socket, so its X-Forwarded-For can be trusted;
# - otherwise TCP port DAPHNE_PORT (8000) on every address, without --proxy-headers: a
#   published port must not let a client choose its own address (and dodge the rate limits);
# and --websocket-max-message-size when VIRUS_WS_MAX_MESSAGE_SIZE is set (the value
# `manage.py check` holds the snapshot size to, viruses.E001). Other commands run as given.
set -eu
if [ "${1:-}" = daphne ]; then
    if [ -n "${DAPHNE_SOCKET:-}" ]; then
        # Left behind by a predecessor that was killed: Twisted would refuse the socket's lock,
        # which names a pid this container's daphne gets again. The name is this service's alone.
        rm -f "$DAPHNE_SOCKET" "$DAPHNE_SOCKET.lock"
        set -- "$@" --unix-socket "$DAPHNE_SOCKET" --proxy-headers
    else
        set -- "$@" -b 0.0.0.0 -p "${DAPHNE_PORT:-8000}"
    fi
    if [ -n "${VIRUS_WS_MAX_MESSAGE_SIZE:-}" ]; then
        set -- "$@" --websocket-max-message-size "$VIRUS_WS_MAX_MESSAGE_SIZE"
    fi
fi
exec "$@"
