package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynckit/asynckit/taskqueue"
)

// diskFiles keeps uploads in files in a directory (UPLOAD_DIR), for the
// single instance that runs on SQLite: its tasks live in its memory, so
// what must happen when a task ends (its file removed, its callback sent)
// is kept in memory too, by upload id, the file's name. An entry lives only
// while its task does: it is made when the task is submitted and taken
// when the task finishes, so there are never more than the runner holds
// unfinished tasks.
type diskFiles struct {
	dir  string
	temp bool // dir was made at start and is removed at close
	log  *slog.Logger

	// mu is held across Submit and the making of the task's entry, so that
	// a task that finishes at once finds its entry.
	mu      sync.Mutex
	pending map[string]string // callback URL by upload id

	// space bounds the bytes of the files in dir, which used counts: each
	// write of an upload reserves its bytes first, and a file's removal
	// gives its size back.
	space int64
	used  atomic.Int64
}

var _ fileStore = (*diskFiles)(nil)

// newDiskFiles prepares the upload directory: dir, made if need be, or
// when dir is empty a temporary directory that close removes. Files a
// previous process left in dir are removed: their tasks lived in that
// process's memory, so nothing would ever process them, and they would
// hold space.
func newDiskFiles(dir string, space int64, log *slog.Logger) (*diskFiles, error) {
	d := &diskFiles{dir: dir, log: log, pending: map[string]string{}, space: space}
	if dir == "" {
		tmp, err := os.MkdirTemp("", "asynckit-uploads-")
		if err != nil {
			return nil, fmt.Errorf("upload directory: %w", err)
		}
		d.dir, d.temp = tmp, true
		return d, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("upload directory: %w", err)
	}
	left, err := filepath.Glob(filepath.Join(dir, "upload-*"))
	if err != nil {
		return nil, fmt.Errorf("upload directory: %w", err)
	}
	for _, path := range left {
		d.remove(path)
	}
	if len(left) > 0 {
		log.Info("removed uploads left by an earlier process", "dir", dir, "files", len(left))
	}
	d.used.Store(0)
	return d, nil
}

func (d *diskFiles) where() string { return "disk " + d.dir }

func (d *diskFiles) limit() int64 { return d.space }

func (d *diskFiles) start() {}

// create makes the upload's file. The deadline is the receiving
// request's own: a process that dies while receiving leaves the file for
// its successor to remove at start.
func (d *diskFiles) create(context.Context, time.Time) (upload, error) {
	f, err := os.CreateTemp(d.dir, "upload-*")
	if err != nil {
		return nil, fmt.Errorf("store upload: %w", err)
	}
	return &diskUpload{d: d, f: f}, nil
}

// open opens upload id's file.
func (d *diskFiles) open(_ context.Context, id string) (io.ReadCloser, int64, error) {
	if id == "" || id != filepath.Base(id) {
		return nil, 0, fmt.Errorf("%w: bad file name %q", errFileGone, id)
	}
	f, err := os.Open(filepath.Join(d.dir, id))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0, errFileGone
	}
	if err != nil {
		return nil, 0, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, st.Size(), nil
}

// release removes upload id's file and entry, then calls then with its
// callback URL, if the entry was still there.
func (d *diskFiles) release(ctx context.Context, id string, then func(ctx context.Context, callback string) error) error {
	d.mu.Lock()
	callback, ok := d.pending[id]
	delete(d.pending, id)
	d.mu.Unlock()
	if !ok {
		return nil
	}
	d.remove(filepath.Join(d.dir, id))
	return then(ctx, callback)
}

// remove deletes the file at path; one already gone is no error.
func (d *diskFiles) remove(path string) {
	st, statErr := os.Stat(path)
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		d.log.Warn("cannot remove uploaded file", "path", path, "err", err)
		return
	}
	if statErr == nil {
		d.used.Add(-st.Size())
	}
}

// close removes the files of the tasks that never ended (the in-memory
// queue ends with the process, so nothing will process them), and the
// upload directory if it was made at start. Call it once the runner has
// stopped.
func (d *diskFiles) close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for id := range d.pending {
		d.remove(filepath.Join(d.dir, id))
		delete(d.pending, id)
	}
	if d.temp {
		if err := os.RemoveAll(d.dir); err != nil {
			d.log.Warn("cannot remove the upload directory", "dir", d.dir, "err", err)
		}
	}
}

// diskUpload is a file being uploaded, whose writes reserve their bytes in
// the store's space before they are made.
type diskUpload struct {
	d    *diskFiles
	f    *os.File
	done bool // the task owns the file
}

func (u *diskUpload) Write(p []byte) (int, error) {
	if u.d.used.Add(int64(len(p))) > u.d.space {
		u.d.used.Add(-int64(len(p)))
		return 0, errNoSpace
	}
	n, err := u.f.Write(p)
	u.d.used.Add(int64(n - len(p))) // give back what was not written
	return n, err
}

func (u *diskUpload) id() string { return filepath.Base(u.f.Name()) }

func (u *diskUpload) submit(ctx context.Context, callback string, submit func(ctx context.Context, id string) (taskqueue.Info, error)) (taskqueue.Info, error) {
	if err := u.f.Close(); err != nil {
		return taskqueue.Info{}, fmt.Errorf("store upload: %w", err)
	}
	u.d.mu.Lock()
	defer u.d.mu.Unlock()
	info, err := submit(ctx, u.id())
	if err == nil {
		u.d.pending[u.id()] = callback
		u.done = true
	}
	return info, err
}

func (u *diskUpload) discard() {
	if u.done {
		return
	}
	u.f.Close()
	u.d.remove(u.f.Name())
}
