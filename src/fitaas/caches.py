"""Where fitaas keeps what it can reuse between runs on this machine.

One folder, ``FITAAS_CACHE`` (default ``~/.cache/fitaas``), holds compiled code (``jax/``,
or ``FITAAS_JAX_CACHE``), workspaces written once for local workers to read by digest
(``workspaces/``), the digests of workspaces pyhf's schema has accepted (``validated/``)
and pallets parsed, validated and digested once, by the bytes of their files
(``pallets/``). Everything in it can be deleted at any time: it is recomputed. The
command line's results store lives there too (``results.sqlite``, or ``FITAAS_STORE``):
one per user, shared by every run, wherever its output goes.
:func:`most_recent` bounds what a long-lived process keeps in memory.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import TypeVar

__all__ = [
    "cache_folder",
    "keep",
    "kept",
    "most_recent",
    "remember",
    "remembered",
    "results_store",
    "write_once",
]

K = TypeVar("K")
V = TypeVar("V")


def cache_folder(name: str) -> Path:
    """The cache's subfolder ``name`` (not created here)."""
    root = os.environ.get("FITAAS_CACHE") or str(Path.home() / ".cache" / "fitaas")
    return Path(root) / name


def results_store() -> Path:
    """The user's results store for the command line: ``FITAAS_STORE``, else
    ``results.sqlite`` in the cache folder (every run shares it)."""
    return Path(os.environ.get("FITAAS_STORE") or cache_folder("results.sqlite"))


def write_once(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` unless it exists; atomic (a reader never sees half).

    Returns:
        The path.
    """
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
    return path


def _marker(kind: str, key: str) -> Path:
    return cache_folder(kind) / key


def remembered(kind: str, key: str) -> bool:
    """Whether :func:`remember` was called with this kind and key (on this machine)."""
    try:
        return _marker(kind, key).is_file()
    except OSError:
        return False


def remember(kind: str, key: str) -> None:
    """Note a fact by key (e.g. a digest that passed validation); a failure to write is
    harmless: the fact is established again next time."""
    with suppress(OSError):
        write_once(_marker(kind, key), b"")


def keep(kind: str, key: str, value: object) -> None:
    """Keep a computed value by key (pickled, written once; a failure to write is
    harmless: it is computed again next time)."""
    import pickle

    with suppress(OSError, pickle.PicklingError):
        write_once(cache_folder(kind) / f"{key}.pickle", pickle.dumps(value, protocol=5))


def kept(kind: str, key: str) -> object | None:
    """A value :func:`keep` kept (``None``: none, or a file this user does not own alone:
    a pickle is code, only this user's own files are read)."""
    import pickle

    path = cache_folder(kind) / f"{key}.pickle"
    try:
        info = path.stat()
        if info.st_uid != os.getuid() or info.st_mode & 0o022:
            return None
        return pickle.loads(path.read_bytes())
    except OSError:
        return None
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, TypeError):
        # damaged, or kept by a version whose classes live elsewhere: made again (the
        # file is removed, so that the next keep writes it anew)
        with suppress(OSError):
            path.unlink()
        return None


def most_recent(kept: dict[K, V], key: K, make: Callable[[], V], limit: int) -> V:
    """``kept[key]`` (made by ``make`` when absent) as the most recently used of ``kept``,
    which keeps the ``limit`` most recently used (a long-lived worker or engine meets many).
    """
    found = kept.pop(key) if key in kept else make()
    kept[key] = found
    while len(kept) > limit:
        kept.pop(next(iter(kept)))
    return found
