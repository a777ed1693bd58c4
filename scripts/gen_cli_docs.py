"""Generate docs/cli.md, the sztpctl command reference, from the Typer app.

    python scripts/gen_cli_docs.py            # write docs/cli.md
    python scripts/gen_cli_docs.py --check    # exit 1 if docs/cli.md is stale
    python scripts/gen_cli_docs.py --stdout   # print the page instead

The page is built from the command tree (`typer.main.get_command`): every group and command
with its help text, a usage line and its arguments and options (type, default, help). Groups
and commands appear in alphabetical order, parameters in declaration order. Nothing depends on
the terminal (width, colours) or on the machine (completion shells, paths), so the output is
the same everywhere and `--check` can run in CI.
"""

from __future__ import annotations

import argparse
import enum
import inspect
import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from docs_page import write_or_check

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "docs" / "cli.md"
PROGRAM = "sztpctl"
REGENERATE = "python scripts/gen_cli_docs.py"
# Added by Typer; what they accept depends on the shells installed, so they are described in
# prose rather than generated.
COMPLETION_OPTIONS = frozenset({"install_completion", "show_completion"})
_LIST_TYPE = re.compile(r"list\[(?P<item>.+)\]", re.IGNORECASE)


def load_root() -> Any:
    """The click command tree of `sztpctl.commands.app`."""
    import typer

    from sztpctl.commands import app

    return typer.main.get_command(app)


# ---- walking the tree


class Node:
    """One group or command with its context (the context gives the full command path)."""

    def __init__(self, command: Any, ctx: Any, depth: int) -> None:
        self.command = command
        self.ctx = ctx
        self.depth = depth

    @property
    def path(self) -> str:
        return str(self.ctx.command_path)

    @property
    def is_group(self) -> bool:
        return isinstance(getattr(self.command, "commands", None), dict)

    def children(self) -> list[Node]:
        import typer

        if not self.is_group:
            return []
        found = []
        for name in sorted(self.command.commands):
            child = self.command.commands[name]
            if getattr(child, "hidden", False):
                continue
            ctx = typer.Context(child, info_name=name, parent=self.ctx)
            found.append(Node(child, ctx, self.depth + 1))
        return found


def walk(node: Node) -> Iterator[Node]:
    yield node
    for child in node.children():
        yield from walk(child)


# ---- text


def help_text(command: Any) -> str:
    """The command's help as click would take it: dedented, cut at \\f, without \\b markers."""
    text = inspect.cleandoc(getattr(command, "help", None) or "")
    text = text.split("\f", 1)[0]
    return "\n".join(line for line in text.splitlines() if line.strip() != "\b").strip()


def summary(command: Any) -> str:
    """The first paragraph of the help, on one line."""
    short = getattr(command, "short_help", None)
    text = short or help_text(command).split("\n\n", 1)[0]
    return " ".join(text.split())


def escape_inline(text: str) -> str:
    """Markdown-safe prose: HTML-ish brackets and asterisks escaped outside `code spans`."""
    parts = text.split("`")
    for index in range(0, len(parts), 2):  # even parts are outside code spans
        parts[index] = (
            parts[index].replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        ).replace("*", r"\*")
    if len(parts) % 2 == 0:  # an unmatched backtick: keep it literal
        return "\\`".join(["`".join(parts[:-1]), parts[-1]])
    return "`".join(parts)


def help_markdown(text: str) -> str:
    """Help text as Markdown: paragraphs of prose, indented lines as code blocks."""
    blocks: list[str] = []
    for paragraph in re.split(r"\n\s*\n", text):
        lines = paragraph.splitlines()
        if not lines:
            continue
        if all(line.startswith("    ") for line in lines):
            body = example(line[4:] for line in lines)
            language = "sh" if body.startswith(f"{PROGRAM} ") else "text"
            blocks.append(f"```{language}\n{body}\n```")
        else:
            blocks.append(escape_inline(" ".join(line.strip() for line in lines)))
    return "\n\n".join(blocks)


