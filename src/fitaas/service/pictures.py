"""Pictures of jobs (CLs planes, toy distributions), rendered once per change of the job.

Many clients following one job ask for the same picture every few seconds; it changes only
when a point finishes. A picture is kept per subject (job and picture options) with the
version of the job it shows (points done, failed, state). A request for a newer version
gets the kept picture at once while the new one renders in the background (the response
says which version it shows); only a subject's first picture is rendered while its client
waits. One picture renders at a time (matplotlib is not thread-safe).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable

__all__ = ["PictureCache"]

log = logging.getLogger("fitaas.service")


class PictureCache:
    """PNG bytes by subject, the latest version of each of the most recent ``size``.

    Args:
        size: How many subjects to keep.
    """

    def __init__(self, size: int = 64) -> None:
        self.size = size
        self._pictures: OrderedDict[Hashable, tuple[Hashable, bytes]] = OrderedDict()
        self._rendering: set[Hashable] = set()
        self._lock = threading.Lock()
        self._render = threading.Lock()

    @staticmethod
    def etag(subject: Hashable, version: Hashable) -> str:
        """An HTTP entity tag for this version of a subject's picture."""
        return '"' + hashlib.sha256(repr((subject, version)).encode()).hexdigest()[:32] + '"'

    def _kept(self, subject: Hashable) -> tuple[Hashable, bytes] | None:
        with self._lock:
            found = self._pictures.get(subject)
            if found is not None:
                self._pictures.move_to_end(subject)
            return found

    def _keep(self, subject: Hashable, version: Hashable, picture: bytes) -> None:
        with self._lock:
            self._pictures[subject] = (version, picture)
            self._pictures.move_to_end(subject)
            while len(self._pictures) > self.size:
                self._pictures.popitem(last=False)

    def _render_now(
        self,
        subject: Hashable,
        version: Hashable,
        render: Callable[[], bytes],
        any_version: bool = False,
    ) -> tuple[Hashable, bytes]:
        with self._render:
            kept = self._kept(subject)  # rendered while this request waited
            if kept is not None and (kept[0] == version or any_version):
                if kept[0] != version:
                    self._render_later(subject, version, render)
                return kept
            picture = render()
        self._keep(subject, version, picture)
        return version, picture

    def _render_later(
        self, subject: Hashable, version: Hashable, render: Callable[[], bytes]
    ) -> None:
        with self._lock:
            if subject in self._rendering:
                return
            self._rendering.add(subject)

        def work() -> None:
            try:
                self._render_now(subject, version, render)
            except Exception as exc:  # the kept picture stays; the next request tries again
                log.info("picture %s not rendered: %s", subject, exc)
            finally:
                with self._lock:
                    self._rendering.discard(subject)

        threading.Thread(target=work, name="fitaas-picture", daemon=True).start()

    def warm(self) -> None:
        """Import and exercise matplotlib in the background (a second or two, once), so that
        the first picture a client waits for is not also the first of the process."""

        def work() -> None:
            with self._render, contextlib.suppress(Exception):  # (only a head start)
                import io

                import matplotlib

                matplotlib.use("Agg")
                import matplotlib.pyplot as plt

                import fitaas.output.plots  # noqa: F401

                figure, axes = plt.subplots()
                axes.contourf([[0.0, 1.0], [1.0, 0.0]])
                axes.set_xlabel("m")
                figure.savefig(io.BytesIO(), format="png", dpi=90)
                plt.close(figure)

        threading.Thread(target=work, name="fitaas-picture-warm", daemon=True).start()

    def get(
        self, subject: Hashable, version: Hashable, render: Callable[[], bytes]
    ) -> tuple[Hashable, bytes]:
        """The subject's picture: this version, or the kept one while this one renders.

        Returns:
            The version the picture shows, and the PNG bytes.

        Raises:
            Exception: What ``render`` raised, for a subject without any picture yet.
        """
        kept = self._kept(subject)
        if kept is None:  # (a request that waited for another's first picture takes it)
            return self._render_now(subject, version, render, any_version=True)
        if kept[0] != version:
            self._render_later(subject, version, render)
        return kept
