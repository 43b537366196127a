"""The only kopf code. Importing this package registers every handler."""

from __future__ import annotations

from carbonaware.handlers import (  # noqa: F401 - imported to register their handlers
    carbonawarejob,
    cronjobs,
    plainjob,
    runnerpods,
    servertarget,
    shadow,
    startup,
    tracking,
)
