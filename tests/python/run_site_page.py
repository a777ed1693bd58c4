"""Run docs/site.md as written against a running lab site: the molecule `stack` scenario's
verify step calls this once it has converged the lab (`playbooks/lab.yml`).

    python tests/python/run_site_page.py --device CONTAINER --lab-dir DIR --wheel WHEEL

The page's controller blocks run in one bash session in a temporary directory that stands for
the checkout (its `playbooks/inventories/lab/lab-artifacts` is the lab directory and its
`build/wheels/` holds the wheel), where `ssh DEVICE` and `scp ... DEVICE:` reach the device
container through podman; blocks starting `# on DEVICE` run in the container (see
doc_runner.HostSession). Blocks marked `not run` (the lab playbook itself, which molecule's
converge ran, and the production example) are listed. Exit status 1 with the problem when the
page and the site disagree.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
from pathlib import Path

from doc_runner import HostSession, Session, run_page

ROOT = Path(__file__).resolve().parents[2]
PAGE = "docs/site.md"
BLOCK_TIMEOUT = 600.0  # apt-get and pip in the device, from the package mirrors

# `ssh HOST CMD...` and `scp SRC... HOST:[PATH]` for the one host the page names, as an SSH
# client configured for it would: commands in the user's home directory, relative paths too.
REMOTE_SHELL = r"""
ssh() {
  [ "$1" = DEVICE ] || { echo "ssh: unknown host $1" >&2; return 255; }
  shift
  podman exec -w /root {container} bash -c "$*"
}
scp() {
  local target=${!#} source
  [ "${target%%:*}" = DEVICE ] || { echo "scp: unknown host in $target" >&2; return 1; }
  local path=${target#DEVICE:}
  case $path in /*) ;; *) path=/root/$path ;; esac
  for source in "${@:1:$#-1}"; do podman cp "$source" "{container}:$path" || return 1; done
}
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n\n")[0])
    parser.add_argument("--device", required=True, help="the device's container")
    parser.add_argument("--lab-dir", required=True, type=Path, help="the lab's artifacts")
    parser.add_argument("--wheel", required=True, type=Path, help="the sztp wheel")
    args = parser.parse_args()

    markdown = (ROOT / PAGE).read_text(encoding="utf-8")
    with tempfile.TemporaryDirectory(prefix="sztp-site-page-") as tmp:
        checkout = Path(tmp) / "checkout"
        (checkout / "playbooks/inventories/lab").mkdir(parents=True)
        (checkout / "playbooks/inventories/lab/lab-artifacts").symlink_to(args.lab_dir.resolve())
        (checkout / "build/wheels").mkdir(parents=True)
        (checkout / "build/wheels" / args.wheel.name).symlink_to(args.wheel.resolve())
        env = {key: value for key, value in os.environ.items() if not key.startswith("SZTP_")}
        env.update(COLUMNS="80", NO_COLOR="1", TERM="dumb")
        session = Session(checkout, Path(tmp) / "harness", env)
        try:
            setup = session.run(REMOTE_SHELL.replace("{container}", shlex.quote(args.device)), 10)
            if setup.status != 0:
                print(f"could not define ssh and scp:\n{setup.output}", file=sys.stderr)
                return 1
            device = HostSession(["podman", "exec", "-i", args.device])
            result = run_page(PAGE, markdown, session, checkout, BLOCK_TIMEOUT, {"DEVICE": device})
        finally:
            session.close()
    for block, reason in result.skipped:
        print(f"{PAGE}: block at line {block.line} not run: {reason}")
    print(f"{PAGE}: {len(result.ran)} block(s) run")
    if result.problems:
        print("\n".join(result.problems), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
