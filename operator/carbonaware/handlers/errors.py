"""The one place that maps domain errors to kopf's retry semantics."""

from __future__ import annotations

import kopf

from carbonaware.errors import (
    CarbonAwareError,
    KubernetesError,
    ProviderError,
    SpecError,
)

DEFAULT_DELAY = 30.0
MAX_DELAY = 600.0


def to_kopf(error: CarbonAwareError) -> kopf.TemporaryError | kopf.PermanentError:
    """Invalid specs and 4xx answers are permanent; 429 honours Retry-After; the rest backs off."""
    if isinstance(error, SpecError):
        return kopf.PermanentError(str(error))
    status = error.status if isinstance(error, KubernetesError) else None
    if isinstance(error, ProviderError):
        status = error.status_code
    retry_after = getattr(error, "retry_after", None)
    if status == 429 or retry_after:
        return kopf.TemporaryError(str(error), delay=min(retry_after or DEFAULT_DELAY, MAX_DELAY))
    if status is not None and 400 <= status < 500 and status not in (404, 409):
        return kopf.PermanentError(str(error))
    return kopf.TemporaryError(str(error), delay=DEFAULT_DELAY)
