package testenv

import (
	"context"
	"database/sql"
	"testing"

	"github.com/go-sql-driver/mysql"
)

// MySQL returns a *sql.DB connected to a fresh database, unique to the test,
// on the MySQL or MariaDB server named by MYSQL_DSN. The database is dropped
// at cleanup, after the pool is closed. The DSN's other settings (parseTime,
// timeouts, …) are kept.
func MySQL(tb testing.TB) *sql.DB {
	tb.Helper()
	dsn := lookup(tb, EnvMySQL)
	cfg, err := mysql.ParseDSN(dsn)
	must(tb, err, "parse %s", EnvMySQL)
	if cfg.Timeout == 0 {
		cfg.Timeout = connectTimeout
	}

	adminCfg := cfg.Clone()
	adminCfg.DBName = ""
	connector, err := mysql.NewConnector(adminCfg)
	must(tb, err, "MySQL connector")
	admin := sql.OpenDB(connector)
	defer admin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
	defer cancel()
	if err := admin.PingContext(ctx); err != nil {
		failUnreachable(tb, "MySQL", EnvMySQL, err)
	}

	name := uniqueName(tb, 64)
	_, err = admin.ExecContext(ctx, "CREATE DATABASE `"+name+"`")
	must(tb, err, "create database %s", name)
	tb.Cleanup(func() {
		connector, err := mysql.NewConnector(adminCfg)
		if err != nil {
			tb.Errorf("testenv: drop database %s: %v", name, err)
			return
		}
		admin := sql.OpenDB(connector)
		defer admin.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 2*connectTimeout)
		defer cancel()
		if _, err := admin.ExecContext(ctx, "DROP DATABASE `"+name+"`"); err != nil {
			tb.Errorf("testenv: drop database %s: %v", name, err)
		}
	})

	cfg.DBName = name
	connector, err = mysql.NewConnector(cfg)
	must(tb, err, "MySQL connector")
	db := sql.OpenDB(connector)
	tb.Cleanup(func() { _ = db.Close() })
	if err := db.PingContext(ctx); err != nil {
		failUnreachable(tb, "MySQL", EnvMySQL, err)
	}
	return db
}
