#!/bin/sh
# The compose stack's nginx: renders the deploy kit's site for the container, then runs the
# command (nginx in the foreground). The kit's file is the one source of truth; only what a
# container needs differs:
# - certificates in /etc/nginx/tls (fullchain.pem, privkey.pem; compose.yaml mounts TLS_DIR):
#   the kit's two servers, HTTPS on 443 and the redirect on 80, with those files;
# - no certificates: plain HTTP on 80 only (a trial, or the first start before a certificate),
#   the HTTPS server without its ssl_ lines; the redirect server is left out.
# The upstream stays as it is: the daphne services listen on the kit's unix sockets, in a
# volume mounted at /run/virusgame here too. server_name becomes "_": this nginx serves only
# the game, under whatever name DJANGO_ALLOWED_HOSTS allows.
set -eu
site=/etc/nginx/virusgame/virusgame.conf
tls=/etc/nginx/tls
out=/tmp/nginx/virusgame.conf
mkdir -p /tmp/nginx

if [ -s "$tls/fullchain.pem" ] && [ -s "$tls/privkey.pem" ]; then
    sed -e "s|/etc/letsencrypt/live/game.example.com/|$tls/|" \
        -e 's|server_name game.example.com;|server_name _;|' "$site" > "$out"
else
    echo "nginx entrypoint: no certificate in $tls: plain HTTP on port 80 only" >&2
    # Drop the top-level server block that only redirects (braces in comments do not count).
    awk '
        { code = $0; sub(/#.*/, "", code) }
        depth == 0 && code ~ /^server[ \t]*\{/ { buffer = ""; inside = 1 }
        inside { buffer = buffer $0 "\n" } !inside { print }
        { depth += gsub(/\{/, "{", code) - gsub(/\}/, "}", code) }
        inside && depth == 0 {
            if (buffer !~ /return 301 https/) printf "%s", buffer
            inside = 0
        }
    ' "$site" | sed -e 's|listen 443 ssl http2;|listen 80;|' \
        -e 's|listen \[::\]:443 ssl http2;|listen [::]:80;|' \
        -e '/^[ \t]*ssl_/d' \
        -e 's|server_name game.example.com;|server_name _;|' > "$out"
fi
# Without IPv6 in the container (Docker's default), a [::] listen would stop nginx.
if ! [ -s /proc/net/if_inet6 ]; then
    sed -i '/listen \[::\]/d' "$out"
fi
exec "$@"
