"""Who a request comes from, for per-client limits: its address, and the network that address belongs to.

Why a network as well as an address: one client may hold many addresses (an IPv6 host usually has a whole /64, a
small provider hands a /24 to one building), so every per-client cap has a per-network share beside it (IPv4 /24,
IPv6 /64). Why trusted proxies: `X-Forwarded-For` is written by whoever sends the request; only the entries that
proxies the host trusts appended are the client's address, and only when the connection comes from such a proxy.
"""
from __future__ import annotations

import functools
import ipaddress
import os

# proxies in front of the app that append the client's address to X-Forwarded-For (a Hugging Face Space has one)
PROXY_HOPS = int(os.environ.get("CMR_PROXY_HOPS", "1" if os.environ.get("SPACE_ID") else "0"))
# the addresses those proxies connect from; default: private networks (a Space's proxy), never loopback or public ones
TRUSTED_PROXIES = tuple(ipaddress.ip_network(n.strip(), strict=False) for n in os.environ.get(
    "CMR_TRUSTED_PROXIES", "10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,100.64.0.0/10,fc00::/7").split(",") if n.strip())
NETWORK_BITS = {4: 24, 6: 64}  # the prefix a per-network share counts by


def _ip(text: str):
    try:
        ip = ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None
    return ip.ipv4_mapped or ip if ip.version == 6 else ip


def trusted(address: str) -> bool:
    """Whether `address` is one of the configured proxies."""
    ip = _ip(address)
    return ip is not None and any(ip in network for network in TRUSTED_PROXIES if network.version == ip.version)


def forwarded_for(headers) -> list[str]:
    """Every X-Forwarded-For entry in order, over all its header lines (a proxy appends to the last one; reading only
    the first line let a client's own line stand for the proxy's)."""
    lines = headers.getlist("x-forwarded-for") if hasattr(headers, "getlist") else [headers.get("x-forwarded-for", "")]
    return [h.strip() for line in lines if line for h in line.split(",") if h.strip()]


def client_address(request) -> str:
    """The address a per-client limit counts by: the socket's peer; behind PROXY_HOPS proxies, walking
    X-Forwarded-For from the right, the entry the outermost trusted proxy wrote. A peer that is not a trusted proxy
    (a client reaching the app directly) is the client, whatever its headers say."""
    address = request.client.host if getattr(request, "client", None) else "?"
    entries = forwarded_for(request.headers) if PROXY_HOPS > 0 else []
    for _ in range(PROXY_HOPS):
        if not entries or not trusted(address) or _ip(entries[-1]) is None:
            break
        address = entries.pop()
    return str(_ip(address) or address)[:64]


@functools.lru_cache(maxsize=65536)
def network_of(address: str) -> str:
    """The network a per-network share counts by: IPv4 /24, IPv6 /64 (anything else: the address itself)."""
    ip = _ip(address)
    if ip is None:
        return address
    return str(ipaddress.ip_network(f"{ip}/{NETWORK_BITS[ip.version]}", strict=False))
