#!/usr/bin/python
# Copyright: sztp developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations

DOCUMENTATION = r"""
module: image
short_description: Manage a boot image known to an sztp-server
version_added: 0.1.0
description:
  - Creates, updates or deletes one boot image on an sztp-server. Onboarding profiles name
    an image; devices download it from O(download_uris) and check its SHA-256.
  - The image file itself is served by a file server (see the C(file_server) role), not by the
    bootstrap server.
author:
  - sztp developers (@sztp)
options:
  name:
    description:
      - The image's name (letters, digits, C(.), C(_), C(-)).
    type: str
    required: true
  os_name:
    description:
      - OS name the device reports once the image runs. Required when the image is created.
    type: str
  os_version:
    description:
      - OS version the device reports once the image runs. Required when the image is created.
    type: str
  download_uris:
    description:
      - HTTPS (or HTTP) URIs the device downloads the image from, tried in order.
    type: list
    elements: str
  sha256:
    description:
      - SHA-256 of the image, 64 hex digits (colons allowed).
      - Computed from O(src) when that is given; if both are given they must agree.
    type: str
  src:
    description:
      - Path of the image file on the host the module runs on, to compute O(sha256) from.
      - The file is not uploaded anywhere.
    type: path
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - sztp.bootstrap.connection
  - sztp.bootstrap.state
"""

EXAMPLES = r"""
- name: Publish LabOS 2.1 (hash computed from the local file)
  sztp.bootstrap.image:
    name: labos-2.1
    os_name: LabOS
    os_version: "2.1"
    download_uris:
      - https://files.example.com/images/labos-2.1.img
    src: /srv/images/labos-2.1.img

- name: An image whose hash is published by its vendor
  sztp.bootstrap.image:
    name: vendor-os-9
    os_name: VendorOS
    os_version: "9.0"
    download_uris: [https://files.example.com/images/vendor-os-9.bin]
    sha256: "{{ vendor_os_9_sha256 }}"
"""

RETURN = r"""
image:
  description:
    - The image as stored on the server (in check mode, as it would be). Null when absent.
  returned: always
  type: dict
  contains:
    name:
      description: The image's name.
      type: str
      returned: success
      sample: labos-2.1
    spec:
      description: The stored spec (hash in lower-case hex without colons).
      type: dict
      returned: success
      sample:
        os_name: LabOS
        os_version: "2.1"
        download_uris: [https://files.example.com/images/labos-2.1.img]
        sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
"""

import hashlib

from ansible_collections.sztp.bootstrap.plugins.module_utils.sztp import (
    run_resource_module,
)


def file_sha256(module, path):
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1024 * 1024), b""):
                digest.update(block)
    except OSError as exc:
        module.fail_json(msg="cannot read src %s: %s" % (path, exc.strerror))
    return digest.hexdigest()


def image_fields(module):
    """The spec, with the SHA-256 computed from `src` when it is given."""
    params = module.params
    sha256 = params["sha256"]
    if params["src"] and params["state"] == "present":
        computed = file_sha256(module, params["src"])
        if sha256 and sha256.replace(":", "").lower() != computed:
            module.fail_json(
                msg="sha256 %s does not match src %s (%s)" % (sha256, params["src"], computed)
            )
        sha256 = computed
    return dict(
        os_name=params["os_name"],
        os_version=params["os_version"],
        download_uris=params["download_uris"],
        sha256=sha256,
    )


def main():
    run_resource_module(
        "image",
        dict(
            os_name=dict(type="str"),
            os_version=dict(type="str"),
            download_uris=dict(type="list", elements="str"),
            sha256=dict(type="str"),
            src=dict(type="path"),
        ),
        spec_fields=image_fields,
    )


if __name__ == "__main__":
    main()
