"""Who a request comes from: X-Forwarded-For read only as configured proxies write it, and the network per-network
shares count by."""
import ipaddress

import pytest
from starlette.requests import Request

from cmr_demo.serve import clients


def request(peer: str, *forwarded: str) -> Request:
    return Request({"type": "http", "client": (peer, 1234),
                    "headers": [(b"x-forwarded-for", line.encode()) for line in forwarded]})


@pytest.fixture
def behind_one_proxy(monkeypatch):
    monkeypatch.setattr(clients, "PROXY_HOPS", 1)
    monkeypatch.setattr(clients, "TRUSTED_PROXIES", (ipaddress.ip_network("10.0.0.0/8"),))


def test_without_proxies_the_socket_is_the_client(monkeypatch):
    monkeypatch.setattr(clients, "PROXY_HOPS", 0)
    assert clients.client_address(request("203.0.113.5", "198.51.100.1")) == "203.0.113.5"


def test_a_client_reaching_the_app_directly_cannot_pose_as_others(behind_one_proxy):
    """With SPACE_ID set, 8 forged X-Forwarded-For values from one socket took all 8 lab slots where the app was
    reachable directly: a peer that is not a configured proxy is the client, whatever it writes."""
    for n in range(8):
        assert clients.client_address(request("203.0.113.5", f"198.51.100.{n}")) == "203.0.113.5"
    assert clients.client_address(request("127.0.0.1", "198.51.100.1")) == "127.0.0.1"  # loopback is not trusted


def test_behind_the_proxy_its_own_entry_counts_over_all_header_lines(behind_one_proxy):
    assert clients.client_address(request("10.1.2.3", "198.51.100.7")) == "198.51.100.7"
    # a client's own entries (left of the proxy's) are ignored; a second header line is read, not only the first
    assert clients.client_address(request("10.1.2.3", "1.1.1.1, 2.2.2.2", "198.51.100.7")) == "198.51.100.7"
    assert clients.client_address(request("10.1.2.3", "1.1.1.1", "198.51.100.7, 203.0.113.9")) == "203.0.113.9"
    assert clients.client_address(request("10.1.2.3", "not-an-address")) == "10.1.2.3"
    assert clients.client_address(request("10.1.2.3")) == "10.1.2.3"


def test_two_trusted_hops_walk_from_the_right(behind_one_proxy, monkeypatch):
    monkeypatch.setattr(clients, "PROXY_HOPS", 2)
    assert clients.client_address(request("10.1.2.3", "6.6.6.6, 198.51.100.7, 10.9.9.9")) == "198.51.100.7"
    # the inner hop is not a trusted proxy: what it says is not believed
    assert clients.client_address(request("10.1.2.3", "6.6.6.6, 198.51.100.7, 203.0.113.1")) == "203.0.113.1"


@pytest.mark.parametrize("address, network", [
    ("198.51.100.77", "198.51.100.0/24"), ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
    ("::ffff:198.51.100.77", "198.51.100.0/24"), ("?", "?")])
def test_networks_are_ipv4_24_and_ipv6_64(address, network):
    assert clients.network_of(address) == network
