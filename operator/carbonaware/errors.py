"""One exception tree for the whole package.

Every error the operator raises on purpose derives from :class:`CarbonAwareError`, so a
single mapping (``handlers.errors``) can turn any of them into a kopf retry or a permanent
failure. Messages are sentences a user can act on; they never contain secrets.
"""

from __future__ import annotations


class CarbonAwareError(Exception):
    """Base of every error raised on purpose by carbonaware."""


class ConfigError(CarbonAwareError):
    """The operator's own settings are invalid (bad env var, unreadable trace file...)."""


class SpecError(CarbonAwareError):
    """A resource passed the schema but cannot be acted on (e.g. unknown region)."""


# --------------------------------------------------------------------------- providers


class ProviderError(CarbonAwareError):
    """A grid-intensity source failed. ``provider`` names it; the message says what failed.

    ``retry_after`` is set (seconds) when the upstream told us when to come back (HTTP 429
    with Retry-After) and ``status_code`` when the failure was an HTTP response.
    """

    def __init__(
        self,
        provider: str,
        message: str,
        *,
        status_code: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{provider}: {message}")
        self.provider = provider
        self.problem = message
        self.status_code = status_code
        self.retry_after = retry_after


class ProviderUnavailableError(ProviderError):
    """Connection refused, timeout, DNS failure or a 5xx: try again later."""


class ProviderAuthError(ProviderError):
    """The credentials were rejected (401/403) or are missing."""


class ProviderRateLimitedError(ProviderError):
    """The upstream answered 429; ``retry_after`` says when to come back, if it said."""


class ProviderDataError(ProviderError):
    """The response could not be used: bad JSON, missing fields, empty data."""


class UnknownRegionError(ProviderError):
    """The provider does not know the requested region."""


class ProviderRequestError(ProviderError):
    """The upstream rejected the request itself (a 4xx other than auth, rate limit or an
    unknown region): usually a wrong base URL or parameter, so retrying will not help."""


# --------------------------------------------------------------------------- SSH targets


class TargetError(CarbonAwareError):
    """A ServerTarget could not be used. ``reason`` is the CamelCase condition reason."""

    reason = "TargetError"


class TargetUnreachableError(TargetError):
    """TCP connect failed: closed port, no route, or a name that does not resolve."""

    reason = "Unreachable"


class TargetAuthError(TargetError):
    """The server rejected our key or user."""

    reason = "AuthFailed"


class HostKeyMismatchError(TargetError):
    """The server's host key is not in known_hosts (or known_hosts is missing)."""

    reason = "HostKeyMismatch"


class TargetSecretMissingError(TargetError):
    """The Secret (or its key) holding the ServerTarget's SSH private key does not exist."""

    reason = "SecretNotFound"


class TargetSecretNotAllowedError(TargetError):
    """The Secret named as the SSH key is not marked for that use (type or label)."""

    reason = "SecretNotAllowed"


class TargetNotAllowedError(TargetError):
    """The host is outside the operator's allow-list (``CARBONAWARE_SSH_ALLOWED_HOSTS``)."""

    reason = "HostNotAllowed"


class RunnerError(CarbonAwareError):
    """The SSH runner could not run the job or report its result."""


class RunnerConnectionLostError(RunnerError):
    """The SSH connection ended while the job ran and could not be re-established in time.

    The run itself goes on on the server; a later call with the same run id attaches to it.
    """


class RunLostError(RunnerError):
    """The server lost the run: its supervisor is gone without recording the job's outcome
    (the server restarted, or the supervisor was killed). The job is never started again."""

    reason = "RunLost"


# --------------------------------------------------------------------------- measurement


class MetricSourceError(CarbonAwareError):
    """CPU usage for a run could not be read (Prometheus down, no metrics.k8s.io...)."""


class KubernetesError(CarbonAwareError):
    """A Kubernetes API call failed. ``status`` is the HTTP status when there was one."""

    def __init__(
        self, message: str, *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
