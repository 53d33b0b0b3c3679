"""Baseline (b): the stock Channels configuration, serving the same game.

Same models, views, signals and consumer as the project, with the two choices a stock
Channels tutorial makes: each group event carries the message as a dict and every consumer
re-encodes it with `send_json` (one `json.dumps` per client), and channels-redis runs with
its default settings (capacity 100, the default connection pool of 100). The project code is
not touched: this package patches `viruses.messages._event` in its own process only.

    DJANGO_SETTINGS_MODULE=bench.stock.settings daphne bench.stock.asgi:application
"""
