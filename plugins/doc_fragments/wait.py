# Copyright: sztp developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations


class ModuleDocFragment:
    # The options of a module that can wait until its devices reach a bootstrapping status, as
    # `sztpctl wait` does (module_utils/sztp.py: WAIT_ARGUMENT_SPEC, wait_for_devices).
    DOCUMENTATION = r"""
options:
  wait:
    description:
      - Once the task's work is done, wait until each of its devices is in one of the
        O(wait_for) statuses.
      - The wait ends early, failing the task, when a device reaches V(failed) and V(failed)
        is not in O(wait_for); after O(wait_timeout) seconds it fails the task naming the
        devices not there yet.
      - A device that reached a status waited for counts as there, whatever it does next.
    type: bool
    default: false
  wait_for:
    description:
      - The statuses that end the wait for a device.
    type: list
    elements: str
    choices: [not-seen, in-progress, rebooting, complete, failed, stalled]
    default: [complete]
  wait_timeout:
    description:
      - How long to wait at most, in seconds; V(0) checks once.
    type: float
    default: 600
notes:
  - The wait asks the server once per round about every device still waited for (the paged
    device listing for more than a few), pausing longer between rounds while nothing changes
    and as long as the server's C(Retry-After) asks when it is busy.
"""
