"""The public API: ``conveyor.__all__`` is complete and documented; ``from_url``."""

from __future__ import annotations

import importlib
import inspect
from typing import Any

import pytest

import conveyor
from conveyor.brokers import Broker, from_url
from conveyor.brokers.memory import MemoryBroker


def public_names() -> list[str]:
    """The names ``conveyor`` exports, without the version string."""
    return [n for n in conveyor.__all__ if n != "__version__"]


def test_all_is_sorted_and_unique() -> None:
    """``__all__`` is one sorted list with no duplicates."""
    assert conveyor.__all__ == sorted(conveyor.__all__)
    assert len(set(conveyor.__all__)) == len(conveyor.__all__)


def test_every_name_in_all_is_importable() -> None:
    """``from conveyor import X`` works for each X in ``__all__``."""
    module = importlib.import_module("conveyor")
    for name in conveyor.__all__:
        assert getattr(module, name, None) is not None, name


def test_all_lists_every_public_object_of_the_package() -> None:
    """Every public class or function the package module binds is listed in ``__all__``."""
    missing = [
        name
        for name, value in vars(conveyor).items()
        if not name.startswith("_")
        and (inspect.isclass(value) or inspect.isfunction(value))
        and name not in conveyor.__all__
    ]
    assert missing == []


def test_the_version_is_a_string() -> None:
    """``conveyor.__version__`` is exported and is a version string."""
    assert isinstance(conveyor.__version__, str)
    assert conveyor.__version__.count(".") == 2


def own_doc(obj: Any) -> str | None:
    """The docstring ``obj`` itself defines (not one inherited from a base class)."""
    if inspect.isclass(obj):
        doc = obj.__dict__.get("__doc__")
        return doc if isinstance(doc, str) else None
    return inspect.getdoc(obj)


@pytest.mark.parametrize("name", public_names())
def test_every_public_name_has_a_docstring(name: str) -> None:
    """Each exported name has its own docstring, and so does each of its public members."""
    obj = getattr(conveyor, name)
    assert (own_doc(obj) or "").strip(), f"conveyor.{name} has no docstring"
    if not inspect.isclass(obj):
        return
    undocumented = [
        member
        for member, value in vars(obj).items()
        if not member.startswith("_")
        and (callable(value) or isinstance(value, property | classmethod | staticmethod))
        and not (inspect.getdoc(value) or "").strip()
    ]
    assert undocumented == [], f"conveyor.{name} members without a docstring"


def test_from_url_memory() -> None:
    """``memory://`` gives a MemoryBroker that implements the Broker protocol."""
    broker = from_url("memory://")
    assert isinstance(broker, MemoryBroker)
    assert isinstance(broker, Broker)
    assert broker.url == "memory://"


def test_from_url_scheme_is_case_insensitive() -> None:
    """The scheme is matched case-insensitively."""
    assert isinstance(from_url("MEMORY://"), MemoryBroker)


@pytest.mark.parametrize("url", ["amqp://localhost", "conveyor.db", "", "mysql://x/y"])
def test_from_url_unknown_scheme_lists_the_known_ones(url: str) -> None:
    """An unknown scheme raises ConfigurationError naming the URL and every known scheme."""
    with pytest.raises(conveyor.ConfigurationError) as info:
        from_url(url)
    message = str(info.value)
    assert repr(url) in message
    for scheme in ("memory://", "sqlite://", "redis://", "postgresql://"):
        assert scheme in message


def test_conveyor_with_a_memory_url_uses_the_memory_broker() -> None:
    """``Conveyor("memory://")`` builds its broker from the URL, without connecting."""
    app = conveyor.Conveyor("memory://")
    assert isinstance(app.broker, MemoryBroker)
    assert app.url == "memory://"


def test_conveyor_url_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a URL, ``CONVEYOR_URL`` chooses the broker."""
    monkeypatch.setenv("CONVEYOR_URL", "memory://")
    assert isinstance(conveyor.Conveyor().broker, MemoryBroker)
