package main

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/asynckit/asynckit/ratelimit"
)

// config is everything the server reads from its flags and environment.
type config struct {
	Addr             string
	DBPath           string
	DatabaseURL      string
	TasksSchema      string
	TaskLease        time.Duration
	TaskPoll         time.Duration
	RedisURL         string
	RedisPrefix      string
	RedisTimeout     time.Duration
	RateLimit        ratelimit.Limit
	RateLimitText    string
	RateReplicas     int
	Upstreams        []string
	AggregateTimeout time.Duration
	UpstreamConns    int
	ShutdownTimeout  time.Duration
	CORSOrigins      []string
	SlowRequest      time.Duration
	MaxBody          int64
	MaxUpload        int64
	UploadSpace      int64
	UploadDir        string
	UploadSweep      time.Duration
	Workers          int
	DBMaxConns       int
	UserCache        bool
	CallbackPrivate  bool
	QueueSize        int
	TaskRetryBase    time.Duration
	SSEPing          time.Duration
	CursorKey        []byte
	TrustedProxies   []netip.Prefix
	LogFormat        string
	LogLevel         slog.Level
	OTLPEndpoint     string

	// spanExporter, set only by tests and benchmarks, turns tracing on
	// with this exporter in place of OTLP.
	spanExporter sdktrace.SpanExporter
}

// setting is one row of the table below: a flag, the environment variable
// of the same meaning, its default, and how to store its value.
type setting struct {
	flag, env, def, usage string
	set                   func(c *config, v string) error
}

