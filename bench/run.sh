#!/usr/bin/env bash
# bench/run.sh [-short]: every comparison of bench/ in one run.
#
# Without flags it runs each benchmark -count 6, then writes BENCHMARKS.md at
# the repository root and the charts under bench/charts/ (go run ./benchpage:
# medians and ± from golang.org/x/perf's benchmath, the library behind
# benchstat). It takes about a quarter of an hour on a 2-core machine.
#
# -short runs each benchmark once with a tiny benchtime (a few seconds per
# package, what .ci/run runs, so that every comparison keeps compiling and
# running) and writes the page into a temporary folder instead.
#
# DATABASE_URL and REDIS_URL name the Postgres and Redis to compare on; when
# one is unset and the usual local server answers, that one is used, and
# otherwise the comparisons that need it skip (or fail, with
# ASYNCKIT_REQUIRE_SERVICES=1). When examples/loadtest/server-vs-bare.sh
# exists, its table becomes the page's "Example server" section.
#
# The raw output of a run stays in the temporary folder it names at the end;
# bash bench/run.sh -page DIR rebuilds the page from it without running
# anything (over BENCHMARKS.md for a full run, in DIR for a short one).
set -euo pipefail

usage() { echo "usage: bash bench/run.sh [-short | -page DIR]" >&2; }
short=0
from=""
case "${1:-}" in
-short) short=1 ;;
-page)
	# Rebuild the page from the raw output a run kept in DIR, without
	# running anything: for a change to the page's generator.
	from=${2:-}
	if [ ! -f "$from/meta.txt" ]; then
		echo "bench/run.sh: $from holds no run's output (meta.txt)" >&2
		exit 2
	fi
	shift
	;;
"") ;;
*)
	usage
	exit 2
	;;
