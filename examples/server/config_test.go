package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asynckit/asynckit/ratelimit"
)

// env returns a getenv that reads pairs of names and values.
func env(pairs ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(pairs); i += 2 {
		m[pairs[i]] = pairs[i+1]
	}
	return func(k string) string { return m[k] }
}

// TestConfigDefaults checks what the server runs with when nothing is set.
func TestConfigDefaults(t *testing.T) {
	t.Parallel()
	c, err := parseConfig(nil, env(), io.Discard)
	require.NoError(t, err)
	require.Equal(t, "127.0.0.1:8080", c.Addr)
	require.Equal(t, "asynckit-example.db", c.DBPath)
	require.Empty(t, c.DatabaseURL)
	require.Equal(t, ratelimit.Limit{Rate: 600, Period: time.Minute, Burst: 600}, c.RateLimit)
	require.Empty(t, c.Upstreams, "the demo upstreams")
	require.Equal(t, 2*time.Second, c.AggregateTimeout)
	require.Equal(t, 32, c.UpstreamConns)
	require.Equal(t, 15*time.Second, c.ShutdownTimeout)
	require.Empty(t, c.CORSOrigins)
	require.Equal(t, 500*time.Millisecond, c.SlowRequest)
	require.EqualValues(t, 1<<20, c.MaxBody)
	require.Equal(t, 4, c.Workers)
	require.Nil(t, c.CursorKey)
	require.Empty(t, c.TrustedProxies)
	require.Equal(t, "text", c.LogFormat)
	require.Equal(t, slog.LevelInfo, c.LogLevel)
	require.Equal(t, "taskqueue", c.TasksSchema)
	require.Equal(t, 30*time.Second, c.TaskLease)
	require.Equal(t, 250*time.Millisecond, c.TaskPoll)
	require.Empty(t, c.RedisURL)
	require.Equal(t, "asynckit:", c.RedisPrefix)
	require.Equal(t, 250*time.Millisecond, c.RedisTimeout)
	require.Equal(t, 1, c.RateReplicas)
	require.Equal(t, time.Minute, c.UploadSweep)
	require.True(t, c.UserCache)
}

// TestConfigPrecedence checks that a flag wins over its variable, which
// wins over the default.
func TestConfigPrecedence(t *testing.T) {
	t.Parallel()
	t.Run("the environment wins over the default", func(t *testing.T) {
		c, err := parseConfig(nil, env("RATE_LIMIT", "5/s", "WORKERS", "9"), io.Discard)
		require.NoError(t, err)
		require.Equal(t, ratelimit.Limit{Rate: 5, Period: time.Second, Burst: 5}, c.RateLimit)
		require.Equal(t, 9, c.Workers)
	})
	t.Run("a flag wins over the environment", func(t *testing.T) {
		c, err := parseConfig([]string{"-rate-limit", "7/min", "-workers=3"}, env("RATE_LIMIT", "5/s", "WORKERS", "9"), io.Discard)
		require.NoError(t, err)
		require.Equal(t, 7, c.RateLimit.Rate)
		require.Equal(t, 3, c.Workers)
	})
	t.Run("a flag wins over a bad environment value", func(t *testing.T) {
		c, err := parseConfig([]string{"-workers", "2"}, env("WORKERS", "lots"), io.Discard)
		require.NoError(t, err)
		require.Equal(t, 2, c.Workers)
	})
	t.Run("an empty variable is no setting", func(t *testing.T) {
		c, err := parseConfig(nil, env("ADDR", "", "WORKERS", ""), io.Discard)
		require.NoError(t, err)
		require.Equal(t, "127.0.0.1:8080", c.Addr)
		require.Equal(t, 4, c.Workers)
	})
	t.Run("the last of a repeated flag wins", func(t *testing.T) {
		c, err := parseConfig([]string{"-workers", "2", "-workers", "5"}, env(), io.Discard)
		require.NoError(t, err)
		require.Equal(t, 5, c.Workers)
	})
}

