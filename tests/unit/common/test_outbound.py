"""The outbound address rules, per refused class, with a stub resolver: nothing is ever sent."""

from __future__ import annotations

import ipaddress

import httpx
import pytest

from common.outbound import (
    IPAddress,
    OutboundPolicy,
    OutboundRefused,
    PinnedTransport,
    Target,
    Unresolvable,
    _pinned,
    refused_class,
)
from config import Settings


class StubResolver:
    """A hand-written DNS: fixed answers, and a record of every name asked for."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.asked: list[tuple[str, int]] = []

    def __call__(self, host: str, port: int) -> list[IPAddress]:
        self.asked.append((host, port))
        if host not in self.answers:
            raise Unresolvable(f"host {host!r} cannot be resolved")
        return [ipaddress.ip_address(address) for address in self.answers[host]]


REFUSED = [
    ("127.0.0.1", "loopback"),
    ("127.8.9.10", "loopback"),
    ("::1", "loopback"),
    ("10.0.0.7", "private"),
    ("172.16.5.4", "private"),
    ("172.31.255.255", "private"),
    ("192.168.1.20", "private"),
    ("169.254.1.1", "link-local"),
    ("fe80::1", "link-local"),
    ("169.254.169.254", "cloud metadata"),
    ("fd00:ec2::254", "cloud metadata"),
    ("100.100.100.200", "cloud metadata"),
    ("fd12:3456::1", "unique-local"),
    ("0.0.0.0", "unspecified"),
    ("::", "unspecified"),
    ("224.0.0.251", "multicast"),
    ("ff02::1", "multicast"),
    ("100.64.0.1", "non-public"),
    ("::ffff:127.0.0.1", "loopback"),
    ("::ffff:10.1.2.3", "private"),
    ("64:ff9b::a9fe:a9fe", "cloud metadata"),
    ("2002:c0a8:0101::1", "private"),
]


@pytest.mark.parametrize(("address", "kind"), REFUSED)
def test_each_non_public_class_is_named(address: str, kind: str) -> None:
    assert refused_class(ipaddress.ip_address(address)) == kind


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111"])
def test_public_addresses_pass(address: str) -> None:
    assert refused_class(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(("address", "kind"), REFUSED)
def test_literal_address_urls_are_refused_without_dns(address: str, kind: str) -> None:
    resolver = StubResolver({})
    host = f"[{address}]" if ":" in address else address
    with pytest.raises(OutboundRefused, match=kind):
        OutboundPolicy((), resolver).vet(f"http://{host}:8080/audio.mp3")
    assert resolver.asked == []


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("10.1.2.3", "private"),
        ("127.0.0.1", "loopback"),
        ("169.254.169.254", "cloud metadata"),
        ("fd00::5", "unique-local"),
    ],
)
def test_names_are_checked_after_resolution(address: str, kind: str) -> None:
    resolver = StubResolver({"files.example.com": [address]})
    with pytest.raises(OutboundRefused, match=f"resolves to {address}.*{kind}"):
        OutboundPolicy((), resolver).vet("https://files.example.com/a.mp3")
    assert resolver.asked == [("files.example.com", 443)]


def test_one_private_answer_among_public_ones_refuses() -> None:
    resolver = StubResolver({"mixed.example.com": ["93.184.216.34", "10.0.0.1"]})
    with pytest.raises(OutboundRefused, match="private"):
        OutboundPolicy((), resolver).vet("http://mixed.example.com/")


def test_public_name_is_vetted_to_its_first_address() -> None:
    resolver = StubResolver({"cdn.example.com": ["93.184.216.34", "2606:2800:220:1::1"]})
    target = OutboundPolicy((), resolver).vet("https://CDN.example.com./x.flac?sig=1")
    assert target.host == "cdn.example.com"
    assert target.port == 443
    assert target.address == ipaddress.ip_address("93.184.216.34")


@pytest.mark.parametrize(
    ("allowlist", "url"),
    [
        ("127.0.0.1", "http://127.0.0.1:9000/a.wav"),
        ("10.0.0.0/8", "http://files.internal/a.wav"),
        ("files.internal", "http://files.internal/a.wav"),
        (" other.host , FILES.internal ", "http://files.internal:81/a.wav"),
        ("::1", "http://[::1]:9000/a.wav"),
    ],
)
def test_allowlist_admits_hosts_and_cidrs(allowlist: str, url: str) -> None:
    resolver = StubResolver({"files.internal": ["10.20.30.40"]})
    OutboundPolicy(Settings(outbound_allowlist=allowlist).outbound_allowlist, resolver).vet(url)


def test_allowlist_is_specific() -> None:
    resolver = StubResolver({"files.internal": ["10.20.30.40"]})
    policy = OutboundPolicy(["127.0.0.1", "10.0.0.0/16"], resolver)
    with pytest.raises(OutboundRefused, match="loopback"):
        policy.vet("http://[::1]/")
    with pytest.raises(OutboundRefused, match="private"):
        policy.vet("http://files.internal/")


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://example.com/a.mp3", "only http and https"),
        ("file:///etc/passwd", "only http and https"),
        ("gopher://example.com/", "only http and https"),
        ("http://user:pw@example.com/a.mp3", "user name or password"),
        ("http:///a.mp3", "no host"),
        ("not a url", "only http and https"),
    ],
)
def test_malformed_or_other_schemes_are_refused(url: str, reason: str) -> None:
    resolver = StubResolver({"example.com": ["93.184.216.34"]})
    with pytest.raises(OutboundRefused, match=reason):
        OutboundPolicy((), resolver).vet(url)


def test_unresolvable_host_is_refused() -> None:
    with pytest.raises(Unresolvable, match="cannot be resolved"):
        OutboundPolicy((), StubResolver({})).vet("http://nowhere.invalid/")


def test_pinned_request_goes_to_the_vetted_address_with_host_and_sni_kept() -> None:
    target = Target(
        url=httpx.URL("https://files.example.com/a.mp3"),
        host="files.example.com",
        port=443,
        address=ipaddress.ip_address("93.184.216.34"),
    )
    request = httpx.Request("GET", "https://files.example.com/a.mp3")
    pinned = _pinned(request, target)
    assert pinned.url.host == "93.184.216.34"
    assert pinned.headers["host"] == "files.example.com"
    assert pinned.extensions["sni_hostname"] == "files.example.com"


def test_pinned_transport_refuses_other_hosts() -> None:
    target = Target(
        url=httpx.URL("http://a.example.com/"),
        host="a.example.com",
        port=80,
        address=ipaddress.ip_address("93.184.216.34"),
    )
    with (
        httpx.Client(transport=PinnedTransport(target)) as client,
        pytest.raises(OutboundRefused, match="does not match"),
    ):
        client.get("http://b.example.com/")
