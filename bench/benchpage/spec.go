package main

// A section is one package's part of the page: its table and charts.
type section struct {
	// pkg is the directory under bench/ whose output this section reads
	// (pkg + ".txt" in the input folder) and the section's heading.
	pkg   string
	intro string
	// families are the benchmarks of the section, in the order of the
	// table.
	families []family
}

// A family is one top-level benchmark. Its sub-benchmarks are named
// case/…/contender: the last element is the contender, the rest the case.
type family struct {
	bench string // "BenchmarkGetHitParallel"
	what  string // what it measures, one line
	// unit is the headline measurement that the ratio and the verdict are
	// about; higher says whether more is better.
	unit   string
	higher bool
	// extra are measurements shown beside ns/op, B/op and allocs/op.
	extra  []string
	charts []chart
}

// A chart is one SVG of the headline unit: the rows of the family's cases
// whose name starts with cases (all of them when it is empty).
type chart struct {
	file  string
	title string
	cases string
}

var sections = []section{
	{
		pkg: "cache",
		intro: "100,000 `uint64` keys pre-filled, keys drawn from a Zipf trace (s = 1.01), `b.RunParallel` " +
			"on every core, no TTL. Every cache sits behind the same adapter.",
		families: []family{
			{bench: "BenchmarkGetHitParallel", what: "Get of a present key", unit: "ns/op", extra: []string{"miss%"},
				charts: []chart{{file: "cache-get-hit.svg", title: "cache: Get hit, parallel"}}},
			{bench: "BenchmarkSetParallel", what: "Set of a present key", unit: "ns/op"},
			{bench: "BenchmarkMixed90_10", what: "90% Get, 10% Set", unit: "ns/op",
				charts: []chart{{file: "cache-mixed.svg", title: "cache: 90% Get / 10% Set, parallel"}}},
			{bench: "BenchmarkGetOrLoadHit", what: "the cache-through read of a present key (GetOrLoad, or the peer's loading Get, or get-then-load)", unit: "ns/op",
				charts: []chart{{file: "cache-getorload-hit.svg", title: "cache: cache-through hit, parallel"}}},
			{bench: "BenchmarkHitRatio", what: "hit ratio of a 1M-request Zipf trace over 1,000,000 keys, cache sized at 10% (one op is one replay)", unit: "hit%", higher: true,
				charts: []chart{{file: "cache-hit-ratio.svg", title: "cache: hit ratio, Zipf trace at 10% capacity"}}},
			{bench: "BenchmarkStampede", what: "1,000 goroutines miss one key at once, loader takes 1 ms: how often the loader runs", unit: "loader-calls/op",
				charts: []chart{{file: "cache-stampede.svg", title: "cache: loader calls in a 1,000-goroutine stampede"}}},
		},
	},
	{
		pkg: "ratelimit",
		intro: "In memory: a keyed Allow from every core, each call on a random key, 8 per 10 ms per key with 10,000 keys " +
			"(8 per second with 1,000,000, so a key still comes round near its interval). " +
			"`bare-gcra` and `floor-clock` are references, not libraries (see bench/README.md). " +
			"Redis: one decision against the local Redis per call, from 16 and 64 callers, in the two shapes of bench/README.md; " +
			"`go-redis-redis_rate-at-1e9` is a reference row (a limit so high that redis_rate's script writes nothing).",
		families: []family{
			{bench: "BenchmarkAllowParallel", what: "keyed Allow, in parallel", unit: "ns/op", extra: []string{"cpu-ns/op"},
				charts: []chart{
					{file: "ratelimit-allow-10k.svg", title: "ratelimit: keyed Allow, 10,000 keys", cases: "keys=10000"},
					{file: "ratelimit-allow-1m.svg", title: "ratelimit: keyed Allow, 1,000,000 keys", cases: "keys=1000000"},
				}},
			{bench: "BenchmarkBytesPerKey", what: "live heap per key after one call on each of 100,000 keys", unit: "bytes/key",
				charts: []chart{{file: "ratelimit-bytes-per-key.svg", title: "ratelimit: bytes per key"}}},
			{bench: "BenchmarkRedisAllow", what: "one decision on Redis (ns/op is wall time per decision across all callers)", unit: "ns/op",
				extra: []string{"cpu-ns/op", "redis-cpu-ns/op"},
				charts: []chart{
					{file: "ratelimit-redis-16.svg", title: "ratelimit: Redis decision, 16 callers", cases: "walk/callers=16"},
					{file: "ratelimit-redis-64.svg", title: "ratelimit: Redis decision, 64 callers", cases: "walk/callers=64"},
				}},
		},
	},
	{
		pkg: "fanout",
		intro: "Every subject returns its values in input order. `bare-*` and `alloc-*` are floors, not libraries " +
			"(see bench/fanout/README.md).",
		families: []family{
			{bench: "BenchmarkFanout", what: "10,000 trivial items (an atomic add), at most 8 at once", unit: "ns/op", extra: []string{"ns/item"},
				charts: []chart{{file: "fanout-trivial.svg", title: "fanout: 10,000 trivial items, limit 8"}}},
			{bench: "BenchmarkFanoutSleep", what: "100 items that each sleep 1 ms, at most 10 at once (floor: 10 ms)", unit: "ns/op",
				charts: []chart{{file: "fanout-sleep.svg", title: "fanout: 100 items of 1 ms, limit 10"}}},
		},
	},
	{
		pkg: "taskqueue",
		intro: "No-op tasks. In memory: the Runner over its in-memory store. On Postgres: pgstore against River v0.51 " +
			"on the same server, 100 workers, 8 connections, each subject in a schema of its own (see bench/README.md).",
		families: []family{
			{bench: "BenchmarkMemoryNoop", what: "in-memory store: submit and run no-op tasks", unit: "tasks/s", higher: true},
			{bench: "BenchmarkBurnDown", what: "Postgres: tasks enqueued first, then drained by the workers", unit: "tasks/s", higher: true,
				charts: []chart{{file: "taskqueue-burndown.svg", title: "taskqueue: Postgres burn-down, tasks/s"}}},
			{bench: "BenchmarkLatency500", what: "Postgres: 500 tasks a second into running workers, enqueue to completion", unit: "p99-ms",
				extra: []string{"p50-ms"}},
		},
	},
	{
		pkg: "pagination",
		intro: "One 20-row page of a 200,000-row feed, newest first, after `depth` rows: `Keyset.After` against LIMIT/OFFSET, " +
			"statements prepared once, on SQLite (a new file) and Postgres (a new schema).",
		families: []family{
			{bench: "BenchmarkKeysetVsOffset", what: "one page at the given depth", unit: "ns/op",
				charts: []chart{
					{file: "pagination-sqlite.svg", title: "pagination: SQLite, keyset against OFFSET by depth", cases: "SQLite"},
					{file: "pagination-postgres.svg", title: "pagination: Postgres, keyset against OFFSET by depth", cases: "Postgres"},
				}},
		},
	},
	{
		pkg:   "txn",
		intro: "Empty transactions, so that what is measured is what each way of running one costs; SQLite (a new file) and Postgres (a new schema).",
		families: []family{
			{bench: "BenchmarkDo", what: "one transaction: txn.Do against BeginTx/Commit", unit: "ns/op",
				charts: []chart{{file: "txn-do.svg", title: "txn: Do against BeginTx/Commit"}}},
			{bench: "BenchmarkNested", what: "three nested Do against three SAVEPOINT/RELEASE pairs", unit: "ns/op",
				charts: []chart{{file: "txn-nested.svg", title: "txn: three nested savepoints"}}},
		},
	},
}

