"""`python -m jinaserve.ray [serve options]` = `jinaserve serve --ray [serve options]` (Ray Serve replicas).

The implementation lives in `jinaserve.ray_serve`; this module only gives the command its short name. It
imports the CLI, so `ray_serve` never has to (the CLI imports `ray_serve` for `serve --ray`).
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    from .cli import app

    args = list(sys.argv[1:] if argv is None else argv)
    app(["serve", "--ray", *args])


if __name__ == "__main__":  # pragma: no cover
    main()
