"""`python -m jinaserve.ray [serve options]` = `jinaserve serve --ray [serve options]` (Ray Serve replicas).

The implementation lives in `jinaserve.ray_serve`; this module only gives the command its short name.
"""

from __future__ import annotations

from .ray_serve import main

if __name__ == "__main__":  # pragma: no cover
    main()