// TestConfigGoodValues checks that each setting takes its documented
// forms, by variable and by flag alike.
func TestConfigGoodValues(t *testing.T) {
	t.Parallel()
	key := bytes.Repeat([]byte{0xab}, 32)
	for _, tc := range []struct {
		env, value string
		check      func(t *testing.T, c *config)
	}{
		{"ADDR", ":8080", func(t *testing.T, c *config) { require.Equal(t, ":8080", c.Addr) }},
		{"ADDR", "[::1]:0", func(t *testing.T, c *config) { require.Equal(t, "[::1]:0", c.Addr) }},
		{"ADDR", "localhost:9000", func(t *testing.T, c *config) { require.Equal(t, "localhost:9000", c.Addr) }},
		{"DATABASE_URL", "postgresql://u:p@db:5432/app?sslmode=disable", func(t *testing.T, c *config) {
			require.Equal(t, "postgresql://u:p@db:5432/app?sslmode=disable", c.DatabaseURL)
		}},
		{"TASKS_SCHEMA", "Tasks of App", func(t *testing.T, c *config) { require.Equal(t, "Tasks of App", c.TasksSchema) }},
		{"TASK_LEASE", "2s", func(t *testing.T, c *config) { require.Equal(t, 2*time.Second, c.TaskLease) }},
		{"TASK_POLL", "50ms", func(t *testing.T, c *config) { require.Equal(t, 50*time.Millisecond, c.TaskPoll) }},
		{"REDIS_URL", "redis://:p@cache:6379/2", func(t *testing.T, c *config) { require.Equal(t, "redis://:p@cache:6379/2", c.RedisURL) }},
		{"REDIS_URL", "rediss://cache:6380", func(t *testing.T, c *config) { require.Equal(t, "rediss://cache:6380", c.RedisURL) }},
		{"REDIS_PREFIX", "shop:", func(t *testing.T, c *config) { require.Equal(t, "shop:", c.RedisPrefix) }},
		{"REDIS_TIMEOUT", "1s", func(t *testing.T, c *config) { require.Equal(t, time.Second, c.RedisTimeout) }},
		{"OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318", func(t *testing.T, c *config) { require.Equal(t, "http://collector:4318", c.OTLPEndpoint) }},
		{"OTEL_EXPORTER_OTLP_ENDPOINT", "https://otlp.example/base/", func(t *testing.T, c *config) { require.Equal(t, "https://otlp.example/base/", c.OTLPEndpoint) }},
		{"RATE_LIMIT_REPLICAS", "3", func(t *testing.T, c *config) { require.Equal(t, 3, c.RateReplicas) }},
		{"UPLOAD_SWEEP", "30s", func(t *testing.T, c *config) { require.Equal(t, 30*time.Second, c.UploadSweep) }},
		{"RATE_LIMIT", "10/h", func(t *testing.T, c *config) {
			require.Equal(t, ratelimit.Limit{Rate: 10, Period: time.Hour, Burst: 10}, c.RateLimit)
		}},
		{"RATE_LIMIT", "1000/day", func(t *testing.T, c *config) { require.Equal(t, 24*time.Hour, c.RateLimit.Period) }},
		{"RATE_LIMIT", " 7 / min ", func(t *testing.T, c *config) { require.Equal(t, 7, c.RateLimit.Rate) }},
		{"UPSTREAMS", "http://a.example/x, https://b.example:8443/y?z=1,", func(t *testing.T, c *config) {
			require.Equal(t, []string{"http://a.example/x", "https://b.example:8443/y?z=1"}, c.Upstreams)
		}},
		{"AGGREGATE_TIMEOUT", "150ms", func(t *testing.T, c *config) { require.Equal(t, 150*time.Millisecond, c.AggregateTimeout) }},
		{"UPSTREAM_CONNS", "200", func(t *testing.T, c *config) { require.Equal(t, 200, c.UpstreamConns) }},
		{"CORS_ORIGINS", "*", func(t *testing.T, c *config) { require.Equal(t, []string{"*"}, c.CORSOrigins) }},
		{"CORS_ORIGINS", "https://a.example, http://localhost:3000", func(t *testing.T, c *config) {
			require.Equal(t, []string{"https://a.example", "http://localhost:3000"}, c.CORSOrigins)
		}},
		{"CORS_ORIGINS", "HTTPS://App.Example.com", func(t *testing.T, c *config) {
			require.Equal(t, []string{"https://app.example.com"}, c.CORSOrigins, "browsers send origins in lower case")
		}},
		{"SLOW_REQUEST", "2s", func(t *testing.T, c *config) { require.Equal(t, 2*time.Second, c.SlowRequest) }},
		{"MAX_BODY", "512KiB", func(t *testing.T, c *config) { require.EqualValues(t, 512<<10, c.MaxBody) }},
		{"MAX_BODY", "2MB", func(t *testing.T, c *config) { require.EqualValues(t, 2_000_000, c.MaxBody) }},
		{"MAX_BODY", "100B", func(t *testing.T, c *config) { require.EqualValues(t, 100, c.MaxBody) }},
		{"MAX_BODY", "4096", func(t *testing.T, c *config) { require.EqualValues(t, 4096, c.MaxBody) }},
		{"WORKERS", "1000", func(t *testing.T, c *config) { require.Equal(t, 1000, c.Workers) }},
		{"USER_CACHE", "off", func(t *testing.T, c *config) { require.False(t, c.UserCache) }},
		{"USER_CACHE", "on", func(t *testing.T, c *config) { require.True(t, c.UserCache) }},
		{"CURSOR_KEY", strings.Repeat("ab", 32), func(t *testing.T, c *config) { require.Equal(t, key, c.CursorKey) }},
		{"CURSOR_KEY", base64.StdEncoding.EncodeToString(key), func(t *testing.T, c *config) { require.Equal(t, key, c.CursorKey) }},
		{"TRUSTED_PROXIES", "10.0.0.0/8, 2001:db8::/32", func(t *testing.T, c *config) {
			require.Equal(t, []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8::/32")}, c.TrustedProxies)
		}},
		{"LOG_FORMAT", "json", func(t *testing.T, c *config) { require.Equal(t, "json", c.LogFormat) }},
		{"LOG_LEVEL", "WARN", func(t *testing.T, c *config) { require.Equal(t, slog.LevelWarn, c.LogLevel) }},
		{"LOG_LEVEL", "debug", func(t *testing.T, c *config) { require.Equal(t, slog.LevelDebug, c.LogLevel) }},
	} {
		t.Run(tc.env+"="+tc.value, func(t *testing.T) {
			c, err := parseConfig(nil, env(tc.env, tc.value), io.Discard)
			require.NoError(t, err)
			tc.check(t, c)
			flag := flagOf(t, tc.env)
			c, err = parseConfig([]string{"-" + flag, tc.value}, env(), io.Discard)
			require.NoError(t, err, "the flag takes what the variable takes")
			tc.check(t, c)
		})
	}
}

// flagOf returns the flag of the environment variable name.
func flagOf(t *testing.T, name string) string {
	t.Helper()
	for _, s := range settings {
		if s.env == name {
			return s.flag
		}
	}
	t.Fatalf("no setting has the variable %s", name)
	return ""
}

// TestConfigBadValues checks that every bad value, by variable or by flag,
// is an error that names the flag and the variable and says what is wrong.
func TestConfigBadValues(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		env, value, want string
	}{
		{"ADDR", "nonsense", "host:port"},
		{"ADDR", "127.0.0.1:99999", "port"},
		{"ADDR", "127.0.0.1:http", "port"},
		{"DB_PATH", " ", "file"},
		{"DATABASE_URL", "mysql://db/app", "postgres://"},
		{"DATABASE_URL", "postgres://u:p@db:5432/app%zz", "URL"},
		{"TASKS_SCHEMA", strings.Repeat("s", 64), "1 to 63 bytes"},
		{"TASK_LEASE", "10ms", "at least 100ms"},
		{"TASK_POLL", "1ms", "at least 10ms"},
		{"REDIS_URL", "http://cache:6379", "redis://"},
		{"REDIS_URL", "redis://u:p@cache:6379/%zz", "URL"},
		{"REDIS_PREFIX", "{app}:", "braces"},
		{"REDIS_PREFIX", "my app:", "white space"},
		{"REDIS_TIMEOUT", "0", "at least 1ms"},
		{"OTEL_EXPORTER_OTLP_ENDPOINT", "localhost:4318", "http(s) URL"},
		{"OTEL_EXPORTER_OTLP_ENDPOINT", "grpc://collector:4317", "http(s) URL"},
		{"OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/?x=1", "http(s) URL"},
		{"RATE_LIMIT_REPLICAS", "0", "1 to 1000"},
		{"USER_CACHE", "false", "on or off"},
		{"RATE_LIMIT_REPLICAS", "three", "1 to 1000"},
		{"UPLOAD_SWEEP", "soon", "duration"},
		{"RATE_LIMIT", "0/min", "N at least 1"},
		{"RATE_LIMIT", "5", "N/s, N/min"},
		{"RATE_LIMIT", "many/s", "N/s, N/min"},
		{"RATE_LIMIT", "5/fortnight", "unknown unit"},
		{"RATE_LIMIT", "2000000/s", "invalid limit"},
		{"UPSTREAMS", "ftp://files.example", "not an absolute http(s) URL"},
		{"UPSTREAMS", "http://", "not an absolute http(s) URL"},
		{"UPSTREAMS", "/relative", "not an absolute http(s) URL"},
		{"UPSTREAMS", strings.Repeat("http://a.example,", maxUpstreams+1), "at most 32"},
		{"AGGREGATE_TIMEOUT", "0", "at least 1ms"},
		{"UPSTREAM_CONNS", "0", "from 1 to 10000"},
		{"UPSTREAM_CONNS", "many", "from 1 to 10000"},
		{"AGGREGATE_TIMEOUT", "-1s", "at least 1ms"},
		{"AGGREGATE_TIMEOUT", "2", "duration"},
		{"SHUTDOWN_TIMEOUT", "soon", "duration"},
		{"SLOW_REQUEST", "0s", "at least"},
		{"CORS_ORIGINS", "example.com", "not an origin"},
		{"CORS_ORIGINS", "https://example.com/", "not an origin"},
		{"CORS_ORIGINS", "https://example.com/app", "not an origin"},
		{"CORS_ORIGINS", "https://example.com?x=1", "not an origin"},
		{"CORS_ORIGINS", "https://user@example.com", "not an origin"},
		{"MAX_BODY", "0", "size"},
		{"MAX_BODY", "-1", "size"},
		{"MAX_BODY", "1.5MiB", "size"},
		{"MAX_BODY", "2TiB", "size"},
		{"MAX_BODY", "lots", "size"},
		{"MAX_UPLOAD", "0", "size"},
		{"WORKERS", "0", "1 to 1000"},
		{"WORKERS", "1001", "1 to 1000"},
		{"WORKERS", "four", "1 to 1000"},
		{"CURSOR_KEY", "secret", "at least 32 bytes"},
		{"CURSOR_KEY", strings.Repeat("ab", 31), "at least 32 bytes"},
		{"TRUSTED_PROXIES", "10.0.0.1", "not a CIDR prefix"},
		{"TRUSTED_PROXIES", "10.0.0.0/8, proxy", "not a CIDR prefix"},
		{"LOG_FORMAT", "xml", "text or json"},
		{"LOG_LEVEL", "loud", "loud"},
	} {
		t.Run(tc.env+"="+tc.value, func(t *testing.T) {
			flag := flagOf(t, tc.env)
			for _, how := range []struct {
				args []string
				env  func(string) string
			}{
				{nil, env(tc.env, tc.value)},
				{[]string{"-" + flag + "=" + tc.value}, env()},
			} {
				_, err := parseConfig(how.args, how.env, io.Discard)
				require.Error(t, err)
				require.True(t, strings.HasPrefix(err.Error(), "-"+flag+" ("+tc.env+") "),
					"the error names the flag and the variable: %v", err)
				require.Contains(t, err.Error(), tc.want)
			}
		})
	}
}

