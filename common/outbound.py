"""Which addresses the service may reach on a client's behalf (URL input, webhooks), and how."""

# A URL is vetted after DNS resolution: every address its host resolves to must be public
# (not loopback, private, unique-local, link-local, multicast, reserved, unspecified or a cloud
# metadata endpoint) unless the host, or a CIDR holding the address, is in OUTBOUND_ALLOWLIST. The
# connection then goes to the vetted address itself (the `Pinned*Transport`s), with the original
# Host header and TLS server name, so a second DNS answer (rebinding) cannot redirect it. Callers
# follow redirects themselves and vet each hop. Proxies from the environment are never used: a
# proxy would resolve the name again, out of our sight.

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

Resolver = Callable[[str, int], list[IPAddress]]
"""Maps (host, port) to the addresses a connection could go to; tests pass a stub."""

METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    ipaddress.ip_address(address)
    for address in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean, Oracle instance metadata
        "169.254.170.2",  # AWS ECS task metadata
        "fd00:ec2::254",  # AWS instance metadata over IPv6
        "100.100.100.200",  # Alibaba Cloud metadata
        "168.63.129.16",  # Azure wire server (a public address that reaches the host)
    )
)
"""Cloud metadata endpoints: refused by name even where another rule would miss them."""

UNIQUE_LOCAL = ipaddress.ip_network("fc00::/7")
NAT64 = ipaddress.ip_network("64:ff9b::/96")
SCHEMES = ("http", "https")


class OutboundRefused(ValueError):
    """The URL may not be fetched or posted to; `reason` says why, for the client."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Unresolvable(OutboundRefused):
    """The host has no address: the URL cannot be reached (not an address the rules refuse)."""


def system_resolver(host: str, port: int) -> list[IPAddress]:
    """Every address getaddrinfo gives for a TCP connection to host:port, in its order."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        raise Unresolvable(f"host {host!r} cannot be resolved ({error})") from None
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (mapped, NAT64 or 6to4), if any."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour


def refused_class(address: IPAddress) -> str | None:
    """The kind of non-public address this is (e.g. `loopback`), or None for a public one."""
    embedded = _embedded_ipv4(address)
    if embedded is not None:
        return refused_class(embedded)
    if address in METADATA_ADDRESSES:
        return "cloud metadata"
    if address.is_loopback:
        return "loopback"
    if address.is_unspecified:
        return "unspecified"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if isinstance(address, ipaddress.IPv6Address) and address in UNIQUE_LOCAL:
        return "unique-local"
    if address.is_private:
        return "private"
    if address.is_reserved:
        return "reserved"
    if not address.is_global:
        return "non-public"
    return None


@dataclass(frozen=True)
class Target:
    """A vetted URL and the one address its connection must go to."""

    url: httpx.URL
    host: str
    port: int
    address: IPAddress


def _parse_allowlist(
    entries: Iterable[str | Network],
) -> tuple[frozenset[str], tuple[Network, ...]]:
    hosts: set[str] = set()
    networks: list[Network] = []
    for raw in entries:
        if not isinstance(raw, str):
            networks.append(raw)
            continue
        entry = raw.strip().lower().rstrip(".")
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
        except ValueError:
            hosts.add(entry)
    return frozenset(hosts), tuple(networks)


class OutboundPolicy:
    """Vets URLs against the address rules; `allowlist` is OUTBOUND_ALLOWLIST's hosts and
    networks."""

    def __init__(
        self, allowlist: Iterable[str | Network] = (), resolver: Resolver = system_resolver
    ) -> None:
        self._hosts, self._networks = _parse_allowlist(allowlist)
        self._resolve = resolver

    def _allow_listed(self, address: IPAddress) -> bool:
        return any(address in network for network in self._networks)

    def check_address(self, host: str, address: IPAddress) -> None:
        """Raise OutboundRefused unless `address` (for `host`) may be connected to."""
        if host in self._hosts or self._allow_listed(address):
            return
        kind = refused_class(address)
        if kind is not None:
            shown = host if host == str(address) else f"{host} resolves to {address}, which"
            article = "an" if kind == "unspecified" else "a"
            raise OutboundRefused(
                f"{shown} is {article} {kind} address; the server does not connect there "
                "(an operator can allow it with OUTBOUND_ALLOWLIST)"
            )

    def vet(self, url: str | httpx.URL) -> Target:
        """Check scheme and host, resolve the host, check every address; the first one wins.

        Raises OutboundRefused with a reason for the client. Blocks on DNS: call it from a
        thread in async code.
        """
        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, TypeError) as error:
            raise OutboundRefused(f"not a valid URL: {error}") from None
        if parsed.scheme not in SCHEMES:
            raise OutboundRefused(f"only http and https URLs are accepted, not {parsed.scheme!r}")
        if parsed.userinfo:
            raise OutboundRefused("URLs with a user name or password are not accepted")
        host = parsed.host.lower().rstrip(".")
        if not host:
            raise OutboundRefused("the URL has no host")
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        try:
            addresses = [ipaddress.ip_address(host)]
        except ValueError:
            addresses = self._resolve(host, port)
        if not addresses:
            raise Unresolvable(f"host {host!r} resolves to no address")
        for address in addresses:
            self.check_address(host, address)
        return Target(url=parsed, host=host, port=port, address=addresses[0])


def _pinned(request: httpx.Request, target: Target) -> httpx.Request:
    """The request addressed to the vetted IP; Host header and TLS name stay the URL's host."""
    if request.url.host.lower().rstrip(".") != target.host or (
        (request.url.port or (443 if request.url.scheme == "https" else 80)) != target.port
    ):
        raise OutboundRefused(f"request to {request.url.host} does not match the vetted target")
    request.url = request.url.copy_with(host=str(target.address))
    if request.url.scheme == "https" and target.host != str(target.address):
        request.extensions = {**request.extensions, "sni_hostname": target.host}
    return request


class PinnedTransport(httpx.BaseTransport):
    """Sends requests for one vetted target to its vetted address, never to a new DNS answer."""

    def __init__(self, target: Target, verify: bool = True) -> None:
        self._target = target
        self._inner = httpx.HTTPTransport(verify=verify, trust_env=False)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Re-address the request to the vetted IP, then send it."""
        return self._inner.handle_request(_pinned(request, self._target))

    def close(self) -> None:
        """Close pooled connections."""
        self._inner.close()


class AsyncPinnedTransport(httpx.AsyncBaseTransport):
    """The asyncio twin of PinnedTransport."""

    def __init__(self, target: Target, verify: bool = True) -> None:
        self._target = target
        self._inner = httpx.AsyncHTTPTransport(verify=verify, trust_env=False)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Re-address the request to the vetted IP, then send it."""
        return await self._inner.handle_async_request(_pinned(request, self._target))

    async def aclose(self) -> None:
        """Close pooled connections."""
        await self._inner.aclose()


def redirect_target(response: httpx.Response, base: httpx.URL) -> httpx.URL | None:
    """Where a redirect points, resolved against `base` (the URL asked for), or None."""
    if not response.has_redirect_location:
        return None
    return base.join(response.headers["location"])
