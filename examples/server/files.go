package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/asynckit/asynckit/taskqueue"
)

// Bounds of uploads and of their tasks.
const (
	// uploadFraming is what a multipart request may hold besides the file:
	// boundaries, part headers and the callback_url field.
	uploadFraming = 64 << 10
	// maxCallbackURL is the longest callback_url, in bytes.
	maxCallbackURL = 2048
	// uploadIdle is how long an upload may send nothing before it is cut
	// off; each read that brings data extends its deadline by this much.
	uploadIdle = 30 * time.Second
	// uploadMinRate is the slowest average an upload may keep, in bytes per
	// second, past a first minute: it bounds how long a client may hold a
	// connection by trickling bytes.
	uploadMinRate = 64 << 10
	// uploadAnswer is how long the answer to an upload may take to write.
	uploadAnswer = 30 * time.Second
	// fileChunk is how much a file task reads at a time.
	fileChunk = 64 << 10
	// callbackAttempts and callbackTimeout bound the delivery of one
	// callback: 5 attempts with exponential backoff, 10 s each.
	callbackAttempts = 5
	callbackTimeout  = 10 * time.Second
	// callbackDrain is how much of a callback's answer is read, so that its
	// connection can be used again.
	callbackDrain = 64 << 10
)

// uploads holds the files waiting for their file tasks, and what must
// happen when each task ends. An entry lives only while its task does:
// it is made when the task is submitted and taken when the task finishes,
// so there are never more than the runner holds unfinished tasks.
type uploads struct {
	dir  string
	temp bool // dir was made at start and is removed at close
	log  *slog.Logger

	// mu is held across Submit and the making of the task's entry, so that
	// a task that finishes at once finds its entry.
	mu      sync.Mutex
	pending map[string]upload // by task id

	// space bounds the bytes of the files in dir, which used counts: each
	// write of an upload reserves its bytes first, and a file's removal
	// gives its size back.
	space int64
	used  atomic.Int64
}

// upload is a file waiting for its task, and where to send the task's
// final state.
type upload struct {
	path     string
	callback string
}

// newUploads prepares the upload directory: dir, made if need be, or when
// dir is empty a temporary directory that close removes. Files a previous
// process left in dir are removed: their tasks lived in that process's
// memory, so nothing would ever process them, and they would hold space.
func newUploads(dir string, space int64, log *slog.Logger) (*uploads, error) {
	u := &uploads{dir: dir, log: log, pending: map[string]upload{}, space: space}
	if dir == "" {
		d, err := os.MkdirTemp("", "asynckit-uploads-")
		if err != nil {
			return nil, fmt.Errorf("upload directory: %w", err)
		}
		u.dir, u.temp = d, true
		return u, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("upload directory: %w", err)
	}
	left, err := filepath.Glob(filepath.Join(dir, "upload-*"))
	if err != nil {
		return nil, fmt.Errorf("upload directory: %w", err)
	}
	for _, path := range left {
		u.remove(path)
	}
	if len(left) > 0 {
		log.Info("removed uploads left by an earlier process", "dir", dir, "files", len(left))
	}
	u.used.Store(0)
	return u, nil
}

// submit submits a file task for the file at path and records it.
func (u *uploads) submit(ctx context.Context, r *taskqueue.Runner, path, callback string) (taskqueue.Info, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	info, err := r.Submit(ctx, kindFile, filePayload{File: filepath.Base(path)})
	if err == nil {
		u.pending[info.ID] = upload{path: path, callback: callback}
	}
	return info, err
}

// take removes and returns the entry of task id.
func (u *uploads) take(id string) (upload, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	up, ok := u.pending[id]
	delete(u.pending, id)
	return up, ok
}

// remove deletes the file at path; one already gone is no error.
func (u *uploads) remove(path string) {
	st, statErr := os.Stat(path)
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		u.log.Warn("cannot remove uploaded file", "path", path, "err", err)
		return
	}
	if statErr == nil {
		u.used.Add(-st.Size())
	}
}

// errNoSpace is returned by a write to an upload past the space uploads
// may take.
var errNoSpace = errors.New("upload space full")

// budgeted is a file being uploaded, whose writes reserve their bytes in
// the uploads' space before they are made.
type budgeted struct {
	f *os.File
	u *uploads
}

