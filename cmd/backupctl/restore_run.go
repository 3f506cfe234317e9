package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "backupstore/proto/backupstore/v1"
)

const restoreRunHelp = `Run writes a whole committed backup back as the export directory 'backup run'
reads, so that backing up OUT_DIR again, or diff -r against the directory
that was backed up, finds the same data:

  <sObject>.csv    one per record set: the header row once, then every
                   chunk's rows in order, byte for byte as backed up
  references.csv   sobject,field,target: the record sets' indexed reference
                   fields; only if there are any
  files/<path>     every file body at its stored path
  files.csv        path,parent_id,name,content_type; only if there are files

references.csv and files.csv are written last, once everything else is in
place. files.csv's rows come in path order (byte order, as LC_ALL=C sort
sorts), references.csv's by sObject name then in the order declared; their
spelling is the service's, which may differ from the original export's:
sObject and field names as the record sets spell them, parent ids in their
18-character form, and the name and content type the file was stored with
(backup run fills in the file's base name and a type guessed from its
extension when files.csv left them empty). An export written that way diffs
clean against its restore.

Every file is written under a temporary name and renamed into place once
complete; each file body's size and SHA-256 are checked against the backup
before the rename. OUT_DIR must be empty or not exist, unless --resume is
given: then record sets are read again whole, files already in place with
the right SHA-256 are kept, and a file interrupted earlier (left as
files/<path>.partial) continues where it stopped. Unavailable, Aborted and
ResourceExhausted are retried with backoff, a file from the bytes it has.
Stored paths that are not clean relative paths (possible with upload-file),
or that collide, are an error before anything is written.

--concurrency record sets and files are read at once. Progress goes to
stderr: a bar on a terminal, else a line per record set or file; then a
summary. OUT_DIR goes to stdout (with -o json, the ListBackupContentsResponse
of everything restored).`

// partialSuffix names a file being written; a file's partial is kept when a
// read fails, so that --resume continues it.
const partialSuffix = ".partial"

