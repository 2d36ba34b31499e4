package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/asynckit/asynckit/taskqueue"
	"github.com/asynckit/asynckit/txn"
)

// Bounds of the uploads kept in Postgres.
const (
	// pgChunk is how many bytes of an upload one row holds: an upload in
	// flight holds one chunk in memory.
	pgChunk = 256 << 10
	// sweepBatch is the most uploads one sweep looks at, per query.
	sweepBatch = 200
	// fileOpTimeout bounds the removal of an upload when its task ends.
	fileOpTimeout = 10 * time.Second
)

// pgFiles keeps uploads in Postgres, in chunks, beside the task queue, so
// that the instances sharing the database behave as one: an upload
// received by one instance is read by whichever instance claims its file
// task, and removed (its callback task submitted in the same transaction)
// by whichever instance sees the task end, be it the instance that ran it,
// the one through which a pending task was cancelled, or, for tasks that
// end without an OnFinish on any instance (rescue failing the last attempt
// of a task whose instance died, or cancelling one whose cancel was
// requested), a sweep that every instance runs every UPLOAD_SWEEP.
//
// UPLOAD_SPACE bounds the bytes of every upload together, across
// instances: each chunk is stored in the same statement that reserves its
// bytes in a one-row counter, and an upload's removal gives them back in
// the same transaction that deletes it, so the count is exact.
//
// An upload whose instance died while receiving it is removed by a sweep
// once its deadline (the longest an upload may take, MAX_UPLOAD at
// 64 KiB/s past a first minute) has passed.
type pgFiles struct {
	db    *sql.DB
	tasks *taskqueue.Runner
	log   *slog.Logger
	space int64
	every time.Duration // between sweeps
	// release is what a sweep does with an upload whose task has ended:
	// the server's fileFinished.
	finished func(ctx context.Context, info taskqueue.Info) error

	ctx    context.Context // the sweeps': close cancels it
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

var _ fileStore = (*pgFiles)(nil)

func (p *pgFiles) where() string { return "postgres" }

func (p *pgFiles) limit() int64 { return p.space }

// newUploadID returns a random id of 32 hex digits.
func newUploadID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// create records a new upload, due to be received by deadline.
func (p *pgFiles) create(ctx context.Context, deadline time.Time) (upload, error) {
	id := newUploadID()
	t := now()
	if _, err := p.db.ExecContext(ctx, `INSERT INTO uploads (id, created_at, expires_at, checked_at) VALUES ($1, $2, $3, $2)`,
		id, t, deadline.UTC()); err != nil {
		return nil, fmt.Errorf("store upload: %w", err)
	}
	return &pgUpload{p: p, uploadID: id, buf: make([]byte, 0, pgChunk)}, nil
}

// open returns a reader of upload id's chunks, in order, one query each,
// so that no connection is held while the file is read.
func (p *pgFiles) open(ctx context.Context, id string) (io.ReadCloser, int64, error) {
	var size int64
	err := p.db.QueryRowContext(ctx, `SELECT size FROM uploads WHERE id = $1 AND task_id IS NOT NULL`, id).Scan(&size)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, 0, errFileGone
	}
	if err != nil {
		return nil, 0, err
	}
	return &chunkReader{ctx: ctx, db: p.db, id: id, size: size}, size, nil
}

// release deletes upload id with its chunks, gives its space back and
// calls then with its callback URL, all in one transaction: the callback
// task is submitted (pgstore enqueues in the transaction) if and only if
// the upload is removed, so of two instances releasing one upload at once
// one sends the callback. An upload already removed calls nothing.
func (p *pgFiles) release(ctx context.Context, id string, then func(ctx context.Context, callback string) error) error {
	return txn.Do(ctx, p.db, func(ctx context.Context, tx *sql.Tx) error {
		callback, found, err := p.remove(ctx, tx, id)
		if err != nil || !found {
			return err
		}
		return then(ctx, callback)
	})
}