func (b budgeted) Write(p []byte) (int, error) {
	if b.u.used.Add(int64(len(p))) > b.u.space {
		b.u.used.Add(-int64(len(p)))
		return 0, errNoSpace
	}
	n, err := b.f.Write(p)
	b.u.used.Add(int64(n - len(p))) // give back what was not written
	return n, err
}

// close removes the files of the tasks that never ended (the in-memory
// queue ends with the process, so nothing will process them), and the
// upload directory if it was made at start. Call it once the runner has
// stopped.
func (u *uploads) close() {
	u.mu.Lock()
	defer u.mu.Unlock()
	for id, up := range u.pending {
		u.remove(up.path)
		delete(u.pending, id)
	}
	if u.temp {
		if err := os.RemoveAll(u.dir); err != nil {
			u.log.Warn("cannot remove the upload directory", "dir", u.dir, "err", err)
		}
	}
}

// fileFinished gives back the file of a file task that ended, however it
// ended, and has the task's final state sent to its callback_url, if it
// has one, by a callback task, which retries with backoff.
func (s *server) fileFinished(info taskqueue.Info) {
	up, ok := s.uploads.take(info.ID)
	if !ok {
		return
	}
	s.uploads.remove(up.path)
	if up.callback == "" {
		return
	}
	body, err := json.Marshal(info)
	if err == nil {
		_, err = s.tasks.Submit(context.Background(), kindCallback, callbackPayload{URL: up.callback, Info: body},
			taskqueue.MaxAttempts(callbackAttempts), taskqueue.Timeout(callbackTimeout))
	}
	if err != nil {
		s.log.Error("callback not sent", "task", info.ID, "url", up.callback, "err", err)
	}
}

// filePayload is the payload of a file task.
type filePayload struct {
	File string `json:"file"` // the file's name in the upload directory
}

// fileResult is the result of a file task.
type fileResult struct {
	SHA256    string `json:"sha256" doc:"SHA-256 of the file, in hex" pattern:"^[0-9a-f]{64}$"`
	Bytes     int64  `json:"bytes" doc:"Size of the file" min:"0"`
	Lines     int64  `json:"lines" doc:"Newline characters in the file, as wc -l counts them" min:"0"`
	Words     int64  `json:"words" doc:"Runs of characters between ASCII white space, as wc -w counts them in the C locale" min:"0"`
	GzipBytes int64  `json:"gzip_bytes" doc:"Size of the file gzipped at the default level" min:"0"`
}

// runFile is the handler of file tasks: it reads the file once, in 64 KiB
// chunks, and reports progress by bytes read.
func (s *server) runFile(ctx context.Context, job *taskqueue.Job, p filePayload) (fileResult, error) {
	if p.File == "" || p.File != filepath.Base(p.File) {
		return fileResult{}, taskqueue.Permanent(fmt.Errorf("bad file name %q", p.File))
	}
	f, err := os.Open(filepath.Join(s.uploads.dir, p.File))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fileResult{}, taskqueue.Permanent(errors.New("the uploaded file is gone"))
		}
		return fileResult{}, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fileResult{}, err
	}
	return analyse(ctx, f, func(read int64) {
		pct := 100
		if st.Size() > 0 {
			pct = int(read * 100 / st.Size())
		}
		_ = job.Progress(min(pct, 100), fmt.Sprintf("%d of %d bytes read", read, st.Size()))
	})
}

// analyse reads r to its end in chunks of fileChunk bytes, calling
// progress after each, and returns what fileResult describes. It stops
// with ctx's cause when ctx ends between two chunks.
func analyse(ctx context.Context, r io.Reader, progress func(read int64)) (fileResult, error) {
	var (
		out    fileResult
		sum    = sha256.New()
		zipped countingWriter
		inWord bool
		buf    = make([]byte, fileChunk)
	)
	gz := gzip.NewWriter(&zipped)
	for {
		if ctx.Err() != nil {
			return fileResult{}, context.Cause(ctx)
		}
		n, err := io.ReadFull(r, buf)
		chunk := buf[:n]
		sum.Write(chunk)
		_, _ = gz.Write(chunk) // a countingWriter never fails
		out.Bytes += int64(n)
		out.Lines += int64(bytes.Count(chunk, []byte{'\n'}))
		for _, c := range chunk {
			space := c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'
			if !space && !inWord {
				out.Words++
			}
			inWord = !space
		}
		if n > 0 {
			progress(out.Bytes)
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			break
		}
		if err != nil {
			return fileResult{}, err
		}
	}
	_ = gz.Close()
	out.SHA256 = hex.EncodeToString(sum.Sum(nil))
	out.GzipBytes = zipped.n
	return out, nil
}

