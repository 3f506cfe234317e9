package main

import (
	"backupstore/internal/bytesize"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "backupstore/proto/backupstore/v1"
)

const (
	defaultChunkSize = 1 << 30
	maxChunkSize     = 1 << 30 // record chunks restart from 0 when reopened: keep them bounded
)

const runHelp = `Run backs up a whole export directory in one go: it checks the layout, opens
a backup, uploads every record set and file with --concurrency workers, and
commits the backup. DIR holds

  <sObject>.csv    one record set per sObject, named by its API name
                   (Account.csv, Invoice__c.csv)
  references.csv   optional; header sobject,field,target, one reference
                   column to index per row (e.g. Contact,AccountId,Account);
                   both sObjects must be in the export
  files/           file bodies, any names, subdirectories allowed
  files.csv        required with files/; header path,parent_id,name,
                   content_type (path relative to files/, with "/"); it
                   must list every body, and every body it lists must exist

Names are matched case-insensitively, as Salesforce does; entries starting
with a dot are ignored at the top level. Any other entry, a CSV whose name is
not an sObject API name, or a malformed record set is a usage error (exit 2)
reported before anything is sent.

Each record set is split at row boundaries into chunks of at most
--chunk-size bytes (a single larger row gets a chunk of its own), each
beginning with the header row; each file is hashed first and its SHA-256 and
size declared, so a body the service already stores is not sent again.

Resuming: the backup is created with an idempotency key derived from the
org, the storage, DIR's absolute path, the chunk size and a fingerprint of
the directory listing (every file's path, size and modification time), and
upload ids are derived from the backup id and what they carry. Run the same
command again after an interruption (Ctrl-C, a crash, exit 5) and it finds
the same OPEN backup, skips committed uploads, resumes pending files at the
service's committed size and restarts the rest. Once the backup is committed,
running it again prints "already committed: ID" and exits 0; a changed
directory makes a new backup. --idempotency-key replaces the derived key.

Progress goes to stderr: a bar on a terminal, else a line per upload; then a
summary. The backup id goes to stdout (with -o json, the
CommitBackupResponse). Files whose parent record is in no record set are a
warning (an error with --require-parents).`

// runOptions are `backup run`'s settings.
type runOptions struct {
	org, storage, idemKey string
	concurrency           int
	chunkSize             int64
	labels                map[string]string
	requireParents        bool
}

// parseSize parses a byte count: 1048576, 64KiB, 512MiB, 1GiB (also K, M, G).
func parseSize(s string) (int64, error) {
	n, err := bytesize.Parse(s)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("%q: want a positive byte count such as 1048576, 512MiB or 1GiB", s)
	}
	return n, nil
}