// remove deletes upload id in tx and gives its bytes back.
func (p *pgFiles) remove(ctx context.Context, tx *sql.Tx, id string) (callback string, found bool, err error) {
	var size int64
	err = tx.QueryRowContext(ctx, `DELETE FROM uploads WHERE id = $1 RETURNING callback_url, size`, id).Scan(&callback, &size)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE upload_space SET used = used - $1`, size); err != nil {
		return "", false, err
	}
	return callback, true, nil
}

// start runs a sweep now and every p.every until close.
func (p *pgFiles) start() {
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		t := time.NewTicker(p.every)
		defer t.Stop()
		for {
			ctx, cancel := context.WithTimeout(p.ctx, max(p.every, time.Minute))
			if err := p.sweep(ctx); err != nil && p.ctx.Err() == nil {
				p.log.Warn("sweeping uploads", "err", err)
			}
			cancel()
			select {
			case <-t.C:
			case <-p.ctx.Done():
				return
			}
		}
	}()
}

// sweep removes the uploads that nothing else will: those whose receiving
// instance died (past their deadline), and those whose task has ended
// without removing them or is gone. It looks at each upload with a task
// at most once per p.every across all instances, taking a batch at a time
// with SKIP LOCKED, so instances share the work.
func (p *pgFiles) sweep(ctx context.Context) error {
	for {
		rows, err := p.db.QueryContext(ctx, `SELECT id FROM uploads WHERE expires_at < $1 ORDER BY expires_at LIMIT $2`, now(), sweepBatch)
		ids, err := scanAll(rows, err, scanOne[string])
		if err != nil {
			return err
		}
		for _, id := range ids {
			if err := p.release(ctx, id, func(context.Context, string) error { return nil }); err != nil {
				return err
			}
			p.log.Info("removed an upload its instance never finished receiving", "upload", id)
		}
		if len(ids) < sweepBatch {
			break
		}
	}
	for {
		t := now()
		type pair struct{ upload, task string }
		rows, err := p.db.QueryContext(ctx, `
			UPDATE uploads SET checked_at = $1 WHERE id IN (
				SELECT id FROM uploads WHERE task_id IS NOT NULL AND checked_at <= $2
				 ORDER BY checked_at LIMIT $3 FOR UPDATE SKIP LOCKED)
			RETURNING id, task_id`, t, t.Add(-p.every), sweepBatch)
		batch, err := scanAll(rows, err, func(r scanner) (pair, error) {
			var x pair
			return x, r.Scan(&x.upload, &x.task)
		})
		if err != nil {
			return err
		}
		for _, x := range batch {
			info, err := p.tasks.Get(ctx, x.task)
			switch {
			case errors.Is(err, taskqueue.ErrNotFound):
				// Gone past retention without a release: there is no
				// final state left to send to a callback.
				err = p.release(ctx, x.upload, func(context.Context, string) error { return nil })
				p.log.Warn("removed the upload of a task that no longer exists", "upload", x.upload, "task", x.task)
			case err == nil && info.Status.Terminal():
				err = p.finished(ctx, info)
			}
			if err != nil {
				return err
			}
		}
		if len(batch) < sweepBatch {
			return nil
		}
	}
}

// close stops the sweeps. The uploads stay: their tasks live on in
// Postgres, for this instance or another.
func (p *pgFiles) close() {
	p.cancel()
	p.wg.Wait()
}

// pgUpload is an upload being received: its bytes are gathered in a chunk
// and each full chunk stored with its space reserved.
type pgUpload struct {
	p        *pgFiles
	uploadID string
	buf      []byte
	seq      int
	done     bool // the task owns the upload
}

func (u *pgUpload) id() string { return u.uploadID }

func (u *pgUpload) Write(b []byte) (int, error) {
	n := 0
	for len(b) > 0 {
		k := min(len(b), pgChunk-len(u.buf))
		u.buf = append(u.buf, b[:k]...)
		b, n = b[k:], n+k
		if len(u.buf) == pgChunk {
			if err := u.flush(context.Background()); err != nil {
				return n, err
			}
		}
	}
	return n, nil
}

// flush stores the chunk gathered so far, in the statement that reserves
// its bytes: errNoSpace when they would take the uploads past the space.
func (u *pgUpload) flush(ctx context.Context) error {
	if len(u.buf) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, fileOpTimeout)
	defer cancel()
	res, err := u.p.db.ExecContext(ctx, `
		WITH r AS (UPDATE upload_space SET used = used + $3 WHERE used + $3 <= $4 RETURNING 1),
		     u AS (UPDATE uploads SET size = size + $3 WHERE id = $1 AND EXISTS (SELECT 1 FROM r) RETURNING 1)
		INSERT INTO upload_chunks (upload_id, seq, data) SELECT $1, $2, $5 FROM u`,
		u.uploadID, u.seq, len(u.buf), u.p.space, u.buf)
	if err != nil {
		return fmt.Errorf("store upload: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("store upload: %w", err)
	} else if n == 0 {
		return errNoSpace
	}
	u.seq++
	u.buf = u.buf[:0]
	return nil
}

// submit stores the last chunk, then in one transaction submits the file
// task (pgstore enqueues it in the transaction) and records it with the
// callback URL: the task exists if and only if its upload is complete.
func (u *pgUpload) submit(ctx context.Context, callback string, submit func(ctx context.Context, id string) (taskqueue.Info, error)) (taskqueue.Info, error) {
	if err := u.flush(ctx); err != nil {
		return taskqueue.Info{}, err
	}
	var info taskqueue.Info
	err := txn.Do(ctx, u.p.db, func(ctx context.Context, tx *sql.Tx) error {
		var err error
		if info, err = submit(ctx, u.uploadID); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `UPDATE uploads SET task_id = $2, callback_url = $3, expires_at = NULL WHERE id = $1`,
			u.uploadID, info.ID, callback)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			// Swept as the upload of an instance that died: past its
			// deadline, nothing can be trusted to be there.
			return errors.Join(err, fmt.Errorf("%w: the upload outlived its deadline", errStoreUpload))
		}
		return nil
	})
	if err == nil {
		u.done = true
	}
	return info, err
}

// discard removes the upload and what it stored, unless its task owns it.
func (u *pgUpload) discard() {
	if u.done {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), fileOpTimeout)
	defer cancel()
	if err := u.p.release(ctx, u.uploadID, func(context.Context, string) error { return nil }); err != nil {
		u.p.log.Warn("cannot remove a refused upload; a sweep will", "upload", u.uploadID, "err", err)
	}
}

// chunkReader reads an upload's chunks in order, one query each. The
// upload must hold size bytes: fewer means it was removed while being read.
type chunkReader struct {
	ctx  context.Context
	db   *sql.DB
	id   string
	size int64
	read int64
	seq  int
	buf  []byte
}

func (r *chunkReader) Read(p []byte) (int, error) {
	for len(r.buf) == 0 {
		if r.read == r.size {
			return 0, io.EOF
		}
		err := r.db.QueryRowContext(r.ctx, `SELECT data FROM upload_chunks WHERE upload_id = $1 AND seq = $2`, r.id, r.seq).Scan(&r.buf)
		if errors.Is(err, sql.ErrNoRows) {
			return 0, errFileGone
		}
		if err != nil {
			return 0, err
		}
		r.seq++
	}
	n := copy(p, r.buf)
	r.buf, r.read = r.buf[n:], r.read+int64(n)
	return n, nil
}

func (r *chunkReader) Close() error { return nil }
