"""The fleet file loader: structure (JSON Schema), file and env references, error messages."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
import yaml

from sztp.protocol import pki
from sztp.state import fleet as fleet_module
from sztp.state import fleet_yaml, resources
from sztp.state.fleet import (
    FleetError,
    dump_fleet,
    fleet_document,
    fleet_schema,
    load_fleet,
)
from sztp.state.fleet_yaml import MAX_NESTING
from sztp_testing import lay_out_example


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return lay_out_example(tmp_path_factory.mktemp("example"))


def write(directory: Path, text: str, name: str = "fleet.yaml") -> Path:
    path = directory / name
    path.write_text(text)
    return path


def error_of(path: Path, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(FleetError) as caught:
        load_fleet(path, environ=environ or {})
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_example_resolves_every_reference(example: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir("/")  # references are relative to the fleet file, not the working dir
    fleet = load_fleet(example, environ={})
    directory = example.parent
    assert list(fleet.resources) == list(resources.KINDS)
    owner = fleet.resources["owner"]["default"]
    assert owner["certificate_chain"] == (
        (directory / "pki/owner/owner.pem").read_text()
        + (directory / "pki/owner/ca.pem").read_text()
    )
    assert owner["private_key"].startswith("-----BEGIN")
    image = fleet.resources["image"]["labos-1.2"]
    assert image["sha256"] == hashlib.sha256(b"LabOS 1.2 boot image\n").hexdigest()
    assert image["os_version"] == "1.2"
    assert fleet.resources["profile"]["dpu-day0"]["configuration"] == "hostname dpu\n"
    voucher = fleet.resources["device"]["SN-0002"]["voucher"]
    assert base64.b64decode(voucher) == (directory / "SN-0002.vcj").read_bytes()
    assert fleet.dhcp is None


def test_example_specs_are_valid_resources(example: Path) -> None:
    fleet = load_fleet(example, environ={})
    for kind, specs in fleet.resources.items():
        for name, spec in specs.items():
            resources.normalize_spec(kind, name, spec)


def test_env_references_and_dhcp_data(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "devices:\n"
        "  - serial: SN-0001\n"
        "    password: {env: SN1_PASSWORD}\n"
        "dhcp:\n"
        "  bootstrap_uris: [https://sztp.lab:8443]\n",
    )
    fleet = load_fleet(path, environ={"SN1_PASSWORD": "s3cret"})
    assert fleet.resources == {"device": {"SN-0001": {"password": "s3cret"}}}
    assert fleet.dhcp == {"bootstrap_uris": ["https://sztp.lab:8443"]}


def test_missing_env_variable_is_named_not_guessed(tmp_path: Path) -> None:
    path = write(tmp_path, "devices:\n  - serial: SN-0001\n    password: {env: SN1_PASSWORD}\n")
    message = error_of(path)
    assert message == (
        f"{path}:3: devices[0].password: environment variable SN1_PASSWORD is not set"
    )


SECRETS_FROM_ENV = """\
owner:
  certificate_chain: x
  private_key: {env: OWNER_KEY}
devices:
  - serial: SN-0001
    password: {env: SN1_PASSWORD}
  - serial: SN-0002
    password_hash: {env: SN2_HASH}
    model: {env: SN2_MODEL}