// settings is the one table of the server's configuration. A flag given on
// the command line wins over its environment variable, which wins over the
// default.
var settings = []setting{
	{"addr", "ADDR", "127.0.0.1:8080", "address to listen on",
		func(c *config, v string) error {
			// Checked here, so that a typo is a configuration error naming
			// the setting rather than a failure to listen.
			_, port, err := net.SplitHostPort(v)
			if n, perr := strconv.ParseUint(port, 10, 16); err != nil || perr != nil || n > 65535 {
				return errors.New("must be host:port with a port from 0 to 65535, such as 127.0.0.1:8080 or :8080")
			}
			c.Addr = v
			return nil
		}},
	{"db", "DB_PATH", "asynckit-example.db", "SQLite database file, used when no database URL is set",
		func(c *config, v string) error {
			if v == "" {
				return errors.New("must name a file") // else SQLite would open a temporary database, lost at exit
			}
			c.DBPath = v
			return nil
		}},
	{"database-url", "DATABASE_URL", "", "Postgres URL (postgres://…); replaces SQLite",
		func(c *config, v string) error {
			if v != "" && !strings.HasPrefix(v, "postgres://") && !strings.HasPrefix(v, "postgresql://") {
				return errors.New("must start with postgres:// or postgresql://")
			}
			if _, err := url.Parse(v); err != nil {
				return errors.New("is not a URL") // url's error would repeat the password
			}
			c.DatabaseURL = v
			return nil
		}},
	{"tasks-schema", "TASKS_SCHEMA", "taskqueue", "Postgres schema of the task queue, shared by every instance on DATABASE_URL",
		func(c *config, v string) error {
			if v == "" || len(v) > 63 || !utf8.ValidString(v) || strings.ContainsRune(v, 0) {
				return errors.New("must be 1 to 63 bytes of UTF-8")
			}
			c.TasksSchema = v
			return nil
		}},
	{"task-lease", "TASK_LEASE", "30s", "with Postgres, how long a running task is held without a heartbeat: the tasks of an instance that dies run again elsewhere about this long after",
		func(c *config, v string) error { return setDuration(&c.TaskLease, v, 100*time.Millisecond) }},
	{"task-poll", "TASK_POLL", "250ms", "with Postgres, how often an instance re-reads the tasks it follows (event streams) to see what other instances did to them",
		func(c *config, v string) error { return setDuration(&c.TaskPoll, v, 10*time.Millisecond) }},
	{"redis-url", "REDIS_URL", "", "Redis URL (redis://…); moves the rate limits and the user cache's second tier to Redis, shared by every instance",
		func(c *config, v string) error {
			if v != "" && !strings.HasPrefix(v, "redis://") && !strings.HasPrefix(v, "rediss://") && !strings.HasPrefix(v, "unix://") {
				return errors.New("must start with redis://, rediss:// or unix://")
			}
			if _, err := url.Parse(v); err != nil {
				return errors.New("is not a URL") // url's error would repeat the password
			}
			c.RedisURL = v
			return nil
		}},
	{"redis-prefix", "REDIS_PREFIX", "asynckit:", "prefix of every Redis key and channel the server uses, so that services can share one Redis",
		func(c *config, v string) error {
			if v == "" || len(v) > 64 || strings.ContainsAny(v, "{} \t\r\n") {
				return errors.New("must be 1 to 64 characters without braces or white space")
			}
			c.RedisPrefix = v
			return nil
		}},
	{"redis-timeout", "REDIS_TIMEOUT", "250ms", "how long a Redis command may take before the server does without it: a rate limit falls back to this instance's share, a user is read from the database",
		func(c *config, v string) error { return setDuration(&c.RedisTimeout, v, time.Millisecond) }},
	{"rate-limit", "RATE_LIMIT", "600/min", "requests per client, as N/s, N/min, N/h or N/day",
		func(c *config, v string) error {
			lim, err := parseRate(v)
			c.RateLimit, c.RateLimitText = lim, v
			return err
		}},
	{"rate-limit-replicas", "RATE_LIMIT_REPLICAS", "1", "with Redis, how many instances share RATE_LIMIT: while Redis fails, each admits about 1/N of it on its own",
		func(c *config, v string) error {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 1000 {
				return errors.New("must be a whole number from 1 to 1000")
			}
			c.RateReplicas = n
			return nil
		}},
	{"upstreams", "UPSTREAMS", "", "comma-separated URLs that GET /aggregate fans out to (default: the built-in demo upstreams)",
		func(c *config, v string) error {
			c.Upstreams = nil
			for _, u := range splitList(v) {
				p, err := url.Parse(u)
				if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
					return fmt.Errorf("%q is not an absolute http(s) URL", redactURL(u))
				}
				c.Upstreams = append(c.Upstreams, u)
			}
			if len(c.Upstreams) > maxUpstreams {
				return fmt.Errorf("at most %d upstreams", maxUpstreams)
			}
			return nil
		}},
	{"aggregate-timeout", "AGGREGATE_TIMEOUT", "2s", "time limit for each upstream of GET /aggregate",
		func(c *config, v string) error { return setDuration(&c.AggregateTimeout, v, time.Millisecond) }},
	{"upstream-conns", "UPSTREAM_CONNS", "32", "most connections GET /aggregate holds open to each upstream host; calls beyond them wait for one",
		func(c *config, v string) error {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 10000 {
				return errors.New("must be a whole number from 1 to 10000")
			}
			c.UpstreamConns = n
			return nil
		}},
	{"shutdown-timeout", "SHUTDOWN_TIMEOUT", "15s", "how long a shutdown may take to drain requests and tasks",
		func(c *config, v string) error { return setDuration(&c.ShutdownTimeout, v, time.Millisecond) }},
	{"cors-origins", "CORS_ORIGINS", "", "comma-separated origins allowed by CORS, or * for any",
		func(c *config, v string) error {
			c.CORSOrigins = splitList(v)
			for i, o := range c.CORSOrigins {
				if o == "*" {
					continue
				}
				if p, err := url.Parse(o); err != nil || p.Scheme == "" || p.Host == "" || p.Path != "" || p.RawQuery != "" || p.Fragment != "" || p.User != nil {
					return fmt.Errorf("%q is not an origin such as https://example.com", o)
				}
				// Browsers send the scheme and host of Origin in lower case,
				// and it is compared as it is.
				c.CORSOrigins[i] = strings.ToLower(o)
			}
			return nil
		}},
	{"slow-request", "SLOW_REQUEST", "500ms", "requests slower than this are logged as warnings",
		func(c *config, v string) error { return setDuration(&c.SlowRequest, v, time.Millisecond) }},
	{"max-body", "MAX_BODY", "1MiB", "largest JSON request body",
		func(c *config, v string) error { return setSize(&c.MaxBody, v) }},
	{"max-upload", "MAX_UPLOAD", "32MiB", "largest file upload",
		func(c *config, v string) error { return setSize(&c.MaxUpload, v) }},
	{"upload-space", "UPLOAD_SPACE", "1GiB", "most space that uploads waiting for their tasks may take (with Postgres, all instances' together); beyond it an upload is refused with 503",
		func(c *config, v string) error { return setSize(&c.UploadSpace, v) }},
	{"upload-dir", "UPLOAD_DIR", "", "directory for uploaded files awaiting processing, with SQLite (default: a temporary directory removed at exit); with Postgres they are kept in the database",
		func(c *config, v string) error { c.UploadDir = v; return nil }},
	{"upload-sweep", "UPLOAD_SWEEP", "1m", "with Postgres, how often each instance removes the uploads of tasks that ended without removing them (their instance died)",
		func(c *config, v string) error { return setDuration(&c.UploadSweep, v, 10*time.Millisecond) }},
	{"db-max-conns", "DB_MAX_CONNS", "16", "most database connections: the Postgres pool, or SQLite's readers beside its one writer",
		func(c *config, v string) error {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 1000 {
				return errors.New("must be a whole number from 1 to 1000")
			}
			c.DBMaxConns = n
			return nil
		}},
	{"user-cache", "USER_CACHE", "on", "the user cache: on, or off to read every user from the database (to measure what the cache saves)",
		func(c *config, v string) error {
			if v != "on" && v != "off" {
				return errors.New("must be on or off")
			}
			c.UserCache = v == "on"
			return nil
		}},
	{"callback-private", "CALLBACK_PRIVATE", "false", "allow file callbacks to loopback, private and link-local addresses (true or false)",
		func(c *config, v string) error {
			b, err := strconv.ParseBool(v)
			if err != nil {
				return errors.New("must be true or false")
			}
			c.CallbackPrivate = b
			return nil
		}},
	{"workers", "WORKERS", "4", "how many background tasks run at once",
		func(c *config, v string) error {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 1000 {
				return errors.New("must be a whole number from 1 to 1000")
			}
			c.Workers = n
			return nil
		}},
	{"queue-size", "QUEUE_SIZE", "1024", "how many background tasks may wait to run in memory; past it, submissions are refused with 503 (with Postgres, the database holds them)",
		func(c *config, v string) error {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 1<<24 {
				return errors.New("must be a whole number from 1 to 16777216")
			}
			c.QueueSize = n
			return nil
		}},
	{"task-retry-base", "TASK_RETRY_BASE", "1s", "delay before a failed task's first retry; it doubles with each retry, up to 5m",
		func(c *config, v string) error {
			if err := setDuration(&c.TaskRetryBase, v, time.Millisecond); err != nil {
				return err
			}
			if c.TaskRetryBase > maxTaskRetry {
				return fmt.Errorf("must be at most %v", maxTaskRetry)
			}
			return nil
		}},
	{"sse-ping", "SSE_PING", "15s", "how often an idle event stream sends a comment, so proxies do not close it",
		func(c *config, v string) error { return setDuration(&c.SSEPing, v, time.Millisecond) }},
	{"cursor-key", "CURSOR_KEY", "", "key that signs page cursors: 32+ bytes as hex or base64 (default: random at start, so cursors end with the process)",
		func(c *config, v string) error {
			c.CursorKey = nil
			if v == "" {
				return nil
			}
			k, err := hex.DecodeString(v)
			if err != nil {
				k, err = base64.StdEncoding.DecodeString(v)
			}
			if err != nil || len(k) < 32 {
				return errors.New("must be at least 32 bytes, written as hex or base64")
			}
			c.CursorKey = k
			return nil
		}},
	{"trusted-proxies", "TRUSTED_PROXIES", "", "comma-separated CIDR prefixes whose X-Forwarded-For is believed",
		func(c *config, v string) error {
			c.TrustedProxies = nil
			for _, s := range splitList(v) {
				p, err := netip.ParsePrefix(s)
				if err != nil {
					return fmt.Errorf("%q is not a CIDR prefix", s)
				}
				c.TrustedProxies = append(c.TrustedProxies, p)
			}
			return nil
		}},
	{"log-format", "LOG_FORMAT", "text", "log format: text or json",
		func(c *config, v string) error {
			if v != "text" && v != "json" {
				return errors.New("must be text or json")
			}
			c.LogFormat = v
			return nil
		}},
	{"log-level", "LOG_LEVEL", "info", "least level logged: debug, info, warn or error",
		func(c *config, v string) error { return c.LogLevel.UnmarshalText([]byte(v)) }},
	{"otlp-endpoint", "OTEL_EXPORTER_OTLP_ENDPOINT", "", "OpenTelemetry collector's base URL (http://host:4318); turns tracing on: spans of requests, Postgres queries, cache loads, upstream calls and task runs go there by OTLP over HTTP",
		func(c *config, v string) error {
			if v == "" {
				c.OTLPEndpoint = ""
				return nil
			}
			u, err := url.Parse(v)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
				return errors.New("must be an http(s) URL such as http://localhost:4318")
			}
			c.OTLPEndpoint = v
			return nil
		}},
}

