"""How REDIS_URL names a cluster (no server needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from portal.infrastructure.redis_client import is_cluster_url, node_url
from portal.infrastructure.settings import Settings, SettingsError


def test_the_cluster_schemes_name_a_cluster_and_plain_urls_one_server() -> None:
    assert is_cluster_url("redis+cluster://:pw@10.0.0.1:7000/0")
    assert is_cluster_url("rediss+cluster://u:pw@cache.example:6380")
    assert not is_cluster_url("redis://:pw@10.0.0.1:6379/0")
    assert not is_cluster_url("rediss://cache.example:6380/2")
    assert node_url("redis+cluster://:p%40ss@10.0.0.1:7000") == "redis://:p%40ss@10.0.0.1:7000/0"
    assert (
        node_url("rediss+cluster://u:pw@h:6380/0?ssl_cert_reqs=none")
        == "rediss://u:pw@h:6380/0?ssl_cert_reqs=none"
    )
    assert node_url("redis://h:6379/3") == "redis://h:6379/3"
    with pytest.raises(ValueError, match="only database 0"):
        node_url("redis+cluster://h:7000/1")


def test_a_cluster_needs_a_broker_of_its_own(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="BROKER_URL"):
        Settings(data_dir=tmp_path, redis_url="redis+cluster://h:7000")
    assert Settings(
        data_dir=tmp_path, redis_url="redis+cluster://h:7000", broker_url="redis://other:6379/0"
    ).broker_url
    assert (
        Settings(data_dir=tmp_path, redis_url="redis://h:6379/0").effective_broker_url == "redis://h:6379/0"
    )
