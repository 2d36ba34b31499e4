package main

import (
	"bufio"
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestReadResponse checks the framing of responses read from bytes, two in
// a row on one connection where the first allows it.
func TestReadResponse(t *testing.T) {
	t.Parallel()
	next := "HTTP/1.1 204 No Content\r\n\r\n"
	for _, tc := range []struct {
		name, raw string
		head      bool
		status    int
		keep      bool
		err       string
	}{
		{"Content-Length", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", false, 200, true, ""},
		{"chunked with extensions and trailers", "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\nX-Sum: 5\r\n\r\n", false, 200, true, ""},
		{"interim 100 Continue first", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n", false, 201, true, ""},
		{"HEAD has no body", "HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n", true, 200, true, ""},
		{"HTTP/1.0 closes unless kept", "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx", false, 200, false, ""},
		{"HTTP/1.0 with keep-alive", "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\nx", false, 200, true, ""},
		{"Connection: close", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx", false, 200, false, ""},
		{"bare LF line ends", "HTTP/1.1 404 Not Found\nContent-Length: 2\n\nno", false, 404, true, ""},
		{"not HTTP", "SSH-2.0-OpenSSH\r\n\r\n", false, 0, false, "status line"},
		{"bad status", "HTTP/1.1 2x0 OK\r\n\r\n", false, 0, false, "status line"},
		{"bad length", "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", false, 200, false, "Content-Length"},
		{"bad chunk", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", false, 200, false, "chunk size"},
		{"header without colon", "HTTP/1.1 200 OK\r\nnonsense\r\n\r\n", false, 200, false, "header line"},
		{"a header line too long", "HTTP/1.1 200 OK\r\nX: " + strings.Repeat("a", 20<<10) + "\r\n\r\n", false, 200, false, "longer than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := bufio.NewReaderSize(strings.NewReader(tc.raw+next), 16<<10)
			status, keep, err := readResponse(r, tc.head)
			if tc.err != "" {
				require.ErrorIs(t, err, errMalformed)
				require.ErrorContains(t, err, tc.err)
				require.False(t, keep)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.status, status)
			require.Equal(t, tc.keep, keep)
			if keep {
				status, _, err = readResponse(r, false)
				require.NoError(t, err)
				require.Equal(t, 204, status, "the next response starts where this one ended")
			}
		})
	}
}

// FuzzReadResponse feeds arbitrary bytes to the response reader, which
// reads what a server sends: it must return, without panicking, and a
// status it returns without error is a real one.
func FuzzReadResponse(f *testing.F) {
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"), false)
	f.Add([]byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"), false)
	f.Add([]byte("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 200 OK\r\n\r\nbody"), true)
	f.Fuzz(func(t *testing.T, raw []byte, head bool) {
		r := bufio.NewReaderSize(bytes.NewReader(raw), 64)
		status, _, err := readResponse(r, head)
		if err == nil && (status < 100 || status > 999) {
			t.Fatalf("status %d without an error", status)
		}
	})
}
