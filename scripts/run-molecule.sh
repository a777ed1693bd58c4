#!/bin/bash
# Run molecule scenarios in parallel lanes: each argument is a lane, a comma-separated list of
# scenarios run one after another; the lanes run at the same time (every scenario has its own
# containers and network, and most of a run is spent waiting on podman and package downloads).
#   scripts/run-molecule.sh stack server,file_server,kea
# Each scenario's output goes to build/molecule/SCENARIO.log; a failing one is shown in full.
# Every lane has its own HOME: molecule installs the collection under ~/.ansible/collections at
# the start of each scenario, and two lanes doing that at once delete each other's files.
# Needs PATH with molecule on it and SZTP_WHEEL (the wheel the server role installs).
set -euo pipefail

log_dir=build/molecule
mkdir -p "$log_dir"

run_lane() {
  local scenario
  export HOME="$PWD/$log_dir/home-$2"
  mkdir -p "$HOME"
  for scenario in ${1//,/ }; do
    local started=$SECONDS
    if molecule test -s "$scenario" >"$log_dir/$scenario.log" 2>&1; then
      echo "molecule $scenario: passed in $((SECONDS - started)) s"
    else
      echo "molecule $scenario: FAILED after $((SECONDS - started)) s, log $log_dir/$scenario.log:"
      sed 's/\x1b\[[0-9;]*m//g' "$log_dir/$scenario.log"
      return 1
    fi
  done
}

pids=()
lane_number=0
for lane in "$@"; do
  lane_number=$((lane_number + 1))
  run_lane "$lane" "$lane_number" &
  pids+=($!)
done
failed=0
for pid in "${pids[@]}"; do
  wait "$pid" || failed=1
done
exit $failed
