package client_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"backupstore/client"
	pb "backupstore/proto/backupstore/v1"
	"backupstore/storage"
)

const org = "00D000000000001"

// fastRetry retries at once, so that tests do not wait out backoff.
var fastRetry = client.WithRetry(client.RetryPolicy{Attempts: 3, Base: time.Millisecond, Max: 5 * time.Millisecond})

func dial(t *testing.T, addr string, opts ...client.Option) *client.Client {
	t.Helper()
	c, err := client.Dial(addr, append([]client.Option{fastRetry}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// writeTree writes files (path relative to dir → content) under dir.
func writeTree(t *testing.T, dir string, files map[string][]byte) {
	t.Helper()
	for name, data := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// readTree reads every file under dir, by slash-separated relative path.
func readTree(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		out[filepath.ToSlash(rel)] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// exportFiles is an export directory written the way RestoreDir writes one
// back (files.csv in path order, 18-character parent ids, names and content
// types given), so that a round trip must reproduce it byte for byte.
func exportFiles() map[string][]byte {
	note := []byte("hello, backup\n")
	return map[string][]byte{
		"Account.csv":    []byte("Id,Name,ParentId\n001000000000001,\"Acme, Inc.\",\n001000000000002,\"Acme \"\"EU\"\"\",001000000000001\n"),
		"Contact.csv":    []byte("Id,AccountId,LastName\r\n003000000000001,001000000000002,\"Smith\r\nJr\"\r\n"),
		"references.csv": []byte("sobject,field,target\nAccount,ParentId,Account\nContact,AccountId,Account\n"),
		"files.csv": []byte("path,parent_id,name,content_type\n" +
			"a/big.bin,001000000000001AAA,big.bin,application/octet-stream\n" +
			"b/note.txt,001000000000001AAA,Note,text/plain\n" +
			"c/copy.txt,003000000000001AAA,Copy,text/plain\n"),
		"files/a/big.bin":  randomBytes(6<<20+3, 1), // two parts of 5 MiB
		"files/b/note.txt": note,
		"files/c/copy.txt": note, // the same body: deduplicated
	}
}

func TestBackupDirRestoreDirRoundTrip(t *testing.T) {
	c := dial(t, serve(t, nil))
	ctx := t.Context()
	src := t.TempDir()
	want := exportFiles()
	writeTree(t, src, want)

	var mu sync.Mutex
	var plan client.BackupPlan
	var progress int64
	var uploaded []client.Uploaded
	opts := client.BackupDirOptions{
		Concurrency: 1, // note.txt commits before copy.txt asks: deduplicated
		OnPlan:      func(p client.BackupPlan) { plan = p },
		Progress:    func(d int64) { mu.Lock(); progress += d; mu.Unlock() },
		OnUpload:    func(u client.Uploaded) { mu.Lock(); uploaded = append(uploaded, u); mu.Unlock() },
	}
	res, err := c.BackupDir(ctx, org, src, opts)
	if err != nil {
		t.Fatal(err)
	}
	id := res.Commit.GetBackup().GetId()
	if res.AlreadyCommitted || res.Commit.GetBackup().GetStatus() != pb.BackupStatus_BACKUP_STATUS_COMMITTED {
		t.Fatalf("first run: %+v", res)
	}
	if res.RecordSets != 2 || res.Chunks != 2 || res.Records != 3 || res.Files != 3 || res.FilesDeduplicated != 1 {
		t.Errorf("counts: %+v", res)
	}
	if plan.Uploads != 5 || plan.Done != 0 || len(uploaded) != 5 || progress != plan.Total {
		t.Errorf("plan %+v, %d uploads reported, progress %d", plan, len(uploaded), progress)
	}

	// Again: the same backup, found committed; nothing is sent.
	again, err := c.BackupDir(ctx, org, src, client.BackupDirOptions{
		OnUpload: func(u client.Uploaded) { t.Errorf("second run uploaded %+v", u) },
	})
	if err != nil || !again.AlreadyCommitted || again.Commit.GetBackup().GetId() != id {
		t.Fatalf("second run: %+v, %v", again, err)
	}

	// Back as it was, byte for byte.
	out := filepath.Join(t.TempDir(), "restored")
	rr, err := c.RestoreDir(ctx, id, out, client.RestoreDirOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rr.RecordSets != 2 || rr.Records != 3 || rr.Files != 3 {
		t.Errorf("restore counts: %+v", rr)
	}
	got := readTree(t, out)
	for name := range want {
		if !bytes.Equal(got[name], want[name]) {
			t.Errorf("%s: restored %q, want %q", name, cut(got[name]), cut(want[name]))
		}
	}
	if len(got) != len(want) {
		t.Errorf("restored %d files, want %d", len(got), len(want))
	}
	// Into a directory that is not empty only with Resume.
	if _, err := c.RestoreDir(ctx, id, out, client.RestoreDirOptions{}); !errors.Is(err, client.ErrDirNotEmpty) {
		t.Errorf("restore into a full directory: %v", err)
	}
	if _, err := c.RestoreDir(ctx, id, out, client.RestoreDirOptions{Resume: true}); err != nil {
		t.Errorf("resume a finished restore: %v", err)
	}

	// One record by id: the header, then its row as it was sent.
	var csv []byte
	for b, err := range c.ReadRecords(ctx, id, "Account", []string{"001000000000002"}) {
		if err != nil {
			t.Fatal(err)
		}
		csv = append(csv, b...)
	}
	if w := "Id,Name,ParentId\n001000000000002,\"Acme \"\"EU\"\"\",001000000000001\n"; string(csv) != w {
		t.Errorf("ReadRecords = %q, want %q", csv, w)
	}

	// Iterators follow pages.
	ups, err := client.Collect(c.Uploads(ctx, id, pb.UploadState_UPLOAD_STATE_COMMITTED))
	if err != nil || len(ups) != 5 {
		t.Errorf("Uploads: %d, %v", len(ups), err)
	}
	if _, err := c.Backup().CreateBackup(ctx, &pb.CreateBackupRequest{OrgId: "00D000000000002"}); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for b, err := range c.Backups(ctx, &pb.ListBackupsRequest{PageSize: 1}) {
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, b.GetId())
	}
	if len(ids) != 2 || !slices.Contains(ids, id) {
		t.Errorf("Backups with one a page: %v", ids)
	}
}

func cut(b []byte) string {
	if len(b) > 80 {
		return string(b[:80]) + "..."
	}
	return string(b)
}

func TestBackupDirRefusesBadLayoutBeforeSending(t *testing.T) {
	c := dial(t, serve(t, nil))
	dir := t.TempDir()
	writeTree(t, dir, map[string][]byte{
		"Account.csv": []byte("Id,Name\n001000000000001,a,extra\n"), // a row wider than its header
		"notes.txt":   []byte("not part of an export"),
	})
	_, err := c.BackupDir(t.Context(), org, dir, client.BackupDirOptions{})
	var layout *client.LayoutError
	if !errors.As(err, &layout) || len(layout.Problems) != 1 || !strings.Contains(layout.Problems[0], "notes.txt") {
		t.Fatalf("bad layout: %v", err)
	}
	os.Remove(filepath.Join(dir, "notes.txt"))
	_, err = c.BackupDir(t.Context(), org, dir, client.BackupDirOptions{})
	var scan *client.ScanError
	if !errors.As(err, &scan) || scan.File != "Account.csv" {
		t.Fatalf("bad record set: %v", err)
	}
	n := 0
	for _, err := range c.Backups(t.Context(), nil) {
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 0 {
		t.Errorf("%d backups opened by refused runs", n)
	}
}

// flakyStore fails the nth call of one kind once, then behaves.
type flakyStore struct {
	storage.Store
	failPart  int32  // UploadPart number to fail once
	failPutIn string // Put of a key containing this fails once
	failed    atomic.Bool
	puts      atomic.Int32
}

func (s *flakyStore) UploadPart(ctx context.Context, key, id string, n int32, r io.Reader, size int64, crc uint32) (string, error) {
	if n == s.failPart && s.failed.CompareAndSwap(false, true) {
		return "", errors.New("injected: S3 went away")
	}
	return s.Store.UploadPart(ctx, key, id, n, r, size, crc)
}

func (s *flakyStore) Put(ctx context.Context, key string, r io.Reader) (storage.ObjectInfo, error) {
	if s.failPutIn != "" && strings.Contains(key, s.failPutIn) {
		s.puts.Add(1)
		if s.failed.CompareAndSwap(false, true) {
			return storage.ObjectInfo{}, errors.New("injected: S3 went away")
		}
	}
	return s.Store.Put(ctx, key, r)
}

// readerAt counts the reads of a body that start at each offset.
type readerAt struct {
	b     []byte
	mu    sync.Mutex
	reads map[int64]int
}

func (r *readerAt) ReadAt(p []byte, off int64) (int, error) {
	r.mu.Lock()
	if r.reads == nil {
		r.reads = map[int64]int{}
	}
	r.reads[off]++
	r.mu.Unlock()
	return bytes.NewReader(r.b).ReadAt(p, off)
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func openBackup(t *testing.T, c *client.Client) string {
	t.Helper()
	resp, err := c.Backup().CreateBackup(t.Context(), &pb.CreateBackupRequest{OrgId: org})
	if err != nil {
		t.Fatal(err)
	}
	return resp.GetBackup().GetId()
}

// A part that fails with Unavailable is retried, and the retry resumes at
// the service's committed size: the first part is not sent again.
func TestUploadFileResumesAfterRetryableFailure(t *testing.T) {
	store := &flakyStore{failPart: 2}
	c := dial(t, serve(t, func(s storage.Store) storage.Store { store.Store = s; return store }))
	id := openBackup(t, c)
	body := &readerAt{b: randomBytes(12<<20, 7)}
	res, err := c.UploadFile(t.Context(), id, client.File{ParentID: "001000000000001", Path: "big.bin", SHA256: sha(body.b)}, body, int64(len(body.b)))
	if err != nil {
		t.Fatal(err)
	}
	if !store.failed.Load() || res.ResumedAt != 5<<20 || res.Result.GetSha256() != sha(body.b) || res.Result.GetBytesIn() != 12<<20 {
		t.Errorf("failed %v, resumed at %d, result %v", store.failed.Load(), res.ResumedAt, res.Result)
	}
	for off, n := range body.reads { // the body is read a message at a time
		if want := 1 + int(off/(5<<20)); min(want, 2) != n {
			t.Errorf("offset %d read %d times; want the first part once, the rest twice: %v", off, n, body.reads)
		}
	}
}

// A body the service already stores is not sent: the service answers the
// header at once (the send-data handshake), and the body is never read.
// What the API says must not be retried is not.
func TestUploadFileHandshakeAndNoRetry(t *testing.T) {
	c := dial(t, serve(t, nil))
	id := openBackup(t, c)
	data := []byte("the same attachment, every night\n")
	first := &readerAt{b: data}
	f := client.File{ParentID: "001000000000001", Path: "a.txt", SHA256: sha(data)}
	if _, err := c.UploadFile(t.Context(), id, f, first, int64(len(data))); err != nil {
		t.Fatal(err)
	}
	second := &readerAt{b: data}
	f.Path = "b.txt"
	res, err := c.UploadFile(t.Context(), id, f, second, int64(len(data)))
	if err != nil || !res.Result.GetDeduplicated() || len(second.reads) != 0 {
		t.Fatalf("deduplicated upload: %v, %v, reads %v", res, err, second.reads)
	}

	// A declared SHA-256 the body does not match: InvalidArgument, once.
	bad := &readerAt{b: []byte("something else")}
	f.Path, f.SHA256 = "c.txt", sha([]byte("what the worker hashed"))
	_, err = c.UploadFile(t.Context(), id, f, bad, int64(len(bad.b)))
	if status.Code(err) != codes.InvalidArgument || client.Retryable(err) || bad.reads[0] != 1 {
		t.Errorf("mismatched body: %v, reads %v", err, bad.reads)
	}
}

// A record chunk that fails with Unavailable is sent again from its start
// under the same upload id, once the lost attempt is known not to have
// committed.
func TestUploadRecordsRetriesFromStart(t *testing.T) {
	store := &flakyStore{failPutIn: "/records/Account/"}
	c := dial(t, serve(t, func(s storage.Store) storage.Store { store.Store = s; return store }))
	id := openBackup(t, c)
	chunk := "Id,Name\n001000000000001,a\n001000000000002,b\n"
	res, err := c.UploadRecords(t.Context(), id, "Account", strings.NewReader(chunk), client.RecordsOptions{})
	if err != nil || res.GetRecords() != 2 || store.puts.Load() < 2 {
		t.Fatalf("records: %v, %v, %d puts", res, err, store.puts.Load())
	}

	// A reader that cannot seek is sent once: the failure is returned.
	store.failed.Store(false)
	_, err = c.UploadRecords(t.Context(), id, "Account", struct{ io.Reader }{strings.NewReader(chunk)},
		client.RecordsOptions{Sequence: 1})
	if status.Code(err) != codes.Unavailable {
		t.Errorf("unseekable body: %v", err)
	}
}

func TestDialRefusesPlaintextTokenOffLoopback(t *testing.T) {
	if _, err := client.Dial("10.0.0.7:50051", client.WithToken("secret")); !errors.Is(err, client.ErrPlaintextToken) {
		t.Errorf("off loopback: %v", err)
	}
	for _, opts := range [][]client.Option{
		{client.WithToken("secret"), client.WithInsecure()},
		{client.WithToken("secret"), client.WithTLS(nil)},
		{}, // no token
	} {
		c, err := client.Dial("10.0.0.7:50051", opts...)
		if err != nil {
			t.Errorf("%d options: %v", len(opts), err)
			continue
		}
		c.Close()
	}
	c, err := client.Dial("127.0.0.1:50051", client.WithToken("secret"))
	if err != nil {
		t.Fatalf("loopback: %v", err)
	}
	c.Close()
}

func TestRetryable(t *testing.T) {
	for code, want := range map[codes.Code]bool{
		codes.Unavailable: true, codes.Aborted: true, codes.ResourceExhausted: true,
		codes.InvalidArgument: false, codes.FailedPrecondition: false, codes.OutOfRange: false,
		codes.DeadlineExceeded: false, codes.Internal: false, codes.NotFound: false,
	} {
		if got := client.Retryable(status.Error(code, "x")); got != want {
			t.Errorf("Retryable(%s) = %v, want %v", code, got, want)
		}
	}
	if client.Retryable(errors.New("local")) {
		t.Error("a local error is retryable")
	}
}

// stallingBackup answers nothing: each upload stream waits until the client
// gives up.
type stallingBackup struct {
	pb.UnimplementedBackupServiceServer
	streams atomic.Int32
}

func (s *stallingBackup) UploadRecords(stream grpc.ClientStreamingServer[pb.UploadRecordsRequest, pb.UploadRecordsResponse]) error {
	s.streams.Add(1)
	<-stream.Context().Done()
	return stream.Context().Err()
}

// A stream that makes no progress for the call timeout ends DeadlineExceeded
// (a whole upload is not bounded by it), and that is not retried.
func TestUploadStallEndsAtCallTimeout(t *testing.T) {
	fake := &stallingBackup{}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	pb.RegisterBackupServiceServer(srv, fake)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	c := dial(t, lis.Addr().String(), client.WithCallTimeout(200*time.Millisecond))
	_, err = c.UploadRecords(t.Context(), "bk", "Account", strings.NewReader("Id\n001000000000001\n"), client.RecordsOptions{})
	if status.Code(err) != codes.DeadlineExceeded || fake.streams.Load() != 1 {
		t.Errorf("stalled upload: %v after %d streams", err, fake.streams.Load())
	}
}
