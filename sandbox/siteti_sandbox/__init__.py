"""Siteti API v2.6 sandbox: a faithful in-memory test double served over real HTTP."""

from .app import create_app
from .config import SandboxConfig

__all__ = ["SandboxConfig", "create_app"]
