#!/usr/bin/env bash
# bench/run.sh — AI Hub's load benchmark: what the gateway adds on top of its upstream.
#
# Usage: bench/run.sh [--quick] [--pin] [--no-cluster] [--no-build] [--keep] [--callgrind] [--help]
#
#   --quick       short runs (about 1 minute in all), for smoke tests; figures are noisy
#   --pin         pin the load generator (oha) and the mock upstream to CPU 0 and AI Hub to
#                 CPU 1 with `taskset` (installs util-linux if missing; needs 2+ CPUs)
#   --no-cluster  skip the two-instance PostgreSQL scenario
#   --no-build    use the release binaries already built (skip `cargo build --release`)
#   --keep        keep the temporary work directory (configs, databases, journals, logs)
#   --callgrind   instead of the load runs: count the instructions AI Hub executes per request
#                 (every check on, 2000 requests after 300 warm-ups, then 200 streams) under
#                 valgrind's callgrind, and print them by function and crate
#                 (bench/callgrind.py). Repeatable to about 1 % on a quiet machine (3 % with
#                 both cores busy), so it shows what a change to the hot path saves where the
#                 timed runs' noise (±10–25 %) would hide it. User space only: system calls
#                 count as the instructions around them (installs valgrind if missing)
#
# Environment: BENCH_PG_URL (default postgres://postgres@127.0.0.1:5432) is the PostgreSQL
# server of the cluster scenario; a fresh database is created on it and dropped at the end.
#
# What it does (docs/benchmarks.md explains every scenario and how to read the table):
#   1. builds `aihub` and `aihub-mock-upstream` in release mode; installs oha if missing;
#   2. in a temporary directory: starts the mock upstream, writes an aihub.toml, creates a user
#      and an API key, starts AI Hub and waits for /readyz;
#   3. runs each scenario at the same load against the mock directly (baseline) and through
#      AI Hub, back to back, so that overhead = AI Hub − baseline, percentile by percentile:
#        A  open loop at fixed rates (500, 2000, 5000 req/s), non-streaming chat
#        B  closed loop, 64 connections, as fast as it goes
#        C  streaming: time to first byte at 500 streams/s
#        D  the checks ladder: a bare forwarder (the floor: hyper server + client, nothing else;
#           also in the closed loop) → no checks (/healthz) → key auth (/v1/models) → auth + metering
#           with the built-in mock provider (no upstream hop) → auth + metering through the
#           upstream → + limits → every check on (limits and budgets; scenario A's row)
#        E  cluster: two AI Hub processes on one fresh PostgreSQL database and a shared Redis,
#           load spread over both by oha's --connect-to
#      and for every AI Hub run: CPU time per request and peak RSS of the AI Hub process(es),
#      plus, per setup, whether metering loaded every request into the database;
#   4. writes bench/results/<time>/ (raw oha JSON + metadata per run, results.md), copies the
#      table to bench/results/latest.md and prints it.
#
# Every process it starts is stopped on exit (also on Ctrl-C or error). It listens only on
# 127.0.0.1 ports the kernel hands out (never 8080).
set -euo pipefail

QUICK=0
CALLGRIND=0
PIN=0
CLUSTER=1
BUILD=1
KEEP=0
for arg in "$@"; do
  case "$arg" in
    --quick) QUICK=1 ;;
    --pin) PIN=1 ;;
    --no-cluster) CLUSTER=0 ;;
    --no-build) BUILD=0 ;;
    --keep) KEEP=1 ;;
    --callgrind) CALLGRIND=1 CLUSTER=0 ;;
    -h | --help)
      sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
      exit 0
      ;;
    *)
      echo "run.sh: unknown option $arg (see --help)" >&2
      exit 2
      ;;
  esac
done

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$BENCH_DIR")"
PG_URL="${BENCH_PG_URL:-postgres://postgres@127.0.0.1:5432}"
REDIS_URL="${BENCH_REDIS_URL:-redis://127.0.0.1:6379}"
RUN_STARTED=$(date +%s)

# ---------------------------------------------------------------------------------------------
# Durations and loads. The full run takes about 7 minutes, the quick one about 1.

RATES=(500 2000 5000)
OPEN_CONNS=100      # connections available to the open-loop generator (an upper bound)
MAX_CONNS=64        # closed loop
STREAM_RATE=500
STREAM_CONNS=256    # a stream lasts ~ (tokens + 2) × CHUNK_MS: 500/s needs ~100 at once
CHUNK_MS=10         # mock delay between streamed chunks (non-streaming replies ignore it)
CHECK_RATE=2000     # the checks ladder runs at this rate (its last rung is scenario A's row)
if [ "$QUICK" = 1 ]; then
  D_RATE=3s D_MAX=3s D_STREAM=3s D_CHECK=2s D_WARM=1s
else
  D_RATE=20s D_MAX=15s D_STREAM=20s D_CHECK=10s D_WARM=3s
fi

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

# ---------------------------------------------------------------------------------------------
# Tools.

