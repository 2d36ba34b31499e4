package main

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib" // also registers the "pgx" database/sql driver
	_ "modernc.org/sqlite"           // registers the "sqlite" database/sql driver

	"github.com/asynckit/asynckit/pagination"
	"github.com/asynckit/asynckit/txn"
)

//go:embed schema
var schemaFS embed.FS

// store is the service's data in SQLite or Postgres. Its queries are
// written once: both databases take $n placeholders, RETURNING and
// ON CONFLICT; what differs is in the schema files and in dialect.
//
// Writes go through db, always inside txn.Do; reads outside a transaction
// go through rdb. On Postgres the two are one pool. SQLite takes one
// writer at a time, so there db holds a single connection: writers queue
// for it in order inside the process, instead of polling the file lock
// with busy_timeout, which under load sleeps ever longer between tries
// and lets throughput collapse. Readers have a pool of their own, which
// WAL lets run beside the writer.
type store struct {
	db      *sql.DB
	rdb     *sql.DB
	dialect string // "sqlite" or "postgres"
	keyset  pagination.Dialect
	where   string // where the data lives, for the startup line
}

// openStore opens the database that cfg names: Postgres when DatabaseURL
// is set, else the SQLite file DBPath. It migrates the schema before
// returning.
func openStore(ctx context.Context, cfg *config, tr *tracer) (s *store, err error) {
	s = &store{}
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	conns := cfg.DBMaxConns
	if conns == 0 {
		conns = 16
	}
	if cfg.DatabaseURL != "" {
		s.dialect, s.keyset = "postgres", pagination.Postgres
		if tr == nil {
			if s.db, err = sql.Open("pgx", cfg.DatabaseURL); err != nil {
				return nil, fmt.Errorf("open Postgres: %w", err)
			}
		} else {
			// With tracing on, pgx is given the tracer of its queries, which
			// only a parsed config can carry.
			pc, err := pgx.ParseConfig(cfg.DatabaseURL)
			if err != nil {
				return nil, fmt.Errorf("open Postgres: %w", err)
			}
			pc.Tracer = queryTracer{tr}
			s.db = stdlib.OpenDB(*pc)
		}
		s.db.SetMaxOpenConns(conns)
		s.db.SetMaxIdleConns(conns)
		s.db.SetConnMaxIdleTime(5 * time.Minute)
		s.rdb = s.db
		s.where = "postgres " + redactURL(cfg.DatabaseURL)
	} else {
		s.dialect, s.keyset = "sqlite", pagination.SQLite
		// _txlock=immediate makes a transaction take the write lock at
		// BEGIN, so one that reads and then writes never fails at its
		// first write (see txn's doc); busy_timeout covers other processes
		// that open the same file.
		common := "file:" + cfg.DBPath + "?_pragma=busy_timeout(10000)&_time_format=sqlite"
		if s.db, err = sql.Open("sqlite", common+"&_pragma=foreign_keys(1)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_txlock=immediate"); err != nil {
			return nil, fmt.Errorf("open SQLite %s: %w", cfg.DBPath, err)
		}
		s.db.SetMaxOpenConns(1)
		s.db.SetMaxIdleConns(1)
		s.where = "sqlite " + cfg.DBPath
	}
	pingCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := s.db.PingContext(pingCtx); err != nil { // for SQLite, this also turns WAL on
		return nil, fmt.Errorf("connect to %s: %w", s.where, err)
	}
	if s.rdb == nil {
		if s.rdb, err = sql.Open("sqlite", "file:"+cfg.DBPath+"?_pragma=busy_timeout(10000)&_time_format=sqlite&_pragma=query_only(1)"); err != nil {
			return nil, fmt.Errorf("open SQLite %s: %w", cfg.DBPath, err)
		}
		s.rdb.SetMaxOpenConns(conns)
		s.rdb.SetMaxIdleConns(conns)
	}
	if err := s.migrate(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// reader returns what a read should go through: the transaction in ctx,
// or else the read pool.
func (s *store) reader(ctx context.Context) txn.Querier {
	if q := txn.From(ctx, s.db); q != txn.Querier(s.db) {
		return q
	}
	return s.rdb
}

// close closes the pools.
func (s *store) close() error {
	var errs []error
	if s.rdb != nil && s.rdb != s.db {
		errs = append(errs, s.rdb.Close())
	}
	if s.db != nil {
		errs = append(errs, s.db.Close())
	}
	return errors.Join(errs...)
}

// redactURL hides the password of a database URL.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// migrate applies the embedded migrations for s's database that have not
// been applied yet, each in a transaction with its version recorded, in
// order. Instances that start together take turns: on Postgres through an
// advisory lock, on SQLite through its single writer.
func (s *store) migrate(ctx context.Context) error {
	dir := path.Join("schema", s.dialect)
	entries, err := fs.ReadDir(schemaFS, dir)
	if err != nil {
		return err
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".sql") {
			names = append(names, e.Name())
		}
	}
	slices.Sort(names)
	type migration struct {
		version int
		name    string
		sql     string
	}
	var migrations []migration
	for _, name := range names {
		num, _, _ := strings.Cut(name, "_")
		version, err := strconv.Atoi(num)
		if err != nil {
			return fmt.Errorf("migrate: %s does not start with a version number", name)
		}
		text, err := fs.ReadFile(schemaFS, path.Join(dir, name))
		if err != nil {
			return err
		}
		migrations = append(migrations, migration{version, name, string(text)})
	}
	return txn.Do(ctx, s.db, func(ctx context.Context, tx *sql.Tx) error {
		if s.dialect == "postgres" {
			if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(7261730001)`); err != nil {
				return fmt.Errorf("migrate: lock: %w", err)
			}
		}
		if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)`); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		for _, m := range migrations {
			var n int
			if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM schema_migrations WHERE version = $1`, m.version).Scan(&n); err != nil {
				return fmt.Errorf("migrate %s: %w", m.name, err)
			}
			if n > 0 {
				continue
			}
			if _, err := tx.ExecContext(ctx, m.sql); err != nil {
				return fmt.Errorf("migrate %s: %w", m.name, err)
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)`,
				m.version, m.name, time.Now().UTC().Format(time.RFC3339)); err != nil {
				return fmt.Errorf("migrate %s: %w", m.name, err)
			}
		}
		return nil
	})
}