"""


def test_unset_secrets_are_skipped_only_when_asked(tmp_path: Path) -> None:
    path = write(tmp_path, SECRETS_FROM_ENV)
    given = {"SN2_HASH": "$scrypt$given", "SN2_MODEL": "DPU-LAB-1", "SZTP_FLEET_ALLOW_ENV": "SN2_*"}
    assert error_of(path, given) == (
        f"{path}:3: owner.private_key: environment variable OWNER_KEY is not set"
    )
    fleet = load_fleet(path, environ=given, skip_unset_secrets=True)
    assert [str(skipped) for skipped in fleet.skipped_secrets] == [
        f"{path}:3: owner.private_key: {{env: OWNER_KEY}} not set; value not checked",
        f"{path}:6: devices[0].password: {{env: SN1_PASSWORD}} not set; value not checked",
    ]
    assert fleet.resources["owner"]["default"]["private_key"] == resources.HIDDEN
    assert fleet.resources["device"]["SN-0001"]["password"] == resources.HIDDEN
    # A secret that is set is read as always, and nothing is reported for it.
    assert fleet.resources["device"]["SN-0002"]["password_hash"] == "$scrypt$given"
    everything = {**given, "OWNER_KEY": "key", "SN1_PASSWORD": "pw"}
    assert load_fleet(path, environ=everything, skip_unset_secrets=True).skipped_secrets == ()


def test_unset_non_secret_variable_is_an_error_even_when_skipping_secrets(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, SECRETS_FROM_ENV)
    with pytest.raises(FleetError) as caught:
        load_fleet(
            path, environ={"SN2_HASH": "x"}, skip_unset_secrets=True, allow_env=["SN2_MODEL"]
        )
    assert str(caught.value) == (
        f"{path}:9: devices[1].model: environment variable SN2_MODEL is not set"
    )


def test_file_references_by_field(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.txt").write_text("first\n")
    (tmp_path / "sub" / "b.txt").write_text("second\n")
    (tmp_path / "sub" / "v.bin").write_bytes(b"\x00\xffvoucher")
    (tmp_path / "sub" / "img").write_bytes(b"image")
    path = write(
        tmp_path / "sub",
        "images:\n"
        "  - name: img\n"
        "    os_name: {file: a.txt}\n"
        "    os_version: '1'\n"
        "    download_uris: [https://files/img]\n"
        "    sha256: {file: img}\n"
        "profiles:\n"
        "  - name: p\n"
        "    type: onboarding\n"
        "    configuration: {file: [a.txt, b.txt]}\n"
        "devices:\n"
        "  - serial: SN-0001\n"
        "    voucher: {file: v.bin}\n",
    )
    fleet = load_fleet(path, environ={})
    assert fleet.resources["image"]["img"]["os_name"] == "first\n"
    assert fleet.resources["image"]["img"]["sha256"] == hashlib.sha256(b"image").hexdigest()
    assert fleet.resources["profile"]["p"]["configuration"] == "first\nsecond\n"
    voucher = fleet.resources["device"]["SN-0001"]["voucher"]
    assert base64.b64decode(voucher) == b"\x00\xffvoucher"


def test_only_the_sections_present_are_managed(tmp_path: Path) -> None:
    fleet = load_fleet(write(tmp_path, "devices: []\nimages: []\n"), environ={})
    assert fleet.resources == {"image": {}, "device": {}}
    assert load_fleet(write(tmp_path, "", "empty.yaml"), environ={}).resources == {}


def test_owner_and_owners(tmp_path: Path) -> None:
    single = load_fleet(write(tmp_path, "owner: {certificate_chain: x}\n"), environ={})
    assert single.resources == {"owner": {"default": {"certificate_chain": "x"}}}
    named = write(tmp_path, "owners:\n  - {name: a, certificate_chain: x}\n", "named.yaml")
    assert load_fleet(named, environ={}).resources == {"owner": {"a": {"certificate_chain": "x"}}}
    unnamed = write(tmp_path, "owners:\n  - {certificate_chain: x}\n", "unnamed.yaml")
    assert "'name' is required" in error_of(unnamed)
    both = write(tmp_path, "owner: {certificate_chain: x}\nowners: []\n", "both.yaml")
    assert error_of(both).startswith(f"{both}:1: (document): ")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("devices:\n  - serial: SN-1\n    modle: x\n", ":3: devices[0].modle: unknown field"),
        ("devices:\n  - model: x\n", ":2: devices[0]: 'serial' is required"),
        (
            "images:\n  - name: i\n    os_name: x\n    os_version: 2.0\n    download_uris: [u]\n"
            "    sha256: abc\n",
            (":4: images[0].os_version: ", "; quote it to make it text"),
        ),
        ("profiles:\n  - name: p\n    type: onboard\n", ":3: profiles[0].type:"),
        ("devices:\n  - serial: SN-1\n  - serial: SN-1\n", ":3: devices[1]: duplicate device"),
        (
            "devices:\n  - serial: SN-1\n  - serial: SN-2\n  - serial: SN-1\n",
            ":4: devices[2]: duplicate device 'SN-1' (first at line 2)",
        ),
        (  # an alias is the same mapping again, not one whose serial was taken out
            "devices:\n  - &first {serial: SN-1, model: m}\n  - *first\n",
            "devices[1]: duplicate device 'SN-1' (first at line 2)",
        ),
        ("devices:\n  - serial: SN-1\n    model: a\n    model: b\n", ":4: devices[0].model: dup"),
        (
            "devices:\n  - serial: SN-1\n  - serial: SN-2\n    selection:\n"
            "      - {profile: p, hw_model: a, hw_model: b}\n    model: a\n    model: b\n",
            ":5: devices[1].selection[0].hw_model: duplicate key",
        ),
        ("devices: [\n", ": not valid YAML: "),
        (
            "devices: " + "[" * 5000 + "]" * 5000 + "\n",
            ":1: devices[0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0]",
        ),
        ("a: 1\n---\nb: 2\n", (":2: not valid YAML: ", "document")),
        ("trust_anchor: []\n", ":1: trust_anchor: unknown field"),
        ("devices:\n  - serial: SN-1\n    voucher: {fil: x}\n", ":3: devices[0].voucher.fil: unk"),
        ("devices:\n  - serial: SN-1\n    voucher: {file: no.vcj}\n", ":3: devices[0].voucher: "),
        ("devices:\n  - serial: SN-1\n    profile: bad name\n", ":3: devices[0].profile: "),
    ],
)
def test_errors_name_file_line_and_field(
    tmp_path: Path, text: str, expected: str | tuple[str, ...]
) -> None:
    # Our own words only: what PyYAML or jsonschema-rs add to a message may change by version.
    path = write(tmp_path, text)
    message = error_of(path)
    assert message.startswith(str(path))
    for part in expected if isinstance(expected, tuple) else (expected,):
        assert part in message, message


def test_unquoted_number_gets_a_hint(tmp_path: Path) -> None:
    path = write(tmp_path, "devices:\n  - serial: SN-1\n    model: 42\n")
    assert error_of(path).endswith("; quote it to make it text")


def test_schema_errors_do_not_show_secret_values(tmp_path: Path) -> None:
    path = write(tmp_path, "devices:\n  - serial: SN-1\n    password: 987654321\n")
    message = error_of(path)
    assert "987654321" not in message
    assert message.endswith(
        "devices[0].password: must be a string, {file: path} or {env: VARIABLE} (value not shown)"
    )


def test_dates_stay_text(tmp_path: Path) -> None:
    path = write(tmp_path, "devices:\n  - serial: SN-1\n    model: 2024-05-01\n")
    assert load_fleet(path, environ={}).resources["device"]["SN-1"]["model"] == "2024-05-01"


def test_unreadable_file_is_one_line(tmp_path: Path) -> None:
    message = error_of(tmp_path / "absent.yaml")
    assert (
        message == f"cannot read fleet file {tmp_path / 'absent.yaml'}: No such file or directory"
    )


def test_locate_maps_api_fields_to_lines(example: Path) -> None:
    fleet = load_fleet(example, environ={})
    text = example.read_text().splitlines()
    where = fleet.locate("device[SN-0002].voucher")
    assert where is not None
    line = int(where.split(":")[1])
    assert text[line - 1].strip().startswith("voucher:")
    assert where.endswith("devices[1].voucher")
    assert fleet.locate("profile[dpu-day0] (boot-image/os-name)").endswith("profiles[0]")
    assert fleet.locate("device[SN-0001].selection[3].profile").endswith("devices[0]")
    assert fleet.locate("resources.device") is None
    assert fleet.locate(None) is None


def test_locate_finds_entries_of_a_json_fleet_by_their_order(tmp_path: Path) -> None:
    devices = [{"serial": f"SN-{number}", "model": "m"} for number in range(3)]
    document = {"owner": {"certificate_chain": "x"}, "devices": devices}
    path = write(tmp_path, json.dumps(document, indent=1), "fleet.json")
    fleet = load_fleet(path, environ={})
    assert fleet.locate("device[SN-2].model") == f"{path}:16: devices[2].model"
    assert fleet.locate("owner[default].certificate_chain") == f"{path}:3: owner.certificate_chain"
    assert fleet.locate("device[SN-9].model") is None


def test_line_index_is_built_only_to_report_a_problem(
    example: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    indexed: list[Path] = []
    index_lines = fleet_module.index_lines

    def counting(node: Any, path: Any, lines: Any, file: Path, seen: Any) -> None:
        if not path:
            indexed.append(file)
        index_lines(node, path, lines, file, seen)

    monkeypatch.setattr(fleet_module, "index_lines", counting)
    fleet = load_fleet(example, environ={})
    assert indexed == []
    where = fleet.locate("device[SN-0002].voucher")
    assert where is not None and where.endswith("devices[1].voucher")
    assert example.read_text().splitlines()[int(where.split(":")[1]) - 1].strip() == (
        "voucher: {file: SN-0002.vcj}"
    )
    fleet.locate("device[SN-0001].model")
    assert indexed == [example]  # once, then kept
    missing = write(tmp_path, "devices:\n  - serial: SN-1\n\n    voucher: {file: none.vcj}\n")
    assert error_of(missing).startswith(f"{missing}:4: devices[0].voucher: cannot read ")
    assert indexed == [example, missing]


def test_merge_keys_may_override_what_they_merge(tmp_path: Path) -> None:
    """Constructing merges rewrites mappings in place; that is not a duplicate key."""
    write(tmp_path, "PEM\n", "ca.pem")
    path = write(
        tmp_path,
        "trust_anchors:\n  - name: a\n    certificates: &chain {<<: {file: x.pem}, file: ca.pem}\n"
        "owner: {certificate_chain: {<<: *chain}}\n",
    )
    loaded = load_fleet(path, environ={}).resources
    assert loaded["trust-anchor"]["a"]["certificates"] == "PEM\n"
    assert loaded["owner"]["default"]["certificate_chain"] == "PEM\n"


def test_yaml_values_are_those_pyyaml_constructs(tmp_path: Path) -> None:
    text = (
        "text: plain\nquoted: '042'\nnumber: 42\nreal: 1.5\nflag: yes\nnothing: ~\n"
        "date: 2024-05-01\ntagged: !!str 7\nbinary: !!binary aGk=\n1: integer key\n"
        "shared: &shared {a: [1, two, {b: null}]}\nalias: *shared\n"
        "merged: {<<: *shared, c: 3}\nlist: [&item x, *item, [], {}]\n"
    )
    # The fleet's own loader: a SafeLoader without timestamps.
    expected = yaml.load(text, Loader=fleet_yaml.yaml_loaders()[1])  # noqa: S506
    parsed = fleet_yaml.parse_yaml(text, tmp_path / "f.yaml")
    assert parsed == expected
    assert parsed["alias"] is parsed["shared"]
    assert parsed["date"] == "2024-05-01" and parsed[1] == "integer key"


def test_scalar_tags_match_pyyamls_own_resolver(tmp_path: Path) -> None:
    # The loader tags scalars with a shortened resolver; PyYAML's generic one (pure Python,
    # timestamps left out in the same way) must give every value the same type.
    class Reference(yaml.SafeLoader):
        pass

    Reference.yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if not tag.endswith(":timestamp")]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    scalars = [
        "", "~", "null", "Null", "NULL", "true", "True", "yes", "Yes", "on", "ON", "no", "off",
        "false", "y", "n", "0", "-0", "+12", "1_000", "0x1F", "0o17", "017", "0b101", "190:20:30",
        "1.5", "-1.5e3", "1e3", ".5", ".inf", "-.Inf", "+.INF", "2024-05-01",
        "2024-05-01T10:00:00Z", "text", "BULK-00001", "day0", "vouchers/a.vcj", "'quoted 1'",
        '"true"', "'~'", "!!str 7",
    ]  # fmt: skip
    text = "".join(f"k{index}: {scalar}\n" for index, scalar in enumerate(scalars))
    text += "seq: [" + ", ".join(scalars[1:-1]) + "]\nnested: {a: {b: [1, yes, ~, x]}}\n"
    expected = yaml.load(text, Loader=Reference)  # noqa: S506
    parsed = fleet_yaml.parse_yaml(text, tmp_path / "f.yaml")
    assert parsed == expected
    assert [type(value) for value in parsed.values()] == [type(v) for v in expected.values()]
    assert parsed["seq"] == expected["seq"]
    assert [type(value) for value in parsed["seq"]] == [type(v) for v in expected["seq"]]


def test_a_directory_as_a_file_reference_is_named(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("first\n")
    (tmp_path / "dir.vcj").mkdir()
    path = write(
        tmp_path,
        "profiles:\n"
        "  - name: p\n"
        "    type: onboarding\n"
        "    configuration: {file: [a.txt, dir.vcj]}\n",
    )
    message = error_of(path)
    assert f":4: profiles[0].configuration: cannot read {tmp_path / 'dir.vcj'}: Is a dir" in message


def test_file_references_read_large_files_whole(tmp_path: Path) -> None:
    data = bytes(range(256)) * 20_000  # several read chunks
    (tmp_path / "big.vcj").write_bytes(data)
    (tmp_path / "empty.vcj").write_bytes(b"")
    path = write(
        tmp_path,
        "devices:\n"
        "  - serial: SN-1\n    voucher: {file: big.vcj}\n"
        "  - serial: SN-2\n    voucher: {file: [empty.vcj, big.vcj, empty.vcj]}\n"
        "  - serial: SN-3\n    voucher: {file: empty.vcj}\n",
    )
    devices = load_fleet(path, environ={}).resources["device"]
    assert base64.b64decode(devices["SN-1"]["voucher"]) == data
    assert base64.b64decode(devices["SN-2"]["voucher"]) == data
    assert devices["SN-3"]["voucher"] == ""


def test_export_document_loads_back_to_the_same_specs(example: Path, tmp_path: Path) -> None:
    fleet = load_fleet(example, environ={})
    state = {
        kind: {
            name: resources.public_view(kind, resources.normalize_spec(kind, name, spec))
            for name, spec in specs.items()
        }
        for kind, specs in fleet.resources.items()
    }
    exported = write(tmp_path, dump_fleet(fleet_document(state)), "exported.yaml")
    assert "<hidden>" in exported.read_text()
    assert "PRIVATE KEY" not in exported.read_text()
    assert "certificates: |" in exported.read_text()  # PEM as a readable literal block
    reloaded = load_fleet(exported, environ={})
    compact = {
        kind: {
            name: {k: v for k, v in spec.items() if v not in (None, [])}
            for name, spec in specs.items()
        }
        for kind, specs in state.items()
    }
    assert reloaded.resources == compact


def test_schema_is_a_valid_json_schema() -> None:
    jsonschema_rs.meta.validate(fleet_schema())


def test_schema_names_the_same_fields_as_the_data_model() -> None:
    """Guard against drift between fleet.schema.json and state/resources.py: the schema knows
    exactly the fields `normalize_spec` produces (plus input-only ones)."""
    pem = pki.certificate_to_pem(pki.create_root_ca("Schema Test CA").certificate).decode()
    onboarding = resources.normalize_spec("profile", "p", {"type": "onboarding"})
    redirect = resources.normalize_spec(
        "profile", "r", {"type": "redirect", "bootstrap_servers": [{"address": "a"}]}
    )
    produced = {
        "trust_anchor": set(resources.normalize_spec("trust-anchor", "t", {"certificates": pem})),
        "owner": {"certificate_chain", "private_key"},  # needs a key pair; fields are fixed
        "image": {"os_name", "os_version", "download_uris", "sha256"},
        "profile": set(onboarding) | set(redirect),
        "device": set(resources.normalize_spec("device", "SN-1", {}))
        | {"password", "activation_code"},
        "bootstrap_server": set(redirect["bootstrap_servers"][0]),
    }
    definitions = fleet_schema()["$defs"]
    for definition, fields in produced.items():
        key = {"device": "serial", "bootstrap_server": None}.get(definition, "name")
        assert set(definitions[definition]["properties"]) - {key} == fields, definition
    assert definitions["name"]["pattern"] == f"^{resources._NAME.pattern}$"
    serial = definitions["device"]["properties"]["serial"]["pattern"]
    assert serial == f"^{resources._SERIAL.pattern}$"


# --------------------------------------------------------------------------- nesting depth

_DEEP_FLOW = "devices:\n  - serial: SN-1\n    model: {a: " + "[" * 5000 + "]" * 5000 + "}\n"
_DEEP_BLOCK = "devices:\n  - serial: SN-1\n    model:\n" + "".join(
    "  " * (level + 3) + f"k{level}:\n" for level in range(1500)
)
_DEEP_LINES = "devices:\n" + "  [\n" * 2000 + "  ]\n" * 2000


@pytest.fixture(params=["libyaml", "pure-python"])
def yaml_parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The fleet loader on libyaml (1,000-level limit of its own in recent PyYAML wheels) and on
    PyYAML's pure-Python parser (no limit; Python's recursion limit instead)."""
    if request.param == "pure-python":
        monkeypatch.delattr(yaml, "CSafeLoader")
    elif not hasattr(yaml, "CSafeLoader"):
        pytest.skip("PyYAML was built without libyaml")
    fleet_yaml.yaml_loaders.cache_clear()
    yield request.param
    fleet_yaml.yaml_loaders.cache_clear()


