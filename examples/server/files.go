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
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"reflect"
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

// fileStore keeps uploaded files until their file tasks end, and what
// must happen then. diskFiles keeps them in UPLOAD_DIR for the single
// instance that runs on SQLite; pgFiles keeps them in Postgres, where the
// instances that share the database all reach them.
type fileStore interface {
	// create starts an upload that its request must finish by deadline.
	create(ctx context.Context, deadline time.Time) (upload, error)
	// open returns the file of upload id and its size, for its task to
	// read; errFileGone when there is none.
	open(ctx context.Context, id string) (io.ReadCloser, int64, error)
	// release removes upload id, gives its space back, and calls then with
	// its callback URL ("" for none); for an upload already removed it
	// does nothing, so of several releases of one upload one calls then.
	release(ctx context.Context, id string, then func(ctx context.Context, callback string) error) error
	// limit is the most bytes the uploads may hold together.
	limit() int64
	// where says where files live, for the startup line.
	where() string
	// start starts background work, which close stops.
	start()
	close()
}

// upload is a file being received: its writes reserve their bytes in the
// store's space first (errNoSpace past it).
type upload interface {
	io.Writer
	id() string
	// submit completes the upload: it submits the file task through
	// submit, which gets the upload's id, and records callback for when
	// the task ends. Once it succeeds, the task owns the upload.
	submit(ctx context.Context, callback string, submit func(ctx context.Context, id string) (taskqueue.Info, error)) (taskqueue.Info, error)
	// discard removes the upload, unless its task owns it.
	discard()
}

// errFileGone is returned by fileStore.open for an upload that is not there.
var errFileGone = errors.New("the uploaded file is gone")

// errNoSpace is returned by a write to an upload past the space uploads
// may take.
var errNoSpace = errors.New("upload space full")

// newFileStore returns the store of uploads for the server's database.
func (s *server) newFileStore(ctx context.Context) (fileStore, error) {
	if s.store.dialect != "postgres" {
		return newDiskFiles(s.cfg.UploadDir, s.cfg.UploadSpace, s.log)
	}
	p := &pgFiles{db: s.store.db, tasks: s.tasks, log: s.log, space: s.cfg.UploadSpace, every: s.cfg.UploadSweep, finished: s.releaseFile}
	p.ctx, p.cancel = context.WithCancel(context.WithoutCancel(ctx))
	return p, nil
}

// fileFinished is called when a file task ends, however it ends, on the
// instance that sees it end: the task's upload is removed and its final
// state sent to its callback_url, if it has one, by a callback task, which
// retries with backoff.
func (s *server) fileFinished(info taskqueue.Info) {
	ctx, cancel := context.WithTimeout(context.Background(), fileOpTimeout)
	defer cancel()
	if err := s.releaseFile(ctx, info); err != nil {
		s.log.Error("cannot remove a finished task's upload, nor send its callback; a sweep will", "task", info.ID, "upload", info.UniqueKey, "err", err)
	}
}

// releaseFile removes the upload of file task info, which has ended, and
// submits its callback task; with Postgres, both in one transaction.
func (s *server) releaseFile(ctx context.Context, info taskqueue.Info) error {
	return s.files.release(ctx, info.UniqueKey, func(ctx context.Context, callback string) error {
		if callback == "" {
			return nil
		}
		body, err := json.Marshal(info)
		if err != nil {
			return err
		}
		_, err = s.submit(ctx, kindCallback, callbackPayload{URL: callback, Info: body},
			taskqueue.MaxAttempts(callbackAttempts), taskqueue.Timeout(callbackTimeout))
		if err != nil {
			return fmt.Errorf("callback to %s not sent: %w", callback, err)
		}
		return nil
	})
}