esac
if [ $# -gt 1 ]; then
	usage
	exit 2
fi

bench=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$bench")
cd "$bench"
if ! command -v go >/dev/null && [ -x /usr/local/go/bin/go ]; then
	export PATH="/usr/local/go/bin:$PATH"
fi

# page DIR: write the page and the charts from the run kept in DIR: into
# DIR itself for a short run, over BENCHMARKS.md and bench/charts/ for a
# full one.
page() {
	local dir=$1 page charts
	if [ "$(cat "$dir/mode")" = short ]; then
		page="$dir/BENCHMARKS.md"
		charts="$dir/charts"
	else
		page="$root/BENCHMARKS.md"
		charts="$bench/charts"
		rm -f "$charts"/*.svg
	fi
	local server_args=()
	[ -f "$dir/server.md" ] && server_args=(-server "$dir/server.md")
	go run ./benchpage -in "$dir" -out "$page" -charts "$charts" -chartlink bench/charts \
		-commands "$dir/commands.txt" -metafile "$dir/meta.txt" "${server_args[@]}"
	echo "bench/run.sh: wrote $page and $charts/ from $dir" >&2
}

if [ -n "$from" ]; then
	page "$from"
	exit 0
fi

# answers HOST PORT: something accepts TCP connections there.
answers() { timeout 2 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null; }
if [ -z "${DATABASE_URL:-}" ] && answers 127.0.0.1 5432; then
	export DATABASE_URL='postgres://postgres@127.0.0.1:5432/test?sslmode=disable'
fi
if [ -z "${REDIS_URL:-}" ] && answers 127.0.0.1 6379; then
	export REDIS_URL='redis://127.0.0.1:6379/0'
fi

# The raw output stays in $out, so that bash bench/run.sh -page $out can
# rebuild the page from it; only the test binaries go.
out=$(mktemp -d "${TMPDIR:-/tmp}/asynckit-bench.XXXXXX")
trap 'rm -rf "$out/bin"' EXIT
mkdir -p "$out/bin"
if [ "$short" = 1 ]; then echo short >"$out/mode"; else echo full >"$out/mode"; fi

count=6
[ "$short" = 1 ] && count=1
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
started=$(date -u '+%Y-%m-%d %H:%M UTC')
t0=$SECONDS

# bench PKG PATTERN FULL SHORT: run PKG's benchmarks matching PATTERN with
# benchtime FULL (SHORT with -short), appending the output to PKG.txt. The
# test binary is built once per package.
bench() {
	local pkg=$1 pattern=$2 benchtime=$3
	[ "$short" = 1 ] && benchtime=$4
	if [ ! -x "$out/bin/$pkg.test" ]; then
		go test -c -o "$out/bin/$pkg.test" "./$pkg"
	fi
	local flags=(-test.run '^$' -test.bench "$pattern" -test.benchtime "$benchtime" -test.count "$count")
	local shortflag=""
	if [ "$short" = 1 ]; then
		flags+=(-test.short)
		shortflag=" -short"
	fi
	echo "go test -run '^\$' -bench '$pattern' -benchtime $benchtime -count $count$shortflag ./$pkg/" >>"$out/commands.txt"
	printf '\n==> %s: %s (benchtime %s, count %s)\n' "$pkg" "$pattern" "$benchtime" "$count" >&2
	local t=$SECONDS status
	set +e
	(cd "$pkg" && "$out/bin/$pkg.test" "${flags[@]}") 2>&1 | tee "$out/step.txt" |
		grep --line-buffered -E '^(Benchmark|--- |FAIL|panic|ok)' >&2
	status=${PIPESTATUS[0]}
	set -e
	cat "$out/step.txt" >>"$out/$pkg.txt"
	if [ "$status" != 0 ]; then
		echo "bench/run.sh: $pkg failed; its output:" >&2
		cat "$out/step.txt" >&2
		exit 1
	fi
	printf '    %ss\n' $((SECONDS - t)) >&2
}

bench cache 'GetHitParallel|SetParallel|Mixed90_10|GetOrLoadHit' 200ms 10ms
bench cache 'HitRatio' 1x 1x
bench cache 'Stampede' 20x 2x
bench ratelimit 'AllowParallel' 200ms 10ms
bench ratelimit 'BytesPerKey' 1x 1x
bench ratelimit 'RedisAllow$' 2000x 50x
bench fanout 'Fanout$' 200ms 10ms
bench fanout 'FanoutSleep' 30x 2x
bench taskqueue 'MemoryNoop' 200ms 10ms
bench taskqueue 'BurnDown' 20000x 200x # the issue's reference workload; see bench/README.md
bench taskqueue 'Latency500' 1000x 50x
bench pagination 'KeysetVsOffset' 300ms 1x
bench txn 'Do|Nested' 200ms 10x

loadtest="$root/examples/loadtest/server-vs-bare.sh"
if [ -f "$loadtest" ]; then
	printf '\n==> example server: %s\n' "${loadtest#"$root"/}" >&2
	t=$SECONDS
	if [ "$short" = 1 ]; then
		(cd "$root" && bash "$loadtest" -short) >"$out/server.md"
	else
		(cd "$root" && bash "$loadtest") >"$out/server.md"
	fi
	printf '    %ss\n' $((SECONDS - t)) >&2
fi

load_end=$(cut -d' ' -f1-3 /proc/loadavg)
elapsed=$((SECONDS - t0))
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
if [ -n "${DATABASE_URL:-}" ]; then
	services="Postgres $(psql "$DATABASE_URL" -Atc 'SHOW server_version' 2>/dev/null || echo '(version unknown)')"
else
	services="no Postgres (DATABASE_URL unset): its comparisons skipped"
fi
if [ -n "${REDIS_URL:-}" ]; then
	services="$services; Redis $( (redis-cli -u "$REDIS_URL" INFO server 2>/dev/null || true) | tr -d '\r' | sed -n 's/^redis_version://p')"
else
	services="$services; no Redis (REDIS_URL unset): its comparisons skipped"
fi

command="bash bench/run.sh"
[ "$short" = 1 ] && command="bash bench/run.sh -short"
{
	echo "Command=\`$command\` (from the repository root), which ran the commands below"
	echo "Date=$started"
	echo "Machine=$cpu, $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr)"
	echo "Go=$(go version | sed 's/^go version //')"
	echo "Services=$services"
	echo "Load average (1, 5, 15 min)=$load_start at the start, $load_end at the end"
	echo "Duration=$((elapsed / 60)) min $((elapsed % 60)) s"
} >"$out/meta.txt"
page "$out"
echo "bench/run.sh: done in $((SECONDS - t0))s; the raw output stays in $out (bash bench/run.sh -page $out rebuilds the page from it)" >&2
