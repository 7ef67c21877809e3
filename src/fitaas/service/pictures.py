"""Pictures of jobs (CLs planes, toy distributions), rendered once per change of the job.

Many clients following one job ask for the same picture every few seconds; it changes only
when a point finishes. Pictures are kept by a key that names that state (job, points done,
options of the picture), rendered by one thread at a time (matplotlib is not thread-safe),
and a request for a picture being rendered waits for it instead of rendering it again.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable

__all__ = ["PictureCache"]


class PictureCache:
    """PNG bytes by key, the most recent ``size`` of them.

    Args:
        size: How many pictures to keep.
    """

    def __init__(self, size: int = 64) -> None:
        self.size = size
        self._pictures: OrderedDict[Hashable, bytes] = OrderedDict()
        self._lock = threading.Lock()
        self._render = threading.Lock()
        self.rendered = 0

    @staticmethod
    def etag(key: Hashable) -> str:
        """An HTTP entity tag for the picture of this key."""
        return '"' + hashlib.sha256(repr(key).encode()).hexdigest()[:32] + '"'

    def _cached(self, key: Hashable) -> bytes | None:
        with self._lock:
            found = self._pictures.get(key)
            if found is not None:
                self._pictures.move_to_end(key)
            return found

    def get(self, key: Hashable, render: Callable[[], bytes]) -> bytes:
        """The picture of this key, rendered by ``render`` if it is not kept yet.

        An exception of ``render`` reaches the caller and nothing is kept.
        """
        found = self._cached(key)
        if found is not None:
            return found
        with self._render:
            found = self._cached(key)  # rendered while this request waited
            if found is not None:
                return found
            picture = render()
            self.rendered += 1
        with self._lock:
            self._pictures[key] = picture
            while len(self._pictures) > self.size:
                self._pictures.popitem(last=False)
        return picture
