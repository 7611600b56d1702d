# shellcheck shell=bash disable=SC2154  # root, me, work and bench come from the caller
# Shared by bench/scenarios/ndp.sh and pays.sh (sourced, not run): an
# emulated cluster of 1 compute + 1 storage node (deploy/local/netns.sh),
# objects put through the compute node, answer checks with the storage
# link's byte counters read around each call, and ferry-bench runs from
# the load generator's namespace with both nodes' /metrics.
# The caller sets: root, me, work (a scratch dir it removes), bench.

netns=$root/deploy/local/netns.sh

# ndp_up DIR RATE: brings the cluster up in DIR, storage link at RATE, and
# sets compute, compute_upload, storage (URLs) and switch (the namespace
# holding the storage link's far end).
ndp_up() {
  bash "$netns" up "$1" --compute 1 --storage 1 --rate "$2" >/dev/null
  cluster=$1
  compute=$(awk '$2 == "compute" {print $3; exit}' "$cluster/endpoints")
  compute_upload=$(awk '$2 == "compute" {print $4; exit}' "$cluster/endpoints")
  storage=$(awk '$2 == "storage" {print $3; exit}' "$cluster/endpoints")
  compute=${compute%/} compute_upload=${compute_upload%/} storage=${storage%/}
  switch=$(awk '$1 == "loadgen" {print $2}' "$cluster/netns")
  switch=${switch%-loadgen}-switch
}

# ndp_down: takes the cluster down (safe to call twice).
ndp_down() {
  if [ -n "${cluster:-}" ]; then
    bash "$netns" down "$cluster" >/dev/null 2>&1 || true
    cluster=
  fi
}

in_loadgen() { bash "$netns" exec "$cluster" loadgen "$@"; }

# Bytes the switch's end of storage-0's link has sent (to storage) and
# received (from storage).
link_bytes() {
  echo "$(ip netns exec "$switch" cat /sys/class/net/s0/statistics/tx_bytes)" \
    "$(ip netns exec "$switch" cat /sys/class/net/s0/statistics/rx_bytes)"
}

# ndp_put KEY FILE: puts FILE as object ndp/KEY through the compute node
# (HTTP, streamed on in parts).
ndp_put() {
  # -T streams the file (--data-binary reads it whole into memory, and
  # curl refuses 1 GiB that way).
  in_loadgen curl -sS --fail-with-body --noproxy '*' -T "$2" \
    "$compute_upload/o/ndp/$1" >"$work/put.out" 2>&1 ||
    { echo "$me: putting ndp/$1 ($(stat -c %s "$2") bytes) failed: $(head -c 500 "$work/put.out")" >&2; return 1; }
}

# ndp_call FUNCTION INPUT FORBID(true|false) OUTPUT_FILE: one call; fails
# with the answer's text when the status is not 200.
ndp_call() {
  local body
  body=$(python3 -c 'import json,sys; print(json.dumps({"user": "ndp", "function": sys.argv[1], "input_data": sys.argv[2], "forbid_ndp": sys.argv[3] == "true"}))' "$1" "$2" "$3")
  in_loadgen curl -sS --fail-with-body --noproxy '*' -o "$4" -X POST "$compute/f/" -d "$body" 2>"$4.err" ||
    { echo "$me: $1 \"$2\" forbid_ndp=$3 failed: $(cat "$4.err") $(head -c 500 "$4")" >&2; return 1; }
}

# ndp_scrape FILE: both nodes' /metrics, one after the other, into FILE
# (compute's, then a line "#storage", then storage's).
ndp_scrape() {
  { in_loadgen curl -sf --noproxy '*' "$compute/metrics"; echo "#storage"
    in_loadgen curl -sf --noproxy '*' "$storage/metrics"; } >"$1"
}

