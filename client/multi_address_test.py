"""Several comma-separated addresses: one static target, round_robin, calls spread over every server."""

from __future__ import annotations

import asyncio
import json
import socket

import pytest
from portpicker import pick_unused_port

from client import NO_RETRIES, AsyncRecommenderClient, RecommenderClient
from client.channel import RetryPolicy, channel_options, grpc_target
from testing.fake_serving import fake_server


def _service_config(options) -> dict | None:
    values = dict(options)
    return json.loads(values["grpc.service_config"]) if "grpc.service_config" in values else None


def test_one_address_passes_through_with_pick_first():
    assert grpc_target("localhost:8500") == ("localhost:8500", False)
    assert grpc_target("dns:///tfserving:8500") == ("dns:///tfserving:8500", False)
    assert "loadBalancingConfig" not in (_service_config(channel_options(RetryPolicy())) or {})
    assert _service_config(channel_options(NO_RETRIES)) is None


def test_several_addresses_become_one_static_target():
    assert grpc_target("127.0.0.1:8500, 127.0.0.2:8500") == ("ipv4:127.0.0.1:8500,127.0.0.2:8500", True)
    assert grpc_target("[::1]:8500,[::1]:8600") == ("ipv6:[::1]:8500,[::1]:8600", True)
    # Host names resolve now, to every IPv4 address; duplicates collapse.
    assert grpc_target("localhost:8500,127.0.0.1:8500,localhost:8501") == ("ipv4:127.0.0.1:8500,127.0.0.1:8501", True)


def test_a_host_with_several_addresses_contributes_them_all(monkeypatch):
    def fake_getaddrinfo(host, port, family, kind):
        assert (host, family) == ("tfserving", socket.AF_INET)
        return [(family, kind, 6, "", (ip, port)) for ip in ("127.0.0.14", "127.0.0.15")]

    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo)
    assert grpc_target("tfserving:8500,tfserving:8500") == ("ipv4:127.0.0.14:8500,127.0.0.15:8500", True)


@pytest.mark.parametrize(
    "target, message",
    [
        ("127.0.0.1:8500,", "must be HOST:PORT, got ''"),
        ("127.0.0.1:8500,127.0.0.1", "got '127.0.0.1'"),
        ("127.0.0.1:8500,:8501", "got ':8501'"),
        ("127.0.0.1:8500,127.0.0.1:http", "got '127.0.0.1:http'"),
        ("127.0.0.1:8500,127.0.0.1:70000", "got '127.0.0.1:70000'"),
        ("127.0.0.1:8500,[::1]:8500", "mixes IPv4 and IPv6"),
    ],
)
def test_malformed_lists_fail_naming_the_part(target, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[")):
        grpc_target(target)
    with pytest.raises(ValueError, match="mixes|HOST:PORT"):
        RecommenderClient(target)


def test_an_unresolvable_host_fails_at_construction(monkeypatch):
    def fail(*_args):
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", fail)
    with pytest.raises(ValueError, match="cannot resolve 'replica-2' to an IPv4 address"):
        grpc_target("127.0.0.1:8500,replica-2:8500")


@pytest.mark.parametrize("retry", [RetryPolicy(), NO_RETRIES], ids=["retries", "no-retries"])
def test_round_robin_is_in_the_service_config_with_or_without_retries(retry):
    config = _service_config(channel_options(retry, round_robin=True))
    assert config["loadBalancingConfig"] == [{"round_robin": {}}]
    assert ("methodConfig" in config) == (retry.max_attempts > 1)


def test_calls_spread_over_both_servers():
    with fake_server() as (first, a), fake_server() as (second, b):
        with RecommenderClient(f"{first},{second}", retry=NO_RETRIES) as client:
            for _ in range(40):
                client.predict(1, [1, 2])
        assert a.calls + b.calls == 40
        # round_robin alternates over READY connections: an even split, give or take
        # the first calls made while one connection was still being set up.
        assert min(a.calls, b.calls) >= 15, (a.calls, b.calls)


def test_async_client_spreads_calls_too():
    async def run(target: str) -> None:
        async with AsyncRecommenderClient(target, retry=NO_RETRIES) as client:
            for _ in range(40):
                await client.recommend(1, k=3)

    with fake_server() as (first, a), fake_server() as (second, b):
        asyncio.run(run(f"{first},{second}"))
        assert a.calls + b.calls == 40 and min(a.calls, b.calls) >= 15, (a.calls, b.calls)


def test_a_server_that_is_down_is_skipped():
    down = f"127.0.0.1:{pick_unused_port()}"
    with fake_server() as (up, behaviour):
        with RecommenderClient(f"{down},{up}", retry=NO_RETRIES, timeout_s=5) as client:
            for _ in range(10):
                client.predict(1, 1)
        assert behaviour.calls == 10
