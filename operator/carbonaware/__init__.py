"""carbon-aware-operator: hold delay-tolerant Kubernetes work until the grid is cleaner."""

from __future__ import annotations

__version__ = "0.1.0"
GROUP = "carbonaware.io"
VERSION = "v1alpha1"
