"""Key naming: one hash-tagged prefix for every name, derived from nothing secret."""

from __future__ import annotations

import pytest

from wsgate.stores.redis_keys import RedisKeys, database_of, default_prefix


@pytest.mark.parametrize(
    ("url", "db"),
    [
        ("redis://127.0.0.1:6379", 0),
        ("redis://127.0.0.1:6379/0", 0),
        ("redis://:s3cret@127.0.0.1:6379/1", 1),
        ("rediss://user:pw@h:6380/12", 12),
        ("redis://h?db=3", 3),
        ("unix:///tmp/redis.sock?db=4", 4),
        ("redis+sentinel://h1:26379,h2:26379/mymaster/2", 2),
        ("redis+sentinel://h1:26379/mymaster", 0),
    ],
)
def test_the_database_number_is_read_from_the_url(url: str, db: int) -> None:
    assert database_of(url) == db


def test_the_default_prefix_holds_no_secret_and_differs_per_database() -> None:
    first = default_prefix("redis://:s3cret@10.0.0.1:6379/0")
    second = default_prefix("redis://:s3cret@10.0.0.1:6379/1")
    assert first != second
    for prefix in (first, second):
        assert "s3cret" not in prefix and "10.0.0.1" not in prefix


def test_every_name_starts_with_one_hash_tag() -> None:
    keys = RedisKeys("tenant-a")
    names = [
        keys.revoked("jti", "x}{y"),
        keys.revoked("sub", "alice"),
        keys.revocations_channel,
        keys.conns("{bob}"),
        keys.fanout_stream,
        keys.node_channel("n1"),
        keys.name("custom", "part"),
    ]
    for name in names:
        # Redis Cluster hashes the text between the first "{" and the next "}".
        assert name.startswith("{tenant-a}:")
        assert name[1 : name.index("}")] == "tenant-a"
        assert keys.owns(name)
    assert len(set(names)) == len(names)
    assert not RedisKeys("tenant-b").owns(names[0])


@pytest.mark.parametrize("bad", ["", "a{b", "a}b", "a b", "x" * 65, "é"])
def test_a_prefix_that_breaks_the_hash_tag_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="redis_prefix"):
        RedisKeys(bad)


def test_the_setting_refuses_a_bad_prefix() -> None:
    from pydantic import ValidationError

    from wsgate import Settings

    with pytest.raises(ValidationError):
        Settings(jwt_secret="k" * 32, redis_prefix="a{b}")
    assert Settings(jwt_secret="k" * 32, redis_prefix="tenant-a").redis_prefix == "tenant-a"