command -v cargo >/dev/null || die "cargo is required"
command -v python3 >/dev/null || die "python3 is required"
command -v curl >/dev/null || die "curl is required"
if ! command -v oha >/dev/null; then
  log "installing oha (cargo install oha --locked)"
  cargo install oha --locked
  export PATH="$HOME/.cargo/bin:$PATH"
fi
PIN_LOAD=() PIN_MOCK=() PIN_HUB=()
if [ "$PIN" = 1 ]; then
  if ! command -v taskset >/dev/null; then
    log "installing util-linux for taskset"
    apt-get update -qq && apt-get install -y -qq util-linux >/dev/null
  fi
  [ "$(nproc)" -ge 2 ] || die "--pin needs at least 2 CPUs"
  PIN_LOAD=(taskset -c 0) PIN_MOCK=(taskset -c 0) PIN_HUB=(taskset -c 1)
fi
HUB_WRAP=()
if [ "$CALLGRIND" = 1 ]; then
  if ! command -v valgrind >/dev/null; then
    log "installing valgrind"
    apt-get update -qq && apt-get install -y -qq valgrind >/dev/null
  fi
  # Names uncompressed: each dump then stands on its own for bench/callgrind.py.
  HUB_WRAP=(valgrind --tool=callgrind --compress-strings=no --compress-pos=no)
fi
if [ "$CLUSTER" = 1 ]; then
  if ! command -v psql >/dev/null; then
    log "psql not found: skipping the cluster scenario"
    CLUSTER=0
  elif ! psql "$PG_URL/postgres" -qtAc 'select 1' >/dev/null 2>&1; then
    log "PostgreSQL at $PG_URL is not reachable: skipping the cluster scenario"
    CLUSTER=0
  elif ! redis-cli -u "$REDIS_URL" ping >/dev/null 2>&1; then
    log "Redis at $REDIS_URL is not reachable: skipping the cluster scenario"
    CLUSTER=0
  fi
fi

if [ "$BUILD" = 1 ]; then
  log "building aihub, aihub-mock-upstream and aihub-bench-forwarder (release)"
  (cd "$ROOT" && cargo build --release -q -p aihub -p aihub-mock-upstream -p aihub-bench-forwarder)
fi
# The commit the binaries were built from ("+dirty": uncommitted changes under crates/).
COMMIT="$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)"
(cd "$ROOT" && git diff --quiet HEAD -- crates Cargo.lock 2>/dev/null) || COMMIT="$COMMIT+dirty"
TARGET_DIR="$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
AIHUB="$TARGET_DIR/release/aihub"
MOCK="$TARGET_DIR/release/aihub-mock-upstream"
FORWARDER="$TARGET_DIR/release/aihub-bench-forwarder"
if [ ! -x "$AIHUB" ] || [ ! -x "$MOCK" ] || [ ! -x "$FORWARDER" ]; then
  die "release binaries not found in $TARGET_DIR/release"
fi

# ---------------------------------------------------------------------------------------------
# Work directory, results, cleanup.

STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/aihub-bench.XXXXXX")"
RESULTS="$BENCH_DIR/results/$STAMP"
RAW="$RESULTS/raw"
mkdir -p "$RAW"
PIDS=()
PG_DB=""
SETUP=none