// maxUpstreams bounds the fan-out of one GET /aggregate.
const maxUpstreams = 32

// maxTaskRetry is the longest delay between two attempts of a task, and so
// the largest TASK_RETRY_BASE.
const maxTaskRetry = 5 * time.Minute

// errHelp is returned by parseConfig for -h: the usage has been printed and
// the process should exit 0.
var errHelp = flag.ErrHelp

// parseConfig reads the settings from args and getenv. Usage goes to out.
func parseConfig(args []string, getenv func(string) string, out io.Writer) (*config, error) {
	c := &config{}
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprintf(out, "Usage: server [flags]\n\nThe asynckit example service. Each flag has an environment variable of the\nsame meaning; a flag wins over its variable.\n\n")
		for _, s := range settings {
			def := s.def
			if def == "" {
				def = `""`
			}
			fmt.Fprintf(out, "  -%s (%s, default %s)\n    \t%s\n", s.flag, s.env, def, s.usage)
		}
	}
	values := make(map[string]*string, len(settings))
	for _, s := range settings {
		v := s.def
		if e, ok := lookupEnv(getenv, s.env); ok {
			v = e
		}
		values[s.flag] = fs.String(s.flag, v, s.usage)
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	for _, s := range settings {
		if err := s.set(c, strings.TrimSpace(*values[s.flag])); err != nil {
			return nil, fmt.Errorf("-%s (%s) %s: %w", s.flag, s.env, s.shown(*values[s.flag]), err)
		}
	}
	if c.RateLimit.Burst < c.RateReplicas {
		return nil, fmt.Errorf("-rate-limit-replicas (RATE_LIMIT_REPLICAS) %d is larger than the burst of -rate-limit (RATE_LIMIT) %s: an instance's share of it would be nothing", c.RateReplicas, c.RateLimitText)
	}
	if c.UploadSpace < c.MaxUpload {
		return nil, fmt.Errorf("-upload-space (UPLOAD_SPACE) %d is smaller than -max-upload (MAX_UPLOAD) %d: no upload of the largest size could ever be taken", c.UploadSpace, c.MaxUpload)
	}
	return c, nil
}

