package pgstore

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/asynckit/asynckit/taskqueue"
)

// infoColumns are the columns an Info is read from, in scanInfo's order.
var infoColumns = []string{
	"id", "kind", "status", "attempt", "max_attempts", "unique_key", "result", "error",
	"progress_percent", "progress_message", "created_at", "run_at", "started_at", "finished_at", "version",
}

// taskColumns are infoColumns and what a claimed Task adds, in scanTask's order.
var taskColumns = append(append([]string(nil), infoColumns...), "payload", "timeout_ns", "claim_token", "lease_until", "metadata")

// columns returns cols as a select list, each prefixed with prefix ("t.").
func columns(prefix string, cols []string) string {
	var b strings.Builder
	for i, c := range cols {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(prefix)
		b.WriteString(c)
	}
	return b.String()
}

// infoScan holds one row's Info columns while it is scanned. Nullable
// columns go through pgtype, which both database/sql and native pgx scan
// into.
type infoScan struct {
	info                  taskqueue.Info
	status                string
	result                []byte // database/sql scans NULL into a []byte, not into a json.RawMessage
	uniqueKey             pgtype.Text
	startedAt, finishedAt pgtype.Timestamptz
}

func (s *infoScan) dest() []any {
	in := &s.info
	return []any{
		&in.ID, &in.Kind, &s.status, &in.Attempt, &in.MaxAttempts, &s.uniqueKey, &s.result, &in.Error,
		&in.Progress.Percent, &in.Progress.Message, &in.CreatedAt, &in.RunAt, &s.startedAt, &s.finishedAt, &in.Version,
	}
}

func (s *infoScan) done() (taskqueue.Info, error) {
	st, err := taskqueue.ParseStatus(s.status)
	if err != nil {
		return taskqueue.Info{}, fmt.Errorf("pgstore: task %s: %w", s.info.ID, err)
	}
	in := s.info
	in.Status = st
	in.UniqueKey = s.uniqueKey.String
	in.StartedAt = timeOf(s.startedAt)
	in.FinishedAt = timeOf(s.finishedAt)
	if len(s.result) > 0 {
		in.Result = s.result
	}
	return in, nil
}

func timeOf(t pgtype.Timestamptz) time.Time {
	if !t.Valid {
		return time.Time{}
	}
	return t.Time
}

// scanInfo reads one row of infoColumns, followed by the columns extra
// points to.
func scanInfo(r rows, extra ...any) (taskqueue.Info, error) {
	var s infoScan
	if err := r.Scan(append(s.dest(), extra...)...); err != nil {
		return taskqueue.Info{}, err
	}
	return s.done()
}

// taskScan holds one row's taskColumns while it is scanned.
type taskScan struct {
	infoScan
	payload    []byte
	timeoutNS  int64
	claim      int64
	leaseUntil pgtype.Timestamptz
	metadata   []byte // a JSON object of strings, or nil
}

func (s *taskScan) dest() []any {
	return append(s.infoScan.dest(), &s.payload, &s.timeoutNS, &s.claim, &s.leaseUntil, &s.metadata)
}

func (s *taskScan) done() (taskqueue.Task, error) {
	in, err := s.infoScan.done()
	if err != nil {
		return taskqueue.Task{}, err
	}
	var md map[string]string
	if len(s.metadata) > 0 {
		if err := json.Unmarshal(s.metadata, &md); err != nil {
			return taskqueue.Task{}, fmt.Errorf("pgstore: task %s: metadata: %w", in.ID, err)
		}
	}
	return taskqueue.Task{
		Info:       in,
		Payload:    s.payload,
		Timeout:    time.Duration(s.timeoutNS),
		ClaimToken: s.claim,
		LeaseUntil: timeOf(s.leaseUntil),
		Metadata:   md,
	}, nil
}

// Postgres keeps times to the microsecond. The store writes every time
// already truncated, so that what it returns at once equals what it reads
// back later, and it turns each bound it compares against into the
// microsecond bound that keeps the comparison exact.

// floorMicro truncates t to the microsecond, dropping its monotonic reading.
func floorMicro(t time.Time) time.Time { return t.Truncate(time.Microsecond) }

// ceilMicro rounds t up to the microsecond, dropping its monotonic reading.
func ceilMicro(t time.Time) time.Time {
	f := floorMicro(t)
	if f.Equal(t) {
		return f
	}
	return f.Add(time.Microsecond)
}

// pgText makes s storable in a Postgres text column, which takes neither
// NUL bytes nor invalid UTF-8: each such byte, or run of invalid bytes,
// becomes '?', so the text never grows.
func pgText(s string) string {
	if utf8.ValidString(s) && strings.IndexByte(s, 0) < 0 {
		return s
	}
	return strings.ReplaceAll(strings.ToValidUTF8(s, "?"), "\x00", "?")
}

// validText reports whether s can be stored as it is in a text column.
func validText(s string) bool {
	return utf8.ValidString(s) && strings.IndexByte(s, 0) < 0
}
