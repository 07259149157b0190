"""sarray: satellite SAR archives to airborne-resolution SAR with a diffusion foundation model.

`import sarray` stays light: torch, ray and deepspeed are imported only inside the modules
that need them.
"""

from __future__ import annotations

__version__ = "0.1.0"

from sarray.errors import SarrayError

__all__ = ["SarrayError", "__version__"]
