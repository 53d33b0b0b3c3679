"""Every reach into daphne, autobahn and Twisted internals: transport.py uses them, surface.py lists them.

Verified against daphne 4.2.3, autobahn 26.11.1 and Twisted 26.10.0 (and channels-redis 4.3.0
for layers.py); after an upgrade, `.venv/bin/pytest tests/unit/test_daphne_surface.py` names
whatever is gone (surface.py says how to re-verify).
"""
