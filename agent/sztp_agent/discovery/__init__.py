"""Where a device learns its bootstrap servers: DHCP leases (option 143 / 136, RFC 8572 §8) of
the DHCP clients a device may run, treated as untrusted, and configured URIs."""

from .leases import DEFAULT_LOCATIONS, LeaseLocations, find_offers
from .offer import LeaseOffer

__all__ = ["DEFAULT_LOCATIONS", "LeaseLocations", "LeaseOffer", "find_offers"]
