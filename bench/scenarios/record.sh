#!/usr/bin/env bash
# Runs a benchmark command and keeps what it printed as a committed result:
#
#   bench/scenarios/record.sh NAME -- COMMAND...
#
# writes bench/results/NAME/meta.json (bench/scenarios/meta.py: when,
# where, load, ferry commit and binary) and bench/results/NAME/output.txt
# (the command's standard output; its standard error still reaches the
# terminal). bench/scenarios/render.py renders output.txt into
# bench/README.md between <!-- table: NAME --> markers. The command's exit
# status is this script's; a failed run leaves output.txt.failed, not
# output.txt, so a table never shows a run that did not finish.
set -euo pipefail
me=record.sh
root=$(cd "$(dirname "$0")/../.." && pwd)
[ $# -ge 3 ] && [ "$2" = -- ] || { echo "usage: $me NAME -- COMMAND..." >&2; exit 2; }
name=$1
shift 2
case "$name" in '' | *[!a-z0-9_-]*) echo "$me: NAME is [a-z0-9_-]+, got '$name'" >&2; exit 2 ;; esac
out=$root/bench/results/$name
mkdir -p "$out"
rm -f "$out/output.txt" "$out/output.txt.failed"
python3 "$root/bench/scenarios/meta.py" start "$out" "$name" -- "$@"
status=0
"$@" | tee "$out/output.txt.partial" || status=$?
python3 "$root/bench/scenarios/meta.py" end "$out"
if [ "$status" -eq 0 ]; then
  mv "$out/output.txt.partial" "$out/output.txt"
else
  mv "$out/output.txt.partial" "$out/output.txt.failed"
  echo "$me: $* exited $status; its output is in $out/output.txt.failed" >&2
fi
exit "$status"
