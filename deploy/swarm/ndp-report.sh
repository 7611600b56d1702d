#!/usr/bin/env bash
# The first NDP vs forbid_ndp report of a cluster: writes one object, checks
# that a call gives the same answer both ways, then runs ferry-bench (closed
# loop, HdrHistogram) with near-data offload and with forbid_ndp against the
# same compute node, and reports both beside the compute node's /metrics
# (where the funclets ran, snapshot bytes shipped) over each run.
#
#   ndp-report.sh --url http://COMPUTE:8080 | --config CLUSTER.toml
#       [--upload-url http://COMPUTE:8002] [--out DIR] [--label NAME]
#       [--object-mib N] [--seconds S] [--connections C]
#       [--user U] [--function F] [--key K]
#
#   --url          a compute node's invocation endpoint
#   --config       or: the cluster config; the first compute node in it
#   --upload-url   its upload endpoint (default: --url's host on port 8002,
#                  or the node's upload_port in --config)
#   --out          where the results land (default: bench/results)
#   --label        file name prefix (default: ndp-report)
#   --object-mib   size of the object the function reads (default: 64)
#   --seconds      measured seconds per mode, after 1 s of warm-up (default: 10)
#   --connections  concurrent connections of ferry-bench (default: 1)
#   --user, --function, --key   what to call (default: ndp, wordcount, report-words)
#
# Writes OUT/LABEL-ndp.{hlog,txt}, OUT/LABEL-forbid.{hlog,txt} (ferry-bench's
# HdrHistogram log and summary) and OUT/LABEL.txt (this report). Needs
# ferry, ferry-bench and curl on PATH: the image has them, and so does a
# checkout with target/release on PATH. Exit 1 if either mode had errors or
# the two answers differ.
set -euo pipefail

me=ndp-report.sh
url="" upload_url="" config="" out=bench/results label=ndp-report mib=64 seconds=10
connections=1 user=ndp function=wordcount key=report-words

die() {
  echo "$me: $*" >&2
  exit 1
}

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
  exit 2
}

while [ $# -gt 0 ]; do
  case "$1" in -h | --help) usage ;; esac
  [ $# -ge 2 ] || { echo "$me: $1 needs a value" >&2; usage; }
  case "$1" in
    --url) url=$2 ;;
    --config) config=$2 ;;
    --upload-url) upload_url=$2 ;;
    --out) out=$2 ;;
    --label) label=$2 ;;
    --object-mib) mib=$2 ;;
    --seconds) seconds=$2 ;;
    --connections) connections=$2 ;;
    --user) user=$2 ;;
    --function) function=$2 ;;
    --key) key=$2 ;;
    *) echo "$me: unknown option $1" >&2; usage ;;
  esac
  shift 2