// TestConfigReplicasNeedTheirShare checks that RATE_LIMIT_REPLICAS cannot
// leave an instance's share of RATE_LIMIT empty.
func TestConfigReplicasNeedTheirShare(t *testing.T) {
	t.Parallel()
	_, err := parseConfig(nil, env("RATE_LIMIT", "2/s", "RATE_LIMIT_REPLICAS", "3"), io.Discard)
	require.ErrorContains(t, err, "RATE_LIMIT_REPLICAS")
	c, err := parseConfig(nil, env("RATE_LIMIT", "3/s", "RATE_LIMIT_REPLICAS", "3"), io.Discard)
	require.NoError(t, err)
	require.Equal(t, 3, c.RateReplicas)
}

// TestConfigErrorsDoNotRepeatSecrets checks that a bad value's error keeps
// passwords and keys out of the logs.
func TestConfigErrorsDoNotRepeatSecrets(t *testing.T) {
	t.Parallel()
	_, err := parseConfig(nil, env("DATABASE_URL", "postgres://app:hunter2@db/app%zz"), io.Discard)
	require.Error(t, err)
	require.NotContains(t, err.Error(), "hunter2")
	_, err = parseConfig(nil, env("DATABASE_URL", "mysql://app:hunter2@db/app"), io.Discard)
	require.Error(t, err)
	require.NotContains(t, err.Error(), "hunter2")
	require.Contains(t, err.Error(), "mysql://app:xxxxx@db/app", "the rest of the URL helps find the mistake")
	_, err = parseConfig(nil, env("UPSTREAMS", "https://agg:hunter2@a.example/x, ftp://agg:hunter2@b.example/"), io.Discard)
	require.Error(t, err)
	require.NotContains(t, err.Error(), "hunter2")
	require.Contains(t, err.Error(), `"ftp://agg:xxxxx@b.example/" is not an absolute http(s) URL`)
	_, err = parseConfig(nil, env("REDIS_URL", "redis://app:hunter2@cache/0%zz"), io.Discard)
	require.Error(t, err)
	require.NotContains(t, err.Error(), "hunter2")
	_, err = parseConfig(nil, env("OTEL_EXPORTER_OTLP_ENDPOINT", "ftp://otel:hunter2@collector:4318"), io.Discard)
	require.Error(t, err)
	require.NotContains(t, err.Error(), "hunter2")
	_, err = parseConfig(nil, env("CURSOR_KEY", "hunter2-hunter2"), io.Discard)
	require.Error(t, err)
	require.NotContains(t, err.Error(), "hunter2")
}

