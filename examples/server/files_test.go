package main

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"os"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asynckit/asynckit/pagination"
	"github.com/asynckit/asynckit/taskqueue"
)

// part is one part of a multipart/form-data body.
type part struct {
	name, filename string
	data           []byte
}

// multipartBody encodes parts as multipart/form-data and returns the body
// and its Content-Type.
func multipartBody(t *testing.T, parts ...part) ([]byte, string) {
	t.Helper()
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	for _, p := range parts {
		h := textproto.MIMEHeader{}
		cd := fmt.Sprintf(`form-data; name=%q`, p.name)
		if p.filename != "" {
			cd += fmt.Sprintf(`; filename=%q`, p.filename)
			h.Set("Content-Type", "application/octet-stream")
		}
		h.Set("Content-Disposition", cd)
		pw, err := w.CreatePart(h)
		require.NoError(t, err)
		_, err = pw.Write(p.data)
		require.NoError(t, err)
	}
	require.NoError(t, w.Close())
	return buf.Bytes(), w.FormDataContentType()
}

// upload POSTs parts to /files.
func (ts *testServer) upload(t *testing.T, parts ...part) *response {
	t.Helper()
	body, ct := multipartBody(t, parts...)
	return ts.do("POST", "/files", body, "Content-Type", ct)
}

// uploadedFiles lists what the upload directory holds (nothing when it
// was never made).
func (ts *testServer) uploadedFiles(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir(ts.env["UPLOAD_DIR"])
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// sampleFile returns n bytes of ASCII text with words and lines of many
// lengths, runs of mixed white space, and a word, a run of spaces and a
// CRLF line end straddling each 64 KiB chunk boundary a file task reads at.
func sampleFile(n int) []byte {
	var b bytes.Buffer
	seps := []string{" ", "\n", "\t", "  ", "\r\n", " \v ", "\f"}
	for i := 0; b.Len() < n; i++ {
		b.WriteString(strings.Repeat(string(rune('a'+i%26)), 1+i*7%23))
		b.WriteString(seps[i%len(seps)])
	}
	out := b.Bytes()[:n]
	for at := fileChunk; at+8 < n; at += fileChunk {
		copy(out[at-3:], "word|wo") // a word across the boundary
		copy(out[at+4:], "   \r\n") // white space just after it
	}
	return out
}

// expectedFileResult is what a file task must find in data, computed here
// with the standard library and bytes.Fields, independently of the server.
func expectedFileResult(t *testing.T, data []byte) fileResult {
	sum := sha256.Sum256(data)
	var zipped bytes.Buffer
	zw := gzip.NewWriter(&zipped)
	_, err := zw.Write(data)
	require.NoError(t, err)
	require.NoError(t, zw.Close())
	return fileResult{
		SHA256:    hex.EncodeToString(sum[:]),
		Bytes:     int64(len(data)),
		Lines:     int64(bytes.Count(data, []byte("\n"))),
		Words:     int64(len(bytes.Fields(data))), // the same as wc -w for ASCII text
		GzipBytes: int64(zipped.Len()),
	}
}

// callbackReceiver is an HTTP server on loopback that takes callbacks: it
// answers each with the next of its statuses (the last one from then on)
// and hands over what it received.
type callbackReceiver struct {
	*httptest.Server
	mu       sync.Mutex
	statuses []int
	got      chan receivedCallback
}

type receivedCallback struct {
	status int
	header http.Header
	body   []byte
}

// next returns the next callback received, failing the test if none comes
// within ten seconds.
func (c *callbackReceiver) next(t *testing.T) receivedCallback {
	t.Helper()
	select {
	case got := <-c.got:
		return got
	case <-time.After(10 * time.Second):
		t.Fatal("no callback arrived")
		return receivedCallback{}
	}
}

func newCallbackReceiver(t *testing.T, statuses ...int) *callbackReceiver {
	c := &callbackReceiver{statuses: statuses, got: make(chan receivedCallback, 16)}
	c.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		c.mu.Lock()
		status := c.statuses[0]
		if len(c.statuses) > 1 {
			c.statuses = c.statuses[1:]
		}
		c.mu.Unlock()
		w.WriteHeader(status)
		c.got <- receivedCallback{status: status, header: r.Header.Clone(), body: body}
	}))
	t.Cleanup(c.Close)
	return c
}

