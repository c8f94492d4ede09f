"""The optional HTTP endpoint (``[http] listen``): backlog badges and a health check."""

from adapters.http.server import HttpServer

__all__ = ["HttpServer"]
