package client

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "backupstore/proto/backupstore/v1"
)

// MaxChunkSize is the largest record chunk BackupDir sends (and its
// default): record chunks restart from 0 when reopened, so they are kept
// bounded.
const MaxChunkSize = 1 << 30

// DefaultConcurrency is how many uploads or reads BackupDir and RestoreDir
// run at once by default.
const DefaultConcurrency = 4

// BackupDirOptions are the optional settings of BackupDir. The callbacks
// may be nil; Progress and OnUpload are called from several goroutines at
// once.
type BackupDirOptions struct {
	StorageID string // "": the tenant's default storage
	Labels    map[string]string
	// IdempotencyKey replaces the key derived from the directory.
	IdempotencyKey string
	// Concurrency is the uploads in flight, 1 to 64; 0 for
	// DefaultConcurrency. Files of at most MaxBatchedFile bytes go before the
	// rest, up to 1,024 at a time on one UploadFiles stream, so that they
	// share packs.
	Concurrency int
	ChunkSize   int64 // largest record chunk, at most MaxChunkSize; 0 for that
	// RequireParents fails the commit when a file's parent record is in no
	// record set (otherwise they are listed in the commit's response).
	RequireParents bool

	// OnScan is called before the record sets are scanned for row
	// boundaries, with their number and size.
	OnScan func(recordSets int, bytes int64)
	// OnOpen is called once the backup is created, or found OPEN (or
	// COMMITTED) under the same idempotency key: created is false then.
	OnOpen func(b *pb.Backup, created bool)
	// OnPlan is called once the uploads still to do are known.
	OnPlan func(BackupPlan)
	// Progress is told bytes done since its last call (negative when a
	// retry starts an upload over).
	Progress func(delta int64)
	// OnUpload is called after each upload committed.
	OnUpload func(Uploaded)
}

// BackupPlan is what a BackupDir run has to do.
type BackupPlan struct {
	Total   int64 // bytes of every upload of the backup
	Done    int64 // bytes of the uploads committed by earlier runs
	Uploads int   // uploads to run now
	// ChunksEarlier and FilesEarlier were committed by earlier runs.
	ChunksEarlier, FilesEarlier int64
}

// Uploaded is one upload BackupDir finished.
type Uploaded struct {
	Kind     pb.UploadKind
	SObject  string // records: the record set
	Sequence int    // records: the chunk's number
	Path     string // file: its path under files/
	Size     int64  // bytes sent (or skipped)
	Result   *pb.UploadResult
	// ResumedAt > 0: a file resumed at that byte; Already: a file some
	// earlier attempt had committed.
	ResumedAt int64
	Already   bool
}

// BackupResult is what BackupDir did.
type BackupResult struct {
	// Commit is CommitBackup's response; only its Backup is set when the
	// backup had been committed by an earlier run (AlreadyCommitted).
	Commit           *pb.CommitBackupResponse
	AlreadyCommitted bool
	RecordSets       int
	// Counts of the backup's uploads, those committed by earlier runs
	// included.
	Chunks, ChunksEarlier, Records     int64
	Files, FilesDeduplicated           int64
	FilesEarlier, BytesIn, BytesStored int64
}

func (t *BackupResult) add(kind pb.UploadKind, res *pb.UploadResult, earlier bool) {
	t.BytesIn += res.GetBytesIn()
	t.BytesStored += res.GetBytesStored()
	if kind == pb.UploadKind_UPLOAD_KIND_RECORDS {
		t.Chunks++
		t.Records += res.GetRecords()
		if earlier {
			t.ChunksEarlier++
		}
		return
	}
	t.Files++
	if res.GetDeduplicated() {
		t.FilesDeduplicated++
	}
	if earlier {
		t.FilesEarlier++
	}
}