func backupRun(ctx context.Context, c *cli, cmd *command, args []string) error {
	fs := c.newFlagSet("backupctl " + cmd.path())
	var o runOptions
	labels := &pairList{what: "label"}
	o.chunkSize = defaultChunkSize
	fs.StringVar(&o.org, "org", "", "Salesforce org `id`, 15 or 18 characters (required)")
	fs.StringVar(&o.storage, "storage", "", "storage `id`; default: the tenant's default storage")
	fs.IntVar(&o.concurrency, "concurrency", 4, "uploads in flight at once")
	fs.Func("chunk-size", "largest record chunk in `bytes` (suffixes KiB, MiB, GiB), at most 1GiB (default 1GiB)", func(s string) error {
		n, err := parseSize(s)
		if err != nil {
			return err
		}
		o.chunkSize = n
		return nil
	})
	fs.Var(labels, "label", "`key=value` label of the backup, repeatable")
	fs.BoolVar(&o.requireParents, "require-parents", false, "fail the commit when a file's parent record is in no record set")
	fs.StringVar(&o.idemKey, "idempotency-key", "", "use this `key` instead of the one derived from the directory")
	pos, err := c.parse(cmd, fs, args)
	if err != nil {
		return err
	}
	switch {
	case len(pos) == 0:
		return usagef(cmd.path(), "missing DIR")
	case len(pos) > 1:
		return usagef(cmd.path(), "want one DIR, got %d arguments", len(pos))
	}
	if err := required(cmd, [2]string{"org", o.org}); err != nil {
		return err
	}
	if o.concurrency < 1 || o.concurrency > 64 {
		return usagef(cmd.path(), "--concurrency %d: want 1 to 64", o.concurrency)
	}
	if o.chunkSize > maxChunkSize {
		return usagef(cmd.path(), "--chunk-size %d: at most %d (1GiB)", o.chunkSize, maxChunkSize)
	}
	o.labels = labels.labels()

	ex, err := readExport(cmd, pos[0])
	if err != nil {
		return err
	}
	if o.idemKey == "" {
		o.idemKey = runIdempotencyKey(o.org, o.storage, ex.dir, o.chunkSize, ex.fingerprint())
	}
	var csvBytes int64
	for _, rs := range ex.sobjects {
		csvBytes += rs.size
	}
	if len(ex.sobjects) > 0 {
		fmt.Fprintf(c.stderr, "Scanning %d record sets (%s) for row boundaries.\n", len(ex.sobjects), humanBytes(csvBytes))
	}
	if err := planAll(ctx, ex, o); err != nil {
		var se *scanError
		if errors.As(err, &se) {
			return usagef(cmd.path(), "%v", err)
		}
		return err
	}

	client, done, err := c.backupClient()
	if err != nil {
		return err
	}
	defer done()
	r := &runner{c: c, client: client, ex: ex, o: o, started: time.Now()}
	return r.run(ctx)
}