# ndp_check FUNCTION INPUT DIR STEM: one call with NDP and one with
# forbid_ndp, each alone, with the storage link's counters and both nodes'
# /metrics read around it, written as DIR/STEM-MODE.link.json: bytes each
# way, the call's seconds, each node's CPU ms, where its funclet ran, the
# answer's size and sha256. The funclet must have run where the mode puts
# it (NDP: offload accepted, nothing run on the compute node; forbid_ndp:
# run on the compute node, nothing offloaded) and the answers must be the
# same. Sets call_s to the slower call's seconds.
ndp_check() {
  local function=$1 input=$2 dir=$3 stem=$4 mode forbid to0 from0 to1 from1 t0 t1
  call_s=0
  for mode in ndp forbid; do
    forbid=false
    [ "$mode" = forbid ] && forbid=true
    ndp_scrape "$work/metrics.before"
    read -r to0 from0 < <(link_bytes)
    t0=$(date +%s.%N)
    ndp_call "$function" "$input" "$forbid" "$work/$stem.$mode.out"
    t1=$(date +%s.%N)
    read -r to1 from1 < <(link_bytes)
    ndp_scrape "$work/metrics.after"
    python3 - "$dir/$stem-$mode.link.json" "$stem-$mode" "$((to1 - to0))" "$((from1 - from0))" \
      "$t0" "$t1" "$work/$stem.$mode.out" "$work/metrics.before" "$work/metrics.after" "$mode" <<'PY'
import hashlib, json, sys
path, label, to, frm, t0, t1, answer, before, after, mode = sys.argv[1:]

def scrape(path):
    nodes, node = {"compute": {}, "storage": {}}, "compute"
    for line in open(path):
        if line.startswith("#storage"):
            node = "storage"
        elif line and not line.startswith("#"):
            name, _, value = line.rstrip("\n").rpartition(" ")
            try:
                nodes[node][name] = float(value)
            except ValueError:
                pass
    return nodes

b, a = scrape(before), scrape(after)
delta = lambda node, name: a[node].get(name, 0.0) - b[node].get(name, 0.0)
where = {
    "offloads_accepted": delta("compute", 'ferry_offloads_total{result="accepted"}'),
    "offloads_failed": delta("compute", 'ferry_offloads_total{result="failed"}'),
    "offloads_declined": delta("compute", 'ferry_offloads_total{result="declined"}'),
    "compute_forbid_ndp": delta("compute", 'ferry_funclets_here_total{reason="forbid_ndp"}'),
    "compute_fallback": delta("compute", 'ferry_funclets_here_total{reason="fallback"}'),
}
data = open(answer, "rb").read()
with open(path, "w") as f:
    json.dump({"label": label, "calls": 1, "to_storage_bytes": int(to), "from_storage_bytes": int(frm),
               "call_s": round(float(t1) - float(t0), 3),
               "cpu_ms": {n: round(delta(n, "process_cpu_seconds_total") * 1000, 1) for n in ("compute", "storage")},
               "where": where, "answer_bytes": len(data),
               "answer_sha256": hashlib.sha256(data).hexdigest(),
               "answer_head": data[:80].decode("utf-8", "replace")}, f)
    f.write("\n")
ok = (where["offloads_accepted"] == 1 and where["compute_fallback"] == 0 and where["compute_forbid_ndp"] == 0
      if mode == "ndp" else where["offloads_accepted"] == 0 and where["compute_forbid_ndp"] == 1)
if not ok:
    sys.exit(f"{label}: the funclet did not run where {mode} puts it: {where}")
PY
    call_s=$(python3 -c 'import sys; print(max(float(sys.argv[1]), float(sys.argv[2]) - float(sys.argv[3])))' "$call_s" "$t1" "$t0")
  done
  cmp -s "$work/$stem.ndp.out" "$work/$stem.forbid.out" ||
    { echo "$me: $function \"$input\" answers differently with and without NDP" >&2; return 1; }
}

# ndp_run FUNCTION INPUT DIR LABEL MODE(ndp|forbid) SECONDS WARMUP:
# `ferry-bench run`, closed loop, 1 connection, both nodes' /metrics; the
# run must have answered calls and none may have failed.
ndp_run() {
  local flag=()
  [ "$5" = forbid ] && flag=(--forbid-ndp)
  in_loadgen "$bench" run --url "$compute" --user ndp --function "$1" --input "$2" "${flag[@]}" \
    --concurrency 1 --duration "$6" --warmup "$7" --timeout 120s --metrics "$compute" "$storage" \
    --out "$3" --label "$4" >/dev/null 2>"$work/bench.err" ||
    { echo "$me: ferry-bench run $4 exited $?:" >&2; grep -v '^ \{2,\}' "$work/bench.err" | head -5 >&2; }
  ndp_run_ok "$3/$4" && return 0
  # ferry-bench keeps the first line of a failed call's answer; three
  # calls back to back, as the run made them, show the rest.
  local forbid=false
  [ "$5" = forbid ] && forbid=true
  for _ in 1 2 3; do
    ndp_call "$1" "$2" "$forbid" "$work/retry.out" || true
  done
  return 1
}

# ndp_run_ok STEM: STEM.json says calls were answered and none failed.
ndp_run_ok() {
  python3 - "$1.json" <<'PY' || { echo "$me: $(basename "$1") had errors or no calls; see $1.txt" >&2; return 1; }
import json, sys
try:
    s = json.load(open(sys.argv[1]))
except (OSError, ValueError) as error:
    sys.exit(f"{sys.argv[1]}: {error}")
if s["errors"] != 0 or s["count"] == 0:
    print(f"{sys.argv[1]}: count {s['count']}, errors {s['errors']}: {s.get('error_samples')}", file=sys.stderr)
    sys.exit(1)
PY
}