// TestConfigArguments checks -h and arguments that are not settings.
func TestConfigArguments(t *testing.T) {
	t.Parallel()
	t.Run("-h lists every flag with its variable and default", func(t *testing.T) {
		for _, arg := range []string{"-h", "-help", "--help"} {
			var out bytes.Buffer
			_, err := parseConfig([]string{arg}, env(), &out)
			require.ErrorIs(t, err, errHelp)
			for _, s := range settings {
				require.Contains(t, out.String(), "-"+s.flag+" ("+s.env+", default ", s.flag)
				require.Contains(t, out.String(), s.usage)
			}
		}
	})
	t.Run("an unknown flag is an error", func(t *testing.T) {
		var out bytes.Buffer
		_, err := parseConfig([]string{"-port", "80"}, env(), &out)
		require.ErrorContains(t, err, "-port")
		require.Contains(t, out.String(), "Usage:")
	})
	t.Run("an argument that is no flag is an error", func(t *testing.T) {
		_, err := parseConfig([]string{"serve"}, env(), io.Discard)
		require.ErrorContains(t, err, `unexpected argument "serve"`)
	})
	t.Run("a flag without its value is an error", func(t *testing.T) {
		_, err := parseConfig([]string{"-workers"}, env(), io.Discard)
		require.ErrorContains(t, err, "-workers")
	})
}

// TestRunRefusesABadConfiguration checks that run reports a bad setting as
// errConfig, which main turns into exit status 2.
func TestRunRefusesABadConfiguration(t *testing.T) {
	t.Parallel()
	for _, vars := range [][]string{{"WORKERS", "0"}, {"ADDR", "nonsense"}} {
		var stderr syncBuffer
		err := run(context.Background(), nil, env(vars...), &stderr, nil)
		require.True(t, errors.Is(err, errConfig), "%v is a configuration error, which exits 2", err)
		require.Contains(t, err.Error(), vars[0])
	}
}
