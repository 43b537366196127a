"""kopf settings and logging that decide how the operator copes with thousands of objects."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator

import kopf
import pytest

from carbonaware.handlers.operator import configure_logging
from carbonaware.handlers.startup import configure_kopf

# bench/scale.py creates 10,000 jobs at once; the API server answers a few dozen a second.
NEW_OBJECTS_PER_SECOND = 50


def test_kopf_workers_turn_over_fast_enough_for_bulk_creation() -> None:
    settings = kopf.OperatorSettings()
    configure_kopf(settings)
    queueing = settings.queueing
    # Each object keeps one of worker_limit workers for at least idle_timeout after its
    # last event, so new objects are taken at most worker_limit / idle_timeout a second.
    assert queueing.worker_limit is not None, "unbounded workers: every object at once"
    assert queueing.worker_limit / queueing.idle_timeout >= NEW_OBJECTS_PER_SECOND


@pytest.fixture
def restore_logging() -> Iterator[None]:
    names = ("", "carbonaware", "kopf.objects", "asyncio", "asyncssh")
    saved = {
        name: (logging.getLogger(name).level, list(logging.getLogger(name).handlers))
        for name in names
    }
    yield
    for name, (level, handlers) in saved.items():
        logger = logging.getLogger(name)
        logger.setLevel(level)
        logger.handlers[:] = handlers


@pytest.mark.usefixtures("restore_logging")
def test_kopf_per_object_info_lines_only_when_verbose() -> None:
    configure_logging(verbose=False)
    objects = logging.getLogger("kopf.objects")
    assert not objects.isEnabledFor(logging.INFO)  # "Handler ... succeeded." per object
    assert objects.isEnabledFor(logging.WARNING)  # handler failures and retries
    assert logging.getLogger("carbonaware").isEnabledFor(logging.INFO)

    configure_logging(verbose=True)
    assert objects.isEnabledFor(logging.DEBUG)
    assert logging.getLogger("carbonaware").isEnabledFor(logging.DEBUG)


@pytest.mark.usefixtures("restore_logging")
def test_asyncssh_connection_lines_only_when_verbose() -> None:
    configure_logging(verbose=False)
    asyncssh_logger = logging.getLogger("asyncssh")
    assert not asyncssh_logger.isEnabledFor(logging.INFO)  # "Opening SSH connection to ..."
    assert asyncssh_logger.isEnabledFor(logging.WARNING)
    configure_logging(verbose=True)
    assert asyncssh_logger.isEnabledFor(logging.DEBUG)


@pytest.mark.usefixtures("restore_logging")
def test_every_line_has_a_utc_timestamp() -> None:
    configure_logging(verbose=False)
    record = logging.LogRecord(
        "carbonaware.x", logging.INFO, __file__, 1, "released %s", ("a",), None
    )
    (handler,) = [h for h in logging.getLogger().handlers if h.formatter is not None][-1:]
    line = handler.format(record)
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO    carbonaware\.x: released a", line
    ), line