// countingWriter counts what is written to it and keeps nothing.
type countingWriter struct{ n int64 }

func (w *countingWriter) Write(p []byte) (int, error) {
	w.n += int64(len(p))
	return len(p), nil
}

// callbackPayload is the payload of a callback task.
type callbackPayload struct {
	URL  string          `json:"url"`
	Info json.RawMessage `json:"info"` // the file task's final Info
}

// callbackResult is the result of a callback task.
type callbackResult struct {
	Status int `json:"status" doc:"The HTTP status the callback URL answered" min:"200" max:"299"`
}

// newCallbackClient returns the HTTP client of callbacks. It follows no
// redirect, so a callback goes only where its URL says, and it has its
// own connections, which close closes.
func newCallbackClient(allowPrivate bool) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 4
	// No proxy: the address check below must see the address dialled.
	t.Proxy = nil
	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	if !allowPrivate {
		dialer.Control = refuseInternal
	}
	t.DialContext = dialer.DialContext
	return &http.Client{Transport: t,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// errInternalAddress is the dial error of a callback to an address inside
// the server's own network.
var errInternalAddress = errors.New("callbacks to loopback, private, link-local and other internal addresses are refused (set CALLBACK_PRIVATE=true to allow them)")

// refuseInternal is the callback dialer's Control function: it refuses
// every address that is not a public unicast one. It runs on the address
// actually dialled, after name resolution, so that a name that resolves
// (or is re-pointed) to an internal address is refused too: a client of
// this API must not be able to make the server POST into its own network.
func refuseInternal(_, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return err
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return err
	}
	ip = ip.Unmap()
	if !ip.IsGlobalUnicast() || ip.IsPrivate() || ip.IsLoopback() || cgnat.Contains(ip) {
		return fmt.Errorf("%s: %w", ip, errInternalAddress)
	}
	return nil
}

// cgnat is the shared address space of RFC 6598, internal like the
// private ranges.
var cgnat = netip.MustParsePrefix("100.64.0.0/10")

// runCallback is the handler of callback tasks: it POSTs the file task's
// final Info to the URL. An answer other than 2xx fails the attempt, to be
// retried, except an answer that retrying cannot change (a 4xx other than
// 408, 425 and 429) and an address that is refused, which fail the
// delivery at once. The callback task's id goes in Idempotency-Key, so a
// receiver can tell a retry from a new delivery.
func (s *server) runCallback(ctx context.Context, job *taskqueue.Job, p callbackPayload) (callbackResult, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.URL, bytes.NewReader(p.Info))
	if err != nil {
		return callbackResult{}, taskqueue.Permanent(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "asynckit-example-server")
	req.Header.Set(idempotencyHeader, job.ID())
	resp, err := s.callbacks.Do(req)
	if errors.Is(err, errInternalAddress) {
		return callbackResult{}, taskqueue.Permanent(err)
	}
	if err != nil {
		return callbackResult{}, err
	}
	_, _ = io.CopyN(io.Discard, resp.Body, callbackDrain)
	resp.Body.Close()
	switch code := resp.StatusCode; {
	case code >= 200 && code <= 299:
		return callbackResult{Status: code}, nil
	case code >= 400 && code <= 499 && code != http.StatusRequestTimeout && code != http.StatusTooEarly && code != http.StatusTooManyRequests:
		return callbackResult{}, taskqueue.Permanent(fmt.Errorf("%s answered %s", p.URL, resp.Status))
	}
	return callbackResult{}, fmt.Errorf("%s answered %s", p.URL, resp.Status)
}

// uploadForm is the multipart body of POST /files, for the document.
var uploadForm = &schema{Type: "object", Required: []string{"file"}, AdditionalProperties: false,
	Properties: map[string]*schema{
		"file": {Type: "string", Format: "binary", Description: "The file, at most MAX_UPLOAD bytes (32 MiB by default)"},
		"callback_url": {Type: "string", Format: "uri", MaxLength: ptr(maxCallbackURL),
			Description: "An absolute http or https URL to POST the task to, as GET /tasks/{id} shows it, once it has finished"},
	}}

