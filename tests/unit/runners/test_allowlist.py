"""The ServerTarget host allow-list: CIDRs, addresses and name patterns."""

from __future__ import annotations

import pytest

from carbonaware.errors import ConfigError
from carbonaware.runners.allowlist import HostAllowList

ALLOW = HostAllowList.parse("10.20.0.0/16, 192.168.1.5 ,*.build.example.com,fd00::/8")


def test_an_empty_list_allows_every_host() -> None:
    assert HostAllowList.parse(None).open
    assert HostAllowList.parse(" , ").open
    assert not ALLOW.open


def test_names_match_patterns_case_insensitively() -> None:
    assert ALLOW.name_allowed("ci-7.build.example.com")
    assert ALLOW.name_allowed("CI-7.Build.Example.Com.")
    assert not ALLOW.name_allowed("build.example.com.evil.test")
    assert not ALLOW.name_allowed("example.com")


def test_every_address_must_lie_in_an_allowed_network() -> None:
    assert ALLOW.addresses_allowed(["10.20.3.4"])
    assert ALLOW.addresses_allowed(["192.168.1.5", "fd00::1"])
    assert not ALLOW.addresses_allowed(["10.20.3.4", "10.21.0.1"]), "one address outside"
    assert not ALLOW.addresses_allowed([]), "a name that does not resolve"
    assert not ALLOW.addresses_allowed(["not-an-address"])
    assert not ALLOW.addresses_allowed(["127.0.0.1"])


@pytest.mark.parametrize("bad", ["10.0.0.0/33x", "two words", "a/b"])
def test_junk_in_the_setting_is_a_config_error(bad: str) -> None:
    with pytest.raises(ConfigError, match="CARBONAWARE_SSH_ALLOWED_HOSTS"):
        HostAllowList.parse(bad)