// BackupDir backs up the export directory dir of a Salesforce org in one go:
//
//	DIR/<sObject>.csv   one record set per sObject, named by its API name
//	DIR/references.csv  optional: sobject,field,target (reference columns to index)
//	DIR/files/          file bodies, any names, subdirectories allowed
//	DIR/files.csv       path,parent_id,name,content_type; required with files/
//
// It checks the layout (a *LayoutError, a *ScanError or a *PathError before
// anything is sent), cuts each record set at row boundaries into chunks of
// at most ChunkSize bytes that each begin with the header row, opens the
// backup with an idempotency key derived from the org, the storage, dir's
// path, the chunk size and a fingerprint of the listing, uploads every chunk
// and file (hashed first, size and SHA-256 declared) with Concurrency
// uploads at once, and commits.
//
// Running it again after an interruption finds the same OPEN backup, skips
// committed uploads, resumes pending files at the service's committed size
// and restarts the rest; on a committed backup it returns at once with
// AlreadyCommitted. After the backup is opened, a failure leaves it OPEN;
// the error says which upload failed.
func (c *Client) BackupDir(ctx context.Context, org, dir string, o BackupDirOptions) (*BackupResult, error) {
	if o.Concurrency == 0 {
		o.Concurrency = DefaultConcurrency
	}
	if o.ChunkSize == 0 {
		o.ChunkSize = MaxChunkSize
	}
	switch {
	case o.Concurrency < 1 || o.Concurrency > 64:
		return nil, fmt.Errorf("client: concurrency %d: want 1 to 64", o.Concurrency)
	case o.ChunkSize < 0 || o.ChunkSize > MaxChunkSize:
		return nil, fmt.Errorf("client: chunk size %d: want at most %d (1GiB)", o.ChunkSize, MaxChunkSize)
	}
	ex, err := readExport(dir)
	if err != nil {
		return nil, err
	}
	if o.IdempotencyKey == "" {
		o.IdempotencyKey = runIdempotencyKey(org, o.StorageID, ex.dir, o.ChunkSize, ex.fingerprint())
	}
	var csvBytes int64
	for _, rs := range ex.sobjects {
		csvBytes += rs.size
	}
	if len(ex.sobjects) > 0 && o.OnScan != nil {
		o.OnScan(len(ex.sobjects), csvBytes)
	}
	if err := planAll(ctx, ex, o); err != nil {
		return nil, err
	}
	r := &runner{c: c, ex: ex, org: org, o: o}
	r.t.RecordSets = len(ex.sobjects)
	return r.run(ctx)
}

// planAll plans the chunks of every record set, Concurrency at a time.
func planAll(ctx context.Context, ex *export, o BackupDirOptions) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sem := make(chan struct{}, o.Concurrency)
	errs := make([]error, len(ex.sobjects))
	var wg sync.WaitGroup
	for i, rs := range ex.sobjects {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if errs[i] = rs.plan(ctx, o.ChunkSize); errs[i] != nil {
				cancel()
			}
		})
	}
	wg.Wait()
	for _, err := range errs { // the first in name order, not a cancellation
		if err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
	}
	return errors.Join(errs...)
}

// runner is one BackupDir after the layout checked out.
type runner struct {
	c   *Client
	ex  *export
	org string
	o   BackupDirOptions

	backup *pb.Backup

	mu sync.Mutex
	t  BackupResult
}

// task is one upload of the run.
type task struct {
	uploadID string
	size     int64
	known    *pb.Upload // what ListUploads said, nil for a new upload

	rs    *recordSet // a record chunk ...
	seq   int
	chunk chunkRange
	file  *exportFile // ... or a file
}

func (t *task) what() string {
	if t.rs != nil {
		return fmt.Sprintf("%s.csv chunk %d", t.rs.name, t.seq)
	}
	return "files/" + t.file.rel
}

func (r *runner) run(ctx context.Context) (*BackupResult, error) {
	cctx, cancel := r.c.callCtx(ctx)
	created, err := r.c.backup.CreateBackup(cctx, &pb.CreateBackupRequest{
		OrgId: r.org, StorageId: r.o.StorageID, Labels: r.o.Labels, IdempotencyKey: r.o.IdempotencyKey,
	})
	cancel()
	if err != nil {
		return nil, err
	}
	r.backup = created.GetBackup()
	id := r.backup.GetId()
	st := r.backup.GetStatus()
	if st != pb.BackupStatus_BACKUP_STATUS_OPEN && st != pb.BackupStatus_BACKUP_STATUS_COMMITTED {
		return nil, status.Errorf(codes.FailedPrecondition,
			"backup %s of this directory is %s; to back it up anew use a new idempotency key",
			id, strings.TrimPrefix(st.String(), "BACKUP_STATUS_"))
	}
	if r.o.OnOpen != nil {
		r.o.OnOpen(r.backup, created.GetCreated())
	}
	if st == pb.BackupStatus_BACKUP_STATUS_COMMITTED {
		r.t.Commit, r.t.AlreadyCommitted = &pb.CommitBackupResponse{Backup: r.backup}, true
		return &r.t, nil
	}

	tasks, plan, err := r.tasks(ctx)
	if err != nil {
		return nil, err
	}
	if r.o.OnPlan != nil {
		r.o.OnPlan(plan)
	}
	if err := r.uploadAll(ctx, tasks); err != nil {
		return nil, err
	}

	cctx, cancel = r.c.callCtx(ctx)
	resp, err := r.c.backup.CommitBackup(cctx, &pb.CommitBackupRequest{BackupId: id, RequireParents: r.o.RequireParents})
	cancel()
	if err != nil {
		return nil, annotate(err, "commit backup %s", id)
	}
	r.t.Commit = resp
	return &r.t, nil
}

