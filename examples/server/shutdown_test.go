package main

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asynckit/asynckit/taskqueue"
)

// TestSIGTERMDrainsAndExitsZero runs the server as a real process and sends
// it SIGTERM while a slow request is in flight, an event stream is open and
// a long task is running. The request is answered in full, the stream ends
// at once, new connections are refused, the running task is interrupted
// when SHUTDOWN_TIMEOUT runs out (and left pending, as the log says), and
// the process exits 0 within SHUTDOWN_TIMEOUT.
func TestSIGTERMDrainsAndExitsZero(t *testing.T) {
	t.Parallel()
	const shutdownTimeout = 5 * time.Second // the running task gets all but a fifth of what is left after the drain
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-addr", "127.0.0.1:0", "-db", filepath.Join(dir, "server.db"),
		"-upload-dir", filepath.Join(dir, "uploads"), "-shutdown-timeout", shutdownTimeout.String(), "-workers", "1")
	// GORACE: a binary built with -race otherwise sleeps a second at exit.
	cmd.Env = []string{runServerEnv + "=1", "PATH=" + os.Getenv("PATH"), "HOME=" + dir, "GORACE=atexit_sleep_ms=0"}
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	exited := make(chan struct{}) // closed once Wait has returned exitErr
	var exitErr error
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
		}
	})

	// The log, line by line; the first line names the address.
	lines := make(chan string, 1024)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		exitErr = cmd.Wait()
		close(exited)
	}()
	var log []string
	base := ""
	for base == "" {
		select {
		case l, ok := <-lines:
			require.True(t, ok, "the server exited before listening: %v", log)
			log = append(log, l)
			if m := regexp.MustCompile(`addr=(http://[0-9.:]+)`).FindStringSubmatch(l); m != nil {
				base = m[1]
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("the server did not start: %v", log)
		}
	}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}

	// A long task, running, with its event stream open.
	resp, err := client.Post(base+"/tasks", "application/json", strings.NewReader(`{"kind":"demo","payload":{"steps":100,"step_ms":100}}`))
	require.NoError(t, err)
	var task taskqueue.Info
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&task))
	resp.Body.Close()
	stream, err := client.Get(base + "/tasks/" + task.ID + "/events")
	require.NoError(t, err)
	defer stream.Body.Close()
	streamEnded := make(chan time.Time, 1)
	go func() {
		_, _ = io.Copy(io.Discard, stream.Body)
		streamEnded <- time.Now()
	}()

	// A slow request in flight.
	type result struct {
		status int
		body   string
		err    error
	}
	slow := make(chan result, 1)
	go func() {
		resp, err := client.Get(base + "/demo/upstream/slow?latency_ms=1000")
		if err != nil {
			slow <- result{err: err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		slow <- result{resp.StatusCode, string(b), err}
	}()
	time.Sleep(300 * time.Millisecond) // the request and the stream are in the server now

	sent := time.Now()
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	select {
	case at := <-streamEnded:
		require.Less(t, at.Sub(sent), time.Second, "the event stream must end at once")
	case <-time.After(shutdownTimeout):
		t.Fatal("the event stream was still open")
	}
	r := <-slow
	require.NoError(t, r.err, "the request in flight must be answered")
	require.Equal(t, http.StatusOK, r.status, r.body)
	_, err = client.Get(base + "/healthz")
	require.Error(t, err, "a draining server accepts no new connections")

	for l := range lines {
		log = append(log, l)
	}
	select {
	case <-exited:
		require.NoError(t, exitErr, "exit status; log:\n%s", strings.Join(log, "\n"))
	case <-time.After(shutdownTimeout + 5*time.Second):
		t.Fatal("the server did not exit")
	}
	took := time.Since(sent)
	require.Less(t, took, shutdownTimeout, "shutdown took %v; log:\n%s", took, strings.Join(log, "\n"))
	joined := strings.Join(log, "\n")
	require.Contains(t, joined, "tasks left unfinished at shutdown")
	require.Contains(t, joined, "pending=1", "the interrupted task stays recorded as pending")
	require.Contains(t, joined, "msg=stopped")
}