func (s *server) fileRoutes(a *api) {
	handleRaw(a, op{Pattern: "POST /files", ID: "uploadFile", Tag: "tasks", Summary: "Upload a file to analyse",
		Description: "A multipart/form-data body with the field file and, optionally, callback_url, in any order. The file is streamed to disk, " +
			"and a task of kind file reads it and finds its SHA-256, size, lines, words and gzipped size (result {\"sha256\", \"bytes\", \"lines\", \"words\", \"gzip_bytes\"}). " +
			"Answers at once with the task; follow it with GET /tasks/{id} or its events. The file is deleted when the task ends. " +
			"With callback_url, the task as it ended is POSTed there as JSON, with the delivery's id in Idempotency-Key; " +
			"an answer other than 2xx is retried with backoff, up to 5 attempts of 10 seconds each (a 4xx other than 408, 425 and 429 is not retried). " +
			"Callbacks to loopback, private and other internal addresses are refused unless CALLBACK_PRIVATE=true. " +
			"A file larger than MAX_UPLOAD is a 413; another field, a missing or repeated file, or a bad callback_url, a 400.",
		Status:   http.StatusAccepted,
		Request:  &content{MediaType: "multipart/form-data", Schema: uploadForm},
		Response: &content{MediaType: "application/json", Type: reflect.TypeFor[taskqueue.Info]()},
		Problems: []kind{probValidation, probQueueFull, probUploadSpace, probUnavailable}},
		s.uploadFile)
}

// uploadFile serves POST /files; see fileRoutes for the contract.
func (s *server) uploadFile(w http.ResponseWriter, r *http.Request) {
	info, err := s.receiveUpload(w, r)
	// A long upload has outlived the server's WriteTimeout, which counts
	// from the request's arrival: give the answer time of its own.
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(uploadAnswer))
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	_ = writeJSON(w, http.StatusAccepted, info)
}

// receiveUpload reads the multipart body of r part by part, streaming the
// file to the upload directory, and submits its task. On any error the
// file is removed.
func (s *server) receiveUpload(w http.ResponseWriter, r *http.Request) (taskqueue.Info, error) {
	ct := r.Header.Get("Content-Type")
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil || mt != "multipart/form-data" {
		if ct == "" {
			ct = "none"
		}
		return taskqueue.Info{}, newProblem(probMediaType, "the body must be multipart/form-data, not %s", ct)
	}
	if params["boundary"] == "" {
		return taskqueue.Info{}, newProblem(probBadRequest, "the multipart/form-data Content-Type has no boundary")
	}
	limit := s.cfg.MaxUpload
	body := http.MaxBytesReader(w, r.Body, limit+uploadFraming)
	closing := &closingWatcher{r: &deadlineReader{r: body, rc: http.NewResponseController(w),
		end: time.Now().Add(time.Minute + time.Duration(limit/uploadMinRate)*time.Second)},
		delim: []byte("--" + params["boundary"] + "--")}
	mr := multipart.NewReader(closing, params["boundary"])

	var (
		path, callback string
		seen           = map[string]bool{}
	)
	defer func() {
		if path != "" {
			s.uploads.remove(path) // handed to the task below unless something failed
		}
	}()
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			if !closing.seen {
				// mime/multipart reports a body cut short inside a part's
				// headers as a plain EOF, as if the form had ended.
				return taskqueue.Info{}, newProblem(probBadRequest, "the multipart body ends before its closing boundary")
			}
			break
		}
		if err != nil {
			return taskqueue.Info{}, uploadProblem(err, limit)
		}
		name := part.FormName()
		if seen[name] && (name == "file" || name == "callback_url") {
			part.Close()
			return taskqueue.Info{}, invalid(fieldError{Field: name, Message: "must be sent once"})
		}
		seen[name] = true
		switch name {
		case "file":
			path, err = s.saveUpload(part, limit)
		case "callback_url":
			callback, err = readCallbackURL(part)
		default:
			err = invalid(fieldError{Field: name, Message: "is not a field of this request; send file and, optionally, callback_url"})
		}
		part.Close()
		if err != nil {
			return taskqueue.Info{}, err
		}
	}
	if path == "" {
		return taskqueue.Info{}, invalid(fieldError{Field: "file", Message: "is required"})
	}
	info, err := s.uploads.submit(r.Context(), s.tasks, path, callback)
	if err != nil {
		return taskqueue.Info{}, submitProblem(err)
	}
	path = "" // the task owns it now
	s.events.follow(info.ID)
	return info, nil
}