@pytest.mark.parametrize(
    ("text", "where"),
    [
        (_DEEP_FLOW, ":3: devices[0].model.a" + "[0]" * (MAX_NESTING - 4) + ": "),
        (_DEEP_BLOCK, f":{MAX_NESTING + 1}: devices[0].model.k0.k1."),
        (_DEEP_LINES, f":{MAX_NESTING + 1}: devices" + "[0]" * (MAX_NESTING - 1) + ": "),
        (
            "devices:\n  - {1: " + "[" * 100 + "]" * 100 + "}\n",
            ":2: devices[0].1" + "[0]" * (MAX_NESTING - 3) + ": ",
        ),
    ],
    ids=["flow", "block", "flow-over-lines", "under-a-number-key"],
)
def test_deep_nesting_is_reported_with_line_and_key(
    tmp_path: Path, yaml_parser: str, text: str, where: str
) -> None:
    message = error_of(write(tmp_path, text))
    assert message.startswith(str(tmp_path / "fleet.yaml") + where), message
    assert message.endswith(
        f"nested more than {MAX_NESTING} levels deep, too deep for a fleet file"
    )


def test_nesting_up_to_the_limit_is_left_to_the_schema(tmp_path: Path, yaml_parser: str) -> None:
    text = "devices: " + "[" * (MAX_NESTING - 1) + "]" * (MAX_NESTING - 1) + "\n"
    message = error_of(write(tmp_path, text))
    assert "nested" not in message
    assert ":1: devices[0]: " in message