cleanup() {
  local status=$?
  set +e
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  done
  if [ -n "$PG_DB" ]; then
    psql "$PG_URL/postgres" -qtAc "DROP DATABASE IF EXISTS \"$PG_DB\" WITH (FORCE)" >/dev/null 2>&1
  fi
  # AI Hub's own log (warnings and errors) of each setup, restarts appended, so that errors in
  # the results can be told apart; the last 5,000 lines of each.
  for log in "$WORK"/*/aihub.log; do
    [ -s "$log" ] && tail -n 5000 "$log" >"$RAW/$(basename "$(dirname "$log")").aihub.log"
  done
  if [ "$KEEP" = 1 ]; then
    log "work directory kept: $WORK"
  else
    rm -rf "$WORK"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Stops the processes given, gracefully, and forgets them.
stop() {
  local pid keep=()
  for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "$@"; do wait "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    case " $* " in *" $pid "*) ;; *) keep+=("$pid") ;; esac
  done
  PIDS=("${keep[@]}")
}

# A free TCP port on 127.0.0.1, picked by the kernel (ephemeral range, so never 8080).
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_http() { # URL NAME [TRIES, 0.1 s apart]
  for _ in $(seq 1 "${3:-150}"); do
    curl -s -o /dev/null "$1" && return 0
    sleep 0.1
  done
  die "$2 did not come up at $1"
}

# JSON field of stdin, by a Python expression on `d`.
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

# ---------------------------------------------------------------------------------------------
# Request bodies.

UPSTREAM_KEY="sk-bench-upstream-$(python3 -c 'import secrets; print(secrets.token_hex(8))')"
MESSAGES='[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Say hello to the load benchmark, please."}]'
printf '{"model":"bench-chat","messages":%s,"max_tokens":16}' "$MESSAGES" >"$WORK/chat.json"
printf '{"model":"gpt-4o-mini","messages":%s,"max_tokens":16}' "$MESSAGES" >"$WORK/chat-direct.json"
printf '{"model":"mock-chat","messages":%s,"max_tokens":16}' "$MESSAGES" >"$WORK/chat-builtin.json"
printf '{"model":"bench-chat","messages":%s,"max_tokens":16,"stream":true,"stream_options":{"include_usage":true}}' \
  "$MESSAGES" >"$WORK/stream.json"
printf '{"model":"gpt-4o-mini","messages":%s,"max_tokens":16,"stream":true,"stream_options":{"include_usage":true}}' \
  "$MESSAGES" >"$WORK/stream-direct.json"

# ---------------------------------------------------------------------------------------------
# Measurement.

CLK_TCK="$(getconf CLK_TCK)"

cpu_ticks() { # PID... → utime+stime summed, in clock ticks
  local pid line rest total=0
  for pid in "$@"; do
    read -r line <"/proc/$pid/stat" || continue
    rest="${line##*) }"
    # shellcheck disable=SC2086 # word splitting intended: the fields of /proc/PID/stat
    set -- $rest
    total=$((total + ${12} + ${13}))
  done
  echo "$total"
}

postgres_pids() {
  local p
  for p in /proc/[0-9]*; do
    [ "$(cat "$p/comm" 2>/dev/null)" = postgres ] && echo "${p#/proc/}"
  done
  return 0
}

hwm_kb() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }

# redis_stats → "COMMANDS CPU_SECONDS": commands Redis has executed (those inside scripts
# included) and its CPU time (user + system) so far.
redis_stats() {
  redis-cli -u "$REDIS_URL" INFO all 2>/dev/null | tr -d '\r' | awk -F'[:=,]' '
    /^cmdstat_/ {calls += $3}
    /^used_cpu_(user|sys):/ {cpu += $2}
    END {printf "%d %.6f\n", calls, cpu}'
}

# Resets the peak-RSS counter, so VmHWM after a run is the peak of that run (Linux ≥ 4.0).
reset_hwm() { echo 5 >"/proc/$1/clear_refs" 2>/dev/null || true; }

# measure ID SECTION LABEL TARGET PIDS RATE DURATION -- OHA_ARGS...
#   TARGET: baseline | forwarder | aihub | cluster — whose CPU and memory PIDS are.
#   RATE: the fixed rate in req/s, or "max" for a closed loop.
measure() {
  local id="$1" section="$2" label="$3" target="$4" pids="$5" rate="$6" duration="$7"
  shift 8
  local url="${!#}" metered=False
  # Chat requests through AI Hub each leave one usage record (checked by check_metering).
  case "$target" in aihub | cluster) [[ "$url" == */v1/chat/completions ]] && metered=True ;; esac
  local pid pg_pids="" t0 t1 pg0=0 pg1=0 w0 w1 hwm=() r0="0 0" r1="0 0"
  [ "$target" = cluster ] && pg_pids="$(postgres_pids | tr '\n' ' ')"
  [ "$target" = cluster ] && r0=$(redis_stats)
  for pid in $pids; do reset_hwm "$pid"; done
  log "$section: $label${rate:+ @ $rate req/s} for $duration"
  # shellcheck disable=SC2086 # lists of PIDs
  t0=$(cpu_ticks $pids)
  # shellcheck disable=SC2086
  [ -n "$pg_pids" ] && pg0=$(cpu_ticks $pg_pids)
  w0=$(date +%s.%N)
  local qps=()
  [ "$rate" != max ] && qps=(-q "$rate" --latency-correction)
  "${PIN_LOAD[@]}" oha --no-tui -w -z "$duration" "${qps[@]}" --output-format json \
    -o "$RAW/$id.oha.json" "$@" >/dev/null 2>"$RAW/$id.oha.err" ||
    die "oha failed for $id: $(cat "$RAW/$id.oha.err")"
  w1=$(date +%s.%N)
  # shellcheck disable=SC2086
  t1=$(cpu_ticks $pids)
  # shellcheck disable=SC2086
  [ -n "$pg_pids" ] && pg1=$(cpu_ticks $pg_pids)
  [ "$target" = cluster ] && r1=$(redis_stats)
  for pid in $pids; do hwm+=("$(hwm_kb "$pid")"); done
  python3 - "$RAW/$id.meta.json" <<EOF
import json, sys
json.dump({
    "id": "$id", "section": "$section", "label": "$label", "target": "$target",
    "setup": "$SETUP", "url": "$url", "metered": $metered,
    "rate": "$rate", "duration": "$duration", "wall_s": $w1 - $w0,
    "cpu_ticks": $t1 - $t0, "postgres_cpu_ticks": $pg1 - $pg0, "clk_tck": $CLK_TCK,
    "redis_commands": ${r1% *} - ${r0% *}, "redis_cpu_s": ${r1#* } - ${r0#* },
    "hwm_kb": [$(IFS=,; echo "${hwm[*]}")], "pids": "$pids".split(),
}, open(sys.argv[1], "w"), indent=1)
EOF
}

# Writes a table row that was not measured, with the reason.
not_measured() { # ID SECTION LABEL REASON
  python3 - "$RAW/$1.meta.json" <<EOF
import json, sys
json.dump({"id": "$1", "section": "$2", "label": "$3", "target": "none", "skipped": "$4"},
          open(sys.argv[1], "w"), indent=1)
EOF
}

