# The game's image: daphne with the deploy kit's flags (the default command), and the same
# image runs the spawner and the migrations (compose.yaml; docs/production.md, "With containers").
#   docker build -t virusgame .
# BASE: any Debian-based image with Python 3.11 and `python3 -m venv` (CI builds one from
# Debian packages: deploy/containers/ci/build-images.sh).
ARG BASE=python:3.11-slim

FROM ${BASE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python3 -m venv /opt/venv
COPY requirements.lock /tmp/
# Wheels only: the slim base has no compiler, and a package that needs one should fail here.
RUN /opt/venv/bin/pip install --quiet --require-hashes --only-binary :all: -r /tmp/requirements.lock
WORKDIR /srv/virusgame
COPY . .
# collectstatic reads the settings, which insist on a secret key; this one never leaves the stage.
RUN DJANGO_SECRET_KEY=collectstatic-only-not-a-secret DJANGO_STATIC_ROOT=/srv/virusgame/staticfiles \
        /opt/venv/bin/python manage.py collectstatic --no-input -v0 \
    && /opt/venv/bin/python -m compileall -q virusgame viruses

FROM ${BASE}
LABEL org.opencontainers.image.title="virusgame" \
      org.opencontainers.image.description="Covid-Clicker on Django Channels: daphne, the spawner and the migrations"
# A fixed uid, so volumes and Kubernetes' runAsNonRoot see the same user everywhere.
RUN groupadd --system --gid 10001 virusgame \
    && useradd --system --uid 10001 --gid virusgame --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin virusgame \
    && install -d -o virusgame -g virusgame -m 0755 /run/virusgame
# Code and packages stay owned by root: the service cannot modify them (as in the systemd kit).
COPY --from=build /opt/venv /opt/venv
COPY --from=build /srv/virusgame /srv/virusgame
WORKDIR /srv/virusgame
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DJANGO_STATIC_ROOT=/srv/virusgame/staticfiles
USER 10001:10001
# Without DAPHNE_SOCKET, daphne listens on TCP 8000 (deploy/containers/entrypoint.sh).
EXPOSE 8000
# daphne drains on SIGTERM (docs/production.md, section 4): give it VIRUS_DRAIN_TIMEOUT and a
# margin before SIGKILL (compose.yaml: stop_grace_period; docker stop -t 20).
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=5s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "/srv/virusgame/deploy/containers/healthcheck.py"]
ENTRYPOINT ["/srv/virusgame/deploy/containers/entrypoint.sh"]
# The systemd unit's flags (deploy/systemd/virusgame@.service); the entrypoint adds where to
# listen (and --proxy-headers on a unix socket, which only nginx reaches).
CMD ["daphne", "--no-server-name", "--ping-interval", "20", "--ping-timeout", "30", \
     "--application-close-timeout", "10", "virusgame.asgi:application"]
