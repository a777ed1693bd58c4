# Copyright: sztp developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations


class ModuleDocFragment:
    # The connection to the sztp-server admin API, shared by every module of the collection
    # that talks to it, from any POSIX host and with check mode.
    DOCUMENTATION = r"""
options:
  server:
    description:
      - URL of the sztp-server admin API, for example C(https://sztp.example.com:7080).
      - If not set, the value of the E(SZTP_SERVER) environment variable is used.
      - Required, through the option, the environment or C(module_defaults).
    type: str
  token:
    description:
      - Admin API token (bearer token).
      - If not set, the value of the E(SZTP_TOKEN) environment variable is used.
      - Takes precedence over O(token_file).
      - Never shown in results, diffs or error messages.
    type: str
  token_file:
    description:
      - Path of a file holding the admin API token, on the host the module runs on.
      - If not set, the value of the E(SZTP_TOKEN_FILE) environment variable is used.
      - Ignored when O(token) (or E(SZTP_TOKEN)) is set.
    type: path
  ca_bundle:
    description:
      - PEM file of the CA certificates that verify the server's TLS certificate.
      - If not set, the value of the E(SZTP_CA_BUNDLE) environment variable is used;
        without either, the system trust store is used.
    type: path
  validate_certs:
    description:
      - Whether to verify the server's TLS certificate. Only turn this off in a lab.
    type: bool
    default: true
  timeout:
    description:
      - Seconds to wait for the server to answer a request.
    type: float
    default: 30
requirements:
  - The C(sztp) Python distribution (the C(sztp) kit, no extras), on the host the module runs on,
    usually C(localhost).
notes:
  - The modules talk to the admin API from the host they run on; use C(delegate_to) or a
    C(localhost) play.
  - Set the connection options once for every module of the collection with the
    C(group/sztp.bootstrap.sztp) group in C(module_defaults).
attributes:
  action_group:
    description: Use C(group/sztp.bootstrap.sztp) in C(module_defaults) to set the connection options of every module of this collection.
    support: full
    membership:
      - sztp.bootstrap.sztp
  check_mode:
    support: full
  platform:
    platforms: posix
"""