func TestFileUpload(t *testing.T) {
	t.Parallel()
	ts := startServer(t, "sqlite", map[string]string{"TASK_RETRY_BASE": "10ms"})
	data := sampleFile(3*fileChunk + 12345)
	want := expectedFileResult(t, data)
	require.Greater(t, want.Lines, int64(1000))

	t.Run("the file task finds the file's hash, size, lines, words and gzipped size", func(t *testing.T) {
		r := ts.upload(t, part{name: "file", filename: "sample.txt", data: data})
		require.Equal(t, http.StatusAccepted, r.status, "%s", r.body)
		var info taskqueue.Info
		r.json(t, &info)
		require.Equal(t, kindFile, info.Kind)

		final := ts.waitTask(t, info.ID)
		require.Equal(t, taskqueue.StatusSucceeded, final.Status, "error: %s", final.Error)
		var got fileResult
		require.NoError(t, json.Unmarshal(final.Result, &got))
		require.Equal(t, want, got)
		require.Equal(t, 100, final.Progress.Percent)
	})
	t.Run("small files and the empty file are counted too", func(t *testing.T) {
		for _, content := range []string{"", "one", "one two\nthree\n", " \n\t", "x\n\n\ny"} {
			r := ts.upload(t, part{name: "file", filename: "f", data: []byte(content)})
			require.Equal(t, http.StatusAccepted, r.status, "%s", r.body)
			var info taskqueue.Info
			r.json(t, &info)
			final := ts.waitTask(t, info.ID)
			var got fileResult
			require.NoError(t, json.Unmarshal(final.Result, &got))
			require.Equal(t, expectedFileResult(t, []byte(content)), got, "%q", content)
		}
	})
}

func TestFileCallbacks(t *testing.T) {
	t.Parallel()
	// The receivers listen on loopback, which callbacks may reach only
	// with CALLBACK_PRIVATE.
	ts := startServer(t, "sqlite", map[string]string{"TASK_RETRY_BASE": "10ms", "CALLBACK_PRIVATE": "true"})
	data := sampleFile(2*fileChunk + 1)
	want := expectedFileResult(t, data)

	t.Run("the callback is retried until it is taken, and the file is gone by then", func(t *testing.T) {
		rcv := newCallbackReceiver(t, http.StatusInternalServerError, http.StatusNoContent)
		// callback_url first: the fields may come in any order.
		r := ts.upload(t, part{name: "callback_url", data: []byte(rcv.URL + "/hook?x=1")}, part{name: "file", filename: "sample.txt", data: data})
		require.Equal(t, http.StatusAccepted, r.status, "%s", r.body)
		var info taskqueue.Info
		r.json(t, &info)

		first, second := rcv.next(t), rcv.next(t)
		require.Equal(t, http.StatusInternalServerError, first.status)
		require.Equal(t, http.StatusNoContent, second.status)
		require.Equal(t, first.body, second.body, "a retry sends the same body")
		require.Equal(t, "application/json", second.header.Get("Content-Type"))
		key := second.header.Get("Idempotency-Key")
		require.NotEmpty(t, key)
		require.Equal(t, first.header.Get("Idempotency-Key"), key, "a retry carries the same key")

		sent := ts.info(t, string(second.body))
		require.Equal(t, info.ID, sent.ID)
		require.Equal(t, taskqueue.StatusSucceeded, sent.Status)
		var got fileResult
		require.NoError(t, json.Unmarshal(sent.Result, &got))
		require.Equal(t, want, got)
		require.Empty(t, ts.uploadedFiles(t), "the file is removed before the callback is sent")

		// The delivery is a task of its own, which ends succeeded after
		// its second attempt.
		delivery := ts.waitTask(t, key)
		require.Equal(t, kindCallback, delivery.Kind)
		require.Equal(t, taskqueue.StatusSucceeded, delivery.Status)
		require.Equal(t, 2, delivery.Attempt)
		require.JSONEq(t, `{"status":204}`, string(delivery.Result))
	})
	t.Run("an answer that a retry cannot change is not retried", func(t *testing.T) {
		rcv := newCallbackReceiver(t, http.StatusNotFound, http.StatusNoContent)
		r := ts.upload(t, part{name: "file", filename: "f", data: []byte("abc")}, part{name: "callback_url", data: []byte(rcv.URL)})
		require.Equal(t, http.StatusAccepted, r.status, "%s", r.body)
		got := rcv.next(t)
		require.Equal(t, http.StatusNotFound, got.status)
		delivery := ts.waitTask(t, got.header.Get("Idempotency-Key"))
		require.Equal(t, taskqueue.StatusFailed, delivery.Status)
		require.Equal(t, 1, delivery.Attempt)
		require.Contains(t, delivery.Error, "404")
		select {
		case again := <-rcv.got:
			t.Fatalf("the callback was sent again: %+v", again)
		default:
		}
	})
	t.Run("a canceled file task still has its file removed and its callback sent", func(t *testing.T) {
		rcv := newCallbackReceiver(t, http.StatusOK)
		// A demo task holds every worker, so the file task stays pending.
		var blockers []string
		for range 4 {
			blockers = append(blockers, ts.submit(t, map[string]any{"kind": "demo", "payload": map[string]int{"steps": 100, "step_ms": 1000}}).ID)
		}
		r := ts.upload(t, part{name: "file", filename: "f", data: []byte("abc")}, part{name: "callback_url", data: []byte(rcv.URL)})
		require.Equal(t, http.StatusAccepted, r.status, "%s", r.body)
		var info taskqueue.Info
		r.json(t, &info)
		require.Len(t, ts.uploadedFiles(t), 1)
		require.Equal(t, http.StatusAccepted, ts.do("DELETE", "/tasks/"+info.ID, nil).status)
		for _, id := range blockers {
			require.Equal(t, http.StatusAccepted, ts.do("DELETE", "/tasks/"+id, nil).status)
		}
		sent := ts.info(t, string(rcv.next(t).body))
		require.Equal(t, info.ID, sent.ID)
		require.Equal(t, taskqueue.StatusCanceled, sent.Status)
		require.Empty(t, ts.uploadedFiles(t))
	})
}