// reasons explain, in one line each, why asynckit is behind a peer where it
// is, found by reading both sides' code: keyed by
// "BenchmarkName/case/contender", "BenchmarkName/contender" or
// "BenchmarkName", the most specific first. A row without one says "Not
// yet analysed". A reason shows only when the run finds asynckit behind.
var reasons = map[string]string{
	"BenchmarkGetHitParallel/otter": "asynckit counts every hit in Stats, an atomic add on a striped counter; otter counts nothing unless given a stats recorder.",
	"BenchmarkGetOrLoadHit/otter":   "asynckit counts every hit in Stats, an atomic add on a striped counter; otter counts nothing unless given a stats recorder.",
	"BenchmarkSetParallel": "asynckit's Set publishes a new immutable entry (one 96-byte allocation) under its shard's lock, the price of Gets that take no lock; " +
		"otter, go-cache and golang-lru allocate nothing to overwrite a key, and ristretto only queues the write (and may drop it).",
	"BenchmarkMixed90_10": "The 10% of Sets: each publishes a new immutable entry (one 96-byte allocation), the price of Gets that take no lock.",
	"BenchmarkBytesPerKey": "asynckit's GCRA gives each key a 128-byte node, a pair of cache lines of its own, so that cores updating neighbouring keys " +
		"never write one line; the others pack their per-key state without padding.",
	"BenchmarkAllowParallel/keys=1000000/sethvargo-memorystore": "Not yet analysed: a rerun of the two alone on the loaded machine had both at about 1 µs " +
		"of CPU per call (cpu-ns/op), so the gap in wall time may be the load.",
	"BenchmarkBurnDown/river-cooldown-1ms": "Not yet analysed for this run: burn-down figures swing with the machine's load (see the ±), " +
		"and pgstore over database/sql pays more per statement than over a native pgx pool (asynckit-pgstore-pool).",
	"BenchmarkKeysetVsOffset/SQLite/depth=1000/offset": "Not yet analysed in full: Keyset.After's own part is about 1 µs (measured alone), " +
		"so most of the gap is SQLite's, where stepping over 1,000 index entries still costs about what the keyset's seek does; " +
		"OFFSET's cost grows with every row it skips.",
	"BenchmarkRedisAllow/ulule-limiter-redis": "ulule's fixed window runs a cheaper script (INCRBY and PEXPIRE) than a GCRA, " +
		"and limits a window, not a rate: it lets twice the limit through across a window's edge.",
	"BenchmarkFanout/conc-iter.Map": "conc's iter.Map takes no context and returns no error, so it checks for no cancellation " +
		"and keeps no error per item; fanout.Map does both.",
	"BenchmarkDo/hand-written": "Do takes a connection of its own from the pool (db.Conn) and allocates its state, so that it alone " +
		"decides whether a connection goes back after a failed COMMIT: two small allocations and a pool hand-off more than BeginTx. " +
		"The gap's size moves with the load from run to run; whether those account for all of it is not yet analysed.",
	"BenchmarkNested/hand-written": "Besides the outer Do's own connection and state, each nested Do checks its options against the " +
		"outer transaction's, takes the state's lock to number its savepoint and mark its hooks, and checks whether the transaction is doomed. " +
		"Whether that accounts for all of the gap is not yet analysed.",
}
