"""Loopback addresses for Gateways in standalone mode (see ARCHITECTURE, "Addresses").

Every Gateway listens on its own 127.0.0.0/8 address so that many Gateways can
each use port 80. A requested `IPAddress` inside 127.0.0.0/8 is honoured;
otherwise an address is taken from the pool and kept while the Gateway exists
(addresses something else on the machine listens on are skipped). A Gateway's pool
address is derived from its identity (the first free one from a hash of
namespace/name), and the host infrastructure persists assignments, so a restarted
control plane gives every Gateway the address its clients know.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
from collections.abc import Callable, Iterable

DEFAULT_POOL = "127.10.0.0/16"
LOOPBACK = ipaddress.IPv4Network("127.0.0.0/8")

GatewayKey = tuple[str, str]  # (namespace, name)

log = logging.getLogger(__name__)


def usable_address(value: str) -> str | None:
    """The canonical form of `value` when it is an IPv4 address in 127.0.0.0/8."""
    try:
        ip = ipaddress.ip_address(value.strip())
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv4Address) and ip in LOOPBACK:
        return str(ip)
    return None


class AddressPool:
    def __init__(self, cidr: str = DEFAULT_POOL,
                 in_use: Callable[[], set[str]] | None = None) -> None:
        network = ipaddress.ip_network(cidr, strict=False)
        if not isinstance(network, ipaddress.IPv4Network) or not network.subnet_of(LOOPBACK):
            raise ValueError(f"address pool {cidr} is not within 127.0.0.0/8")
        self.network = network
        # hosts() skips the network and broadcast addresses (except for /31 and /32)
        self._size = max(network.num_addresses - 2, 1) if network.prefixlen < 31 else network.num_addresses
        self._first = int(network.network_address) + (1 if network.prefixlen < 31 else 0)
        self._assigned: dict[GatewayKey, str] = {}
        self._owners: dict[str, GatewayKey] = {}
        self._in_use = in_use or listening_addresses

    def assign(self, gateway_key: GatewayKey, requested: Iterable[str] = ()) -> str | None:
        """The address Gateway `gateway_key` listens on.

        The first requested value that is a loopback IPv4 address wins; when some
        addresses are requested but none is usable the answer is None (the
        translator reports the Gateway's address as not usable). With nothing
        requested, a pool address is assigned and kept for this key.
        """
        requested = [r for r in requested if r]
        if requested:
            self.release(gateway_key)
            for value in requested:
                address = usable_address(value)
                if address is not None:
                    return address
            return None
        current = self._assigned.get(gateway_key)
        if current is not None:
            return current
        return self._allocate(gateway_key)

    def reserve(self, gateway_key: GatewayKey, address: str) -> bool:
        """Give `gateway_key` the pool address it had before (a previous run's): taken
        even while something listens on it, since that is normally its own Envoy."""
        if address in self._owners or usable_address(address) != address \
                or ipaddress.IPv4Address(address) not in self.network:
            return False
        self._assigned[gateway_key] = address
        self._owners[address] = gateway_key
        return True

    def release(self, gateway_key: GatewayKey) -> None:
        address = self._assigned.pop(gateway_key, None)
        if address is not None:
            self._owners.pop(address, None)

    def assigned(self) -> dict[GatewayKey, str]:
        return dict(self._assigned)

    def _allocate(self, gateway_key: GatewayKey) -> str | None:
        # Derived from the Gateway's identity, so it is the same after a restart. Skipping
        # addresses someone already listens on keeps two control planes on one machine
        # (same manifests, same pool) from binding the same address: Envoy's listeners use
        # SO_REUSEPORT, so the kernel would silently share connections between them.
        busy = self._in_use()
        digest = hashlib.sha256(f"{gateway_key[0]}/{gateway_key[1]}".encode()).digest()
        start = int.from_bytes(digest[:8], "big") % self._size
        for i in range(self._size):
            address = str(ipaddress.IPv4Address(self._first + (start + i) % self._size))
            if address not in self._owners and address not in busy:
                self._assigned[gateway_key] = address
                self._owners[address] = gateway_key
                return address
        log.warning("no free address left in %s for Gateway %s/%s", self.network, *gateway_key)
        return None


def listening_addresses(proc_net: str = "/proc/net") -> set[str]:
    """IPv4 addresses with a listening TCP or a bound UDP socket (Linux; empty elsewhere)."""
    found: set[str] = set()
    for table, state in (("tcp", "0A"), ("udp", "07")):  # LISTEN, CLOSE (bound, unconnected)
        try:
            with open(f"{proc_net}/{table}", encoding="ascii") as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if len(fields) > 3 and fields[3] == state:
                found.add(_proc_ipv4(fields[1].split(":")[0]))
    return found


def _proc_ipv4(hex_address: str) -> str:
    """/proc/net/tcp's little-endian hex form ('0100007F') -> '127.0.0.1'."""
    return str(ipaddress.IPv4Address(int.from_bytes(bytes.fromhex(hex_address), "little")))


def is_ip(value: str) -> bool:
    """An IPv4 or IPv6 address literal (not a name)."""
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True
