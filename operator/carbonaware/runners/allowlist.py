"""Which ServerTarget hosts the operator may connect to (``CARBONAWARE_SSH_ALLOWED_HOSTS``).

Anyone who may create a ServerTarget can point the operator at any host and port. A cluster
admin can restrict that with an allow-list of CIDRs (``10.20.0.0/16``) and host-name patterns
(``*.build.example.com``, shell-style). A target is allowed when its host name matches a
pattern, or when every address it resolves to lies in an allowed CIDR (so a name that
resolves somewhere else is refused). An empty list allows every host (the default).

Pure: resolving names is the caller's job.
"""

from __future__ import annotations

import fnmatch
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from carbonaware.errors import ConfigError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class HostAllowList:
    networks: tuple[Network, ...] = ()
    patterns: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str | None) -> HostAllowList:
        """``"10.0.0.0/8, 192.168.1.5, *.corp.example.com"``; raises ConfigError on junk."""
        networks: list[Network] = []
        patterns: list[str] = []
        for item in (part.strip() for part in (text or "").split(",")):
            if not item:
                continue
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
                continue
            except ValueError:
                pass
            if any(ch.isspace() for ch in item) or "/" in item:
                raise ConfigError(
                    f"CARBONAWARE_SSH_ALLOWED_HOSTS: {item!r} must be a CIDR (10.0.0.0/8), an "
                    "address or a host-name pattern (*.example.com)"
                )
            patterns.append(item.lower())
        return cls(tuple(networks), tuple(patterns))

    @property
    def open(self) -> bool:
        """No list: every host is allowed."""
        return not self.networks and not self.patterns

    def name_allowed(self, host: str) -> bool:
        name = host.lower().rstrip(".")
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in self.patterns)

    def addresses_allowed(self, addresses: Iterable[str]) -> bool:
        """True when there is at least one address and each lies in an allowed network."""
        parsed = []
        for address in addresses:
            try:
                parsed.append(ipaddress.ip_address(address.split("%", 1)[0]))
            except ValueError:
                return False
        return bool(parsed) and all(
            any(address in network for network in self.networks) for address in parsed
        )

    def describe(self) -> str:
        return ", ".join([*(str(n) for n in self.networks), *self.patterns])