def test_a_syntax_error_after_many_brackets_is_still_a_syntax_error(
    tmp_path: Path, yaml_parser: str
) -> None:
    text = "devices:\n  - serial: SN-1\n    model: " + "[a, " * 20 + "\n  bad: ]\n"
    message = error_of(write(tmp_path, text))
    assert ": not valid YAML: " in message, message


# ---- confinement of {file: ...} and {env: ...}, and alias bombs (issue 12, item 12)


def profile_with(reference: str) -> str:
    return f"profiles:\n  - name: p\n    type: onboarding\n    configuration: {reference}\n"


def test_file_references_stay_in_the_fleet_files_directory(tmp_path: Path) -> None:
    fleets, outside = tmp_path / "fleet", tmp_path / "secrets"
    (fleets / "sub").mkdir(parents=True)
    outside.mkdir()
    (outside / "id_rsa").write_text("PRIVATE\n")
    (fleets / "sub" / "day0.cfg").write_text("hostname a\n")
    (fleets / "inside-link").symlink_to(fleets / "sub" / "day0.cfg")
    (fleets / "outside-link").symlink_to(outside / "id_rsa")
    (fleets / "dir-link").symlink_to(outside)
    for reference in ("sub/day0.cfg", "inside-link", "sub/../sub/day0.cfg"):
        path = write(fleets, profile_with(f"{{file: {reference}}}"))
        configuration = load_fleet(path, environ={}).resources["profile"]["p"]["configuration"]
        assert configuration == "hostname a\n"
    real = outside / "id_rsa"
    for reference, shown in (
        (str(real), str(real)),
        ("../secrets/id_rsa", f"../secrets/id_rsa (resolves to {real})"),
        ("outside-link", f"outside-link (resolves to {real})"),
        ("dir-link/id_rsa", f"dir-link/id_rsa (resolves to {real})"),
        ("[sub/day0.cfg, outside-link]", f"outside-link (resolves to {real})"),
    ):
        path = write(fleets, profile_with(f"{{file: {reference}}}"))
        assert error_of(path) == (
            f"{path}:4: profiles[0].configuration: {shown} is outside the fleet file's "
            f"directory {fleets}; keep referenced files beside the fleet file, or set "
            "SZTP_FLEET_FILE_ROOT to a directory holding them"
        )
    # The operator, not the file, may widen the root.
    path = write(fleets, profile_with("{file: outside-link}"))
    for fleet in (
        load_fleet(path, environ={}, file_root=tmp_path),
        load_fleet(path, environ={"SZTP_FLEET_FILE_ROOT": str(tmp_path)}),
    ):
        assert fleet.resources["profile"]["p"]["configuration"] == "PRIVATE\n"
    assert "is outside SZTP_FLEET_FILE_ROOT directory" in error_of(
        path, {"SZTP_FLEET_FILE_ROOT": str(fleets / "sub")}
    )


