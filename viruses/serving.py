"""What this process's server part (viruses/live/) tells the rest of the app.

The app never imports live/: it runs in cron and shells as well as in the server. live/
sets what is here, `/healthz` reads it; elsewhere it keeps its defaults.
"""

draining = False  # leaving on SIGTERM (live/drain.py): /healthz answers 503 "draining"
