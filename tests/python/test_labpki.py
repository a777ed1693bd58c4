"""Writing and loading a lab PKI (labpki)."""

import stat

import pytest
from cryptography import x509

from sztp.errors import PkiError, ValidationError
from sztp.labpki import load_credential, load_lab_pki, write_lab_pki
from sztp.protocol import certs, pki

SERIALS = ("SN-0001", "SN-0002")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    directory = tmp_path_factory.mktemp("lab")
    return write_lab_pki(directory, SERIALS, hw_model="lab-x1")


def mode(path):
    return stat.S_IMODE(path.stat().st_mode)


def all_files(lab):
    credentials = [lab.manufacturer_ca, lab.masa, lab.owner_ca, lab.owner, lab.ldevid_ca]
    credentials += [lab.tls_ca, lab.server]
    credentials += [device.idevid for device in lab.devices.values()]
    return credentials


def test_layout_matches_the_documented_paths(lab):
    root = lab.directory
    expected = {
        "manufacturer/ca.pem", "manufacturer/ca.key", "manufacturer/masa.pem",
        "manufacturer/masa.key", "owner/ca.pem", "owner/ca.key", "owner/owner.pem",
        "owner/owner.key", "owner/ldevid-ca.pem", "owner/ldevid-ca.key", "tls/ca.pem",
        "tls/ca.key", "tls/server.pem", "tls/server.key",
    }  # fmt: skip
    for serial in SERIALS:
        expected |= {f"devices/{serial}/{name}" for name in ("idevid.pem", "idevid.key")}
        expected.add(f"devices/{serial}/idevid-chain.pem")
    written = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}
    assert written == expected


def test_private_keys_are_owner_only_and_certificates_world_readable(lab):
    for files in all_files(lab):
        assert mode(files.private_key) == 0o600, files.private_key
        assert mode(files.certificate) & 0o077 == 0o044, files.certificate
        assert b"PRIVATE KEY" in files.private_key.read_bytes()


def test_credentials_load_and_chain_to_their_roots(lab):
    manufacturer_ca = lab.manufacturer_ca.load()
    owner_ca = lab.owner_ca.load()
    tls_ca = lab.tls_ca.load()
    masa = lab.masa.load()
    assert masa.chain == (manufacturer_ca.certificate,)
    certs.verify_chain(masa.certificate, trust_anchors=[manufacturer_ca.certificate])
    owner = lab.owner.load()
    certs.verify_chain(owner.certificate, trust_anchors=[owner_ca.certificate])
    # The LDevID CA may issue leaves only, under the owner CA the vouchers pin.
    ldevid_ca = lab.ldevid_ca.load()
    assert ldevid_ca.chain == (owner_ca.certificate,)
    constraints = ldevid_ca.certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.value.ca and constraints.value.path_length == 0
    server = lab.server.load()
    certs.verify_chain(server.certificate, trust_anchors=[tls_ca.certificate])
    names = server.certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert names.value.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(ip) for ip in names.value.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]


def test_device_files_hold_the_serial_and_the_chain(lab):
    manufacturer_ca = lab.manufacturer_ca.load().certificate
    for serial, device in lab.devices.items():
        idevid = device.idevid.load()
        assert pki.serial_from_certificate(idevid.certificate) == serial
        assert pki.load_certificates_pem(device.idevid.certificate.read_bytes()) == [
            idevid.certificate
        ]
        chain = pki.load_certificates_pem(device.chain.read_bytes())
        assert chain == [idevid.certificate, manufacturer_ca]
        certs.verify_chain(idevid.certificate, trust_anchors=[manufacturer_ca])


def test_load_lab_pki_finds_the_same_files(lab):
    assert load_lab_pki(lab.directory) == lab


def test_existing_pki_is_not_overwritten(lab):
    before = lab.owner_ca.certificate.read_bytes()
    with pytest.raises(PkiError, match="already holds a lab PKI") as refused:
        write_lab_pki(lab.directory, ["SN-9"])
    assert str(refused.value).endswith("; pass --force to replace it")  # sztpctl pki init's option
    assert lab.owner_ca.certificate.read_bytes() == before


def test_force_replaces_the_pki_and_stale_devices(tmp_path):
    first = write_lab_pki(tmp_path, ["OLD-1", "KEEP-1"])
    (tmp_path / "devices" / "OLD-1" / "idevid.key").chmod(0o644)
    (tmp_path / "devices" / "KEEP-1" / "idevid.key").chmod(0o644)
    old_root = first.owner_ca.certificate.read_bytes()
    second = write_lab_pki(tmp_path, ["KEEP-1"], key_type="rsa-2048", force=True)
    assert second.owner_ca.certificate.read_bytes() != old_root
    assert not (tmp_path / "devices" / "OLD-1").exists()
    assert set(load_lab_pki(tmp_path).devices) == {"KEEP-1"}
    assert mode(second.devices["KEEP-1"].idevid.private_key) == 0o600
    key = second.owner.load().private_key
    assert key.key_size == 2048


@pytest.mark.parametrize(
    ("serials", "message"),
    [
        (["ok", ""], "cannot be a directory name"),
        (["a/b"], "cannot be a directory name"),
        ([".."], "cannot be a directory name"),
        ([".hidden"], "cannot be a directory name"),
        (["SN-1", "SN-1"], "listed twice"),
        ("SN-1", "not one string"),
        (["bad\tserial"], "characters outside"),
    ],
)
def test_bad_serials_write_nothing(tmp_path, serials, message):
    with pytest.raises(ValidationError, match=message):
        write_lab_pki(tmp_path, serials)
    assert list(tmp_path.iterdir()) == []


def test_bad_server_names_write_nothing(tmp_path):
    with pytest.raises(ValidationError, match="names"):
        write_lab_pki(tmp_path, ["SN-1"], server_names=["not a host"])
    assert list(tmp_path.iterdir()) == []


def test_incomplete_pki_is_reported(tmp_path):
    lab = write_lab_pki(tmp_path, ["SN-1"])
    lab.masa.private_key.unlink()
    with pytest.raises(PkiError, match=r"missing .*manufacturer/masa\.key"):
        load_lab_pki(tmp_path)


def test_load_credential_checks_files(lab, tmp_path):
    with pytest.raises(PkiError, match="does not match certificate"):
        load_credential(lab.owner.certificate, lab.masa.private_key)
    garbage = tmp_path / "garbage.pem"
    garbage.write_bytes(b"not pem")
    with pytest.raises(PkiError, match=r"garbage\.pem: not a PEM certificate bundle"):
        load_credential(garbage, lab.owner.private_key)
    with pytest.raises(PkiError, match=r"garbage\.pem: cannot load PEM private key"):
        load_credential(lab.owner.certificate, garbage)
    with pytest.raises(PkiError, match="cannot read private key"):
        load_credential(lab.owner.certificate, tmp_path / "missing.key")