// now returns the current time as the store keeps it: UTC, to the
// microsecond, which both databases hold exactly.
func now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }

// constraint is the kind of integrity constraint an error reports.
type constraint int

const (
	noConstraint constraint = iota
	uniqueViolation
	foreignKeyViolation
	checkViolation
)

// violation reports which kind of constraint err broke, and its name: the
// index or constraint on Postgres, the "table.column" list on SQLite.
func violation(err error) (constraint, string) {
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		switch pg.Code {
		case "23505":
			return uniqueViolation, pg.ConstraintName
		case "23503":
			return foreignKeyViolation, pg.ConstraintName
		case "23514":
			return checkViolation, pg.ConstraintName
		}
		return noConstraint, ""
	}
	var coded interface{ Code() int }
	if errors.As(err, &coded) {
		msg := err.Error()
		_, detail, _ := strings.Cut(msg, "constraint failed: ")
		switch coded.Code() {
		case 2067, 1555: // SQLITE_CONSTRAINT_UNIQUE, SQLITE_CONSTRAINT_PRIMARYKEY
			return uniqueViolation, detail
		case 787: // SQLITE_CONSTRAINT_FOREIGNKEY
			return foreignKeyViolation, detail
		case 275: // SQLITE_CONSTRAINT_CHECK
			return checkViolation, detail
		}
	}
	return noConstraint, ""
}

// ping checks that the database answers, for /readyz.
func (s *store) ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return s.rdb.PingContext(ctx)
}
