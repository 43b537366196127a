"""``python -m carbonaware``: the same as the ``carbonaware`` command."""

from __future__ import annotations

from carbonaware.cli import main

main()
