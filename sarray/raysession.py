"""What every Ray-using stage (ingest on a cluster, translate) shares: joining the cluster, and
fetching results with sarray's own errors re-raised as themselves."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from sarray.errors import SarrayError


@contextlib.contextmanager
def connected() -> Iterator[None]:
    """Ray for the duration of a call: the process's existing connection, else the cluster of
    ``RAY_ADDRESS``, else a local Ray started here and shut down on the way out."""
    import ray

    if ray.is_initialized():
        yield
        return
    ray.init(address=os.environ.get("RAY_ADDRESS") or None, include_dashboard=False,
             log_to_driver=False, configure_logging=False)
    try:
        yield
    finally:
        ray.shutdown()


def ray_cause(e: BaseException) -> BaseException:
    """The original exception inside (possibly nested) Ray task errors."""
    while getattr(e, "cause", None) is not None and e.cause is not e:  # type: ignore[attr-defined]
        e = e.cause  # type: ignore[attr-defined]
    return e


def get(refs: Any) -> Any:
    """``ray.get``, with a SarrayError raised on a worker re-raised as itself (one line)."""
    import ray

    try:
        return ray.get(refs)
    except ray.exceptions.RayTaskError as e:
        cause = ray_cause(e)
        if isinstance(cause, SarrayError):
            raise cause from None
        raise