def test_only_regular_files_are_read(tmp_path: Path) -> None:
    os_fifo = tmp_path / "pipe"
    import os

    os.mkfifo(os_fifo)
    path = write(tmp_path, profile_with("{file: pipe}"))
    assert error_of(path) == (
        f"{path}:4: profiles[0].configuration: {os_fifo} is not a regular file "
        "(a device, FIFO or socket)"
    )
    path = write(tmp_path, profile_with("{file: /dev/zero}"))
    with pytest.raises(FleetError, match=r"/dev/zero is not a regular file"):
        load_fleet(path, environ={}, file_root=Path("/"))
    image = write(
        tmp_path,
        "images:\n  - name: i\n    os_name: o\n    os_version: '1'\n"
        "    download_uris: [https://x.example/i]\n    sha256: {file: /dev/zero}\n",
    )
    with pytest.raises(FleetError, match=r":6: images\[0\].sha256: /dev/zero is not a regular"):
        load_fleet(image, environ={}, file_root=Path("/"))


def test_file_references_are_capped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fleet_module, "MAX_FILE_BYTES", 1000)
    monkeypatch.setattr(fleet_module, "MAX_HASHED_FILE_BYTES", 3000)
    (tmp_path / "a.txt").write_text("a" * 600)
    (tmp_path / "big.img").write_bytes(b"i" * 3001)
    (tmp_path / "ok.img").write_bytes(b"i" * 2999)
    path = write(tmp_path, profile_with("{file: a.txt}"))
    assert load_fleet(path, environ={}).resources["profile"]["p"]["configuration"] == "a" * 600
    path = write(tmp_path, profile_with("{file: [a.txt, a.txt]}"))
    assert error_of(path) == (
        f"{path}:4: profiles[0].configuration: {tmp_path / 'a.txt'} is larger than the 1,000 "
        "bytes a file reference may read (in total, for a list)"
    )
    image = "images:\n  - name: i\n    os_name: o\n    os_version: '1'\n"
    image += "    download_uris: [https://x.example/i]\n    sha256: {file: %s}\n"
    path = write(tmp_path, image % "ok.img")
    sha = load_fleet(path, environ={}).resources["image"]["i"]["sha256"]
    assert sha == hashlib.sha256(b"i" * 2999).hexdigest()
    path = write(tmp_path, image % "big.img")
    assert f":6: images[0].sha256: {tmp_path / 'big.img'} is larger than" in error_of(path)