// planAll plans the chunks of every record set, --concurrency at a time.
func planAll(ctx context.Context, ex *export, o runOptions) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sem := make(chan struct{}, o.concurrency)
	errs := make([]error, len(ex.sobjects))
	var wg sync.WaitGroup
	for i, rs := range ex.sobjects {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if errs[i] = rs.plan(ctx, o.chunkSize); errs[i] != nil {
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

// runner is one `backup run` after the layout checked out.
type runner struct {
	c       *cli
	client  pb.BackupServiceClient
	ex      *export
	o       runOptions
	started time.Time

	backup *pb.Backup
	prog   *progress

	mu sync.Mutex
	t  tally
}

// tally counts a run's uploads, those committed by earlier runs included.
type tally struct {
	chunks, chunksEarlier           int64
	records                         int64
	files, filesDedup, filesEarlier int64
	bytesIn, bytesStored            int64
}

func (t *tally) add(kind pb.UploadKind, res *pb.UploadResult, earlier bool) {
	t.bytesIn += res.GetBytesIn()
	t.bytesStored += res.GetBytesStored()
	if kind == pb.UploadKind_UPLOAD_KIND_RECORDS {
		t.chunks++
		t.records += res.GetRecords()
		if earlier {
			t.chunksEarlier++
		}
		return
	}
	t.files++
	if res.GetDeduplicated() {
		t.filesDedup++
	}
	if earlier {
		t.filesEarlier++
	}
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

func (r *runner) run(ctx context.Context) error {
	c := r.c
	cctx, cancel := c.callCtx(ctx)
	created, err := r.client.CreateBackup(cctx, &pb.CreateBackupRequest{
		OrgId: r.o.org, StorageId: r.o.storage, Labels: r.o.labels, IdempotencyKey: r.o.idemKey,
	})
	cancel()
	if err != nil {
		return err
	}
	r.backup = created.GetBackup()
	id := r.backup.GetId()
	switch st := r.backup.GetStatus(); {
	case st == pb.BackupStatus_BACKUP_STATUS_COMMITTED:
		fmt.Fprintf(c.stderr, "already committed: %s\n", clean(id))
		return r.printResult(&pb.CommitBackupResponse{Backup: r.backup})
	case st != pb.BackupStatus_BACKUP_STATUS_OPEN:
		return status.Errorf(codes.FailedPrecondition,
			"backup %s of this directory is %s; to back it up anew pass --idempotency-key with a new key",
			id, backupStatusName(st))
	case !created.GetCreated():
		fmt.Fprintf(c.stderr, "Resuming backup %s (started %s).\n", clean(id), timeOrDash(r.backup.GetStartTime()))
	default:
		fmt.Fprintf(c.stderr, "Created backup %s.\n", clean(id))
	}

	tasks, total, base, err := r.tasks(ctx)
	if err != nil {
		return r.stillOpen(err)
	}
	r.prog = newProgress(c.stderr, isTerminal(c.stderr), total, base, len(tasks))
	if r.t.chunksEarlier+r.t.filesEarlier > 0 {
		r.prog.printf("Skipping %d record chunks and %d files committed by an earlier run.\n", r.t.chunksEarlier, r.t.filesEarlier)
	}
	err = r.uploadAll(ctx, tasks)
	r.prog.close()
	if err != nil {
		return r.stillOpen(err)
	}

	cctx, cancel = c.callCtx(ctx)
	resp, err := r.client.CommitBackup(cctx, &pb.CommitBackupRequest{BackupId: id, RequireParents: r.o.requireParents})
	cancel()
	if err != nil {
		return r.stillOpen(annotate(err, "commit backup %s", id))
	}
	if n := len(resp.GetOrphanFiles()); n > 0 {
		fmt.Fprintf(c.stderr, "warning: %d files have no parent record in this backup:\n", n)
		for i, o := range resp.GetOrphanFiles() {
			if i == maxProblems {
				fmt.Fprintf(c.stderr, "  ... and %d more (see -o json)\n", n-maxProblems)
				break
			}
			fmt.Fprintf(c.stderr, "  %s (parent %s)\n", clean(o.GetPath()), clean(o.GetParentId()))
		}
	}
	r.summary(resp.GetBackup())
	return r.printResult(resp)
}

// printResult prints the backup id, or with -o json the whole response.
func (r *runner) printResult(resp *pb.CommitBackupResponse) error {
	if r.c.json() {
		return printJSON(r.c.stdout, resp)
	}
	_, err := fmt.Fprintln(r.c.stdout, clean(resp.GetBackup().GetId()))
	return err
}

// stillOpen adds how to go on to a failure after the backup was opened.
func (r *runner) stillOpen(err error) error {
	id := clean(r.backup.GetId())
	if errors.Is(err, context.Canceled) || status.Code(err) == codes.Canceled {
		fmt.Fprintf(r.c.stderr, "Interrupted: backup %s stays open; run the same command again to resume.\n", id)
		return err
	}
	fmt.Fprintf(r.c.stderr, "Backup %s stays open: run the same command again to resume, or 'backupctl backup abort %s'.\n", id, id)
	return err
}

// tasks lists the uploads still to do: everything planned minus what
// ListUploads says has committed. total and base are the bytes of all
// planned uploads and of those already committed.
func (r *runner) tasks(ctx context.Context) (tasks []*task, total, base int64, err error) {
	uploads, err := listAllUploads(ctx, r.c, r.client, r.backup.GetId(), pb.UploadState_UPLOAD_STATE_UNSPECIFIED)
	if err != nil {
		return nil, 0, 0, annotate(err, "list uploads of backup %s", r.backup.GetId())
	}
	byID := make(map[string]*pb.Upload, len(uploads))
	for _, u := range uploads {
		byID[u.GetUploadId()] = u
	}
	add := func(t *task, kind pb.UploadKind) {
		total += t.size
		if u := byID[t.uploadID]; u != nil {
			if u.GetState() == pb.UploadState_UPLOAD_STATE_COMMITTED {
				base += t.size
				r.t.add(kind, u.GetResult(), true)
				return
			}
			t.known = u
		}
		tasks = append(tasks, t)
	}
	id := r.backup.GetId()
	for _, rs := range r.ex.sobjects {
		for seq, ch := range rs.chunks {
			add(&task{
				uploadID: uuidV5(uuidNamespace, id+"/records/"+rs.name+"/"+strconv.Itoa(seq)),
				size:     rs.headerLen + ch.end - ch.start,
				rs:       rs, seq: seq, chunk: ch,
			}, pb.UploadKind_UPLOAD_KIND_RECORDS)
		}
	}
	for _, f := range r.ex.files {
		add(&task{
			uploadID: uuidV5(uuidNamespace, id+"/file/"+f.rel),
			size:     f.size,
			file:     f,
		}, pb.UploadKind_UPLOAD_KIND_FILE)
	}
	return tasks, total, base, nil
}

// uploadAll runs the tasks with --concurrency workers. The first failure
// stops the others; it is what is returned.
func (r *runner) uploadAll(ctx context.Context, tasks []*task) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	ch := make(chan *task)
	var wg sync.WaitGroup
	for range r.o.concurrency {
		wg.Go(func() {
			for t := range ch {
				if ctx.Err() != nil {
					continue
				}
				if err := r.upload(ctx, t); err != nil {
					cancel(annotate(err, "%s", t.what()))
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
	if err := context.Cause(ctx); err != nil {
		return err
	}
	return nil
}

// upload runs one task and records its result.
func (r *runner) upload(ctx context.Context, t *task) error {
	track := r.prog.tracker()
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
		res, err := uploadRecords(ctx, r.c, r.client, hdr, open, true, track)
		if err != nil {
			return err
		}
		track(t.size)
		r.done(pb.UploadKind_UPLOAD_KIND_RECORDS, res,
			fmt.Sprintf("records %s #%d: %d records, %s", rs.name, t.seq, res.GetRecords(), humanBytes(t.size)))
		return nil
	}

	f := t.file
	if err := unchanged(f.local, f.size, f.modTime); err != nil {
		return err
	}
	sum, size, err := hashFile(ctx, f.local)
	if err != nil {
		return err
	}
	if size != f.size {
		return fmt.Errorf("%s changed since the run started; run again to back up the new version", f.local)
	}
	hdr := &pb.FileHeader{
		BackupId: r.backup.GetId(), ParentId: f.parentID, Path: f.rel, Name: f.name,
		ContentType: f.contentType, UploadId: t.uploadID, DeclaredSize: &size, DeclaredSha256: sum,
	}
	out, err := uploadFile(ctx, r.c, r.client, fileJob{hdr: hdr, local: f.local, size: size, known: t.known}, track)
	if err != nil {
		return err
	}
	how := "sent"
	switch {
	case out.result.GetDeduplicated():
		how = "deduplicated"
	case out.resumedAt > 0:
		how = fmt.Sprintf("resumed at %s", humanBytes(out.resumedAt))
	case out.already:
		how = "committed earlier"
	}
	r.done(pb.UploadKind_UPLOAD_KIND_FILE, out.result, fmt.Sprintf("file %s: %s, %s", f.rel, humanBytes(size), how))
	return nil
}

func (r *runner) done(kind pb.UploadKind, res *pb.UploadResult, line string) {
	r.mu.Lock()
	r.t.add(kind, res, false)
	r.mu.Unlock()
	r.prog.uploaded(clean(line))
}

// summary prints what the backup holds and what this run did.
func (r *runner) summary(b *pb.Backup) {
	t := r.t
	w := r.c.stderr
	fmt.Fprintf(w, "Backup %s committed in %s.\n", clean(b.GetId()), shortDuration(time.Since(r.started)))
	fmt.Fprintf(w, "  records:      %d in %d chunks of %d sObjects\n", t.records, t.chunks, len(r.ex.sobjects))
	fmt.Fprintf(w, "  files:        %d (%d sent, %d deduplicated)\n", t.files, t.files-t.filesDedup, t.filesDedup)
	fmt.Fprintf(w, "  bytes in:     %s\n", humanBytes(t.bytesIn))
	fmt.Fprintf(w, "  bytes stored: %s\n", humanBytes(t.bytesStored))
	if t.chunksEarlier+t.filesEarlier > 0 {
		fmt.Fprintf(w, "  resumed:      %d record chunks and %d files were committed by an earlier run\n", t.chunksEarlier, t.filesEarlier)
	}
}
