// Command server is the asynckit example service: users, accounts and
// transfers, background tasks, file processing and a fan-out aggregate,
// assembled from asynckit's packages the way a production service would
// use them. See README.md at the repository root for a tour, and
// /openapi.json or /docs on a running server for the API.
//
//	go run ./examples/server          # 127.0.0.1:8080, SQLite in ./asynckit-example.db
//	go run ./examples/server -h       # every flag and its environment variable
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Getenv, os.Stderr, nil)
	switch {
	case err == nil, errors.Is(err, errHelp):
	case errors.Is(err, errConfig):
		fmt.Fprintln(os.Stderr, "server:", err)
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "server:", err)
		os.Exit(1)
	}
}

// errConfig marks an error in the flags or environment.
var errConfig = errors.New("configuration")

// run is the whole life of the server: configuration, stores, wiring, the
// HTTP server and the workers, then, when ctx ends (SIGINT or SIGTERM),
// an ordered shutdown bounded by SHUTDOWN_TIMEOUT. ready, when not nil, is
// called with the address once the server accepts connections.
func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer, ready func(addr string)) error {
	// Configuration.
	cfg, err := parseConfig(args, getenv, stderr)
	if err != nil {
		if errors.Is(err, errHelp) {
			return err
		}
		return fmt.Errorf("%w: %w", errConfig, err)
	}
	log := newLogger(cfg, stderr)

	// The listener comes first: the built-in demo upstreams of
	// GET /aggregate live at its address.
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return err
	}
	defer ln.Close()

	// Stores, caches, limits, tasks: everything the routes use.
	s, err := newServer(ctx, cfg, log, baseURL(ln.Addr()))
	if err != nil {
		return err
	}

	// The HTTP server. Streams (SSE, exports, uploads) extend their own
	// deadlines past these.
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       time.Minute,
		WriteTimeout:      time.Minute,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	srv.RegisterOnShutdown(s.endStreams)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	// Until a signal, or a failure of the server.
	var serveErr error
	if serveErr = s.start(); serveErr != nil {
		log.Error("server failed to start", "err", serveErr)
	} else {
		log.Info("asynckit example server listening", "addr", "http://"+ln.Addr().String(),
			"database", s.store.where, "tasks", s.tasksWhere, "files", s.files.where(), "cache", s.users.where,
			"rate_limit", cfg.RateLimitText+" per client, "+s.limitsWhere, "tracing", s.trace.describe(), "docs", baseURL(ln.Addr())+"/docs")
		if ready != nil {
			ready(ln.Addr().String())
		}
		select {
		case <-ctx.Done():
			log.Info("shutting down", "timeout", cfg.ShutdownTimeout)
		case serveErr = <-served:
			log.Error("server failed", "err", serveErr)
		}
	}

	// Ordered shutdown: readiness off, stop accepting and drain requests
	// (streams end at once), then the task runner, then the rest.
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	s.ready.Store(false)
	var errs []error
	if err := srv.Shutdown(sctx); err != nil {
		errs = append(errs, fmt.Errorf("drain requests: %w", err))
		_ = srv.Close()
	}
	if err := s.close(sctx); err != nil {
		errs = append(errs, err)
	}
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		errs = append(errs, serveErr)
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	log.Info("stopped")
	return nil
}

func newLogger(cfg *config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// baseURL is the URL at which the server reaches itself.
func baseURL(addr net.Addr) string {
	host, port, _ := net.SplitHostPort(addr.String())
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	return "http://" + host + ":" + port
}
