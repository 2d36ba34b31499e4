#!/usr/bin/env bash
# server-vs-bare.sh measures the example server against a bare net/http
# handler on this machine, with examples/loadtest, and prints the figures
# as a Markdown table on stdout; progress goes to stderr.
#
#   bash examples/loadtest/server-vs-bare.sh          # 10s per measurement
#   bash examples/loadtest/server-vs-bare.sh -short   # 2s per measurement
#
# Every measurement is a closed loop of 64 connections, after a warm-up of
# the same load:
#   - GET /users/{id} on bareserver (the ceiling), on the example server
#     with its user cache, and with USER_CACHE=off, taking turns for three
#     rounds (one with -short); each row is the round of median
#     throughput, since the machine may be busy with other work. Each
#     server has a fresh SQLite file holding one user, LOG_LEVEL=warn (no
#     access log line per request) and RATE_LIMIT=1000000/s (every request
#     still passes the limiter, none is refused).
#   - GET /aggregate over three demo upstreams that answer in 20, 50 and
#     30ms, against a client that calls the same three one after another,
#     at 8 and at 64 connections.
#   - When wrk is on PATH: wrk and loadtest on bareserver's GET /users/1,
#     interleaved after one warm-up (three rounds of each, or one with
#     -short); each row is the round of median throughput, and the ratio
#     is that of the two medians.
#
# It exits 0 when every measurement ran, and stops every process it
# started, however it ends.
set -euo pipefail

duration=10s warmup=2s rounds=3
case "${1:-}" in
-short) duration=2s warmup=1s rounds=1 ;;
"") ;;
*)
	echo "usage: $0 [-short]" >&2
	exit 2
	;;
