// Package faultproxy is a loopback TCP proxy for failure tests: put it
// between a client and a real server, then cut the link, refuse new
// connections or slow every byte down, and see how the client copes.
//
//	p, err := faultproxy.New(redisAddr)
//	client := redis.NewClient(&redis.Options{Addr: p.Addr()})
//	p.Cut()      // existing connections drop, new ones are closed at once
//	p.Restore()  // new connections reach the server again
//	p.SetDelay(50 * time.Millisecond)
//	p.Close()    // stops every goroutine the proxy started
//
// It listens on 127.0.0.1 only. Each proxied connection costs two
// goroutines and one upstream connection, all ended by Cut or Close.
package faultproxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// ErrClosed is returned by methods called after [Proxy.Close].
var ErrClosed = errors.New("faultproxy: closed")

// dialTimeout bounds the connection to the target.
const dialTimeout = 5 * time.Second

// Proxy forwards TCP connections from [Proxy.Addr] to a target address.
// Its methods are safe for concurrent use.
type Proxy struct {
	target string
	ln     net.Listener
	ctx    context.Context // cancelled by Close, to abort dials and delays
	cancel context.CancelFunc
	delay  atomic.Int64 // nanoseconds added before each forwarded chunk

	mu     sync.Mutex
	links  map[*link]struct{}
	cut    bool
	closed bool
	wg     sync.WaitGroup
}

// link is one proxied connection: the client's side and the target's.
type link struct {
	client, upstream net.Conn
	dead             atomic.Bool // close has run; upstream must not be kept
	once             sync.Once
}

func (l *link) close() {
	l.dead.Store(true)
	l.once.Do(func() {
		_ = l.client.Close()
		if l.upstream != nil {
			_ = l.upstream.Close()
		}
	})
}

// New starts a proxy to target ("host:port") on a free loopback port. An
// empty or malformed target is an error; an unreachable one is not (each
// connection to the proxy is closed when its dial fails).
func New(target string) (*Proxy, error) {
	if _, _, err := net.SplitHostPort(target); err != nil {
		return nil, fmt.Errorf("faultproxy: target %q: %w", target, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("faultproxy: listen: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Proxy{target: target, ln: ln, ctx: ctx, cancel: cancel, links: make(map[*link]struct{})}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr returns the proxy's address, "127.0.0.1:port".
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Cut drops every proxied connection and, until [Proxy.Restore], closes each
// new connection as soon as it is accepted, as if the server had gone away.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	for l := range p.links {
		l.close()
	}
}

// Restore ends a [Proxy.Cut]: new connections are forwarded again.
func (p *Proxy) Restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = false
}

// SetDelay makes the proxy wait d before forwarding each chunk of bytes, in
// both directions, on existing and new connections; zero removes the delay.
// A negative d is an error.
func (p *Proxy) SetDelay(d time.Duration) error {
	if d < 0 {
		return errors.New("faultproxy: negative delay")
	}
	p.delay.Store(int64(d))
	return nil
}

// Active returns the number of connections being proxied.
func (p *Proxy) Active() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.links)
}

// Close stops accepting, drops every connection and waits for all of the
// proxy's goroutines to return. A second Close returns [ErrClosed].
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return ErrClosed
	}
	p.closed = true
	for l := range p.links {
		l.close()
	}
	p.mu.Unlock()
	p.cancel()
	err := p.ln.Close()
	p.wg.Wait()
	return err
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		conn, err := p.ln.Accept()
		if err != nil {
			return // the listener was closed
		}
		p.mu.Lock()
		if p.cut || p.closed {
			p.mu.Unlock()
			_ = conn.Close()
			continue
		}
		l := &link{client: conn}
		p.links[l] = struct{}{}
		p.wg.Add(1)
		p.mu.Unlock()
		go p.serve(l)
	}
}

// serve dials the target for l and copies both ways until either side ends.
func (p *Proxy) serve(l *link) {
	defer p.wg.Done()
	defer func() {
		l.close()
		p.mu.Lock()
		delete(p.links, l)
		p.mu.Unlock()
	}()
	ctx, cancel := context.WithTimeout(p.ctx, dialTimeout)
	upstream, err := (&net.Dialer{}).DialContext(ctx, "tcp", p.target)
	cancel()
	if err != nil {
		return
	}
	p.mu.Lock()
	if p.cut || p.closed || l.dead.Load() {
		p.mu.Unlock()
		_ = upstream.Close()
		return
	}
	l.upstream = upstream
	p.mu.Unlock()

	done := make(chan struct{}, 2)
	go func() { p.pipe(upstream, l.client); done <- struct{}{} }()
	go func() { p.pipe(l.client, upstream); done <- struct{}{} }()
	<-done
	l.close() // unblocks the other direction
	<-done
}

// pipe copies src to dst, waiting the configured delay before each chunk.
func (p *Proxy) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if d := time.Duration(p.delay.Load()); d > 0 {
				t := time.NewTimer(d)
				select {
				case <-t.C:
				case <-p.ctx.Done():
					t.Stop()
					return
				}
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return // EOF or a dropped link: serve closes both sides
		}
	}
}