func TestFileUploadRemovesFilesOfFinishedTasks(t *testing.T) {
	t.Parallel()
	// One worker, which gives a task's file back (in OnFinish) before it
	// takes the next task: once the demo task submitted after the upload
	// has finished, the file task has finished and given its file back.
	ts := startServer(t, "sqlite", map[string]string{"WORKERS": "1"})
	r := ts.upload(t, part{name: "file", filename: "f", data: sampleFile(100_000)})
	require.Equal(t, http.StatusAccepted, r.status, "%s", r.body)
	var info taskqueue.Info
	r.json(t, &info)
	demo := ts.submit(t, map[string]any{"kind": "demo", "payload": map[string]int{"steps": 1, "step_ms": 0}})
	require.Equal(t, taskqueue.StatusSucceeded, ts.waitTask(t, demo.ID).Status)
	require.Equal(t, taskqueue.StatusSucceeded, ts.waitTask(t, info.ID).Status)
	require.Empty(t, ts.uploadedFiles(t))
}

func TestFileUploadRefusals(t *testing.T) {
	t.Parallel()
	ts := startServer(t, "sqlite", map[string]string{"MAX_UPLOAD": "1KiB", "CALLBACK_PRIVATE": "true"})
	file := part{name: "file", filename: "f.txt", data: []byte("hello\n")}

	t.Run("a larger file is 413 and leaves nothing on disk", func(t *testing.T) {
		for _, size := range []int{1025, 64 << 10, 1 << 20} {
			r := ts.upload(t, part{name: "file", filename: "f", data: bytes.Repeat([]byte("x"), size)})
			require.Equal(t, http.StatusRequestEntityTooLarge, r.status, "%d bytes", size)
			require.Equal(t, problemTypePrefix+"payload-too-large", r.problem(t).Type)
			require.Empty(t, ts.uploadedFiles(t))
		}
	})
	t.Run("a body that is not multipart/form-data is 415", func(t *testing.T) {
		for _, ct := range []string{"application/json", "text/plain", "multipart/mixed; boundary=x", ""} {
			r := ts.do("POST", "/files", `{"file":"x"}`, "Content-Type", ct)
			require.Equal(t, http.StatusUnsupportedMediaType, r.status, ct)
			require.Equal(t, problemTypePrefix+"unsupported-media-type", r.problem(t).Type)
		}
	})
	t.Run("a bad form is 400 naming the field, and leaves nothing on disk", func(t *testing.T) {
		for _, c := range []struct {
			name  string
			parts []part
			field string
		}{
			{"no file", []part{{name: "callback_url", data: []byte("http://127.0.0.1/x")}}, "file"},
			{"no parts", nil, "file"},
			{"two files", []part{file, file}, "file"},
			{"two callback URLs", []part{{name: "callback_url", data: []byte("http://a.example/")}, file, {name: "callback_url", data: []byte("http://b.example/")}}, "callback_url"},
			{"an unknown field", []part{file, {name: "note", data: []byte("hi")}}, "note"},
			{"a relative callback URL", []part{file, {name: "callback_url", data: []byte("/hook")}}, "callback_url"},
			{"a callback URL of another scheme", []part{file, {name: "callback_url", data: []byte("ftp://example.com/hook")}}, "callback_url"},
			{"a callback URL without a host", []part{file, {name: "callback_url", data: []byte("http:///hook")}}, "callback_url"},
			{"a callback URL that is not a URL", []part{file, {name: "callback_url", data: []byte("http://exa mple.com/")}}, "callback_url"},
			{"a callback URL past 2048 bytes", []part{file, {name: "callback_url", data: []byte("https://example.com/" + strings.Repeat("a", 2029))}}, "callback_url"},
		} {
			t.Run(c.name, func(t *testing.T) {
				r := ts.upload(t, c.parts...)
				require.Equal(t, http.StatusBadRequest, r.status, "%s", r.body)
				p := r.problem(t)
				require.Equal(t, problemTypePrefix+"validation-error", p.Type)
				require.Equal(t, c.field, p.Errors[0].Field)
				require.Empty(t, ts.uploadedFiles(t))
			})
		}
	})
	t.Run("a malformed multipart body is 400", func(t *testing.T) {
		body, ct := multipartBody(t, file)
		for _, c := range []struct{ name, ct, body string }{
			{"cut short", ct, string(body[:len(body)-10])},
			{"another boundary", "multipart/form-data; boundary=other", string(body)},
			{"no boundary", "multipart/form-data", string(body)},
		} {
			r := ts.do("POST", "/files", c.body, "Content-Type", c.ct)
			require.Equal(t, http.StatusBadRequest, r.status, c.name)
			r.problem(t)
			require.Empty(t, ts.uploadedFiles(t), c.name)
		}
	})
	t.Run("a file of exactly MAX_UPLOAD bytes and a callback URL of 2048 bytes are taken", func(t *testing.T) {
		rcv := newCallbackReceiver(t, http.StatusOK)
		u := rcv.URL + "/" + strings.Repeat("a", 2047-len(rcv.URL))
		require.Len(t, u, maxCallbackURL)
		r := ts.upload(t, part{name: "file", filename: "f", data: bytes.Repeat([]byte("x"), 1024)}, part{name: "callback_url", data: []byte(u)})
		require.Equal(t, http.StatusAccepted, r.status, "%s", r.body)
		got := rcv.next(t)
		sent := ts.info(t, string(got.body))
		require.Equal(t, taskqueue.StatusSucceeded, sent.Status, "error: %s", sent.Error)
		require.Contains(t, string(sent.Result), `"bytes":1024`)
		require.Empty(t, ts.uploadedFiles(t))
	})
}

