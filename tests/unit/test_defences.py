"""The ingest edge's pure parts: address parsing, CIDR matching, the client behind proxies,
the rate-limited unit, settings checks, and the concurrency cap (as plain ASGI)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import MutableMapping
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.config import Settings
from ingest.app import create_app
from ingest.defences import (
    MAX_FORWARDED_HOPS,
    Address,
    ConcurrencyCap,
    EdgeDefences,
    client_address,
    in_networks,
    limit_key,
    parse_address,
    parse_networks,
)

ipv4 = st.integers(0, 2**32 - 1).map(IPv4Address)


def _not_mapped(address: IPv6Address) -> bool:
    return address.ipv4_mapped is None


ipv6 = st.integers(0, 2**128 - 1).map(IPv6Address).filter(_not_mapped)
addresses = st.one_of(ipv4, ipv6)


def written(address: Address, port: int | None) -> str:
    """How peers and proxies write an address, with or without a port."""
    if port is None:
        return str(address)
    return f"[{address}]:{port}" if address.version == 6 else f"{address}:{port}"


# --- parse_address -------------------------------------------------------------------------


@given(addresses, st.one_of(st.none(), st.integers(0, 65535)), st.sampled_from(["", " ", "\t"]))
def test_every_written_form_parses_back(address: Address, port: int | None, pad: str) -> None:
    assert parse_address(pad + written(address, port) + pad) == address


@given(ipv4)
def test_ipv4_mapped_ipv6_is_the_ipv4_address(address: IPv4Address) -> None:
    assert parse_address(f"::ffff:{address}") == address
    assert parse_address(f"[::ffff:{address}]:443") == address


@given(st.text(max_size=80))
def test_any_text_parses_or_is_none_without_raising(text: str) -> None:
    parsed = parse_address(text)
    assert parsed is None or isinstance(parsed, IPv4Address | IPv6Address)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "unknown",
        "1.2.3",
        "1.2.3.4:",
        "1.2.3.4:99999",
        "1.2.3.4:²",
        "[2001:db8::1",
        "[2001:db8::1]x",
        "[2001:db8::1]:",
        "[2001:db8::1]]",
        "2001:db8::1:x",
        "1.2.3.4 5.6.7.8",
        "9" * 400,
        "1.2.3.4" + " " * 100 + "x",
    ],
)
def test_garbage_is_none(text: str) -> None:
    assert parse_address(text) is None


# --- networks --------------------------------------------------------------------------------


@given(addresses, st.data())
def test_an_address_is_in_every_network_built_around_it(address: Address, data: Any) -> None:
    prefix = data.draw(st.integers(0, address.max_prefixlen))
    network = ip_network(f"{address}/{prefix}", strict=False)
    (parsed,) = parse_networks([f" {network} "], "x")
    assert in_networks(address, [parsed])
    # Outside: the first address after the network's end, when there is one.
    after = int(network.broadcast_address) + 1
    if after < 2**address.max_prefixlen:
        assert not in_networks(type(address)(after), [parsed])


@given(ipv4, ipv6)
def test_families_never_match_each_other(v4: IPv4Address, v6: IPv6Address) -> None:
    assert not in_networks(v4, parse_networks(["::/0"], "x"))
    assert not in_networks(v6, parse_networks(["0.0.0.0/0"], "x"))


def test_none_is_in_no_network() -> None:
    assert not in_networks(None, parse_networks(["0.0.0.0/0", "::/0"], "x"))


@pytest.mark.parametrize("bad", ["10.0.0.0/33", "nonsense", "", "2001:db8::/129", "1.2.3.4/-1"])
def test_bad_networks_name_the_setting(bad: str) -> None:
    with pytest.raises(ValueError, match="MONIEPOINT_ALLOWED_IPS"):
        parse_networks(["10.0.0.0/8", bad], "moniepoint_allowed_ips")


def test_host_bits_are_allowed_in_a_network() -> None:
    assert parse_networks(["10.1.2.3/8"], "x") == (ip_network("10.0.0.0/8"),)


# --- client_address --------------------------------------------------------------------------

PROXIES = parse_networks(["10.0.0.0/8", "fd00::/8"], "trusted_proxies")
proxy_addresses = st.one_of(
    st.integers(0, 2**24 - 1).map(lambda n: IPv4Address(0x0A000000 + n)),
    st.integers(0, 2**120 - 1).map(lambda n: IPv6Address((0xFD << 120) + n)),
)
public = addresses.filter(lambda a: not in_networks(a, PROXIES))


@given(public, st.lists(st.text(max_size=30), max_size=5))
def test_an_untrusted_peer_is_the_client_whatever_it_forwards(
    peer: Address, forwarded: list[str]
) -> None:
    assert client_address(written(peer, 5100), forwarded, PROXIES) == peer


@given(
    st.lists(st.one_of(public.map(str), st.text(max_size=20)), max_size=4),  # client's claims
    public,
    st.lists(proxy_addresses, max_size=4),
    proxy_addresses,
)
def test_behind_trusted_proxies_the_rightmost_untrusted_hop_is_the_client(
    claims: list[str], client: Address, chain: list[Address], peer: Address
) -> None:
    # What the client sent, then what each trusted proxy appended, possibly over two headers.
    entries = [*claims, str(client), *map(str, chain)]
    header = ", ".join(entries)
    assert client_address(str(peer), [header], PROXIES) == client
    split = len(claims)
    headers = [", ".join(entries[:split]), ", ".join(entries[split:])]
    assert client_address(str(peer), headers, PROXIES) == client


@given(proxy_addresses, st.lists(proxy_addresses, min_size=1, max_size=4))
def test_a_chain_of_trusted_proxies_gives_its_leftmost(peer: Address, chain: list[Address]) -> None:
    assert client_address(str(peer), [", ".join(map(str, chain))], PROXIES) == chain[0]


@given(proxy_addresses)
def test_a_trusted_peer_without_forwarded_for_is_the_client(peer: Address) -> None:
    assert client_address(str(peer), [], PROXIES) == peer
    assert client_address(str(peer), [""], PROXIES) == peer


def test_an_unreadable_hop_stops_at_the_last_vouched_address() -> None:
    header = "203.0.113.9, garbage, 10.0.0.2"
    assert client_address("10.0.0.1", [header], PROXIES) == ip_address("10.0.0.2")


def test_only_the_last_hops_are_walked() -> None:
    chain = ", ".join(f"10.0.{i // 256}.{i % 256}" for i in range(MAX_FORWARDED_HOPS + 5))
    assert client_address("10.0.0.1", ["203.0.113.9, " + chain], PROXIES) == ip_address("10.0.0.5")


def test_no_trusted_proxies_means_the_peer() -> None:
    assert client_address("10.0.0.1", ["203.0.113.9"], ()) == ip_address("10.0.0.1")


@pytest.mark.parametrize("peer", [None, "", "testclient", "unix:/run/x.sock"])
def test_an_unknown_peer_is_no_client(peer: str | None) -> None:
    assert client_address(peer, ["203.0.113.9"], PROXIES) is None


# --- the rate-limited unit -------------------------------------------------------------------


@given(ipv4)
def test_ipv4_is_limited_per_address(address: IPv4Address) -> None:
    assert limit_key(address) == str(address)


@given(ipv6, st.integers(0, 2**64 - 1))
def test_ipv6_is_limited_per_64(address: IPv6Address, host: int) -> None:
    sibling = IPv6Address((int(address) >> 64 << 64) + host)
    assert limit_key(address) == limit_key(sibling)
    assert limit_key(address).endswith("/64")
    assert ip_address(limit_key(address).split("/")[0]) in ip_network(f"{address}/64", False)


# --- settings --------------------------------------------------------------------------------


def test_defences_from_settings() -> None:
    settings = Settings(
        moniepoint_allowed_ips="203.0.113.0/24, 2001:db8::/32",  # type: ignore[arg-type]
        trusted_proxies="10.0.0.0/8",  # type: ignore[arg-type]
        ingest_ip_limit_per_minute=0,
    )
    defences = EdgeDefences.from_settings(settings, ["moniepoint", "paystack"])
    assert defences.counter is None  # 0 = no limit: Redis is never asked
    assert defences.allowed("moniepoint", ip_address("203.0.113.50"))
    assert defences.allowed("moniepoint", ip_address("2001:db8::1"))
    assert not defences.allowed("moniepoint", ip_address("198.51.100.1"))
    assert not defences.allowed("moniepoint", None)
    assert defences.allowed("paystack", ip_address("198.51.100.1"))  # empty list: all
    assert defences.allowed("paystack", None)
    assert defences.trusted_proxies == (ip_network("10.0.0.0/8"),)


def test_a_bad_allowlist_stops_the_start() -> None:
    settings = Settings(paystack_allowed_ips="10.0.0.0/8,10.0.0.300")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=re.escape("PAYSTACK_ALLOWED_IPS: '10.0.0.300'")):
        create_app(settings)


# --- the concurrency cap ---------------------------------------------------------------------


async def test_the_cap_sheds_beyond_its_limit_and_recovers() -> None:
    release = asyncio.Event()
    entered = 0

    async def app(scope: Any, receive: Any, send: Any) -> None:
        nonlocal entered
        entered += 1
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    cap = ConcurrencyCap(app, limit=2)

    async def call(path: str = "/webhooks/x") -> list[MutableMapping[str, Any]]:
        sent: list[MutableMapping[str, Any]] = []

        async def send(message: MutableMapping[str, Any]) -> None:
            sent.append(message)

        await cap({"type": "http", "path": path}, _never, send)
        return sent

    held = [asyncio.create_task(call()) for _ in range(2)]
    while entered < 2:
        await asyncio.sleep(0)
    shed = await call()
    assert shed[0]["status"] == 503
    assert (b"retry-after", b"1") in shed[0]["headers"]
    assert (b"content-type", b"application/problem+json") in shed[0]["headers"]
    problem = orjson.loads(shed[1]["body"])
    assert (problem["status"], problem["retry_after"]) == (503, 1)
    assert problem["type"].endswith("#overloaded") and "retry" in problem["detail"]
    exempt = asyncio.create_task(call("/healthz"))  # probes pass even at the cap
    while entered < 3:
        await asyncio.sleep(0)
    release.set()
    for task in [*held, exempt]:
        assert (await task)[0]["status"] == 200
    assert cap.in_flight == 0
    assert (await call())[0]["status"] == 200


async def test_the_cap_frees_its_slot_when_the_app_fails() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("boom")

    cap = ConcurrencyCap(app, limit=1)
    with pytest.raises(RuntimeError):
        await cap({"type": "http", "path": "/x"}, _never, _never)
    assert cap.in_flight == 0


async def _never(*_: Any) -> Any:
    raise AssertionError("not expected")