esac

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/server-vs-bare.XXXXXX")
pids=()
cleanup() {
	local pid
	for pid in "${pids[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	for pid in "${pids[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say() { echo "server-vs-bare: $*" >&2; }
die() {
	say "$*"
	exit 1
}
command -v curl >/dev/null || die "curl is needed to seed the servers"

say "building into $work"
(cd "$root" && go build -o "$work/" ./examples/server ./examples/loadtest ./examples/loadtest/bareserver) ||
	die "build failed"

# start_server NAME ENV... starts the example server with ENV on a fresh
# SQLite file and a free port, and sets $base to its URL. The settings that
# would move it off this machine's process (Postgres, Redis, an OTLP
# collector) are cleared, whatever the caller's environment holds.
start_server() {
	local name=$1 port pid
	shift
	for _ in 1 2 3 4 5; do
		port=$((20000 + RANDOM % 40000))
		env -u DATABASE_URL -u REDIS_URL -u OTEL_EXPORTER_OTLP_ENDPOINT ADDR="127.0.0.1:$port" DB_PATH="$work/$name.db" UPLOAD_DIR="$work/$name-uploads" \
			LOG_LEVEL=warn RATE_LIMIT=1000000/s "$@" "$work/server" >"$work/$name.log" 2>&1 &
		pid=$!
		pids+=("$pid")
		for _ in $(seq 100); do
			if curl -fs "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; then
				base="http://127.0.0.1:$port"
				say "$name: $base ($*)"
				return 0
			fi
			kill -0 "$pid" 2>/dev/null || break # it could not start: try another port
			sleep 0.1
		done
		kill "$pid" 2>/dev/null || true
	done
	cat "$work/$name.log" >&2
	die "$name did not start"
}

# seed BASE creates the user that GET /users/1 reads.
seed() {
	curl -fsS -X POST "$1/users" -H 'Content-Type: application/json' \
		-d '{"username":"ada","email":"ada@example.com","full_name":"Ada Lovelace"}' >/dev/null ||
		die "cannot create a user on $1"
}

# measure LABEL CONNECTIONS ARGS... runs a warm-up and then the measurement
# of loadtest with ARGS on CONNECTIONS, and sets $rps, $p50 and $p99
# (milliseconds) from its report.
measure() {
	local label=$1 conns=$2 out
	shift 2
	if [[ $warmup != 0 ]]; then
		say "$label: warming up for $warmup"
		"$work/loadtest" -quiet -duration "$warmup" -c "$conns" "$@" >/dev/null
	fi
	say "$label: measuring for $duration"
	out=$("$work/loadtest" -json -duration "$duration" -c "$conns" "$@")
	rps=$(jq -r '.throughput_per_s' <<<"$out")
	p50=$(jq -r '.latency_ms.p50' <<<"$out")
	p99=$(jq -r '.latency_ms.p99' <<<"$out")
	local other
	other=$(jq -r '[.status | to_entries[] | select(.key != "200") | "\(.value) × \(.key)"] + [.errors[]? | "\(.count) × \(.error)"] | join(", ")' <<<"$out")
	[[ -z $other ]] || say "$label: besides 200s: $other"
	say "$label: $(printf '%.0f' "$rps")/s, p50 ${p50}ms, p99 ${p99}ms"
}

command -v jq >/dev/null || die "jq is needed to read loadtest's -json reports"

start_server cached
cached=$base
seed "$cached"
user=$(curl -fsS "$cached/users/1")

# The aggregate's upstreams are the demo upstream of the first server, so
# that fanned out and sequential calls reach the same handlers.
up="$cached/demo/upstream"
upstreams="$up/a?latency_ms=20,$up/b?latency_ms=50,$up/c?latency_ms=30"
start_server uncached USER_CACHE=off UPSTREAMS="$upstreams" UPSTREAM_CONNS=256
uncached=$base
seed "$uncached"

"$work/bareserver" -addr 127.0.0.1:0 -user "$user" >"$work/bare.addr" 2>"$work/bare.log" &
pids+=("$!")
for _ in $(seq 100); do
	[[ -s $work/bare.addr ]] && break
	sleep 0.1
done
[[ -s $work/bare.addr ]] || die "bareserver did not start: $(cat "$work/bare.log")"
bare="http://$(head -1 "$work/bare.addr")"
say "bare: $bare"
[[ $(curl -fsS "$bare/users/1") == "$user" ]] ||
	say "warning: bareserver's JSON differs from the server's: $(curl -fsS "$bare/users/1") vs $user"

row() { # label rps p50 p99 ratio
	printf '| %s | %.0f | %.2f ms | %.2f ms | %s |\n' "$1" "$2" "$3" "$4" "$5"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
# median_round picks, among lines of "throughput p50 p99", the one of the
# median throughput.
median_round() { sort -g -k1,1 | awk '{ l[NR] = $0 } END { print l[int((NR + 1) / 2)] }'; }

# GET /users/{id}: the three servers take turns, round after round, so
# that a burst of other work on the machine does not fall on one alone;
# each row is the round of median throughput.
declare -A users=([bare]="$bare/users/1" [cached]="$cached/users/1" [uncached]="$uncached/users/1")
declare -A results=()
for name in bare cached uncached; do
	say "$name: warming up for $warmup"
	"$work/loadtest" -quiet -duration "$warmup" -c 64 "${users[$name]}" >/dev/null
done
for i in $(seq "$rounds"); do
	for name in bare cached uncached; do
		warmup=0 measure "$name GET /users/1, round $i of $rounds" 64 "${users[$name]}"
		results[$name]+="$rps $p50 $p99"$'\n'
	done
done
read -r bare_rps bare_p50 bare_p99 <<<"$(printf '%s' "${results[bare]}" | median_round)"
read -r c_rps c_p50 c_p99 <<<"$(printf '%s' "${results[cached]}" | median_round)"
read -r u_rps u_p50 u_p99 <<<"$(printf '%s' "${results[uncached]}" | median_round)"

# GET /aggregate against the client calling the same upstreams in turn.
sequential=(-seq "$up/a?latency_ms=20" "$up/b?latency_ms=50" "$up/c?latency_ms=30")
aggregate=() # label rps p50 p99 ratio, per row
for conns in 8 64; do
	measure "GET /aggregate, $conns connections" "$conns" "$uncached/aggregate"
	a_rps=$rps a_p50=$p50 a_p99=$p99
	measure "sequential upstreams, $conns connections" "$conns" "${sequential[@]}"
	aggregate+=("GET /aggregate, 3 upstreams of 20, 50 and 30 ms fanned out, $conns connections" "$a_rps" "$a_p50" "$a_p99" "$(ratio "$a_rps" "$rps")× sequential")
	aggregate+=("the same 3 upstreams called one after another, $conns connections" "$rps" "$p50" "$p99" "1.00")
done

# wrk_ms converts a latency as wrk prints it (850.00us, 1.95ms, 1.02s) to
# milliseconds.
wrk_ms() {
	awk -v v="$1" 'BEGIN {
		n = v + 0
		if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n *= 1; else if (v ~ /m$/) n *= 60000; else if (v ~ /s$/) n *= 1000
		print n }'
}

wrk_rows=""
if command -v wrk >/dev/null; then
	wrk_rounds="" lt_rounds=""
	say "wrk and loadtest on $bare/users/1: warming up"
	wrk -t 2 -c 64 -d "$warmup" "$bare/users/1" >/dev/null
	for i in $(seq "$rounds"); do
		say "wrk, round $i of $rounds: measuring for $duration"
		out=$(wrk -t 2 -c 64 -d "$duration" --latency "$bare/users/1")
		w=$(awk '/^Requests\/sec:/ { print $2 }' <<<"$out")
		w50=$(wrk_ms "$(awk '$1 == "50%" { print $2 }' <<<"$out")")
		w99=$(wrk_ms "$(awk '$1 == "99%" { print $2 }' <<<"$out")")
		say "wrk: $w/s, p50 ${w50}ms, p99 ${w99}ms"
		wrk_rounds+="$w $w50 $w99"$'\n'
		warmup=0 measure "loadtest, round $i of $rounds" 64 "$bare/users/1"
		lt_rounds+="$rps $p50 $p99"$'\n'
	done
	read -r w w50 w99 <<<"$(printf '%s' "$wrk_rounds" | median_round)"
	read -r l l50 l99 <<<"$(printf '%s' "$lt_rounds" | median_round)"
	agree=$(awk -v a="$l" -v b="$w" 'BEGIN { r = a / b; print (r >= 0.9 && r <= 1.1) ? "yes" : "no" }')
	[[ $agree == yes ]] || say "warning: loadtest's throughput is $(ratio "$l" "$w") of wrk's, outside 10%"
	n=""
	((rounds > 1)) && n=", median of $rounds rounds"
	wrk_rows=$(
		row "wrk -t 2, bare handler$n" "$w" "$w50" "$w99" "1.00"
		row "loadtest, bare handler$n" "$l" "$l50" "$l99" "$(ratio "$l" "$w") of wrk"
	)
else
	say "wrk is not on PATH: no comparison with wrk"
fi

echo "| closed loop, 64 connections unless noted, $duration per row | requests/s | p50 | p99 | ratio |"
echo "|---|---:|---:|---:|---:|"
row "bare net/http handler, same JSON as GET /users/{id}" "$bare_rps" "$bare_p50" "$bare_p99" "1.00"
row "example server, GET /users/{id}, user cache (SQLite)" "$c_rps" "$c_p50" "$c_p99" "$(ratio "$c_rps" "$bare_rps") of bare"
row "example server, GET /users/{id}, USER_CACHE=off (SQLite)" "$u_rps" "$u_p50" "$u_p99" "$(ratio "$u_rps" "$bare_rps") of bare"
for ((i = 0; i < ${#aggregate[@]}; i += 5)); do
	row "${aggregate[@]:i:5}"
done
[[ -z $wrk_rows ]] || echo "$wrk_rows"
