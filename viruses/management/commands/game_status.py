import json

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db.models import Count, Max, Min
from django.utils import timezone

from viruses.models import ChangeCounter, Connection, Virus
from viruses.selectors import stale_before


class Command(BaseCommand):
    help = (
        "Show the live state of the deployment: last seq, viruses alive, and open WebSocket "
        "connections per server process (alive, or stale: a server that stopped refreshing them)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", dest="as_json", help="print JSON")

    def handle(self, *args, as_json: bool, **options):
        status = collect()
        if as_json:
            self.stdout.write(json.dumps(status, indent=2))
            return
        self.stdout.write(
            f"seq={status['seq']} viruses={status['viruses']} max_alive={status['max_alive']} "
            f"online={status['online']} stale={status['stale']}"
        )
        for server in status["servers"]:
            self.stdout.write(
                f"server={server['server']} state={server['state']} connections={server['connections']} "
                f"last_seen_s={server['last_seen_seconds_ago']}"
            )


def collect() -> dict:
    """Counts an operator wants at a glance (a handful of small queries)."""
    now = timezone.now()
    stale_limit = stale_before()
    servers = []
    rows = (
        Connection.objects.values("server")
        .annotate(connections=Count("id"), last_seen=Max("last_seen"), since=Min("connected_at"))
        .order_by("server")
    )
    for row in rows:
        alive = row["last_seen"] >= stale_limit
        servers.append(
            {
                "server": row["server"],
                "state": "alive" if alive else "stale",
                "connections": row["connections"],
                "last_seen_seconds_ago": round((now - row["last_seen"]).total_seconds(), 1),
                "oldest_connection": row["since"].isoformat(),
            }
        )
    counter = ChangeCounter.objects.filter(pk=1).first()
    return {
        "seq": counter.value if counter else 0,
        "viruses": Virus.objects.count(),
        "max_alive": settings.VIRUS_MAX_ALIVE,
        "online": sum(s["connections"] for s in servers if s["state"] == "alive"),
        "stale": sum(s["connections"] for s in servers if s["state"] == "stale"),
        "servers": servers,
    }
