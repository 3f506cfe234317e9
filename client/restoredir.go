package client

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

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "backupstore/proto/backupstore/v1"
)

// PartialSuffix names a file RestoreDir is writing; a file's partial is kept
// when a read fails, so that a resumed restore continues it.
const PartialSuffix = ".partial"

// ErrDirNotEmpty is wrapped by RestoreDir's *PathError when the directory
// holds something and RestoreDirOptions.Resume is not set.
var ErrDirNotEmpty = errors.New("not empty")

// RestoreDirOptions are the optional settings of RestoreDir. The callbacks
// may be nil; Progress and OnRestore are called from several goroutines at
// once.
type RestoreDirOptions struct {
	Concurrency int // record sets and files read at once, 1 to 64; 0 for DefaultConcurrency
	// Resume continues an interrupted restore into a directory that is not
	// empty: record sets are read again whole, files already in place with
	// the right SHA-256 are kept, partial files continue where they stopped.
	Resume bool

	// OnContents is called with what the backup holds, before anything is
	// written.
	OnContents func(*pb.ListBackupContentsResponse)
	// OnPlan is called when writing starts: bytes to write in all, bytes
	// already in place (Resume), and the number of record sets and files.
	OnPlan func(total, done int64, transfers int)
	// Progress is told bytes written since its last call (negative when a
	// retry starts over or a file in place did not check out).
	Progress func(delta int64)
	// OnRestore is called after each record set or file is in place.
	OnRestore func(Restored)
}

// Restored is one record set or file RestoreDir wrote.
type Restored struct {
	SObject string       // a record set ...
	Records int64        // its records
	File    *pb.FileInfo // ... or a file
	Bytes   int64        // bytes of the record set or file
	// ResumedAt > 0: a file continued at that byte; Present: a file
	// already in place and kept.
	ResumedAt int64
	Present   bool
}

// RestoreResult is what RestoreDir wrote.
type RestoreResult struct {
	Contents                   *pb.ListBackupContentsResponse
	RecordSets, Files          int
	FilesResumed, FilesPresent int
	Records, Bytes             int64
}