// saveUpload streams the file part to a new file in the upload directory
// and returns its path. A file larger than limit is a 413, and nothing is
// left on disk when it fails.
func (s *server) saveUpload(part *multipart.Part, limit int64) (string, error) {
	f, err := os.CreateTemp(s.uploads.dir, "upload-*")
	if err != nil {
		return "", fmt.Errorf("store upload: %w", err)
	}
	n, err := io.Copy(budgeted{f, s.uploads}, io.LimitReader(part, limit+1))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && n > limit {
		err = newProblem(probTooLarge, "the file is larger than %d bytes", limit)
	}
	if errors.Is(err, errNoSpace) {
		s.uploads.remove(f.Name())
		p := newProblem(probUploadSpace, "the files waiting to be processed take all %d bytes uploads may use", s.uploads.space)
		p.retryAfter = 5 * time.Second
		return "", p
	}
	if err != nil {
		s.uploads.remove(f.Name())
		return "", uploadProblem(err, limit)
	}
	return f.Name(), nil
}

// readCallbackURL reads and checks the callback_url part: an absolute
// http or https URL of at most maxCallbackURL bytes.
func readCallbackURL(part *multipart.Part) (string, error) {
	raw, err := io.ReadAll(io.LimitReader(part, maxCallbackURL+1))
	if err != nil {
		return "", uploadProblem(err, 0)
	}
	bad := func(msg string) error { return invalid(fieldError{Field: "callback_url", Message: msg}) }
	if len(raw) > maxCallbackURL {
		return "", bad(fmt.Sprintf("must be at most %d bytes", maxCallbackURL))
	}
	u, err := url.Parse(string(raw))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", bad("must be an absolute http or https URL")
	}
	return string(raw), nil
}

// uploadProblem turns an error reading an upload into a problem: a body
// past its limit is a 413, anything else the client sent wrong a 400.
// Errors that are already problems, or are the server's, pass through.
func uploadProblem(err error, limit int64) error {
	var (
		tooBig *http.MaxBytesError
		p      *problem
	)
	switch {
	case errors.As(err, &p):
		return p
	case errors.As(err, &tooBig):
		return newProblem(probTooLarge, "the upload is larger than %d bytes", limit)
	case errors.Is(err, os.ErrDeadlineExceeded):
		return newProblem(probBadRequest, "the upload was too slow")
	case errors.As(err, new(*fs.PathError)):
		return fmt.Errorf("store upload: %w", err) // the disk's fault, not the client's
	}
	return newProblem(probBadRequest, "the multipart body could not be read: %v", err)
}

// deadlineReader extends its connection's read deadline as data arrives:
// by uploadIdle past each read, never past end. A large upload is not cut
// off by the server's ReadTimeout, and a stalled one still ends.
// closingWatcher passes a multipart body through and notes whether its
// closing delimiter went by, even split across reads.
type closingWatcher struct {
	r      io.Reader
	delim  []byte
	tail   []byte // the last len(delim)-1 bytes read
	stitch []byte // tail and the head of a read, for a delimiter split between them
	seen   bool
}

func (c *closingWatcher) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if n > 0 && !c.seen {
		k := len(c.delim) - 1
		chunk := p[:n]
		c.stitch = append(append(c.stitch[:0], c.tail...), chunk[:min(n, k)]...)
		c.seen = bytes.Contains(c.stitch, c.delim) || bytes.Contains(chunk, c.delim)
		// The new tail is the last k bytes of tail+chunk, which stitch
		// ends with whenever chunk is shorter than k.
		if n >= k {
			c.tail = append(c.tail[:0], chunk[n-k:]...)
		} else {
			c.tail = append(c.tail[:0], c.stitch[max(0, len(c.stitch)-k):]...)
		}
	}
	return n, err
}

type deadlineReader struct {
	r   io.Reader
	rc  *http.ResponseController
	end time.Time
	set time.Time // when the deadline was last moved
}

func (d *deadlineReader) Read(p []byte) (int, error) {
	if now := time.Now(); now.Sub(d.set) >= time.Second {
		d.set = now
		deadline := now.Add(uploadIdle)
		if deadline.After(d.end) {
			deadline = d.end
		}
		_ = d.rc.SetReadDeadline(deadline)
	}
	return d.r.Read(p)
}