done
if [ -z "$url" ] && [ -n "$config" ]; then
  [ -f "$config" ] || die "$config not found"
  # The first [[nodes]] entry with role "compute": HOST HTTP_PORT UPLOAD_PORT
  # (cluster_config.py writes one `key = value` a line).
  read -r c_host c_http c_upload < <(awk '
    function flush() { if (role == "compute" && !done) { print host, (http ? http : 8080), (up ? up : 8002); done = 1 } }
    /^\[/ { flush(); role = host = http = up = "" }
    { v = $0; sub(/^[^=]*= */, "", v); gsub(/"/, "", v) }
    $1 == "role" { role = v } $1 == "host" { host = v }
    $1 == "http_port" { http = v } $1 == "upload_port" { up = v }
    END { flush() }' "$config") || true
  [ -n "${c_host:-}" ] || die "no compute node in $config"
  url=http://$c_host:$c_http
  upload_url=${upload_url:-http://$c_host:$c_upload}
fi
[ -n "$url" ] || { echo "$me: give --url or --config" >&2; usage; }
for value in "$mib" "$seconds" "$connections"; do
  case "$value" in '' | *[!0-9]* | 0) die "--object-mib, --seconds and --connections take whole numbers above 0, got '$value'" ;; esac
done
for tool in ferry ferry-bench curl awk; do
  command -v "$tool" >/dev/null || die "$tool not found on PATH"
done

url=${url%/}
# http://HOST:PORT -> HOST and PORT, for the ferry CLI's --host/--http-port.
hostport=${url#http://}
host=${hostport%:*}
http_port=${hostport##*:}
[ "$host" != "$hostport" ] && [ "$url" != "$hostport" ] || die "--url must look like http://HOST:PORT, got $url"
upload_url=${upload_url:-http://$host:8002}
upload_url=${upload_url%/}
upload_port=${upload_url##*:}
cli=(--host "$host" --http-port "$http_port" --upload-port "$upload_port")

get() { curl --noproxy '*' -fsS --max-time 10 "$@"; }

[ "$(get -o /dev/null -w '%{http_code}' "$url/healthz")" = 200 ] || die "no 200 from $url/healthz"

# The compute node's value of one /metrics sample (0 when absent).
metric() {
  awk -v s="$1" '$1 == s { v = $2 } END { printf "%d\n", v + 0 }' "$2"
}
snapshot() {
  get "$url/metrics" >"$1" || die "reading $url/metrics"
}

mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The object: one MiB of words from a fixed list of 40 (a fixed seed: the
# same bytes every run), repeated MIB times.
echo "$me: writing $user/$key ($mib MiB)" >&2
awk -v bytes=$((1 << 20)) 'BEGIN {
  srand(1); n = 0; line = ""
  while (n < bytes) {
    w = "w" int(rand() * 40) " "
    if (n + length(w) > bytes) w = substr(w, 1, bytes - n)
    line = line w; n += length(w)
    if (length(line) >= 4096) { printf "%s", line; line = "" }
  }
  printf "%s", line
}' >"$work/block"
for ((i = 0; i < mib; i++)); do cat "$work/block"; done >"$work/object"
ferry object put "$user" "$key" "$work/object" "${cli[@]}" >/dev/null
placement=$(get "$upload_url/p/$user/$key" || echo '(unknown)')

# The same answer both ways, before anything is timed.
ferry invoke "$user" "$function" --input "$key" "${cli[@]}" >"$work/ndp.out" ||
  die "$user/$function failed with NDP: $(head -c 300 "$work/ndp.out")"
ferry invoke "$user" "$function" --input "$key" --forbid-ndp "${cli[@]}" >"$work/forbid.out" ||
  die "$user/$function failed with forbid_ndp: $(head -c 300 "$work/forbid.out")"
same=yes
cmp -s "$work/ndp.out" "$work/forbid.out" || same=no

run() { # run MODE [--forbid-ndp]
  local mode=$1
  shift
  snapshot "$work/$mode.before"
  ferry-bench run --url "$url" --user "$user" --function "$function" --input "$key" "$@" \
    --connections "$connections" --duration "$seconds" --warmup 1 \
    --out "$out" --label "$label-$mode" >&2
  snapshot "$work/$mode.after"
}
run ndp
run forbid --forbid-ndp

delta() { # delta MODE SAMPLE
  echo $(($(metric "$2" "$work/$1.after") - $(metric "$2" "$work/$1.before")))
}
field() { # field MODE NAME: a number after NAME in ferry-bench's summary
  awk -v name="$2" '{ for (i = 1; i < NF; i++) if ($i == name) { print $(i + 1); exit } }' "$out/$label-$1.txt"
}
rate() { # calls/s: calls over the measured seconds (the summary rounds it)
  awk '/calls\/s/ { for (i = 1; i < NF; i++) { if ($i == "calls") c = $(i + 1); if ($i == "in") s = $(i + 1) }
                    if (s > 0) printf "%.1f\n", c / s; exit }' "$out/$label-$1.txt"
}

status=0
{
  echo "ferry NDP vs forbid_ndp: $user/$function on a $mib MiB object ($user/$key)"
  echo "compute node $url; object placement $placement"
  echo "$connections connection(s), $seconds s per mode after 1 s of warm-up; $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "same answer with and without NDP: $same"
  echo
  printf '%-8s %10s %8s %10s %10s %10s %10s %12s %12s\n' mode calls errors calls/s p50_ms p99_ms offloaded ran_here sent+recv_B
  for mode in ndp forbid; do
    here=$(($(delta $mode 'ferry_funclets_here_total{reason="forbid_ndp"}') + $(delta $mode 'ferry_funclets_here_total{reason="holds_object"}') + $(delta $mode 'ferry_funclets_here_total{reason="fallback"}')))
    bytes=$(($(delta $mode 'ferry_offload_bytes_total{direction="sent"}') + $(delta $mode 'ferry_offload_bytes_total{direction="received"}')))
    printf '%-8s %10s %8s %10s %10s %10s %10s %12s %12s\n' "$mode" "$(field $mode calls)" "$(field $mode errors)" \
      "$(rate $mode)" "$(field $mode p50)" "$(field $mode p99)" \
      "$(delta $mode 'ferry_offloads_total{result="accepted"}')" "$here" "$bytes"
  done
  echo
  awk -v a="$(field ndp p50)" -v b="$(field forbid p50)" -v c="$(rate ndp)" -v d="$(rate forbid)" 'BEGIN {
    if (a > 0 && d > 0) printf "forbid_ndp/NDP: p50 latency x%.2f, NDP/forbid_ndp: throughput x%.2f\n", b / a, c / d }'
  echo "From the compute node's /metrics over each ferry-bench run (its 1 s warm-up included):"
  echo "offloaded: funclets the compute node offloaded (ferry_offloads_total{result=\"accepted\"});"
  echo "ran_here: funclets it ran itself (ferry_funclets_here_total, any reason);"
  echo "sent+recv_B: snapshot bytes of offloads (ferry_offload_bytes_total). With forbid_ndp the"
  echo "object itself crosses the network instead: $((mib << 20)) B per call."
  echo "declined/failed offloads during the NDP run: $(delta ndp 'ferry_offloads_total{result="declined"}')/$(delta ndp 'ferry_offloads_total{result="failed"}')"
  echo "histograms: $out/$label-ndp.hlog $out/$label-forbid.hlog (HdrHistogram V2)"
} >"$out/$label.txt"
cat "$out/$label.txt"

[ "$same" = yes ] || { echo "$me: the answers with and without NDP differ" >&2; status=1; }
for mode in ndp forbid; do
  [ "$(field $mode errors)" = 0 ] || { echo "$me: the $mode run had errors" >&2; status=1; }
done
[ "$(delta ndp 'ferry_offloads_total{result="accepted"}')" -gt 0 ] ||
  echo "$me: no funclet was offloaded during the NDP run; see ferry_funclets_here_total on $url/metrics" >&2
exit "$status"
