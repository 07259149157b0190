"""Progress bars for dask computations (tqdm on stderr)."""

from __future__ import annotations

import sys
from typing import Any


def dask_progress(desc: str, enabled: bool = True) -> Any:
    """A context manager that shows a tqdm bar over the tasks of the dask computes inside it.

    Args:
        desc: the bar's label.
        enabled: False gives a no-op context (for ``--quiet`` and library use).
    """
    import contextlib

    if not enabled:
        return contextlib.nullcontext()
    from dask.callbacks import Callback
    from tqdm.auto import tqdm

    class _Bar(Callback):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.bar: Any = None

        def _start_state(self, dsk: Any, state: Any) -> None:
            total = sum(len(state[k]) for k in ("ready", "waiting", "running", "finished"))
            self.bar = tqdm(total=total, desc=desc, unit="task", file=sys.stderr,
                            dynamic_ncols=True, leave=True)

        def _posttask(self, key: Any, result: Any, dsk: Any, state: Any, worker_id: Any) -> None:
            if self.bar is not None:
                self.bar.update(1)

        def _finish(self, dsk: Any, state: Any, errored: bool) -> None:
            if self.bar is not None:
                self.bar.close()
                self.bar = None

    return _Bar()