# ---------------------------------------------------------------------------------------------
# Processes.

MOCK_PORT=$(free_port)
log "starting the mock upstream on 127.0.0.1:$MOCK_PORT"
RUST_LOG=warn AIHUB_MOCK_API_KEY="$UPSTREAM_KEY" "${PIN_MOCK[@]}" "$MOCK" \
  --listen "127.0.0.1:$MOCK_PORT" --ledger-capacity 0 --chunk-interval-ms "$CHUNK_MS" \
  >"$WORK/mock.log" 2>&1 &
MOCK_PID=$!
PIDS+=("$MOCK_PID")
wait_http "http://127.0.0.1:$MOCK_PORT/v1/models" "the mock upstream"
DIRECT="http://127.0.0.1:$MOCK_PORT/v1/chat/completions"
DIRECT_AUTH=(-H "Authorization: Bearer $UPSTREAM_KEY")

# write_config DIR PORT DATABASE_URL [EXTRA_TOML]
write_config() {
  mkdir -p "$1"
  cat >"$1/aihub.toml" <<EOF
# Written by bench/run.sh.
[server]
listen = "127.0.0.1:$2"
shutdown_grace_secs = 2

[database]
url = "$3"

[usage]
journal_dir = "$1/journal"

[gateway]
secrets_dir = "$1/secrets"

[log]
level = "warn"

[limits]
# Only the limits and budgets the benchmark sets on its keys (no plan defaults).
default_plan = ""

[[providers]]
name = "upstream"
kind = "openai"
base_url = "http://127.0.0.1:$MOCK_PORT/v1"
api_key = "$UPSTREAM_KEY"

[[providers]]
name = "mock"
kind = "mock"

[[models]]
name = "bench-chat"
provider = "upstream"
upstream_model = "gpt-4o-mini"

[[models]]
name = "mock-chat"
provider = "mock"
${4:-}
EOF
}

LAST_PID=""
start_aihub() { # DIR → sets LAST_PID (not run in $(…): the process must be this shell's child)
  (cd "$1" && exec "${PIN_HUB[@]}" "${HUB_WRAP[@]}" ${HUB_WRAP[@]:+--callgrind-out-file="$1/callgrind.%p"} \
    "$AIHUB" --config "$1/aihub.toml" serve >>"$1/aihub.log" 2>&1) &
  LAST_PID=$!
  PIDS+=("$LAST_PID")
}

BENCH_EMAIL="bench@example.com"
BENCH_PASSWORD="bench-$(python3 -c 'import secrets; print(secrets.token_hex(12))')"

# create_key DIR PORT [CHECKS [ORG]] → prints a new API key (the user is created with the admin
# CLI first). CHECKS: `none` (default: key auth and metering only), `limits` (RPM, TPM and
# concurrency limits on the key and on the org), or `all` (those limits, plus a budget on the key
# and one on the org). The limits and budgets are far above what the benchmark uses: every check
# runs on every request, none refuses. ORG: the organization's id (default: the user's first).
create_key() {
  local base="http://127.0.0.1:$2" checks="${3:-none}" token org key
  token=$(bench_token "$2")
  org="${4:-$(bench_org "$2" "$token")}"
  key=$(curl -sf "$base/api/v1/orgs/$org/keys" -H "authorization: Bearer $token" \
    -H 'content-type: application/json' -d "{\"name\":\"bench-$checks\"}")
  local id
  id=$(echo "$key" | json 'd["id"]')
  rule() { # PATH BODY — 409: the org already has this rule (from an earlier key)
    local code
    code=$(curl -s -o /dev/null -w '%{http_code}' "$base/api/v1/orgs/$org/$1" \
      -H "authorization: Bearer $token" -H 'content-type: application/json' -d "$2")
    [ "$code" = 201 ] || [ "$code" = 409 ] || die "could not create $1 ($code): $2"
  }
  if [ "$checks" != none ]; then
    rule limits "{\"scope_type\":\"key\",\"scope_id\":\"$id\",\"rpm\":100000000,\"tpm\":100000000000,\"concurrency\":100000}"
    rule limits "{\"scope_type\":\"org\",\"rpm\":100000000,\"tpm\":100000000000}"
  fi
  if [ "$checks" = all ]; then
    rule budgets "{\"scope_type\":\"key\",\"scope_id\":\"$id\",\"amount\":\"1000000\",\"currency\":\"USD\",\"period\":\"monthly\"}"
    rule budgets "{\"scope_type\":\"org\",\"amount\":\"1000000\",\"currency\":\"USD\",\"period\":\"daily\"}"
  fi
  echo "$key" | json 'd["key"]'
}

# The user is a platform admin, so that it can price the benchmark's model.
create_user() { # DIR
  AIHUB_ADMIN_PASSWORD="$BENCH_PASSWORD" "$AIHUB" --config "$1/aihub.toml" admin create-user \
    --email "$BENCH_EMAIL" --platform-admin >"$1/create-user.log" 2>&1 ||
    die "create-user failed: $(cat "$1/create-user.log")"
}

