"""Brokers by URL scheme. A broker's module is imported only when its scheme is used."""

from __future__ import annotations

import importlib
from urllib.parse import urlsplit

from conveyor.brokers.base import Broker
from conveyor.errors import ConfigurationError, MissingDependency

DEFAULT_URL = "sqlite:///conveyor.db"

# scheme -> (module, class, the extra that installs what it imports, or None)
_SCHEMES: dict[str, tuple[str, str, str | None]] = {
    "memory": ("conveyor.brokers.memory", "MemoryBroker", None),
    "sqlite": ("conveyor.brokers.sqlite", "SQLiteBroker", None),
    "redis": ("conveyor.brokers.redis", "RedisBroker", "redis"),
    "rediss": ("conveyor.brokers.redis", "RedisBroker", "redis"),
    "postgresql": ("conveyor.brokers.postgres", "PostgresBroker", "postgres"),
    "postgres": ("conveyor.brokers.postgres", "PostgresBroker", "postgres"),
}


def from_url(url: str) -> Broker:
    """The broker for ``url``: ``memory://``, ``sqlite:///path``, ``redis://``, ``postgresql://``.

    Raises:
        ConfigurationError: the scheme is unknown or the URL is malformed.
        MissingDependency: the broker needs an extra that is not installed.
    """
    scheme = urlsplit(url).scheme.lower()
    if scheme not in _SCHEMES:
        known = ", ".join(f"{s}://" for s in _SCHEMES)
        raise ConfigurationError(f"unknown broker URL {url!r}: the scheme must be one of {known}")
    module_name, class_name, extra = _SCHEMES[scheme]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        if extra is None or module_name == getattr(exc, "name", None):
            raise
        raise MissingDependency(
            f"the {scheme}:// broker needs an extra: pip install 'conveyor[{extra}]' ({exc})"
        ) from exc
    broker: Broker = getattr(module, class_name)(url)
    return broker


__all__ = ["DEFAULT_URL", "Broker", "from_url"]
