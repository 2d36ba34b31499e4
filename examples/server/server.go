package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/asynckit/asynckit/pagination"
	"github.com/asynckit/asynckit/ratelimit"
	"github.com/asynckit/asynckit/taskqueue"
	"github.com/asynckit/asynckit/taskqueue/pgstore"
)

// server holds what the routes share.
type server struct {
	cfg     *config
	log     *slog.Logger
	store   *store
	users   *userCache
	cursors *pagination.Codec
	redis   *redis.Client // nil without REDIS_URL
	trace   *tracer       // nil without OTEL_EXPORTER_OTLP_ENDPOINT
	limiter ratelimit.Limiter
	idem    *idempotency
	metrics *metrics
	agg     *aggregator
	api     *api
	handler http.Handler
	spec    []byte // the OpenAPI document, as served
	docHTML []byte // the page of /docs, rendered from spec
	self    string // the server's own base URL

	limitsWhere string // where rate limits are counted, for the startup line

	tasksWhere string // where tasks live, for the startup line
	tasks      *taskqueue.Runner
	taskStore  *pgstore.Store // the tasks' store with Postgres; nil in memory
	events     *eventHub      // event logs of the tasks followed by streams
	files      fileStore      // files waiting for their tasks
	callbacks  *http.Client   // sends the callbacks of file tasks

	ready atomic.Bool
	// streams ends every event stream when the server shuts down.
	streams       context.Context
	cancelStreams context.CancelFunc
}

// newServer opens the stores and wires the routes. Nothing runs in the
// background until start.
func newServer(ctx context.Context, cfg *config, log *slog.Logger, self string) (s *server, err error) {
	s = &server{cfg: cfg, log: log, self: self, tasksWhere: "memory"}
	s.streams, s.cancelStreams = context.WithCancel(context.Background())
	defer func() {
		if err != nil {
			_ = s.close(context.Background())
		}
	}()

	if s.trace, err = newTracer(cfg, self); err != nil {
		return nil, err
	}
	if s.store, err = openStore(ctx, cfg, s.trace); err != nil {
		return nil, err
	}
	s.metrics = newMetrics()
	if cfg.RedisURL != "" {
		if s.redis, err = openRedis(ctx, cfg); err != nil {
			return nil, err
		}
	}
	deps := userCacheDeps{load: traceLoad(s.trace, "user cache load", s.store.getUser), db: s.store.db, pg: s.store.dialect == "postgres",
		prefix: cfg.RedisPrefix, timeout: cfg.RedisTimeout, onError: s.metrics.redisError("cache"), log: log, off: !cfg.UserCache}
	if s.redis != nil {
		deps.redis = s.redis
	}
	if s.users, err = newUserCache(ctx, deps); err != nil {
		return nil, err
	}
	key := cfg.CursorKey
	if key == nil {
		key = make([]byte, 32)
		_, _ = rand.Read(key)
	}
	if s.cursors, err = pagination.NewCodec(key); err != nil {
		return nil, err
	}

	clientKey := clientKeyFunc(cfg.TrustedProxies)
	if s.limiter, s.limitsWhere, err = s.newLimiter(s.redis); err != nil {
		return nil, err
	}
	limit, err := ratelimit.Middleware(s.limiter, clientKey, ratelimit.Name("per-client"), ratelimit.OnDecision(s.metrics.decision),
		ratelimit.OnLimited(rateLimited))
	if err != nil {
		return nil, err
	}
	s.idem = newIdempotency(s.store, clientKey, log)
	if err = s.newTasks(ctx); err != nil {
		return nil, err
	}

	s.api = newAPI(log, cfg.MaxBody)
	s.api.wrap = func(h http.Handler) http.Handler { return requireClientKey(clientKey, limit(h)) }
	s.api.idem = s.idem
	s.userRoutes(s.api)
	s.accountRoutes(s.api)
	s.taskRoutes(s.api)
	s.eventRoutes(s.api)
	s.fileRoutes(s.api)
	s.opsRoutes(s.api)
	s.agg = newAggregator(cfg, self)
	s.agg.trace = s.trace
	s.aggregateRoutes(s.api)

	if s.spec, err = json.Marshal(s.api.document(s.schemas(), "1.0.0")); err != nil {
		return nil, fmt.Errorf("openapi: %w", err)
	}
	if s.docHTML, err = renderDocs(s.spec, s.api.ops, problemKinds); err != nil {
		return nil, err
	}
	s.metrics.watch(s)
	s.handler = observe(log, cfg.SlowRequest, s.metrics.request, s.trace.requests(cors(cfg.CORSOrigins, compress(s.api))))
	return s, nil
}

// start starts the background work: the idempotency key reaper and the
// task runner's workers.
func (s *server) start() error {
	s.idem.start()
	s.files.start()
	if err := s.tasks.Start(context.Background()); err != nil {
		return fmt.Errorf("start tasks: %w", err)
	}
	s.ready.Store(true)
	return nil
}

// endStreams ends every event stream at once; http.Server.Shutdown does not
// wait for long-lived handlers on its own.
func (s *server) endStreams() { s.cancelStreams() }

// close stops the background work and releases the stores, in order:
// nothing that may still write is stopped after what it writes to.
func (s *server) close(ctx context.Context) error {
	var errs []error
	s.cancelStreams()
	if s.events != nil {
		s.events.close()
	}
	if s.tasks == nil && s.taskStore != nil {
		_ = s.taskStore.Close()
	}
	if s.tasks != nil {
		// Running tasks get the time that is left but a reserve, so that
		// interrupting them, recording them as pending and closing the
		// rest still fits in the shutdown's deadline.
		tctx := ctx
		if deadline, ok := ctx.Deadline(); ok {
			reserve := min(time.Until(deadline)/5, time.Second)
			var cancel context.CancelFunc
			tctx, cancel = context.WithDeadline(ctx, deadline.Add(-reserve))
			defer cancel()
		}
		if err := s.shutdownTasks(tctx); err != nil {
			errs = append(errs, err)
		}
	}
	if s.files != nil {
		s.files.close()
	}
	if s.callbacks != nil {
		s.callbacks.CloseIdleConnections()
	}
	if s.idem != nil && s.idem.stop != nil {
		s.idem.close()
	}
	if s.users != nil {
		s.users.close()
	}
	if s.agg != nil {
		s.agg.close()
	}
	if s.redis != nil {
		if err := s.redis.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close redis: %w", err))
		}
	}
	if s.store != nil {
		if err := s.store.close(); err != nil {
			errs = append(errs, fmt.Errorf("close database: %w", err))
		}
	}
	// Last, so that the spans of everything above are sent. A collector
	// that cannot be reached costs at most traceFlushTimeout and a
	// warning, not a failed shutdown: the spans are all that is lost.
	if s.trace != nil {
		fctx, cancel := context.WithTimeout(ctx, traceFlushTimeout)
		defer cancel()
		if err := s.trace.shutdown(fctx); err != nil {
			s.log.Warn("traces not all sent", "err", err)
		}
	}
	return errors.Join(errs...)
}