func restoreRun(ctx context.Context, c *cli, cmd *command, args []string) error {
	fs := c.newFlagSet("backupctl " + cmd.path())
	concurrency := fs.Int("concurrency", 4, "record sets and files read at once")
	resume := fs.Bool("resume", false, "continue an interrupted restore into a non-empty OUT_DIR")
	pos, err := c.parse(cmd, fs, args)
	if err != nil {
		return err
	}
	switch {
	case len(pos) < 2:
		return usagef(cmd.path(), "want BACKUP_ID and OUT_DIR")
	case len(pos) > 2:
		return usagef(cmd.path(), "want BACKUP_ID and OUT_DIR, got %d arguments", len(pos))
	case strings.TrimSpace(pos[0]) == "":
		return usagef(cmd.path(), "empty backup ID")
	case pos[1] == "":
		return usagef(cmd.path(), "empty OUT_DIR")
	}
	if *concurrency < 1 || *concurrency > 64 {
		return usagef(cmd.path(), "--concurrency %d: want 1 to 64", *concurrency)
	}
	id, dir := pos[0], pos[1]
	switch fi, err := os.Stat(dir); {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return usagef(cmd.path(), "%v", err)
	case !fi.IsDir():
		return usagef(cmd.path(), "%s: not a directory", dir)
	case !*resume:
		ents, err := os.ReadDir(dir)
		if err != nil {
			return usagef(cmd.path(), "%v", err)
		}
		if len(ents) > 0 {
			return usagef(cmd.path(), "%s is not empty: restore into a new directory, or pass --resume to continue an interrupted restore", dir)
		}
	}

	client, done, err := c.restoreClient()
	if err != nil {
		return err
	}
	defer done()
	contents, err := listContents(ctx, c, client, id)
	if err != nil {
		return err
	}
	if err := checkRestoreLayout(contents); err != nil {
		return err
	}
	if contents.GetBackup().GetDamaged() {
		fmt.Fprintf(c.stderr, "warning: backup %s is marked damaged: some of it may not be readable\n", clean(id))
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	r := &restorer{c: c, client: client, id: id, dir: dir, contents: contents,
		concurrency: *concurrency, resume: *resume, started: time.Now()}
	if err := r.run(ctx); err != nil {
		if errors.Is(err, context.Canceled) || status.Code(err) == codes.Canceled {
			fmt.Fprintf(c.stderr, "Interrupted: %s is incomplete; run the same command with --resume to continue.\n", dir)
		} else {
			fmt.Fprintf(c.stderr, "%s is incomplete: run the same command with --resume to continue.\n", dir)
		}
		return err
	}
	if c.json() {
		return printJSON(c.stdout, contents)
	}
	_, err = fmt.Fprintln(c.stdout, dir)
	return err
}

// checkRestoreLayout refuses a backup whose record sets or files cannot be
// written as an export directory, before anything is written.
func checkRestoreLayout(contents *pb.ListBackupContentsResponse) error {
	var p problems
	top := map[string]string{} // lower-case top-level name → what takes it
	if len(refRows(contents)) > 0 {
		top["references.csv"] = "references.csv"
	}
	if len(contents.GetFiles()) > 0 {
		top["files.csv"] = "files.csv"
		top["files"] = "files/"
	}
	for _, rs := range contents.GetRecordSets() {
		name := rs.GetSobject()
		if !sObjectName.MatchString(name) {
			p.add("record set %q: not an sObject API name, cannot name a file", name)
			continue
		}
		if other, dup := top[strings.ToLower(name+".csv")]; dup {
			p.add("record set %s: %s.csv collides with %s (names are case-insensitive)", name, name, other)
			continue
		}
		top[strings.ToLower(name+".csv")] = name + ".csv"
	}
	paths := map[string]bool{}
	for _, f := range contents.GetFiles() {
		if !localFilePath(f.GetPath()) {
			p.add("file %s: stored path %q is not a clean relative path, cannot be written under files/", f.GetFileId(), f.GetPath())
			continue
		}
		if paths[f.GetPath()] {
			p.add("file %s: path %q is stored twice", f.GetFileId(), f.GetPath())
			continue
		}
		paths[f.GetPath()] = true
	}
	for _, f := range contents.GetFiles() {
		pth := f.GetPath()
		if !paths[pth] {
			continue
		}
		for d := path.Dir(pth); d != "."; d = path.Dir(d) {
			if paths[d] {
				p.add("files/%s: a file and a directory at once (files/%s)", d, pth)
			}
		}
		if base, ok := strings.CutSuffix(pth, partialSuffix); ok && paths[base] {
			p.add("files/%s: the name of files/%s while it is being written", pth, base)
		}
	}
	if len(p.list) == 0 {
		return nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "backup %s cannot be restored as an export directory:", contents.GetBackup().GetId())
	for i, s := range p.list {
		if i == maxProblems {
			fmt.Fprintf(&b, "\n  ... and %d more", len(p.list)-maxProblems)
			break
		}
		b.WriteString("\n  " + s)
	}
	return status.Error(codes.FailedPrecondition, b.String())
}

// refRows are references.csv's rows: each record set's reference fields.
func refRows(contents *pb.ListBackupContentsResponse) [][]string {
	var rows [][]string
	for _, rs := range contents.GetRecordSets() {
		for _, r := range rs.GetReferences() {
			rows = append(rows, []string{rs.GetSobject(), r.GetField(), r.GetTarget()})
		}
	}
	return rows
}

// restorer is one `restore run` once the contents are known.
type restorer struct {
	c           *cli
	client      pb.RestoreServiceClient
	id, dir     string
	contents    *pb.ListBackupContentsResponse
	concurrency int
	resume      bool
	started     time.Time
	prog        *progress

	mu sync.Mutex
	t  restoreTally
}

type restoreTally struct {
	sets, files, resumed, present int
	records, bytes                int64
}

// restoreTask is one record set or file to write.
type restoreTask struct {
	rs   *pb.RecordSetInfo
	file *pb.FileInfo
	size int64 // bytes to write (record sets: bytes_in, an upper bound)
	base int64 // bytes already in place when the run started (--resume)
	// present: --resume found the file in place at its size; it is checked
	// and kept if its SHA-256 matches.
	present bool
}

func (r *restorer) run(ctx context.Context) error {
	var tasks []*restoreTask
	var total, base int64
	for _, rs := range r.contents.GetRecordSets() {
		tasks = append(tasks, &restoreTask{rs: rs, size: rs.GetBytesIn()})
		total += rs.GetBytesIn()
	}
	for _, f := range r.contents.GetFiles() {
		t := &restoreTask{file: f, size: f.GetSize()}
		if r.resume {
			final := r.filePath(f)
			if fi, err := os.Stat(final); err == nil && fi.Mode().IsRegular() && fi.Size() == f.GetSize() {
				t.present, t.base = true, f.GetSize()
			} else if fi, err := os.Stat(final + partialSuffix); err == nil && fi.Mode().IsRegular() && fi.Size() <= f.GetSize() {
				t.base = fi.Size()
			}
		}
		tasks = append(tasks, t)
		total += t.size
		base += t.base
	}
	r.prog = newProgressOf(r.c.stderr, isTerminal(r.c.stderr), total, base, len(tasks), "downloads")
	err := r.runTasks(ctx, tasks)
	if err == nil {
		err = r.writeIndexes()
	}
	r.prog.close()
	if err != nil {
		return err
	}
	r.summary()
	return nil
}

// runTasks runs the tasks with --concurrency workers. The first failure
// stops the others; it is what is returned.
func (r *restorer) runTasks(ctx context.Context, tasks []*restoreTask) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	ch := make(chan *restoreTask)
	var wg sync.WaitGroup
	for range r.concurrency {
		wg.Go(func() {
			for t := range ch {
				if ctx.Err() != nil {
					continue
				}
				var err error
				if t.rs != nil {
					err = r.restoreRecordSet(ctx, t)
				} else {
					err = r.restoreFile(ctx, t)
				}
				if err != nil {
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
	return context.Cause(ctx)
}

func (t *restoreTask) what() string {
	if t.rs != nil {
		return t.rs.GetSobject() + ".csv"
	}
	return "files/" + t.file.GetPath()
}

func (r *restorer) filePath(f *pb.FileInfo) string {
	return filepath.Join(r.dir, "files", filepath.FromSlash(f.GetPath()))
}

// withRetry runs attempt, retrying what the API allows retrying.
func withRetry(ctx context.Context, attempt func() error) error {
	for n := 1; ; n++ {
		err := attempt()
		if err == nil {
			return nil
		}
		if !retryable(err) || n >= uploadRetry.attempts || ctx.Err() != nil {
			return err
		}
		if err := uploadRetry.wait(ctx, n, err); err != nil {
			return err
		}
	}
}

// restoreRecordSet writes <sObject>.csv whole: ReadRecords into
// <sObject>.csv.partial, renamed once the summary arrived.
func (r *restorer) restoreRecordSet(ctx context.Context, t *restoreTask) error {
	rs := t.rs
	track := r.prog.tracker()
	final := filepath.Join(r.dir, rs.GetSobject()+".csv")
	var sum *pb.ReadRecordsSummary
	var rows *rowCounter
	err := withRetry(ctx, func() error {
		track(0)
		return writeWhole(final, func(w io.Writer) error {
			var err error
			rows = &rowCounter{}
			sum, err = readRecords(ctx, r.c, r.client, &pb.ReadRecordsRequest{BackupId: r.id, Sobject: rs.GetSobject()},
				io.MultiWriter(w, rows), track)
			if err == nil && rows.records() != rs.GetRecords() {
				err = status.Errorf(codes.DataLoss, "%d records arrived, the backup lists %d", rows.records(), rs.GetRecords())
			}
			return err
		})
	})
	if err != nil {
		return err
	}
	track(t.size)
	r.mu.Lock()
	r.t.sets++
	r.t.records += rows.records()
	r.t.bytes += sum.GetBytes()
	r.mu.Unlock()
	r.prog.uploaded(clean(fmt.Sprintf("records %s.csv: %d records, %s", rs.GetSobject(), rows.records(), humanBytes(sum.GetBytes()))))
	return nil
}

// writeWhole writes final through fill into final.partial and renames it
// into place; on failure the partial is removed.
func writeWhole(final string, fill func(w io.Writer) error) error {
	part := final + partialSuffix
	f, err := os.OpenFile(part, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(f, dataMessageSize)
	err = fill(bw)
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(part, final)
	}
	if err != nil {
		_ = os.Remove(part)
	}
	return err
}

// restoreFile writes files/<path>: ReadFile into files/<path>.partial,
// continuing a partial at its size (read_offset), checked against the
// file's size and SHA-256, then renamed into place. A failed read keeps
// the partial for --resume; a body that does not check out is removed.
func (r *restorer) restoreFile(ctx context.Context, t *restoreTask) error {
	info := t.file
	final := r.filePath(info)
	track := r.prog.tracker() // bytes beyond t.base
	if t.present {
		ok, err := hasSHA256(ctx, final, info.GetSha256())
		if err != nil {
			return err
		}
		if ok {
			r.fileDone(info, "already in place", false, true)
			return nil
		}
		r.prog.tracker()(-t.base) // not in place after all
		t.base = 0
	}
	if err := os.MkdirAll(filepath.Dir(final), 0o755); err != nil {
		return err
	}
	part := final + partialSuffix
	f, err := os.OpenFile(part, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	have := fi.Size()
	if have > info.GetSize() {
		if err := f.Truncate(0); err != nil {
			return err
		}
		have = 0
	}
	h := sha256.New()
	if have > 0 {
		if _, err := io.CopyN(h, ctxReader{ctx, f}, have); err != nil {
			return fmt.Errorf("hash %s: %w", part, err)
		}
	}
	if _, err := f.Seek(have, io.SeekStart); err != nil {
		return err
	}
	resumedAt := have
	track(have - t.base)
	err = withRetry(ctx, func() error {
		if have == info.GetSize() {
			return nil
		}
		return r.readFileAt(ctx, info, f, h, &have, func() { track(have - t.base) })
	})
	if err != nil {
		return err
	}
	if got := hex.EncodeToString(h.Sum(nil)); have != info.GetSize() || !strings.EqualFold(got, info.GetSha256()) {
		f.Close()
		f = nil
		_ = os.Remove(part)
		return status.Errorf(codes.DataLoss, "file %s: %d bytes with SHA-256 %s, want %d bytes with %s; removed the download, run again",
			info.GetFileId(), have, got, info.GetSize(), info.GetSha256())
	}
	if err := f.Sync(); err != nil {
		return err
	}
	err = f.Close()
	f = nil
	if err != nil {
		return err
	}
	if err := os.Rename(part, final); err != nil {
		return err
	}
	how := ""
	if resumedAt > 0 {
		how = "resumed at " + humanBytes(resumedAt)
	}
	r.fileDone(info, how, resumedAt > 0, false)
	return nil
}

// readFileAt reads the rest of a file from *have on, appending to f and h.
func (r *restorer) readFileAt(ctx context.Context, info *pb.FileInfo, f *os.File, h hash.Hash, have *int64, progress func()) error {
	start := *have
	req := &pb.ReadFileRequest{BackupId: r.id, Selector: &pb.ReadFileRequest_FileId{FileId: info.GetFileId()}, ReadOffset: start}
	seen := false
	_, err := readFiles(ctx, r.c, r.client, req, fileSink{
		begin: func(got *pb.FileInfo) (io.Writer, error) {
			if seen || got.GetFileId() != info.GetFileId() || got.GetSize() != info.GetSize() || !strings.EqualFold(got.GetSha256(), info.GetSha256()) {
				return nil, status.Errorf(codes.DataLoss, "ReadFile %s: the stream describes another file: %v", info.GetFileId(), got)
			}
			seen = true
			return writerFunc(func(p []byte) (int, error) {
				n, err := f.Write(p)
				h.Write(p[:n])
				*have += int64(n)
				progress()
				return n, err
			}), nil
		},
		end: func(_ *pb.FileInfo, n int64) error {
			if start+n != info.GetSize() {
				return status.Errorf(codes.DataLoss, "ReadFile %s at %d: %d bytes arrived, want %d", info.GetFileId(), start, n, info.GetSize()-start)
			}
			return nil
		},
	}, func(int64) {})
	if err == nil && !seen {
		err = status.Errorf(codes.DataLoss, "ReadFile %s: the stream held no file", info.GetFileId())
	}
	return err
}

// rowCounter counts the rows of CSV written to it, quote-aware (a quoted
// field may hold line breaks), so that a record set read back is checked
// against the number of records the backup lists. Blank lines (LF or CRLF
// alone, or a lone CR ending the input) hold no record and are not counted.
type rowCounter struct {
	quoted bool
	rows   int64 // non-blank rows ended by a line feed outside quotes
	n      int   // bytes of the current row so far, up to 2
	first  byte  // the current row's first byte
}

func (c *rowCounter) Write(p []byte) (int, error) {
	for _, b := range p {
		if b == '\n' && !c.quoted {
			if !c.blank() {
				c.rows++
			}
			c.n = 0
			continue
		}
		if b == '"' {
			c.quoted = !c.quoted
		}
		if c.n == 0 {
			c.first = b
		}
		c.n = min(c.n+1, 2)
	}
	return len(p), nil
}

// blank reports whether the current row so far is blank: empty, or one CR.
func (c *rowCounter) blank() bool { return c.n == 0 || (c.n == 1 && c.first == '\r') }

// records is the number of data rows: non-blank rows but the header, the
// last row counting without a line break too.
func (c *rowCounter) records() int64 {
	n := c.rows
	if !c.blank() {
		n++
	}
	return max(n-1, 0)
}

type writerFunc func([]byte) (int, error)

func (w writerFunc) Write(p []byte) (int, error) { return w(p) }

// hasSHA256 reports whether a local file's SHA-256 is want.
func hasSHA256(ctx context.Context, local, want string) (bool, error) {
	got, _, err := hashFile(ctx, local)
	if err != nil {
		return false, err
	}
	return strings.EqualFold(got, want), nil
}

func (r *restorer) fileDone(info *pb.FileInfo, how string, resumed, present bool) {
	r.mu.Lock()
	r.t.files++
	r.t.bytes += info.GetSize()
	if resumed {
		r.t.resumed++
	}
	if present {
		r.t.present++
	}
	r.mu.Unlock()
	line := fmt.Sprintf("file files/%s: %s", info.GetPath(), humanBytes(info.GetSize()))
	if how != "" {
		line += ", " + how
	}
	r.prog.uploaded(clean(line))
}

// writeIndexes writes references.csv and files.csv, each only if it has
// rows.
func (r *restorer) writeIndexes() error {
	if rows := refRows(r.contents); len(rows) > 0 {
		if err := writeCSV(filepath.Join(r.dir, "references.csv"), []string{"sobject", "field", "target"}, rows); err != nil {
			return err
		}
	}
	if files := r.contents.GetFiles(); len(files) > 0 {
		rows := make([][]string, 0, len(files))
		for _, f := range files {
			rows = append(rows, []string{f.GetPath(), f.GetParentId(), f.GetName(), f.GetContentType()})
		}
		// The service lists files by id, an order of its own; the backup does
		// not keep files.csv's row order. Path order (byte order, as
		// `LC_ALL=C sort` has it) is one any export can be written in, and
		// the one restore run always writes.
		slices.SortFunc(rows, func(a, b []string) int { return strings.Compare(a[0], b[0]) })
		if err := writeCSV(filepath.Join(r.dir, "files.csv"), []string{"path", "parent_id", "name", "content_type"}, rows); err != nil {
			return err
		}
	}
	return nil
}

func writeCSV(final string, header []string, rows [][]string) error {
	return writeWhole(final, func(w io.Writer) error {
		cw := csv.NewWriter(w)
		if err := cw.Write(header); err != nil {
			return err
		}
		if err := cw.WriteAll(rows); err != nil {
			return err
		}
		return cw.Error()
	})
}

// summary prints what the run restored.
func (r *restorer) summary() {
	t := r.t
	w := r.c.stderr
	fmt.Fprintf(w, "Restored backup %s into %s in %s.\n", clean(r.id), r.dir, shortDuration(time.Since(r.started)))
	fmt.Fprintf(w, "  record sets: %d (%d records)\n", t.sets, t.records)
	fmt.Fprintf(w, "  files:       %d", t.files)
	if t.resumed+t.present > 0 {
		fmt.Fprintf(w, " (%d resumed, %d already in place)", t.resumed, t.present)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "  bytes:       %s\n", humanBytes(t.bytes))
}
