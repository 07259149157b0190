"""Progress bars for dask computations (tqdm on stderr)."""

from __future__ import annotations

import sys
from typing import Any


def dask_progress(desc: str, enabled: bool = True) -> Any:
    """A context manager that shows one tqdm bar over the tasks of every dask compute inside it
    (ingest computes a scene in several waves: the bar's total grows as each one starts).

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

        def __enter__(self) -> Any:
            self.bar = tqdm(total=0, desc=desc, unit="task", file=sys.stderr,
                            dynamic_ncols=True, leave=True)
            return super().__enter__()

        def __exit__(self, *args: Any) -> None:
            super().__exit__(*args)
            if self.bar is not None:
                self.bar.close()
                self.bar = None

        def _start_state(self, dsk: Any, state: Any) -> None:
            if self.bar is not None:
                self.bar.total += sum(len(state[k]) for k in ("ready", "waiting", "running", "finished"))
                self.bar.refresh()

        def _posttask(self, key: Any, result: Any, dsk: Any, state: Any, worker_id: Any) -> None:
            if self.bar is not None:
                self.bar.update(1)

    return _Bar()
