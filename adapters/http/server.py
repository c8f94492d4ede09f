"""An aiohttp server for monitoring: ``/healthz``, ``/metrics``, ``/badge/QUEUE.svg|json``.

Read-only, no personal data, nothing from email. Bind it to loopback and put a reverse
proxy in front if a public page should embed the badges.
"""

from __future__ import annotations

import json
import logging

from aiohttp import web

from adapters.http.metrics import render
from bot.config import HttpConfig
from bot.status import StatusService

log = logging.getLogger(__name__)


class HttpServer:
    def __init__(self, config: HttpConfig, status: StatusService) -> None:
        self._config = config
        self._status = status
        self._runner: web.AppRunner | None = None
        self.port = config.port

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/healthz", self._health)
        app.router.add_get("/metrics", self._metrics)
        if self._config.badges:
            app.router.add_get(r"/badge/{stem}.{kind:svg|json}", self._badge)
        return app

    async def start(self) -> None:
        self._runner = web.AppRunner(self._app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._config.host, self._config.port)
        await site.start()
        server = site._server  # the bound port when 0 was asked for (tests)
        sockets = getattr(server, "sockets", None) or []
        if sockets:
            self.port = int(sockets[0].getsockname()[1])
        log.info("http: listening on %s:%d", self._config.host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _badge(self, request: web.Request) -> web.Response:
        found = await self._status.badge(request.match_info["stem"], request.match_info["kind"])
        if found is None:
            return web.Response(status=404, text="no such queue\n")
        content_type, body = found
        return web.Response(
            text=body,
            content_type=content_type,
            headers={"Cache-Control": "max-age=60", "X-Content-Type-Options": "nosniff"},
        )

    async def _metrics(self, request: web.Request) -> web.Response:
        try:
            snapshot = await self._status.snapshot()
        except Exception as exc:
            return web.Response(status=503, text=f"database unavailable: {exc}\n")
        return web.Response(
            body=render(snapshot), headers={"Content-Type": "text/plain; version=0.0.4"}
        )

    async def _health(self, request: web.Request) -> web.Response:
        health = await self._status.health()
        body = {"status": "ok" if health.ok else "failing", **health.details}
        return web.Response(
            status=200 if health.ok else 503,
            text=json.dumps(body) + "\n",
            content_type="application/json",
        )