bench_token() { # PORT → a session token of the benchmark's user
  curl -sf "http://127.0.0.1:$1/api/v1/auth/login" -H 'content-type: application/json' \
    -d "{\"email\":\"$BENCH_EMAIL\",\"password\":\"$BENCH_PASSWORD\"}" | json 'd["token"]'
}

bench_org() { # PORT TOKEN → the id of the benchmark user's organization (its first: ids sort by creation)
  curl -sf "http://127.0.0.1:$1/api/v1/orgs" -H "authorization: Bearer $2" | json 'd["data"][0]["id"]'
}

create_org() { # PORT NAME → the id of a new organization of the benchmark's user
  curl -sf "http://127.0.0.1:$1/api/v1/orgs" -H "authorization: Bearer $(bench_token "$1")" \
    -H 'content-type: application/json' -d "{\"name\":\"$2\"}" | json 'd["id"]'
}

# price_model PORT: prices `bench-chat` as gpt-4o-mini is priced (USD 0.15 / 0.60 per million
# tokens). A budget only checks requests whose model has a price in its currency: without one,
# the key's and the org's budgets would reserve and settle nothing.
price_model() {
  local code
  code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$1/api/v1/admin/prices" \
    -H "authorization: Bearer $(bench_token "$1")" -H 'content-type: application/json' \
    -d '{"model":"bench-chat","currency":"USD","input":"0.15","cached_input":"0.075","output":"0.60"}')
  [ "$code" = 201 ] || die "could not price bench-chat ($code)"
}

# check_budgets ID PORT: the budgets of the benchmark's org (the key's and the org's) after a
# setup's runs. Fails the run if one of them was not charged: then the "every check on" rows
# did not check budgets.
check_budgets() {
  local base="http://127.0.0.1:$2" token org
  token=$(bench_token "$2")
  org=$(bench_org "$2" "$token")
  curl -sf "$base/api/v1/orgs/$org/budgets" -H "authorization: Bearer $token" |
    python3 -c 'import json,sys
budgets = [{k: b[k] for k in ("scope_type", "period", "spent", "spent_micros", "reserved")}
           for b in json.load(sys.stdin)["data"]]
json.dump(budgets, open(sys.argv[1], "w"), indent=1)
sys.exit(0 if budgets and all(b["spent_micros"] > 0 for b in budgets)
         else "a budget was not charged: %s" % budgets)' "$RAW/$1.budgets.json" ||
    die "budgets were not checked in $1"
}

# check_metering ID LABEL DB_URL : waits until every chat request AI Hub answered in this setup
# (the responses oha counted in its runs, warm-ups included) is a usage record in the database,
# and records how long after the load stopped that took.
check_metering() {
  python3 - "$RAW" "$SETUP" "$RAW/$1.metering.json" "$2" "$3" <<'EOF'
import glob, json, os, subprocess, sys, time
raw, setup, out, label, db = sys.argv[1:6]
expected = 0
for path in glob.glob(os.path.join(raw, "*.meta.json")):
    meta = json.load(open(path))
    if meta.get("setup") == setup and meta.get("metered"):
        oha = json.load(open(os.path.join(raw, meta["id"] + ".oha.json")))
        expected += sum(oha["statusCodeDistribution"].values())
def rows():
    if db.startswith("sqlite://"):
        import sqlite3
        c = sqlite3.connect("file:" + db[len("sqlite://"):] + "?mode=ro", uri=True)
        try:
            return c.execute("select count(*) from usage_records").fetchone()[0]
        finally:
            c.close()
    r = subprocess.run(["psql", db, "-qtAc", "select count(*) from usage_records"],
                       capture_output=True, text=True, check=True)
    return int(r.stdout.strip())
start = time.monotonic()
loaded = rows()
while loaded < expected and time.monotonic() - start < 60:
    time.sleep(0.1)
    loaded = rows()
json.dump({"label": label, "expected": expected, "usage_records": loaded,
           "catch_up_s": round(time.monotonic() - start, 2)}, open(out, "w"), indent=1)
EOF
}

# ---------------------------------------------------------------------------------------------
# Single node: SQLite.

SETUP=single
HUB_PORT=$(free_port)
HUB_DIR="$WORK/single"
write_config "$HUB_DIR" "$HUB_PORT" "sqlite://$HUB_DIR/aihub.db"
create_user "$HUB_DIR"
log "starting AI Hub (SQLite) on 127.0.0.1:$HUB_PORT"
start_aihub "$HUB_DIR"
HUB_PID=$LAST_PID
wait_http "http://127.0.0.1:$HUB_PORT/readyz" "AI Hub" 1500
price_model "$HUB_PORT"
KEY=$(create_key "$HUB_DIR" "$HUB_PORT" all)
HUB="http://127.0.0.1:$HUB_PORT/v1/chat/completions"
HUB_AUTH=(-H "Authorization: Bearer $KEY")
POST=(-m POST -T application/json)

