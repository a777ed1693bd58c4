"""`sztpctl KIND add` against the resource model (sztp.state.model), which declares every field
once: each flag sets a field the model declares, each field has a flag (or is listed below as
fleet-file only), and the flags show the model's help and take exactly its choices. These
tests fail when the CLI and the model drift apart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from sztp.state.model import KINDS, MODEL, FieldType
from sztpctl.commands import app, device, nouns, resource
from sztpctl.commands.resource import Noun, model_field

NOUNS: dict[str, Noun] = {
    noun.kind: noun
    for noun in (nouns.TRUST_ANCHOR, nouns.OWNER, nouns.IMAGE, nouns.PROFILE, device.DEVICE)
}
# Fields `add` has no flag for: they are set with -f FILE (fleet-file syntax).
FILE_ONLY = {
    "device": {
        "selection",  # a list of rules, each an object: no flag syntax would read well
        "password_hash",  # `add` takes the password (--password-file); the server hashes it
        "presigned",  # signed offline per device and kept beside the fleet file: {file: SN.json}
    },
}
# `add` options that are not spec fields.
NOT_FIELDS = {"filename", "replace"}


def add_options(kind: str) -> dict[str, Any]:
    """The options of `sztpctl KIND add` that set spec fields, by parameter name."""
    command = typer.main.get_command(app).commands[kind].commands["add"]  # type: ignore[attr-defined]
    return {
        param.name: param
        for param in command.params
        if param.param_type_name == "option" and param.name not in NOT_FIELDS
    }


class Recorder:
    """Stands in for the admin API client: keeps the specs `add` would create."""

    def __init__(self) -> None:
        self.created: list[dict[str, Any]] = []

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def create(self, kind: str, name: str, spec: dict[str, Any]) -> None:
        self.created.append(spec)


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    recording = Recorder()
    monkeypatch.setattr(resource, "connect", lambda: recording)
    return recording


def add(kind: str, *arguments: str) -> Any:
    return CliRunner().invoke(app, [kind, "add", "SN-1", *arguments])


def test_every_kind_has_an_add_command() -> None:
    assert set(NOUNS) == set(KINDS)


@pytest.mark.parametrize("kind", KINDS)
def test_each_flag_sets_a_field_the_model_declares(kind: str) -> None:
    noun, options = NOUNS[kind], add_options(kind)
    assert set(noun.flags) <= set(options), "flags declared for options `add` does not have"
    for name in options:
        path = noun.flag(name).field
        try:
            model_field(kind, path)
        except LookupError:
            pytest.fail(f"{kind} add: {options[name].opts[0]} sets {path!r}, not in the model")


@pytest.mark.parametrize("kind", KINDS)
def test_each_field_has_a_flag_or_is_fleet_file_only(kind: str) -> None:
    noun = NOUNS[kind]
    settable = {noun.flag(name).field.split(".")[0] for name in add_options(kind)}
    declared = {item.name for item in MODEL[kind].entry.fields}
    assert declared - settable == FILE_ONLY.get(kind, set()), (
        f"{kind} add: give each new field a flag, or list it in FILE_ONLY saying why"
    )


@pytest.mark.parametrize("kind", KINDS)
def test_flags_show_the_models_help(kind: str) -> None:
    noun = NOUNS[kind]
    for name, param in add_options(kind).items():
        flag = noun.flag(name)
        declared = model_field(kind, flag.field)
        # Own help only where the flag sets its field otherwise (a file to hash, ...), never
        # a copy of the model's.
        assert flag.help != declared.help, f"{kind} add {param.opts[0]}: use the model's help"
        assert param.help == (flag.help or declared.help), f"{kind} add {param.opts[0]}"
        if declared.default is not None:
            assert str(declared.default) in param.help, f"{param.opts[0]} hides its default"


@pytest.mark.parametrize("kind", KINDS)
def test_choice_flags_take_exactly_the_models_choices(kind: str, recorder: Recorder) -> None:
    noun = NOUNS[kind]
    for name, param in add_options(kind).items():
        declared = model_field(kind, noun.flag(name).field)
        if declared.type is not FieldType.CHOICE:
            continue
        option = param.opts[0]
        assert param.metavar == f"<{'|'.join(declared.choices)}>", option
        for choice in declared.choices:
            result = add(kind, option, choice)
            assert result.exit_code == 0, result.output
            assert recorder.created.pop() == {declared.name: choice}
        refused = add(kind, option, "x")
        assert refused.exit_code == 2, refused.output
        assert f"'x' is not one of {', '.join(declared.choices)}" in refused.output


@pytest.mark.parametrize("kind", KINDS)
def test_each_flag_sets_the_field_declared_for_it(
    kind: str, recorder: Recorder, tmp_path: Path
) -> None:
    """What the flags declare, as `add` does it: each flag alone puts its field in the spec."""
    noun = NOUNS[kind]
    sample = tmp_path / "sample"  # a file for flags that read one; a text for the others
    sample.write_text("text\n", encoding="utf-8")
    for name, param in add_options(kind).items():
        flag = noun.flag(name)
        declared = model_field(kind, flag.field)
        if declared.type is FieldType.VARIABLES:
            value = f"name={sample}"
        else:
            value = declared.choices[0] if declared.choices else str(sample)
        result = add(kind, param.opts[0], value)
        assert result.exit_code == 0, result.output
        spec = recorder.created.pop()
        if declared.type is FieldType.VARIABLES:
            assert spec == {flag.field: {"name": str(sample)}}
            continue
        top = flag.field.split(".")[0]
        if "." in flag.field:  # qualifies a list's entries, given with another flag
            assert set(spec) <= {top}, f"{kind} add {param.opts[0]}: {spec}"
        else:
            assert set(spec) == {top}, f"{kind} add {param.opts[0]}: {spec}"


@pytest.mark.parametrize("kind", ["device", "profile"])
def test_var_flags_make_one_map_and_refuse_what_is_not_name_value(
    kind: str, recorder: Recorder
) -> None:
    result = add(kind, "--var", "hostname=dpu-1", "--var", "motd=a=b", "--var", "e=")
    assert result.exit_code == 0, result.output
    assert recorder.created.pop()["vars"] == {"hostname": "dpu-1", "motd": "a=b", "e": ""}
    for bad in ("hostname", "=x"):
        refused = add(kind, "--var", bad)
        assert refused.exit_code == 2, refused.output
        assert "is not NAME=VALUE" in refused.output
    assert not recorder.created