def example(lines: Iterable[str]) -> str:
    """An example command wrapped over several lines in a docstring, made copy-pasteable:
    a line that starts with an option continues the command before it."""
    out: list[str] = []
    for line in lines:
        if out and line.startswith("-"):
            out[-1] += " \\"
            line = "  " + line
        out.append(line)
    return "\n".join(out)


def cell(text: str) -> str:
    return escape_inline(" ".join(text.split())).replace("|", r"\|")


def code(text: str) -> str:
    return "`" + text.replace("|", r"\|") + "`"


# ---- parameters


def is_option(param: Any) -> bool:
    return getattr(param, "param_type_name", "") == "option"


def visible_params(command: Any) -> list[Any]:
    return [
        param
        for param in command.params
        if not getattr(param, "hidden", False) and param.name not in COMPLETION_OPTIONS
    ]


def usage(node: Node) -> str:
    pieces = [node.path, "[OPTIONS]"]  # every command has at least -h/--help
    for param in visible_params(node.command):
        if is_option(param):
            continue
        name = (getattr(param, "metavar", None) or param.name).upper()
        name = name if param.required else f"[{name}]"
        pieces.append(f"{name}..." if getattr(param, "nargs", 1) != 1 else name)
    if node.is_group:
        pieces.append("COMMAND [ARGS]...")
    return " ".join(pieces)


def type_label(param: Any, ctx: Any) -> str:
    if getattr(param, "is_flag", False) and getattr(param, "is_bool_flag", True):
        return "flag"
    display = getattr(param, "display_type", None)
    if is_option(param) and getattr(param, "metavar", None):
        label = str(param.metavar).strip("<>")  # e.g. choices checked by a callback
    elif callable(display):
        label = str(display(ctx)).strip("<>")
    else:  # plain click
        label = str(getattr(getattr(param, "type", None), "name", "text"))
    repeated = bool(getattr(param, "multiple", False)) or getattr(param, "nargs", 1) != 1
    match = _LIST_TYPE.fullmatch(label)
    if match:
        label, repeated = match["item"], True
    if label.endswith(" range"):
        label = label.removesuffix(" range")
    label = {"str": "text", "path": "path", "int": "integer"}.get(label.lower(), label)
    bounds = []
    if getattr(param, "min", None) is not None:
        bounds.append(f">= {param.min}")
    if getattr(param, "max", None) is not None:
        bounds.append(f"<= {param.max}")
    if bounds:
        label += " " + ", ".join(bounds)
    if repeated:
        label += ", repeatable" if is_option(param) else ", one or more"
    return label


def default_label(param: Any) -> str:
    if param.required:
        return "required"
    default = param.default
    if callable(default):
        return "(dynamic)"
    if getattr(param, "is_flag", False):
        secondary = getattr(param, "secondary_opts", None) or []
        if default is None or not isinstance(default, bool):
            return ""
        if secondary:
            return code(param.opts[0] if default else secondary[0])
        return "on" if default else ""
    if default is None or default == [] or default == ():
        return ""
    if isinstance(default, enum.Enum):
        default = default.value
    if isinstance(default, list | tuple):
        return ", ".join(code(str(item)) for item in default)
    return code(str(default))


def option_names(param: Any) -> str:
    names = sorted(param.opts, key=lambda opt: (opt.startswith("--"), opt))
    shown = ", ".join(code(name) for name in names)
    secondary = getattr(param, "secondary_opts", None) or []
    if secondary:
        shown += " / " + ", ".join(code(name) for name in secondary)
    return shown


def description(param: Any) -> str:
    text = cell(getattr(param, "help", None) or "")
    envvar = getattr(param, "envvar", None)
    if envvar:
        names = [envvar] if isinstance(envvar, str) else list(envvar)
        text += (" " if text else "") + "Environment: " + ", ".join(code(n) for n in names) + "."
    return text