def test_env_references_outside_secrets_need_the_operators_allowance(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "owner: {certificate_chain: x, private_key: {env: ANY_KEY}}\n"
        + profile_with("{env: AWS_SECRET_ACCESS_KEY}"),
    )
    environ = {"ANY_KEY": "k", "AWS_SECRET_ACCESS_KEY": "leaked"}
    assert error_of(path, environ) == (
        f"{path}:5: profiles[0].configuration: {{env: AWS_SECRET_ACCESS_KEY}} is not allowed: "
        "outside the secret fields (activation_code, password, password_hash, private_key) the "
        "operator must allow the variable, e.g. SZTP_FLEET_ALLOW_ENV=AWS_SECRET_ACCESS_KEY in "
        "the environment that loads the file"
    )
    for allowance in ("AWS_SECRET_ACCESS_KEY", "OTHER, AWS_*", "X AWS_SECRET_ACCESS_KEY"):
        fleet = load_fleet(path, environ={**environ, "SZTP_FLEET_ALLOW_ENV": allowance})
        assert fleet.resources["profile"]["p"]["configuration"] == "leaked"
    fleet = load_fleet(path, environ=environ, allow_env=["AWS_SECRET_ACCESS_KEY"])
    assert fleet.resources["owner"]["default"]["private_key"] == "k"
    assert "is not allowed" in error_of(path, {**environ, "SZTP_FLEET_ALLOW_ENV": "AWS"})


