import json

from django.core.management.base import BaseCommand

from viruses.selectors import game_status


class Command(BaseCommand):
    help = (
        "Show the live state of the deployment: last seq, viruses alive, and open WebSocket "
        "connections per server process (alive, or stale: a server that stopped refreshing them)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", dest="as_json", help="print JSON")

    def handle(self, *args, as_json: bool, **options):
        status = game_status()
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