if [ "$CALLGRIND" = 1 ]; then
  # counted NAME COUNT CONNECTIONS BODY: sends COUNT requests, waits for the loader to store
  # them, dumps (the dump resets the counts, so it holds exactly their work) and checks that
  # every one succeeded.
  counted() {
    log "callgrind: $2 counted $1"
    oha --no-tui -n "$2" -c "$3" --output-format json -o "$RAW/callgrind-$1.oha.json" \
      "${POST[@]}" "${HUB_AUTH[@]}" -D "$4" "$HUB" >/dev/null
    sleep 1.5
    callgrind_control -d "$HUB_PID" >/dev/null
    sleep 1
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); s=d["statusCodeDistribution"]
sys.exit(0 if s == {"200": int(sys.argv[2])} else "callgrind: not every one succeeded: %s" % s)' \
      "$RAW/callgrind-$1.oha.json" "$2"
  }
  CG_REQUESTS=2000 CG_STREAMS=200
  log "callgrind: 300 warm-up requests"
  oha --no-tui -n 300 -c 2 "${POST[@]}" "${HUB_AUTH[@]}" -D "$WORK/chat.json" "$HUB" >/dev/null
  sleep 1
  callgrind_control -d "$HUB_PID" >/dev/null
  counted requests "$CG_REQUESTS" 4 "$WORK/chat.json"   # the second dump
  counted streams "$CG_STREAMS" 8 "$WORK/stream.json"   # the third: 16 tokens, $CHUNK_MS ms apart
  cp "$HUB_DIR"/callgrind.*.2 "$HUB_DIR"/callgrind.*.3 "$RAW/"
  python3 "$BENCH_DIR/callgrind.py" "$HUB_DIR"/callgrind.*.2 "$CG_REQUESTS" | tee "$RESULTS/callgrind.txt"
  echo
  python3 "$BENCH_DIR/callgrind.py" "$HUB_DIR"/callgrind.*.3 "$CG_STREAMS" --per stream |
    tee "$RESULTS/callgrind-stream.txt"
  check_budgets b-callgrind "$HUB_PORT"
  exit 0
fi

log "warming up"
measure warm-direct warmup "warm-up" baseline "$MOCK_PID" 1000 "$D_WARM" -- \
  -c "$OPEN_CONNS" "${POST[@]}" "${DIRECT_AUTH[@]}" -D "$WORK/chat-direct.json" "$DIRECT"
measure warm-hub warmup "warm-up" aihub "$HUB_PID" 1000 "$D_WARM" -- \
  -c "$OPEN_CONNS" "${POST[@]}" "${HUB_AUTH[@]}" -D "$WORK/chat.json" "$HUB"

# A: open loop.
for rate in "${RATES[@]}"; do
  measure "a-$rate-direct" A "mock direct" baseline "$MOCK_PID" "$rate" "$D_RATE" -- \
    -c "$OPEN_CONNS" "${POST[@]}" "${DIRECT_AUTH[@]}" -D "$WORK/chat-direct.json" "$DIRECT"
  measure "a-$rate-hub" A "AI Hub (SQLite)" aihub "$HUB_PID" "$rate" "$D_RATE" -- \
    -c "$OPEN_CONNS" "${POST[@]}" "${HUB_AUTH[@]}" -D "$WORK/chat.json" "$HUB"
done

# B: closed loop.
measure b-direct B "mock direct" baseline "$MOCK_PID" max "$D_MAX" -- \
  -c "$MAX_CONNS" "${POST[@]}" "${DIRECT_AUTH[@]}" -D "$WORK/chat-direct.json" "$DIRECT"
measure b-hub B "AI Hub (SQLite)" aihub "$HUB_PID" max "$D_MAX" -- \
  -c "$MAX_CONNS" "${POST[@]}" "${HUB_AUTH[@]}" -D "$WORK/chat.json" "$HUB"

# C: streaming, time to first byte.
measure c-direct C "mock direct" baseline "$MOCK_PID" "$STREAM_RATE" "$D_STREAM" -- \
  -c "$STREAM_CONNS" "${POST[@]}" "${DIRECT_AUTH[@]}" -D "$WORK/stream-direct.json" "$DIRECT"
measure c-hub C "AI Hub (SQLite)" aihub "$HUB_PID" "$STREAM_RATE" "$D_STREAM" -- \
  -c "$STREAM_CONNS" "${POST[@]}" "${HUB_AUTH[@]}" -D "$WORK/stream.json" "$HUB"

# D: the checks ladder, at CHECK_RATE, on the same instance with keys that have fewer checks.
# The full path (every check on) is scenario A's row at the same rate. Its first rung is not
# AI Hub: a bare forwarder to the mock on AI Hub's CPU, the floor of any proxy here (also run
# closed-loop, as B's floor).
FWD_PORT=$(free_port)
log "starting the bare forwarder on 127.0.0.1:$FWD_PORT"
"${PIN_HUB[@]}" "$FORWARDER" "127.0.0.1:$FWD_PORT" "127.0.0.1:$MOCK_PORT" >"$WORK/forwarder.log" 2>&1 &
FWD_PID=$!
PIDS+=("$FWD_PID")
wait_http "http://127.0.0.1:$FWD_PORT/v1/models" "the bare forwarder"
FWD="http://127.0.0.1:$FWD_PORT/v1/chat/completions"
measure d-forwarder D "bare forwarder to the mock (hyper server + client, no checks): the floor" \
  forwarder "$FWD_PID" "$CHECK_RATE" "$D_CHECK" -- -c "$OPEN_CONNS" "${POST[@]}" \
  "${DIRECT_AUTH[@]}" -D "$WORK/chat-direct.json" "$FWD"