def alias_bomb(levels: int) -> str:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [
        f"a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * 10) + "]"
        for level in range(1, levels)
    ]
    return "".join(f"{line}\n" for line in lines)


def test_an_alias_bomb_fails_fast(tmp_path: Path) -> None:
    import time

    path = write(tmp_path, alias_bomb(9))  # a billion values once expanded
    started = time.monotonic()
    assert error_of(path) == (
        f"{path}:7: a6: expands to more than 5,000,000 values through aliases (*name), "
        "too many for a fleet file"
    )
    assert time.monotonic() - started < 5
    # Aliases within reason are fine: a million values.
    document = yaml.safe_load(alias_bomb(6))
    fleet_yaml.check_expansion(document, path, {})


def test_an_alias_inside_itself_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "dhcp:\n  loop: &loop\n    again: *loop\n")
    assert error_of(path) == (
        f"{path}:2: dhcp.loop.again: an alias (*name) refers to a collection that holds it"
    )


def test_a_json_fleet_file_loads_as_the_same_yaml_would(
    example: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fleet written as JSON (`*.json`) is the same document: same resources, references
    resolved from the same files, problems named with the file and the line."""
    monkeypatch.chdir("/")
    document = yaml.safe_load(example.read_text())
    as_json = write(example.parent, json.dumps(document, indent=1), "fleet.json")
    assert load_fleet(as_json, environ={}).resources == load_fleet(example, environ={}).resources
    document["devices"][1]["colour"] = "blue"
    broken = write(example.parent, json.dumps(document, indent=1), "broken.json")
    line = json.dumps(document, indent=1).splitlines().index('   "colour": "blue"') + 1
    assert error_of(broken) == f"{broken}:{line}: devices[1].colour: unknown field"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('{"devices": [{"serial": "SN-1", "serial": "SN-2"}]}', "repeats the key 'serial'"),
        ('{"devices": [\n{"serial": "SN-1",}]}', r":2: not valid JSON"),
        ('{"devices": [{"serial": "SN-1", "n": NaN}]}', "NaN is not a JSON number"),
        (
            '{"devices": [{"serial": "S", "x": ' + "[" * 40 + "]" * 40 + "}]}",
            rf"devices\[0\]\.x(\[0\]){{{MAX_NESTING - 3}}}: nested more than {MAX_NESTING}",
        ),
        (  # objects of plain values, one level too deep
            '{"devices": [{"serial": "S", "x": ' + "[" * 29 + '{"a": 1}' + "]" * 29 + "}]}",
            rf"devices\[0\]\.x(\[0\]){{{MAX_NESTING - 3}}}: nested more than {MAX_NESTING}",
        ),
        (  # and just deep enough: then it is the schema that refuses the field
            '{"devices": [{"serial": "S", "x": ' + "[" * 28 + '{"a": 1}' + "]" * 28 + "}]}",
            r"devices\[0\]\.x: unknown field",
        ),
        ("[" * 100_000 + "]" * 100_000, f"nested more than {MAX_NESTING}"),
    ],
    ids=[
        "repeated key",
        "syntax",
        "nan",
        "deep",
        "deep objects",
        "at the limit",
        "deeper than the decoder goes",
    ],
)
def test_a_json_fleet_file_is_refused_as_the_yaml_would_be(
    tmp_path: Path, text: str, problem: str
) -> None:
    message = error_of(write(tmp_path, text, "fleet.json"))
    assert message.startswith(f"{tmp_path / 'fleet.json'}")
    assert re.search(problem, message), message
