// Command loadtest is an HTTP load generator for the example server, and
// for any HTTP/1.1 service: it reports throughput, the answers by status,
// and latency percentiles (p50, p90, p99, p99.9 and max).
//
//	go run ./examples/loadtest -c 64 -duration 10s http://127.0.0.1:8080/users/1
//	go run ./examples/loadtest -rate 2000 -c 256 -duration 30s -json http://127.0.0.1:8080/users/1
//
// Run it with -h for every flag; README.md beside this file has the
// scenarios against the example server.
//
// # Closed and open loops
//
// The closed loop (the default) keeps -c connections busy: each sends a
// request, waits for the answer and sends the next, and latency runs from
// each send. Its workers are -c functions run by [fanout.Do], which starts
// exactly that many goroutines and returns once all have stopped;
// -max-rate caps their total with a [ratelimit.TokenBucket], whose Wait
// queues them fairly for the next token.
//
// The open loop (-rate N) models clients that arrive on their own: request
// i is due at start + i/N, whatever became of the requests before it, and
// its latency runs from that due time. When the server stalls, the
// requests due meanwhile wait for a free connection and carry that wait in
// their latency, so a stall shows in the percentiles in proportion to the
// requests it held up; a closed loop would simply send fewer requests and
// record the stall once per connection (coordinated omission, as Gil Tene
// named it). The due times are computed, not drawn from a token bucket: a
// bucket that refills while every worker is busy forgets the arrivals it
// could not hand out, which is the omission again. At most -c requests are
// in flight, on -c connections and -c goroutines; a request sent more than
// a millisecond after it was due is counted late, and one still waiting
// for a connection when the run ends is counted dropped.
//
// # Percentiles
//
// Latencies go into a histogram of fixed size (58 KiB) with HdrHistogram's
// layout: every power-of-two range of nanoseconds is cut into 128 buckets
// of equal width. A percentile is the middle of the bucket holding the
// sample of its rank, and so within 1/256 (0.39%) of it; max and mean are
// exact. Nothing keeps the samples themselves, so memory does not grow
// with the length of a run.
//
// # The client
//
// Requests go over connections of the generator's own, speaking HTTP/1.1
// with keep-alive: each request's bytes are prepared once, and the answer
// is read for its status and its framing (Content-Length, chunked, or to
// the close of the connection), its body dropped unread. net/http's client
// costs several times more CPU per request, and on a small machine that
// CPU is taken from the server being measured. Only http:// URLs are
// supported.
//
// # Stopping
//
// A run ends after -duration, after -n requests, or at SIGINT or SIGTERM
// (a second signal kills it). Requests in flight then are cut off and
// counted as canceled, and the report covers what was done. When stderr is
// a terminal, a progress line is rewritten on it every second; -json
// writes the report as one JSON object. loadtest exits 2 for bad flags,
// 1 when no request was answered, and 0 otherwise, whatever the statuses.
//
// # bareserver
//
// The subdirectory bareserver holds the ceiling that server-vs-bare.sh
// compares the example server with: a bare net/http handler that writes
// the same JSON as GET /users/{id}.
package main