// RestoreDir writes a committed backup into dir as the export directory
// BackupDir reads, so that backing it up again, or diff -r against the
// directory that was backed up, finds the same data: <sObject>.csv per
// record set (header once, every chunk's rows in order), files/<path> per
// file, and references.csv and files.csv last (files.csv in path order).
//
// Every file is written under a temporary name (PartialSuffix) and renamed
// into place once complete; a file body's size and SHA-256 are checked
// before the rename. dir must be empty or not exist unless Resume is set
// (a *PathError wrapping ErrDirNotEmpty). A backup whose stored paths cannot
// be written as such a directory is FailedPrecondition before anything is
// written. Retryable failures are retried with backoff, a file from the
// bytes it has.
func (c *Client) RestoreDir(ctx context.Context, backupID, dir string, o RestoreDirOptions) (*RestoreResult, error) {
	if o.Concurrency == 0 {
		o.Concurrency = DefaultConcurrency
	}
	if o.Concurrency < 1 || o.Concurrency > 64 {
		return nil, fmt.Errorf("client: concurrency %d: want 1 to 64", o.Concurrency)
	}
	switch fi, err := os.Stat(dir); {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, &PathError{err}
	case !fi.IsDir():
		return nil, &PathError{fmt.Errorf("%s: not a directory", dir)}
	case !o.Resume:
		ents, err := os.ReadDir(dir)
		if err != nil {
			return nil, &PathError{err}
		}
		if len(ents) > 0 {
			return nil, &PathError{fmt.Errorf("%s is %w", dir, ErrDirNotEmpty)}
		}
	}
	contents, err := c.Contents(ctx, backupID)
	if err != nil {
		return nil, err
	}
	if err := checkRestoreLayout(contents); err != nil {
		return nil, err
	}
	if o.OnContents != nil {
		o.OnContents(contents)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	r := &restorer{c: c, id: backupID, dir: dir, o: o}
	r.t.Contents = contents
	if err := r.run(ctx); err != nil {
		return nil, err
	}
	return &r.t, nil
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
		if !LocalFilePath(f.GetPath()) {
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
		if base, ok := strings.CutSuffix(pth, PartialSuffix); ok && paths[base] {
			p.add("files/%s: the name of files/%s while it is being written", pth, base)
		}
	}
	if len(p.list) == 0 {
		return nil
	}
	return status.Error(codes.FailedPrecondition,
		p.message(fmt.Sprintf("backup %s cannot be restored as an export directory:", contents.GetBackup().GetId())))
}

// LocalFilePath reports whether p, a stored file path, is one that may be
// written under a directory: relative, clean, slash-separated, without
// control characters, and not leaving the directory. BackupDir only stores
// such paths; UploadFile may store others.
func LocalFilePath(p string) bool {
	return p != "" && !strings.Contains(p, `\`) && !path.IsAbs(p) && path.Clean(p) == p &&
		p != ".." && !strings.HasPrefix(p, "../") && filepath.IsLocal(filepath.FromSlash(p)) &&
		strings.IndexFunc(p, func(r rune) bool { return r < ' ' || r == 0x7f }) < 0
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

// restorer is one RestoreDir once the contents are known.
type restorer struct {
	c       *Client
	id, dir string
	o       RestoreDirOptions

	mu sync.Mutex
	t  RestoreResult
}

// restoreTask is one record set or file to write.
type restoreTask struct {
	rs   *pb.RecordSetInfo
	file *pb.FileInfo
	size int64 // bytes to write (record sets: bytes_in, an upper bound)
	base int64 // bytes already in place when the run started (Resume)
	// present: Resume found the file in place at its size; it is checked
	// and kept if its SHA-256 matches.
	present bool
}

func (t *restoreTask) what() string {
	if t.rs != nil {
		return t.rs.GetSobject() + ".csv"
	}
	return "files/" + t.file.GetPath()
}

func (r *restorer) run(ctx context.Context) error {
	var tasks []*restoreTask
	var total, base int64
	for _, rs := range r.t.Contents.GetRecordSets() {
		tasks = append(tasks, &restoreTask{rs: rs, size: rs.GetBytesIn()})
		total += rs.GetBytesIn()
	}
	for _, f := range r.t.Contents.GetFiles() {
		t := &restoreTask{file: f, size: f.GetSize()}
		if r.o.Resume {
			final := r.filePath(f)
			if fi, err := os.Stat(final); err == nil && fi.Mode().IsRegular() && fi.Size() == f.GetSize() {
				t.present, t.base = true, f.GetSize()
			} else if fi, err := os.Stat(final + PartialSuffix); err == nil && fi.Mode().IsRegular() && fi.Size() <= f.GetSize() {
				t.base = fi.Size()
			}
		}
		tasks = append(tasks, t)
		total += t.size
		base += t.base
	}
	if r.o.OnPlan != nil {
		r.o.OnPlan(total, base, len(tasks))
	}
	err := runTasks(ctx, r.o.Concurrency, tasks, func(ctx context.Context, t *restoreTask) error {
		var err error
		if t.rs != nil {
			err = r.restoreRecordSet(ctx, t)
		} else {
			err = r.restoreFile(ctx, t)
		}
		return annotate(err, "%s", t.what())
	})
	if err != nil {
		return err
	}
	return r.writeIndexes()
}

func (r *restorer) filePath(f *pb.FileInfo) string {
	return filepath.Join(r.dir, "files", filepath.FromSlash(f.GetPath()))
}

// restoreRecordSet writes <sObject>.csv whole: ReadRecords into
// <sObject>.csv.partial, renamed once the summary arrived.
func (r *restorer) restoreRecordSet(ctx context.Context, t *restoreTask) error {
	rs := t.rs
	track := tracker(r.o.Progress)
	final := filepath.Join(r.dir, rs.GetSobject()+".csv")
	var sum *pb.ReadRecordsSummary
	var rows *RowCounter
	err := r.c.retry.do(ctx, Retryable, func(int) error {
		track(0)
		return writeWhole(final, func(w io.Writer) error {
			var err error
			var n int64
			rows = &RowCounter{}
			sum, err = r.c.ReadRecordsTo(ctx, &pb.ReadRecordsRequest{BackupId: r.id, Sobject: rs.GetSobject(), AcceptEncoding: AcceptZstd},
				io.MultiWriter(w, rows, writerFunc(func(p []byte) (int, error) {
					n += int64(len(p))
					track(n)
					return len(p), nil
				})))
			if err == nil && rows.Records() != rs.GetRecords() {
				err = status.Errorf(codes.DataLoss, "%d records arrived, the backup lists %d", rows.Records(), rs.GetRecords())
			}
			return err
		})
	})
	if err != nil {
		return err
	}
	track(t.size)
	r.mu.Lock()
	r.t.RecordSets++
	r.t.Records += rows.Records()
	r.t.Bytes += sum.GetBytes()
	r.mu.Unlock()
	if r.o.OnRestore != nil {
		r.o.OnRestore(Restored{SObject: rs.GetSobject(), Records: rows.Records(), Bytes: sum.GetBytes()})
	}
	return nil
}

// writeWhole writes final through fill into final.partial and renames it
// into place; on failure the partial is removed.
func writeWhole(final string, fill func(w io.Writer) error) error {
	part := final + PartialSuffix
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
// the partial for Resume; a body that does not check out is removed.
func (r *restorer) restoreFile(ctx context.Context, t *restoreTask) error {
	info := t.file
	final := r.filePath(info)
	track := tracker(r.o.Progress) // bytes beyond t.base
	if t.present {
		ok, err := hasSHA256(ctx, final, info.GetSha256())
		if err != nil {
			return err
		}
		if ok {
			r.fileDone(Restored{File: info, Bytes: info.GetSize(), Present: true})
			return nil
		}
		tracker(r.o.Progress)(-t.base) // not in place after all
		t.base = 0
	}
	if err := os.MkdirAll(filepath.Dir(final), 0o755); err != nil {
		return err
	}
	part := final + PartialSuffix
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
	err = r.c.retry.do(ctx, Retryable, func(int) error {
		if have == info.GetSize() {
			return nil
		}
		return r.readFileAt(ctx, info, f, h, &have, func() { track(have - t.base) })
	})
	// A body read whole that does not check out is removed below, like one
	// continued from a partial.
	var bad *ChecksumError
	if err != nil && !errors.As(err, &bad) {
		return err
	}
	if got := hex.EncodeToString(h.Sum(nil)); bad != nil || have != info.GetSize() || !strings.EqualFold(got, info.GetSha256()) {
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
	r.fileDone(Restored{File: info, Bytes: info.GetSize(), ResumedAt: resumedAt})
	return nil
}

// readFileAt reads the rest of a file from *have on, appending to f and h.
func (r *restorer) readFileAt(ctx context.Context, info *pb.FileInfo, f *os.File, h hash.Hash, have *int64, progress func()) error {
	start := *have
	req := &pb.ReadFileRequest{BackupId: r.id, Selector: &pb.ReadFileRequest_FileId{FileId: info.GetFileId()}, ReadOffset: start}
	seen := false
	_, err := r.c.ReadFiles(ctx, req, FileSink{
		Begin: func(got *pb.FileInfo) (io.Writer, error) {
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
	})
	if err == nil && !seen {
		err = status.Errorf(codes.DataLoss, "ReadFile %s: the stream held no file", info.GetFileId())
	}
	return err
}

// RowCounter counts the rows of CSV written to it, quote-aware (a quoted
// field may hold line breaks), so that a record set read back can be checked
// against the number of records the backup lists. Blank lines (LF or CRLF
// alone, or a lone CR ending the input) hold no record and are not counted.
type RowCounter struct {
	quoted bool
	rows   int64 // non-blank rows ended by a line feed outside quotes
	n      int   // bytes of the current row so far, up to 2
	first  byte  // the current row's first byte
}

func (c *RowCounter) Write(p []byte) (int, error) {
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
func (c *RowCounter) blank() bool { return c.n == 0 || (c.n == 1 && c.first == '\r') }

// Records is the number of data rows: non-blank rows but the header, the
// last row counting without a line break too.
func (c *RowCounter) Records() int64 {
	n := c.rows
	if !c.blank() {
		n++
	}
	return max(n-1, 0)
}

// hasSHA256 reports whether a local file's SHA-256 is want.
func hasSHA256(ctx context.Context, local, want string) (bool, error) {
	f, err := os.Open(local)
	if err != nil {
		return false, err
	}
	defer f.Close()
	got, _, err := HashSHA256(ctx, f)
	if err != nil {
		return false, fmt.Errorf("hash %s: %w", local, err)
	}
	return strings.EqualFold(got, want), nil
}

func (r *restorer) fileDone(d Restored) {
	r.mu.Lock()
	r.t.Files++
	r.t.Bytes += d.File.GetSize()
	if d.ResumedAt > 0 {
		r.t.FilesResumed++
	}
	if d.Present {
		r.t.FilesPresent++
	}
	r.mu.Unlock()
	if r.o.OnRestore != nil {
		r.o.OnRestore(d)
	}
}

// writeIndexes writes references.csv and files.csv, each only if it has
// rows.
func (r *restorer) writeIndexes() error {
	if rows := refRows(r.t.Contents); len(rows) > 0 {
		if err := writeCSV(filepath.Join(r.dir, "references.csv"), []string{"sobject", "field", "target"}, rows); err != nil {
			return err
		}
	}
	if files := r.t.Contents.GetFiles(); len(files) > 0 {
		rows := make([][]string, 0, len(files))
		for _, f := range files {
			rows = append(rows, []string{f.GetPath(), f.GetParentId(), f.GetName(), f.GetContentType()})
		}
		// The service lists files by id, an order of its own; the backup does
		// not keep files.csv's row order. Path order (byte order, as
		// `LC_ALL=C sort` has it) is one any export can be written in, and
		// the one RestoreDir always writes.
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
