"""Likelihoods by address: a pallet given as an http(s) URL is downloaded once.

The file lands in ``FITAAS_CACHE``/downloads/KEY/NAME, KEY the SHA-256 of the address and NAME
the address's last path segment (so that ``.tar.gz``, ``.json`` or ``.json.gz`` still say what
it is), beside ``NAME.sha256``, the digest of what was received. A later run with the same
address reads the file and does not connect. Written atomically: an interrupted download
leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from fitaas.caches import cache_folder
from fitaas.errors import InputError

__all__ = ["MAX_DOWNLOAD_BYTES", "fetch", "is_address"]

# The largest download accepted (published likelihood archives are tens of MB).
MAX_DOWNLOAD_BYTES = 2 * 1024**3
_CHUNK = 1 << 16


def is_address(value: object) -> bool:
    """Whether ``value`` is an http(s) address rather than a path."""
    return isinstance(value, str) and value.lower().startswith(("http://", "https://"))


def fetch(address: str, timeout: float = 60.0) -> Path:
    """The local copy of ``address``, downloaded into the cache the first time.

    A progress bar shows on standard error while it downloads (when that is a terminal).

    Raises:
        InputError: The address cannot be fetched (named, with the reason).
    """
    key = hashlib.sha256(address.encode()).hexdigest()[:32]
    name = Path(urllib.parse.urlparse(address).path).name or "download"
    target = cache_folder("downloads") / key / name
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{name}.{os.getpid()}.part")
    try:
        with urllib.request.urlopen(address, timeout=timeout) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            digest = _copy(response, partial, total, name)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        partial.unlink(missing_ok=True)
        reason = exc if isinstance(exc, urllib.error.HTTPError) else exc.__dict__.get("reason", exc)
        raise InputError(f"{address}: cannot download it ({reason})") from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    partial.replace(target)
    target.with_name(name + ".sha256").write_text(digest + "\n")
    return target


def _copy(response: object, path: Path, total: int | None, name: str) -> str:
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

    console = Console(stderr=True)
    digest = hashlib.sha256()
    size = 0
    with (
        path.open("wb") as out,
        Progress(
            TextColumn(f"downloading {name}"),
            BarColumn(),
            DownloadColumn(),
            console=console,
            transient=True,
            disable=not console.is_terminal,
        ) as progress,
    ):
        task = progress.add_task("download", total=total)
        while chunk := response.read(_CHUNK):  # type: ignore[attr-defined]
            size += len(chunk)
            if size > MAX_DOWNLOAD_BYTES:
                raise ValueError(f"larger than {MAX_DOWNLOAD_BYTES // 1024**2} MB")
            digest.update(chunk)
            out.write(chunk)
            progress.update(task, advance=len(chunk))
    return digest.hexdigest()