// filePayload is the payload of a file task. The task's UniqueKey is its
// upload's id too, so that the Info its OnFinish gets names the upload.
type filePayload struct {
	File string `json:"file"` // the upload's id
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
	f, size, err := s.files.open(ctx, p.File)
	if errors.Is(err, errFileGone) {
		return fileResult{}, taskqueue.Permanent(err)
	}
	if err != nil {
		return fileResult{}, err
	}
	defer f.Close()
	res, err := analyse(ctx, f, func(read int64) {
		pct := 100
		if size > 0 {
			pct = int(read * 100 / size)
		}
		_ = job.Progress(min(pct, 100), fmt.Sprintf("%d of %d bytes read", read, size))
	})
	if errors.Is(err, errFileGone) {
		return fileResult{}, taskqueue.Permanent(err)
	}
	return res, err
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
		Description: "A multipart/form-data body with the field file and, optionally, callback_url, in any order. The file is streamed to storage (UPLOAD_DIR with SQLite; with Postgres, the database, where the task can read it on any instance), " +
			"and a task of kind file reads it and finds its SHA-256, size, lines, words and gzipped size (result {\"sha256\", \"bytes\", \"lines\", \"words\", \"gzip_bytes\"}). " +
			"Answers at once with the task; follow it with GET /tasks/{id} or its events. The file is deleted when the task ends " +
			"(with Postgres, within UPLOAD_SWEEP of it when the task ended without its instance seeing it: a rescue that failed it after its instance died). " +
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
// file to the store of uploads, and submits its task. On any error the
// upload is removed.
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
	end := time.Now().Add(time.Minute + time.Duration(limit/uploadMinRate)*time.Second)
	closing := &closingWatcher{r: &deadlineReader{r: body, rc: http.NewResponseController(w), end: end},
		delim: []byte("--" + params["boundary"] + "--")}
	mr := multipart.NewReader(closing, params["boundary"])

	var (
		up       upload
		callback string
		seen     = map[string]bool{}
	)
	defer func() {
		if up != nil {
			up.discard() // a no-op once the task below owns it
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
			// The request has until end to send the file, and then
			// uploadAnswer to submit its task: past both, with a margin, a
			// sweep may take the upload for one whose instance died.
			up, err = s.saveUpload(r.Context(), part, limit, end.Add(uploadAnswer+time.Minute))
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
	if up == nil {
		return taskqueue.Info{}, invalid(fieldError{Field: "file", Message: "is required"})
	}
	info, err := up.submit(r.Context(), callback, func(ctx context.Context, id string) (taskqueue.Info, error) {
		return s.submit(ctx, kindFile, filePayload{File: id}, taskqueue.UniqueKey(id))
	})
	if errors.Is(err, errNoSpace) {
		return taskqueue.Info{}, uploadSpaceProblem(s.files.limit())
	}
	if err != nil {
		return taskqueue.Info{}, submitProblem(err)
	}
	s.followNew(info.ID)
	return info, nil
}

// errStoreUpload marks a failure to store an upload: the server's fault,
// not the client's.
var errStoreUpload = errors.New("store upload")

// saveUpload streams the file part to a new upload and returns it. A file
// larger than limit is a 413, and nothing is left stored when it fails.
func (s *server) saveUpload(ctx context.Context, part *multipart.Part, limit int64, deadline time.Time) (upload, error) {
	up, err := s.files.create(ctx, deadline)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errStoreUpload, err)
	}
	n, err := io.Copy(storeWriter{up}, io.LimitReader(part, limit+1))
	if err == nil && n > limit {
		err = newProblem(probTooLarge, "the file is larger than %d bytes", limit)
	}
	switch {
	case err == nil:
		return up, nil
	case errors.Is(err, errNoSpace):
		err = uploadSpaceProblem(s.files.limit())
	case !errors.Is(err, errStoreUpload):
		err = uploadProblem(err, limit)
	}
	up.discard()
	return nil, err
}

// uploadSpaceProblem is the 503 of an upload past UPLOAD_SPACE.
func uploadSpaceProblem(space int64) error {
	p := newProblem(probUploadSpace, "the files waiting to be processed take all %d bytes uploads may use", space)
	p.retryAfter = 5 * time.Second
	return p
}

// storeWriter marks the errors of an upload's writes, other than
// errNoSpace, as the server's.
type storeWriter struct{ w io.Writer }

func (s storeWriter) Write(p []byte) (int, error) {
	n, err := s.w.Write(p)
	if err != nil && !errors.Is(err, errNoSpace) {
		err = fmt.Errorf("%w: %w", errStoreUpload, err)
	}
	return n, err
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
	case errors.Is(err, errStoreUpload), errors.As(err, new(*fs.PathError)):
		return err // the store's fault, not the client's
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
