package pgstore

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"github.com/asynckit/asynckit/txn"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// migration is one numbered step of the schema, from migrations/NNN_name.sql.
type migration struct {
	version int
	name    string
	sql     string
}

// migrations returns the embedded migrations in version order. Their
// names are checked by a test, so a malformed one cannot ship.
func migrations() ([]migration, error) {
	entries, err := fs.ReadDir(migrationFiles, "migrations")
	if err != nil {
		return nil, err
	}
	var out []migration
	for _, e := range entries {
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v < 1 {
			return nil, fmt.Errorf("pgstore: migration %q is not named NNN_name.sql", e.Name())
		}
		body, err := fs.ReadFile(migrationFiles, path.Join("migrations", e.Name()))
		if err != nil {
			return nil, err
		}
		out = append(out, migration{version: v, name: e.Name(), sql: string(body)})
	}
	slices.SortFunc(out, func(a, b migration) int { return a.version - b.version })
	for i, m := range out {
		if m.version != i+1 {
			return nil, fmt.Errorf("pgstore: migration %s: want version %d", m.name, i+1)
		}
	}
	return out, nil
}

// SchemaVersion is the version of the newest migration this package holds:
// the version Migrate brings a schema to.
const SchemaVersion = 4

// Migrate creates schema if it does not exist and brings the store's
// tables in it up to SchemaVersion, applying each embedded migration that
// the schema's pgstore_migrations table does not list yet, in order, each
// in its own transaction. It is idempotent and safe to call from many
// processes at once: a transaction-scoped advisory lock per schema makes
// concurrent calls take turns, and a call that finds the schema current
// changes nothing. An empty schema means DefaultSchema.
//
// Migrate runs inside the caller's transaction when ctx carries one on db
// (see package txn); a schema newer than this package's SchemaVersion is
// an error.
func Migrate(ctx context.Context, db *sql.DB, schema string) error {
	if db == nil {
		return errors.New("pgstore: Migrate needs a *sql.DB")
	}
	if schema == "" {
		schema = DefaultSchema
	}
	if err := validSchema(schema); err != nil {
		return err
	}
	steps, err := migrations()
	if err != nil {
		return err
	}
	q := pgx.Identifier{schema}.Sanitize()
	apply := func(ctx context.Context, tx *sql.Tx) (done bool, err error) {
		if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock($1)", lockKey(schema)); err != nil {
			return false, err
		}
		for _, stmt := range []string{
			"CREATE SCHEMA IF NOT EXISTS " + q,
			"CREATE TABLE IF NOT EXISTS " + q + ".pgstore_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())",
		} {
			if _, err := tx.ExecContext(ctx, stmt); err != nil {
				return false, err
			}
		}
		var current int
		if err := tx.QueryRowContext(ctx, "SELECT coalesce(max(version), 0) FROM "+q+".pgstore_migrations").Scan(&current); err != nil {
			return false, err
		}
		if current > len(steps) {
			return false, fmt.Errorf("pgstore: schema %s is at version %d, newer than this package's %d", schema, current, len(steps))
		}
		if current == len(steps) {
			return true, nil
		}
		m := steps[current]
		// The migration's unqualified names land in schema: search_path is
		// set for this transaction only, and put back afterwards for a
		// caller whose own transaction goes on.
		var saved string
		if err := tx.QueryRowContext(ctx, "SELECT current_setting('search_path')").Scan(&saved); err != nil {
			return false, err
		}
		if _, err := tx.ExecContext(ctx, "SET LOCAL search_path TO "+q); err != nil {
			return false, err
		}
		if _, err := tx.ExecContext(ctx, m.sql); err != nil {
			return false, fmt.Errorf("pgstore: migration %s: %w", m.name, err)
		}
		if _, err := tx.ExecContext(ctx, "SELECT set_config('search_path', $1, true)", saved); err != nil {
			return false, err
		}
		if _, err := tx.ExecContext(ctx, "INSERT INTO "+q+".pgstore_migrations (version, name) VALUES ($1, $2)", m.version, m.name); err != nil {
			return false, err
		}
		return current+1 == len(steps), nil
	}
	for {
		var done bool
		err := txn.Do(ctx, db, func(ctx context.Context, tx *sql.Tx) error {
			var err error
			done, err = apply(ctx, tx)
			return err
		})
		if err != nil {
			return fmt.Errorf("pgstore: migrate schema %s: %w", schema, err)
		}
		if done {
			return nil
		}
	}
}

// validSchema checks that schema can name a Postgres schema: 1 to 63 bytes
// of UTF-8 without NUL. It is always quoted, so any other character is fine.
func validSchema(schema string) error {
	if schema == "" || len(schema) > 63 || !utf8.ValidString(schema) || strings.ContainsRune(schema, 0) {
		return fmt.Errorf("pgstore: schema %q must be 1 to 63 bytes of UTF-8 without NUL", schema)
	}
	return nil
}

// lockKey is the advisory lock that serialises migrations of schema.
func lockKey(schema string) int64 {
	h := fnv.New64a()
	h.Write([]byte("asynckit/pgstore migrate " + schema))
	return int64(h.Sum64())
}

// channelName is the NOTIFY channel of the store in schema: one per
// schema, so that stores in other schemas of the database are not woken.
func channelName(schema string) string {
	h := fnv.New64a()
	h.Write([]byte(schema))
	return fmt.Sprintf("pgstore_%016x", h.Sum64())
}