// The closing delimiter is noticed wherever the reads cut it, and only
// when it is there.
func TestClosingWatcherFindsTheDelimiterAcrossReads(t *testing.T) {
	t.Parallel()
	body := "--xyz\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nabc\r\n--xyz--\r\n"
	for _, c := range []struct {
		name string
		r    func(string) io.Reader
		body string
		seen bool
	}{
		{"whole", func(s string) io.Reader { return strings.NewReader(s) }, body, true},
		{"one byte at a time", func(s string) io.Reader { return iotest.OneByteReader(strings.NewReader(s)) }, body, true},
		{"half at a time", func(s string) io.Reader { return iotest.HalfReader(strings.NewReader(s)) }, body, true},
		{"cut before the closing delimiter", func(s string) io.Reader { return iotest.OneByteReader(strings.NewReader(s)) }, body[:len(body)-5], false},
		{"an opening delimiter only", func(s string) io.Reader { return strings.NewReader(s) }, "--xyz\r\n", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := &closingWatcher{r: c.r(c.body), delim: []byte("--xyz--")}
			_, err := io.Copy(io.Discard, w)
			require.NoError(t, err)
			require.Equal(t, c.seen, w.seen)
		})
	}
}

// Without CALLBACK_PRIVATE, a callback to an internal address is refused
// when it is dialled, at once and for good: the server must not be made to
// POST into its own network.
func TestFileCallbackToAnInternalAddressIsRefused(t *testing.T) {
	t.Parallel()
	ts := startServer(t, "sqlite", map[string]string{"TASK_RETRY_BASE": "10ms"})
	rcv := newCallbackReceiver(t, http.StatusNoContent)
	seen := map[string]bool{}
	for _, u := range []string{rcv.URL, strings.Replace(rcv.URL, "127.0.0.1", "localhost", 1)} {
		r := ts.upload(t, part{name: "file", filename: "f", data: []byte("abc")}, part{name: "callback_url", data: []byte(u)})
		require.Equal(t, http.StatusAccepted, r.status, "%s", r.body)
		// The file task's end submits the delivery: a callback task not
		// seen before.
		var delivery taskqueue.Info
		require.Eventually(t, func() bool {
			var page pagination.Page[taskqueue.Info]
			ts.do("GET", "/tasks?kind=callback&limit=100", nil).json(t, &page)
			for _, d := range page.Items {
				if !seen[d.ID] {
					delivery = d
					return true
				}
			}
			return false
		}, 10*time.Second, 10*time.Millisecond)
		seen[delivery.ID] = true
		delivery = ts.waitTask(t, delivery.ID)
		require.Equal(t, taskqueue.StatusFailed, delivery.Status, "%s", u)
		require.Equal(t, 1, delivery.Attempt, "a refused address is not retried")
		require.Contains(t, delivery.Error, "CALLBACK_PRIVATE")
	}
	select {
	case got := <-rcv.got:
		t.Fatalf("the receiver on loopback was reached: %+v", got)
	default:
	}
}