// tasks lists the uploads still to do: everything planned minus what
// ListUploads says has committed.
func (r *runner) tasks(ctx context.Context) ([]*task, BackupPlan, error) {
	var plan BackupPlan
	id := r.backup.GetId()
	byID := map[string]*pb.Upload{}
	for u, err := range r.c.Uploads(ctx, id, pb.UploadState_UPLOAD_STATE_UNSPECIFIED) {
		if err != nil {
			return nil, plan, annotate(err, "list uploads of backup %s", id)
		}
		byID[u.GetUploadId()] = u
	}
	var tasks []*task
	add := func(t *task, kind pb.UploadKind) {
		plan.Total += t.size
		if u := byID[t.uploadID]; u != nil {
			if u.GetState() == pb.UploadState_UPLOAD_STATE_COMMITTED {
				plan.Done += t.size
				r.t.add(kind, u.GetResult(), true)
				return
			}
			t.known = u
		}
		tasks = append(tasks, t)
	}
	for _, rs := range r.ex.sobjects {
		for seq, ch := range rs.chunks {
			add(&task{
				uploadID: RecordsUploadID(id, rs.name, seq),
				size:     rs.headerLen + ch.end - ch.start,
				rs:       rs, seq: seq, chunk: ch,
			}, pb.UploadKind_UPLOAD_KIND_RECORDS)
		}
	}
	for _, f := range r.ex.files {
		add(&task{uploadID: FileUploadID(id, f.rel), size: f.size, file: f}, pb.UploadKind_UPLOAD_KIND_FILE)
	}
	plan.Uploads = len(tasks)
	plan.ChunksEarlier, plan.FilesEarlier = r.t.ChunksEarlier, r.t.FilesEarlier
	return tasks, plan, nil
}

// uploadAll runs the tasks with Concurrency workers. The first failure
// stops the others; it is what is returned.
//
// New files of at most MaxBatchedFile bytes go first, in batches of up to
// batchFiles files or batchBytes of bodies on one UploadFiles stream each:
// in flight together they share packs (about a PUT per thousand files,
// instead of one per few files when each waits for its own answer).
func (r *runner) uploadAll(ctx context.Context, tasks []*task) error {
	var small, rest []*task
	for _, t := range tasks {
		if t.file != nil && t.known == nil && t.size <= MaxBatchedFile {
			small = append(small, t)
		} else {
			rest = append(rest, t)
		}
	}
	for len(small) > 0 {
		n, bytes := 0, int64(0)
		for n < len(small) && n < batchFiles && (n == 0 || bytes+small[n].size <= batchBytes) {
			bytes += small[n].size
			n++
		}
		if err := r.uploadBatch(ctx, small[:n]); err != nil {
			if status.Code(err) == codes.Unimplemented {
				// A service older than UploadFiles: one stream per file, in
				// the plan's order, for what is not done yet.
				left := map[*task]bool{}
				for _, t := range small {
					left[t] = true
				}
				rest = rest[:0]
				for _, t := range tasks {
					if t.file == nil || left[t] || !(t.known == nil && t.size <= MaxBatchedFile) {
						rest = append(rest, t)
					}
				}
				break
			}
			return err
		}
		small = small[n:]
	}
	return runTasks(ctx, r.o.Concurrency, rest, func(ctx context.Context, t *task) error {
		return annotate(r.upload(ctx, t), "%s", t.what())
	})
}

// A batch of small files: the service's UploadFiles window.
const (
	batchFiles = 1024
	batchBytes = 16 << 20
)