measure b-forwarder B "bare forwarder (the floor)" forwarder "$FWD_PID" max "$D_MAX" -- \
  -c "$MAX_CONNS" "${POST[@]}" "${DIRECT_AUTH[@]}" -D "$WORK/chat-direct.json" "$FWD"
stop "$FWD_PID"
measure d-healthz D "AI Hub GET /healthz — no checks: HTTP server and middleware only" aihub \
  "$HUB_PID" "$CHECK_RATE" "$D_CHECK" -- -c "$OPEN_CONNS" "http://127.0.0.1:$HUB_PORT/healthz"
measure d-models D "AI Hub GET /v1/models — key auth only (no upstream, no metering)" aihub \
  "$HUB_PID" "$CHECK_RATE" "$D_CHECK" -- -c "$OPEN_CONNS" "${HUB_AUTH[@]}" \
  "http://127.0.0.1:$HUB_PORT/v1/models"
measure d-builtin D "AI Hub chat, built-in mock provider — auth + metering, no upstream hop" \
  aihub "$HUB_PID" "$CHECK_RATE" "$D_CHECK" -- -c "$OPEN_CONNS" "${POST[@]}" "${HUB_AUTH[@]}" \
  -D "$WORK/chat-builtin.json" "$HUB"
for level in none limits; do
  key=$(create_key "$HUB_DIR" "$HUB_PORT" "$level")
  label="auth + metering"
  [ "$level" = limits ] && label="auth + metering + RPM/TPM/concurrency limits (key and org)"
  measure "d-$level" D "AI Hub chat — $label" aihub "$HUB_PID" "$CHECK_RATE" "$D_CHECK" -- \
    -c "$OPEN_CONNS" "${POST[@]}" -H "Authorization: Bearer $key" -D "$WORK/chat.json" "$HUB"
done

check_metering m-single "single node (SQLite)" "sqlite://$HUB_DIR/aihub.db"
check_budgets b-single "$HUB_PORT"
stop "$HUB_PID"

# ---------------------------------------------------------------------------------------------
# E: cluster — two AI Hub processes on one PostgreSQL database. oha targets one URL; with two
# --connect-to entries for that host:port it picks one of the two instances at random for each
# connection it opens, so one oha process spreads the load over both and reports one exact
# histogram. The split it achieved is read back from the two usage journals.

if [ "$CLUSTER" = 1 ]; then
  SETUP=cluster
  PG_DB="aihub_bench_${STAMP,,}_$$"
  psql "$PG_URL/postgres" -qtAc "CREATE DATABASE \"$PG_DB\"" >/dev/null
  DB_URL="$PG_URL/$PG_DB"
  A_PORT=$(free_port) B_PORT=$(free_port)
  REDIS_TOML="[redis]