// Uploads waiting for their tasks take at most UPLOAD_SPACE bytes: past it
// an upload is refused with 503 and leaves nothing behind, and the space
// comes back when a file's task ends.
func TestUploadSpaceIsBounded(t *testing.T) {
	t.Parallel()
	ts := startServer(t, "sqlite", map[string]string{"WORKERS": "1", "MAX_UPLOAD": "64KiB", "UPLOAD_SPACE": "100KiB"})
	// A demo task holds the only worker, so file tasks stay pending.
	blocker := ts.submit(t, map[string]any{"kind": "demo", "payload": map[string]int{"steps": 100, "step_ms": 1000}})
	defer ts.do("DELETE", "/tasks/"+blocker.ID, nil)
	data := bytes.Repeat([]byte("x"), 60<<10)

	r := ts.upload(t, part{name: "file", filename: "a", data: data})
	require.Equal(t, http.StatusAccepted, r.status, "%s", r.body)
	var first taskqueue.Info
	r.json(t, &first)

	r = ts.upload(t, part{name: "file", filename: "b", data: data})
	require.Equal(t, http.StatusServiceUnavailable, r.status, "%s", r.body)
	require.Equal(t, problemTypePrefix+"upload-space-full", r.problem(t).Type)
	require.NotEmpty(t, r.header.Get("Retry-After"))
	require.Len(t, ts.uploadedFiles(t), 1, "the refused upload left nothing behind")

	require.Equal(t, http.StatusAccepted, ts.do("DELETE", "/tasks/"+first.ID, nil).status)
	require.Eventually(t, func() bool { return len(ts.uploadedFiles(t)) == 0 }, 10*time.Second, 10*time.Millisecond)
	r = ts.upload(t, part{name: "file", filename: "c", data: data})
	require.Equal(t, http.StatusAccepted, r.status, "the space came back: %s", r.body)
}

// Files left in UPLOAD_DIR by an earlier process are removed at start:
// their tasks were in that process's memory.
func TestUploadsLeftByAnEarlierProcessAreRemoved(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(dir+"/upload-123", []byte("left"), 0o600))
	require.NoError(t, os.WriteFile(dir+"/keep.txt", []byte("not ours"), 0o600))
	ts := startServer(t, "sqlite", map[string]string{"UPLOAD_DIR": dir})
	require.Equal(t, []string{"keep.txt"}, ts.uploadedFiles(t))
}
