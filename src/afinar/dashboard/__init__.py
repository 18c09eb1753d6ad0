"""The web dashboard: server-rendered pages over the services, with vendored htmx and uPlot (no CDN).

``afinar.dashboard.router.router`` is included by ``afinar.api.create_app``.
"""
