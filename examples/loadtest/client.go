package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// target is one request the load generator sends, prepared once: the
// address to dial and the request's bytes as they go on the wire.
type target struct {
	url    string
	method string
	addr   string // host:port
	wire   []byte
}

// newTarget prepares method rawURL with header and body. Only http://
// URLs are taken: the load generator speaks HTTP/1.1 on connections of its
// own (see conn), and TLS would measure the handshake and the cipher, not
// the service.
func newTarget(rawURL, method string, header http.Header, body []byte) (*target, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("%q is not a URL: %w", rawURL, err)
	}
	if u.Scheme != "http" || u.Host == "" || u.User != nil {
		return nil, fmt.Errorf("%q: only http://host[:port]/path URLs without a user are supported", rawURL)
	}
	if method == "" || strings.ContainsAny(method, " \t\r\n") {
		return nil, fmt.Errorf("method %q is not an HTTP method", method)
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "80")
	}
	host := u.Host
	if h := header.Get("Host"); h != "" {
		host = h // -H "Host: …" names a virtual host
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\n", method, u.RequestURI(), host)
	if header.Get("User-Agent") == "" {
		b.WriteString("User-Agent: asynckit-loadtest\r\n")
	}
	for name, values := range header {
		if http.CanonicalHeaderKey(name) == "Host" {
			continue
		}
		for _, v := range values {
			if strings.ContainsAny(name+v, "\r\n") {
				return nil, fmt.Errorf("header %q has a line break", name)
			}
			fmt.Fprintf(&b, "%s: %s\r\n", name, v)
		}
	}
	if len(body) > 0 || method == http.MethodPost || method == http.MethodPut || method == http.MethodPatch {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(body))
	}
	b.WriteString("\r\n")
	b.Write(body)
	return &target{url: rawURL, method: method, addr: addr, wire: b.Bytes()}, nil
}

// errMalformed is a response the load generator cannot read.
var errMalformed = errors.New("malformed HTTP response")

// conn is one keep-alive HTTP/1.1 connection, used by one worker at a time.
//
// It is written for the load generator's own cost, not for generality: the
// request is bytes prepared once, and the response is read for its status
// and framing only (Content-Length, chunked, or until the connection
// closes), its body discarded without being copied out of the read buffer.
// net/http's client spends several times more CPU per request, which on a
// small machine is taken from the server being measured, so that the
// throughput measured would be the client's.
type conn struct {
	c    net.Conn
	r    *bufio.Reader
	stop func() bool // stops the watch of ctx on c
}

// aLongTimeAgo is a deadline that unblocks any read or write at once.
var aLongTimeAgo = time.Unix(1, 0)

// do sends t's request and reads the response, dialling first if needed,
// and returns the response's status. The whole exchange has timeout; when
// ctx ends, a request in flight fails at once. After any error the
// connection is closed, and the next call dials a new one.
func (c *conn) do(ctx context.Context, t *target, timeout time.Duration) (int, error) {
	deadline := time.Now().Add(timeout)
	if c.c == nil {
		d := net.Dialer{Deadline: deadline}
		nc, err := d.DialContext(ctx, "tcp", t.addr)
		if err != nil {
			return 0, err
		}
		c.c = nc
		if c.r == nil {
			c.r = bufio.NewReaderSize(nc, 16<<10)
		} else {
			c.r.Reset(nc)
		}
		c.stop = context.AfterFunc(ctx, func() { _ = nc.SetDeadline(aLongTimeAgo) })
	}
	if err := c.c.SetDeadline(deadline); err != nil {
		c.close()
		return 0, err
	}
	if ctx.Err() != nil { // the deadline may have replaced the AfterFunc's
		c.close()
		return 0, ctx.Err()
	}
	if _, err := c.c.Write(t.wire); err != nil {
		c.close()
		return 0, err
	}
	status, keep, err := readResponse(c.r, t.method == http.MethodHead)
	if err != nil || !keep {
		c.close()
	}
	return status, err
}

// close closes the connection, if one is open.
func (c *conn) close() {
	if c.c == nil {
		return
	}
	c.stop()
	_ = c.c.Close()
	c.c = nil
}

// readResponse reads one response from r and discards its body. keep says
// whether the connection may carry another request.
func readResponse(r *bufio.Reader, head bool) (status int, keep bool, err error) {
	for {
		line, err := readLine(r)
		if err != nil {
			return 0, false, err
		}
		// "HTTP/1.1 200 OK"
		if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' {
			return 0, false, fmt.Errorf("%w: status line %q", errMalformed, line)
		}
		status, err = strconv.Atoi(string(line[9:12]))
		if err != nil || status < 100 || status > 999 {
			return 0, false, fmt.Errorf("%w: status line %q", errMalformed, line)
		}
		keep = line[7] == '1' // HTTP/1.1 keeps the connection unless told not to
		length, chunked := int64(-1), false
		for {
			line, err := readLine(r)
			if err != nil {
				return status, false, err
			}
			if len(line) == 0 {
				break
			}
			name, value, ok := bytes.Cut(line, []byte(":"))
			if !ok {
				return status, false, fmt.Errorf("%w: header line %q", errMalformed, line)
			}
			value = bytes.TrimSpace(value)
			switch {
			case bytes.EqualFold(name, []byte("Content-Length")):
				length, err = strconv.ParseInt(string(value), 10, 64)
				if err != nil || length < 0 {
					return status, false, fmt.Errorf("%w: Content-Length %q", errMalformed, value)
				}
			case bytes.EqualFold(name, []byte("Transfer-Encoding")):
				chunked = bytes.EqualFold(value, []byte("chunked"))
			case bytes.EqualFold(name, []byte("Connection")):
				if bytes.EqualFold(value, []byte("close")) {
					keep = false
				} else if bytes.EqualFold(value, []byte("keep-alive")) {
					keep = true
				}
			}
		}
		if status >= 100 && status < 200 && status != http.StatusSwitchingProtocols {
			continue // an interim response; the final one follows
		}
		switch {
		case head || status == http.StatusNoContent || status == http.StatusNotModified || status < 200:
		case chunked:
			err = discardChunked(r)
		case length >= 0:
			_, err = r.Discard(int(length))
		default: // the body ends with the connection
			for err == nil {
				_, err = r.Discard(r.Size())
			}
			if errors.Is(err, io.EOF) {
				err = nil
			}
			keep = false
		}
		return status, keep && err == nil, err
	}
}

// readLine returns the next line of r without its CR LF, valid until the
// next read. A line longer than r's buffer is an error.
func readLine(r *bufio.Reader) ([]byte, error) {
	line, err := r.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, fmt.Errorf("%w: a line is longer than %d bytes", errMalformed, r.Size())
		}
		return nil, err
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, nil
}

// discardChunked reads and drops a chunked body and its trailers.
func discardChunked(r *bufio.Reader) error {
	for {
		line, err := readLine(r)
		if err != nil {
			return err
		}
		if i := bytes.IndexByte(line, ';'); i >= 0 {
			line = line[:i] // chunk extensions
		}
		size, err := strconv.ParseInt(string(bytes.TrimSpace(line)), 16, 64)
		if err != nil || size < 0 {
			return fmt.Errorf("%w: chunk size %q", errMalformed, line)
		}
		if size == 0 {
			for { // trailers, up to the empty line
				line, err := readLine(r)
				if err != nil || len(line) == 0 {
					return err
				}
			}
		}
		if _, err := r.Discard(int(size) + 2); err != nil {
			return err
		}
	}
}
