# shellcheck shell=bash
# shellcheck disable=SC2154 # me and dir are the sourcing script's
# Shell helpers deploy/local/cluster.sh and netns.sh share. Sourced after
# the script sets `me` (its name, for messages), `usage` and `dir` (the
# cluster directory, for node_names).

die_usage() {
  echo "$me: $*" >&2
  usage >&2
  exit 2
}

die() {
  echo "$me: $*" >&2
  exit 1
}

check_count() {
  local flag=$1 value=$2 min=$3 max=$4
  case "$value" in
    '' | *[!0-9]*) die_usage "$flag takes a whole number, got '$value'" ;;
  esac
  if [ "$((10#$value))" -lt "$min" ] || [ "$((10#$value))" -gt "$max" ]; then
    die_usage "$flag must be between $min and $max, got $value"
  fi
}

node_names() {
  local pid_file
  for pid_file in "$dir"/*/pid; do
    [ -f "$pid_file" ] || continue
    basename "$(dirname "$pid_file")"
  done
}

alive() {
  local state
  state=$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$1/status" 2>/dev/null) || return 1
  [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}