// shown returns value as an error may repeat it: quoted, without the
// passwords of URLs, and not at all for the cursor key, since errors end
// up in logs.
func (s setting) shown(value string) string {
	switch s.env {
	case "DATABASE_URL", "REDIS_URL", "OTEL_EXPORTER_OTLP_ENDPOINT":
		return strconv.Quote(redactURL(value))
	case "UPSTREAMS":
		list := splitList(value)
		for i, u := range list {
			list[i] = redactURL(u)
		}
		return strconv.Quote(strings.Join(list, ","))
	case "CURSOR_KEY":
		return "(not shown)"
	}
	return strconv.Quote(value)
}

// lookupEnv returns the variable's value when it is set and not empty.
func lookupEnv(getenv func(string) string, name string) (string, bool) {
	v := getenv(name)
	return v, v != ""
}

func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

func setDuration(d *time.Duration, v string, least time.Duration) error {
	x, err := time.ParseDuration(v)
	if err != nil {
		return errors.New("must be a duration such as 500ms or 15s")
	}
	if x < least {
		return fmt.Errorf("must be at least %v", least)
	}
	*d = x
	return nil
}

// setSize parses a byte size: a whole number with an optional unit of B,
// KB, MB, GB (powers of 1000) or KiB, MiB, GiB (powers of 1024).
func setSize(n *int64, v string) error {
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(v, u.suffix) {
			v, mult = strings.TrimSpace(strings.TrimSuffix(v, u.suffix)), u.mult
			break
		}
	}
	x, err := strconv.ParseInt(v, 10, 64)
	if err != nil || x < 1 || x > (1<<40)/mult {
		return errors.New("must be a size from 1 byte to 1TiB, such as 1048576, 512KiB or 32MiB")
	}
	*n = x * mult
	return nil
}

// parseRate parses a rate limit such as 600/min or 5/s into a Limit whose
// burst equals its rate.
func parseRate(v string) (ratelimit.Limit, error) {
	num, unit, ok := strings.Cut(v, "/")
	n, err := strconv.Atoi(strings.TrimSpace(num))
	if !ok || err != nil || n < 1 {
		return ratelimit.Limit{}, errors.New("must be N/s, N/min, N/h or N/day with N at least 1")
	}
	periods := map[string]time.Duration{
		"s": time.Second, "sec": time.Second, "second": time.Second,
		"m": time.Minute, "min": time.Minute, "minute": time.Minute,
		"h": time.Hour, "hour": time.Hour,
		"d": 24 * time.Hour, "day": 24 * time.Hour,
	}
	period, ok := periods[strings.TrimSpace(unit)]
	if !ok {
		return ratelimit.Limit{}, fmt.Errorf("unknown unit %q: use s, min, h or day", unit)
	}
	return ratelimit.NewLimit(n, period, n)
}
