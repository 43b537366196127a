"""Unit-test settings shared by every module.

Hypothesis's per-example deadline (200 ms by default) is a wall-clock assertion, and
``make test`` runs these tests beside the integration suite on a loaded machine: properties are
checked without it (tests never assert on wall time; speed is measured in ``bench/``).
"""

from __future__ import annotations

from hypothesis import settings

settings.register_profile("carbonaware", deadline=None)
settings.load_profile("carbonaware")
