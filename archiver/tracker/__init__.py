"""The tracker: hands items to volunteer workers over HTTP, Archive Team compatible (seesaw), and keeps the WARCs
they upload once our checker passes them.

    projects.py   what a project is and accepts (site module, minimum version, limits)
    state.py      the shared state besides the queues, in SQLite (state_sqlite.py) or Redis (state_redis.py)
    redis_async.py  the Redis store's pipelined client for the event loop (request and done without a thread)
    budgets.py    block lists, per-downloader budgets, the rate limit
    protocol.py   the seesaw protocol and our additions, as plain calls (Tracker)
    uploads.py    the upload target: receive, check, keep, batch for packing
    web.py        HTTP plumbing: bodies within limits, refusals as answers
    admin.py      the admin API behind a token
    dashboard.py  each project's live dashboard page (dashboard.html) and its JSON
    app.py        the FastAPI app (create_app)
"""

TOKEN_ENV = "ARCHIVER_TRACKER_TOKEN"  # where `archiver tracker serve` (and its worker processes) find the admin token