url = \"$REDIS_URL\"
key_prefix = \"aihub-bench-$STAMP-$$:\""
  write_config "$WORK/node-a" "$A_PORT" "$DB_URL" "$REDIS_TOML"
  write_config "$WORK/node-b" "$B_PORT" "$DB_URL" "$REDIS_TOML"
  create_user "$WORK/node-a"
  log "starting two AI Hub instances (PostgreSQL) on 127.0.0.1:$A_PORT and 127.0.0.1:$B_PORT"
  start_aihub "$WORK/node-a"
  A_PID=$LAST_PID
  wait_http "http://127.0.0.1:$A_PORT/readyz" "AI Hub A"
  price_model "$A_PORT" # before B starts: an instance reads the catalog when it starts
  start_aihub "$WORK/node-b"
  B_PID=$LAST_PID
  wait_http "http://127.0.0.1:$B_PORT/readyz" "AI Hub B"
  KEY=$(create_key "$WORK/node-a" "$A_PORT" all)
  SPREAD=(--connect-to "127.0.0.1:$A_PORT:127.0.0.1:$A_PORT"
    --connect-to "127.0.0.1:$A_PORT:127.0.0.1:$B_PORT")
  CLUSTER_URL="http://127.0.0.1:$A_PORT/v1/chat/completions"
  CL_AUTH=(-H "Authorization: Bearer $KEY")
  measure warm-cluster warmup "warm-up" cluster "$A_PID $B_PID" 1000 "$D_WARM" -- \
    -c "$OPEN_CONNS" "${SPREAD[@]}" "${POST[@]}" "${CL_AUTH[@]}" -D "$WORK/chat.json" "$CLUSTER_URL"
  for rate in "${RATES[@]}" max; do
    conns=$OPEN_CONNS duration=$D_RATE
    [ "$rate" = max ] && conns=$MAX_CONNS duration=$D_MAX
    measure "e-$rate-cluster" E "AI Hub ×2 (PostgreSQL + Redis)" cluster "$A_PID $B_PID" "$rate" \
      "$duration" -- -c "$conns" "${SPREAD[@]}" "${POST[@]}" "${CL_AUTH[@]}" \
      -D "$WORK/chat.json" "$CLUSTER_URL"
  done
  # The same cluster without Redis on the request path: a key of a second organization that has
  # no limits or budgets (auth and metering only), so the two rows at $CHECK_RATE req/s show
  # what the shared limits and budgets cost.
  KEY_NONE=$(create_key "$WORK/node-a" "$A_PORT" none "$(create_org "$A_PORT" bench-no-limits)")
  measure "e-$CHECK_RATE-cluster-none" E "AI Hub ×2, auth + metering only (no limits or budgets: no Redis)" \
    cluster "$A_PID $B_PID" "$CHECK_RATE" "$D_CHECK" -- -c "$OPEN_CONNS" "${SPREAD[@]}" "${POST[@]}" \
    -H "Authorization: Bearer $KEY_NONE" -D "$WORK/chat.json" "$CLUSTER_URL"
  # The same cluster with leases off (`limits.leases = false`): every request of the key with
  # all checks is checked in Redis, one round trip on its path, so the row shows what leases
  # save. (Stopping the instances first gives their leases back.)
  stop "$A_PID" "$B_PID"
  export AIHUB__LIMITS__LEASES=false
  start_aihub "$WORK/node-a"
  A_PID=$LAST_PID
  start_aihub "$WORK/node-b"
  B_PID=$LAST_PID
  unset AIHUB__LIMITS__LEASES
  wait_http "http://127.0.0.1:$A_PORT/readyz" "AI Hub A"
  wait_http "http://127.0.0.1:$B_PORT/readyz" "AI Hub B"
  measure warm-cluster-redis warmup "warm-up" cluster "$A_PID $B_PID" 1000 "$D_WARM" -- \
    -c "$OPEN_CONNS" "${SPREAD[@]}" "${POST[@]}" "${CL_AUTH[@]}" -D "$WORK/chat.json" "$CLUSTER_URL"
  measure "e-$CHECK_RATE-cluster-redis" E "AI Hub ×2, leases off (every request checked in Redis)" \
    cluster "$A_PID $B_PID" "$CHECK_RATE" "$D_CHECK" -- -c "$OPEN_CONNS" "${SPREAD[@]}" "${POST[@]}" \
    "${CL_AUTH[@]}" -D "$WORK/chat.json" "$CLUSTER_URL"
  check_metering m-cluster "cluster (2 × AI Hub, PostgreSQL)" "$DB_URL"
  check_budgets b-cluster "$A_PORT"
  python3 - "$RAW/e-split.json" "$WORK/node-a/journal" "$WORK/node-b/journal" <<'EOF'
import glob, json, sys
counts = []
for d in sys.argv[2:]:
    n = 0
    for f in glob.glob(d + "/usage-*.jsonl"):
        with open(f, "rb") as fh:
            n += sum(1 for line in fh if b'"t":"finish"' in line)
    counts.append(n)
json.dump({"requests_per_instance": counts}, open(sys.argv[1], "w"))
EOF
  stop "$A_PID" "$B_PID"
else
  not_measured e-cluster E "AI Hub ×2 (PostgreSQL + Redis)" "skipped (--no-cluster or no PostgreSQL)"
fi

# ---------------------------------------------------------------------------------------------
# Report.

stop "$MOCK_PID"
RUN_ENDED=$(date +%s)
python3 - "$RESULTS/run.json" <<EOF
import json, sys
json.dump({
    "stamp": "$STAMP", "quick": bool($QUICK), "pinned": bool($PIN), "cluster": bool($CLUSTER),
    "elapsed_s": $RUN_ENDED - $RUN_STARTED,
    "commit": "$COMMIT",
    "cpu": "$(awk -F': ' '/^model name/ {n=$2} /^cpu family/ {f=$2} /^model\t/ {m=$2} END {printf "%s (family %s, model %s)", n, f, m}' /proc/cpuinfo)",
    "hypervisor": "$(lscpu 2>/dev/null | awk -F': *' '/^Hypervisor vendor/ {print $2}')",
    "cores": $(nproc),
    "mem_gib": round($(awk '/^MemTotal/ {print $2}' /proc/meminfo) / 1048576, 1),
    "kernel": "$(uname -r)",
    "rustc": "$(rustc --version)",
    "oha": "$(oha --version)",
    "durations": {"rate": "$D_RATE", "max": "$D_MAX", "stream": "$D_STREAM", "check": "$D_CHECK"},
    "open_conns": $OPEN_CONNS, "max_conns": $MAX_CONNS, "stream_conns": $STREAM_CONNS,
    "chunk_ms": $CHUNK_MS, "check_rate": $CHECK_RATE, "stream_rate": $STREAM_RATE,
}, open(sys.argv[1], "w"), indent=1)
EOF
python3 "$BENCH_DIR/report.py" "$RESULTS" >"$RESULTS/results.md"
cp "$RESULTS/results.md" "$BENCH_DIR/results/latest.md"
cat "$RESULTS/results.md"
log "done in $((RUN_ENDED - RUN_STARTED)) s; raw results in ${RESULTS#"$ROOT"/}"