# ndp_where STEM MODE: no funclet of the run ran where MODE does not put
# it: with NDP, none fell back to or was forbidden on the compute node;
# with forbid_ndp, none offloaded.
# (The counters are read at the window's end, while the last call may
# still run, so only misplacement is checked, not one-per-call counts.)
ndp_where() {
  python3 - "$1.json" "$2" <<'PY' || { echo "$me: $(basename "$1"): funclets did not run where $2 puts them" >&2; return 1; }
import json, sys
s = json.load(open(sys.argv[1]))
compute = next(n for n in s["nodes"] if "10.77.1." in n["url"])
accepted = compute["delta"].get('ferry_offloads_total{result="accepted"}', 0)
fallback = compute["delta"].get('ferry_funclets_here_total{reason="fallback"}', 0)
forbid = compute["delta"].get('ferry_funclets_here_total{reason="forbid_ndp"}', 0)
ok = fallback == 0 and forbid == 0 if sys.argv[2] == "ndp" else accepted == 0 and fallback == 0
if not ok:
    print(f"{sys.argv[1]}: offloads accepted {accepted}, run here: forbid_ndp {forbid}, fallback {fallback}", file=sys.stderr)
    sys.exit(1)
PY
}

# ndp_warmup CALL_S SECONDS: the warm-up for a run whose calls take CALL_S:
# WARMUP s (default 1), or none when one call takes longer than a third of
# the window (a call that starts in the warm-up and ends past the window
# would leave the window empty).
ndp_warmup() {
  python3 -c 'import sys; print(0 if float(sys.argv[1]) * 3 > float(sys.argv[2]) else sys.argv[3])' \
    "$1" "$2" "${WARMUP:-1}"
}

# ndp_failed STEM ERR_FILE SINCE: records a failed point as
# STEM.failed.json: the error's text as the scenario printed it, and the
# nodes' warnings and errors logged from SINCE (UTC, as `date -u
# +%Y-%m-%dT%H:%M:%S` prints it) on, start-up notices left out.
ndp_failed() {
  python3 - "$1.failed.json" "$2" "$(basename "$1")" "$cluster" "$3" <<'PY'
import glob, json, os, re, sys
path, err, label, cluster, since = sys.argv[1:]
text = open(err, errors="replace").read().strip()
lines = [l for l in text.splitlines() if not l.startswith("  ")][-12:]
logged = []
for log in sorted(glob.glob(os.path.join(cluster, "*", "log"))):
    node = os.path.basename(os.path.dirname(log))
    for line in open(log, errors="replace"):
        clean = re.sub(r"\x1b\[[0-9;]*m", "", line.strip())
        if clean[:19] < since or not re.search(r" (WARN|ERROR) ", clean):
            continue
        if "no [auth]" not in clean and "no [cluster]" not in clean:
            logged.append(f"{node}: {clean}")
with open(path, "w") as f:
    json.dump({"label": label, "failed": True, "error": "\n".join(lines), "node_log": logged[-6:]}, f, indent=2)
    f.write("\n")
PY
}

# ndp_point FUNCTION INPUT DIR STEM SECONDS: one point, the answer checked
# (ndp_check), then NDP and forbid_ndp runs (ndp_run), each checked for
# where its funclets ran (ndp_where). A point that fails is recorded
# (DIR/STEM.failed.json, with the error's text) and point_ok is set to 0;
# the caller goes on with the other points. Call it as a plain command
# (not after || or in an if), so that errexit holds inside it.
# shellcheck disable=SC2034  # point_ok is the caller's to read
ndp_point() {
  local function=$1 input=$2 dir=$3 stem=$4 seconds=$5 since status
  since=$(date -u +%Y-%m-%dT%H:%M:%S)
  set +e
  (
    set -e
    ndp_check "$function" "$input" "$dir" "$stem"
    warmup=$(ndp_warmup "$call_s" "$seconds")
    misplaced=
    for mode in ndp forbid; do
      ndp_run "$function" "$input" "$dir" "$stem-$mode" "$mode" "$seconds" "$warmup"
      ndp_where "$dir/$stem-$mode" "$mode" || misplaced="$misplaced $mode"
    done
    [ -z "$misplaced" ] || { echo "$me: ${dir##*/}/$stem: the funclets of the$misplaced run ran elsewhere" >&2; exit 1; }
  ) 2>"$work/point.err"
  status=$?
  set -e
  cat "$work/point.err" >&2
  point_ok=1
  if [ "$status" != 0 ]; then
    ndp_failed "$dir/$stem" "$work/point.err" "$since"
    point_ok=0
  fi
}
