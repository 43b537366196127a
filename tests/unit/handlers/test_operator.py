"""kopf settings and logging that decide how the operator copes with thousands of objects."""

from __future__ import annotations

import logging
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
    names = ("", "carbonaware", "kopf.objects", "asyncio")
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