// uploadBatch reads small files whole and uploads them on one UploadFiles
// stream (retried as UploadFiles retries). A body that repeats an earlier
// one of the batch goes on a second stream once the first is answered, so
// that the service deduplicates it as it would across batches.
func (r *runner) uploadBatch(ctx context.Context, ts []*task) error {
	var files, again []SmallFile
	var tasks, againTasks []*task
	seen := map[[32]byte]bool{}
	for _, t := range ts {
		f := t.file
		if err := unchanged(f.local, f.size, f.modTime); err != nil {
			return err
		}
		body, err := os.ReadFile(f.local)
		if err != nil {
			return err
		}
		if int64(len(body)) != f.size {
			return fmt.Errorf("%s changed since the run started; run again to back up the new version", f.local)
		}
		sum := sha256.Sum256(body)
		sf := SmallFile{File: File{ParentID: f.parentID, Path: f.rel, Name: f.name, ContentType: f.contentType,
			UploadID: t.uploadID, SHA256: hex.EncodeToString(sum[:])}, Body: body}
		if seen[sum] {
			again, againTasks = append(again, sf), append(againTasks, t)
			continue
		}
		seen[sum] = true
		files, tasks = append(files, sf), append(tasks, t)
	}
	for _, b := range []struct {
		files []SmallFile
		tasks []*task
	}{{files, tasks}, {again, againTasks}} {
		if len(b.files) == 0 {
			continue
		}
		var failed error
		err := r.c.UploadFiles(ctx, r.backup.GetId(), b.files, func(i int, res *pb.UploadResult, err error) {
			t := b.tasks[i]
			if err != nil {
				if failed == nil {
					failed = annotate(err, "%s", t.what())
				}
				return
			}
			tracker(r.o.Progress)(t.size) // each file's progress is its own
			r.done(Uploaded{Kind: pb.UploadKind_UPLOAD_KIND_FILE, Path: t.file.rel, Size: t.size, Result: res})
		})
		if failed != nil {
			return failed
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// runTasks runs do on every task with n workers. The first failure stops
// the others; it is what is returned.
func runTasks[T any](ctx context.Context, n int, tasks []T, do func(context.Context, T) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	ch := make(chan T)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			for t := range ch {
				if ctx.Err() != nil {
					continue
				}
				if err := do(ctx, t); err != nil {
					cancel(err)
				}
			}
		})
	}
feed:
	for _, t := range tasks {
		select {
		case ch <- t:
		case <-ctx.Done():
			break feed
		}
	}
	close(ch)
	wg.Wait()
	return context.Cause(ctx)
}

// tracker returns the progress function of one transfer: told its bytes
// done so far, it reports the change to progress (which may be nil).
func tracker(progress func(int64)) func(int64) {
	if progress == nil {
		return func(int64) {}
	}
	var prev int64
	return func(done int64) {
		progress(done - prev)
		prev = done
	}
}

// upload runs one task and records its result.
func (r *runner) upload(ctx context.Context, t *task) error {
	track := tracker(r.o.Progress)
	if t.rs != nil {
		rs, ch := t.rs, t.chunk
		hdr := &pb.RecordsHeader{
			BackupId: r.backup.GetId(), Sobject: rs.name, Sequence: int32(t.seq),
			UploadId: t.uploadID, References: rs.refs,
		}
		open := func() (io.Reader, func() error, error) {
			if err := unchanged(rs.local, rs.size, rs.modTime); err != nil {
				return nil, nil, err
			}
			f, err := os.Open(rs.local)
			if err != nil {
				return nil, nil, err
			}
			body := io.MultiReader(io.NewSectionReader(f, 0, rs.headerLen), io.NewSectionReader(f, ch.start, ch.end-ch.start))
			return ctxReader{ctx, body}, f.Close, nil
		}
		res, err := r.c.uploadRecords(ctx, hdr, open, true, track)
		if err != nil {
			return err
		}
		track(t.size)
		r.done(Uploaded{Kind: pb.UploadKind_UPLOAD_KIND_RECORDS, SObject: rs.name, Sequence: t.seq, Size: t.size, Result: res})
		return nil
	}

	f := t.file
	if err := unchanged(f.local, f.size, f.modTime); err != nil {
		return err
	}
	body, err := os.Open(f.local)
	if err != nil {
		return err
	}
	defer body.Close()
	sum, size, err := HashSHA256(ctx, body)
	if err != nil {
		return fmt.Errorf("hash %s: %w", f.local, err)
	}
	if size != f.size {
		return fmt.Errorf("%s changed since the run started; run again to back up the new version", f.local)
	}
	hdr := &pb.FileHeader{
		BackupId: r.backup.GetId(), ParentId: f.parentID, Path: f.rel, Name: f.name,
		ContentType: f.contentType, UploadId: t.uploadID, DeclaredSize: &size, DeclaredSha256: sum,
	}
	out, err := r.c.uploadFile(ctx, fileJob{hdr: hdr, body: body, size: size, known: t.known}, track)
	if err != nil {
		return err
	}
	r.done(Uploaded{Kind: pb.UploadKind_UPLOAD_KIND_FILE, Path: f.rel, Size: size, Result: out.Result,
		ResumedAt: out.ResumedAt, Already: out.Already})
	return nil
}

func (r *runner) done(u Uploaded) {
	r.mu.Lock()
	r.t.add(u.Kind, u.Result, false)
	r.mu.Unlock()
	if r.o.OnUpload != nil {
		r.o.OnUpload(u)
	}
}
