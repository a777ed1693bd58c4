"""sztp-agent: the device side of RFC 8572 secure zero touch provisioning, run at boot by its
systemd unit and driven by the `ztp` command. It finds bootstrap servers (DHCP leases,
configured URIs), runs the kit's strict RFC 8572 §5 procedure with the device's own IDevID, and
onboards for real: images and configuration go to install handlers, the device reboots through
its init system and the session resumes after boot."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("sztp")
except PackageNotFoundError:  # run from a checkout without installing it
    __version__ = "0+unknown"
