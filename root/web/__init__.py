"""The root's web front: dashboard pages, the JSON API (``/api/v1/<op>``) and
``/metrics``, served by aiohttp on the root's loop (``server.py``); who a request
is (``auth.py``); the pages and who sees them (``pages.py``); the API's argument
conversion and bounds (``api.py``). The built front-end is in ``static/``."""

from clumon.root.web.server import WebServer

__all__ = ["WebServer"]