def param_tables(node: Node) -> list[str]:
    params = visible_params(node.command)
    arguments = [param for param in params if not is_option(param)]
    options = [param for param in params if is_option(param)]
    out: list[str] = []
    if arguments:
        out += ["**Arguments**", "", "| Argument | Type | Default | Description |"]
        out.append("|---|---|---|---|")
        for param in arguments:
            name = (getattr(param, "metavar", None) or param.name).upper()
            out.append(
                f"| {code(name)} | {code(type_label(param, node.ctx))} | "
                f"{default_label(param)} | {description(param)} |"
            )
        out.append("")
    if options:
        out += ["**Options**", "", "| Option | Type | Default | Description |"]
        out.append("|---|---|---|---|")
        for param in options:
            out.append(
                f"| {option_names(param)} | {code(type_label(param, node.ctx))} | "
                f"{default_label(param)} | {description(param)} |"
            )
        out.append("")
    return out


# ---- the page


def anchor(heading: str) -> str:
    """GitHub's heading anchor for a heading made only of a code span."""
    text = heading.lower().replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def render(root: Any | None = None) -> str:
    import typer

    root = root if root is not None else load_root()
    top = Node(root, typer.Context(root, info_name=PROGRAM), 0)
    nodes = list(walk(top))
    lines = [
        "<!-- Generated by scripts/gen_cli_docs.py from the Typer app; do not edit by hand.",
        f"     Regenerate with: {REGENERATE} -->",
        "",
        f"# `{PROGRAM}` command reference",
        "",
        help_markdown(help_text(root)),
        "",
        "This page lists every command with its options; `sztpctl COMMAND --help` prints the",
        "same information. The commands that talk to a server take the root command's",
        "`--context`, `--server` and `--token-file` (`sztpctl --context lab status`); see",
        "[the tutorial](tutorial.md) for contexts and environment variables. Every command",
        "also accepts `-h` / `--help`. Shell completion:",
        "`sztpctl --install-completion` installs it for the current shell,",
        "`sztpctl --show-completion` prints it.",
        "",
        "## Commands",
        "",
    ]
    for node in nodes[1:]:
        kind = " (group)" if node.is_group else ""
        indent = "  " * (node.depth - 1)
        heading = f"`{node.path}`"
        text = escape_inline(summary(node.command))
        lines.append(f"{indent}- [{heading}](#{anchor(heading)}){kind}: {text}")
    lines += ["", "## Global options", "", f"```text\n{usage(top)}\n```", ""]
    lines += param_tables(top)
    for node in nodes[1:]:
        level = "#" * min(node.depth + 1, 6)
        lines += [f"{level} `{node.path}`", "", f"```text\n{usage(node)}\n```", ""]
        text = help_markdown(help_text(node.command))
        if text:
            lines += [text, ""]
        lines += param_tables(node)
        if node.is_group:
            children = ", ".join(
                f"[`{child.command.name}`](#{anchor(f'`{child.path}`')})"
                for child in node.children()
            )
            lines += [f"Commands: {children}.", ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Generate docs/cli.md from the sztpctl app.")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="exit 1 if docs/cli.md is stale")
    mode.add_argument("--stdout", action="store_true", help="print the page, write nothing")
    parser.add_argument("--output", type=Path, default=TARGET, help="default: docs/cli.md")
    args = parser.parse_args(argv)

    text = render()
    if args.stdout:
        sys.stdout.write(text)
        return 0
    try:
        current = args.output.read_text(encoding="utf-8")
    except FileNotFoundError:
        current = None
    state = "missing" if current is None else "stale (the CLI changed)"
    return write_or_check(
        args.output,
        text,
        current,
        check=args.check,
        up_to_date=f"{args.output} is up to date",
        stale=f"{args.output} is {state}: run `{REGENERATE}` and commit the result",
    )


if __name__ == "__main__":
    sys.exit(main())
