package faultproxy_test

import (
	"bufio"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/asynckit/asynckit/internal/faultproxy"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// echoServer answers every line with the same line, until the test ends.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() { _, _ = io.Copy(c, c) })
		}
	})
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

func newProxy(t *testing.T, target string) *faultproxy.Proxy {
	t.Helper()
	p, err := faultproxy.New(target)
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// roundTrip writes a line on c and reads the echo.
func roundTrip(c net.Conn, r *bufio.Reader, line string) (string, error) {
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		return "", err
	}
	got, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	return got[:len(got)-1], nil
}

func dial(t *testing.T, p *faultproxy.Proxy) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", p.Addr())
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c, bufio.NewReader(c)
}

func TestNewRejectsMalformedTargets(t *testing.T) {
	for _, target := range []string{"", "no-port", "1.2.3.4"} {
		t.Run("target "+target, func(t *testing.T) {
			p, err := faultproxy.New(target)
			require.Nil(t, p)
			require.ErrorContains(t, err, "faultproxy: target")
		})
	}
}

func TestForwardsBothWays(t *testing.T) {
	p := newProxy(t, echoServer(t))
	require.Contains(t, p.Addr(), "127.0.0.1:")
	c, r := dial(t, p)
	for _, line := range []string{"hello", "world"} {
		got, err := roundTrip(c, r, line)
		require.NoError(t, err)
		require.Equal(t, line, got)
	}
	require.Equal(t, 1, p.Active())
}

func TestCutDropsConnectionsAndRefusesNewOnesUntilRestore(t *testing.T) {
	p := newProxy(t, echoServer(t))
	c, r := dial(t, p)
	_, err := roundTrip(c, r, "before")
	require.NoError(t, err)

	p.Cut()
	_, err = roundTrip(c, r, "during")
	require.Error(t, err, "the existing connection was dropped")
	c2, r2 := dial(t, p)
	_, err = roundTrip(c2, r2, "during")
	require.Error(t, err, "a new connection is closed at once")
	require.Eventually(t, func() bool { return p.Active() == 0 }, 2*time.Second, time.Millisecond)

	p.Restore()
	c3, r3 := dial(t, p)
	got, err := roundTrip(c3, r3, "after")
	require.NoError(t, err)
	require.Equal(t, "after", got)
}

func TestSetDelaySlowsEveryChunk(t *testing.T) {
	p := newProxy(t, echoServer(t))
	require.ErrorContains(t, p.SetDelay(-time.Second), "negative delay")
	c, r := dial(t, p)
	_, err := roundTrip(c, r, "warm")
	require.NoError(t, err)
	require.NoError(t, p.SetDelay(150*time.Millisecond))
	start := time.Now()
	_, err = roundTrip(c, r, "slow")
	require.NoError(t, err)
	require.GreaterOrEqual(t, time.Since(start), 300*time.Millisecond, "delayed on the way there and back")
	require.NoError(t, p.SetDelay(0))
	start = time.Now()
	_, err = roundTrip(c, r, "fast")
	require.NoError(t, err)
	require.Less(t, time.Since(start), 150*time.Millisecond, "no delay once it is set back to zero")
}

func TestUnreachableTargetClosesTheClient(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close()) // nothing listens there now
	p := newProxy(t, addr)
	c, r := dial(t, p)
	_, err = roundTrip(c, r, "anyone?")
	require.Error(t, err)
}

func TestCloseStopsEverything(t *testing.T) {
	p, err := faultproxy.New(echoServer(t))
	require.NoError(t, err)
	conns := make([]net.Conn, 5)
	for i := range conns {
		c, r := dial(t, p)
		_, err := roundTrip(c, r, "x")
		require.NoError(t, err)
		conns[i] = c
	}
	require.NoError(t, p.SetDelay(time.Hour)) // a delay in progress must not hold Close
	_, _ = io.WriteString(conns[0], "stuck\n")
	require.NoError(t, p.Close())
	require.ErrorIs(t, p.Close(), faultproxy.ErrClosed)
	require.Zero(t, p.Active())
	_, err = net.DialTimeout("tcp", p.Addr(), time.Second)
	require.Error(t, err, "the listener is closed")
	// goleak in TestMain checks that no proxy goroutine is left.
}
