"""HTTP API: the FastAPI application factory."""

from myhibachi.api.app import create_app

__all__ = ["create_app"]
