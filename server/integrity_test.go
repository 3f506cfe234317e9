package server_test

// Regression tests for issue 9: each forces one interleaving of concurrent
// streams, retries or deletions deterministically — a stream is parked at an
// exact step by the ingest testing knobs (ingest.Hooks) while another runs —
// and asserts that nothing acknowledged is lost or altered. The service
// default storage (a local directory store) is used so a test can wrap it.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"backupstore/ingest"
	"backupstore/metadata"
	pb "backupstore/proto/backupstore/v1"
	"backupstore/storage"
)

// park stops the first goroutine that hits it until the test releases it.
type park struct {
	at, release chan struct{}
	once        sync.Once
}

func newPark() *park { return &park{at: make(chan struct{}), release: make(chan struct{})} }

func (p *park) hit() {
	p.once.Do(func() {
		close(p.at)
		<-p.release
	})
}

// wait waits for the park to be hit, failing the test after a minute (a
// deadlock guard, not an ordering device).
func (p *park) wait(t *testing.T, what string) {
	t.Helper()
	select {
	case <-p.at:
	case <-time.After(time.Minute):
		t.Fatalf("timed out waiting for %s", what)
	}
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// waitFor polls a condition of the server's state (not a stand-in for
// ordering: the test has already forced the order; this only waits for the
// server to get there).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (e *env) committedSize(t *testing.T, backupID, uploadID string) int64 {
	q, err := e.backups.QueryUploadStatus(as(tokenA), &pb.QueryUploadStatusRequest{BackupId: backupID, UploadId: uploadID})
	if err != nil {
		return -1
	}
	return q.Upload.CommittedSize
}

// openFileStream sends a header and the first data of a file upload and
// leaves the stream open.
func (e *env) openFileStream(t *testing.T, ctx context.Context, h *pb.FileHeader, data []byte) pb.BackupService_UploadFileClient {
	t.Helper()
	st, err := e.backups.UploadFile(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&pb.UploadFileRequest{Message: &pb.UploadFileRequest_Header{Header: h}}); err != nil {
		t.Fatal(err)
	}
	sendData(t, st, data)
	return st
}

func sendData(t *testing.T, st pb.BackupService_UploadFileClient, data []byte) {
	t.Helper()
	for len(data) > 0 {
		n := min(1<<20, len(data))
		if err := st.Send(&pb.UploadFileRequest{Message: &pb.UploadFileRequest_Data{Data: data[:n]}}); err != nil {
			t.Fatalf("send: %v", err)
		}
		data = data[n:]
	}
}

func finish(st pb.BackupService_UploadFileClient) (*pb.UploadFileResponse, error) {
	if err := st.Send(&pb.UploadFileRequest{Message: &pb.UploadFileRequest_Finish{Finish: &pb.FinishWrite{}}}); err != nil {
		return st.CloseAndRecv()
	}
	return st.CloseAndRecv()
}

func (e *env) mustReadFile(t *testing.T, backupID, fileID string, want []byte) {
	t.Helper()
	got, _, err := e.readFile(t, as(tokenA), &pb.ReadFileRequest{BackupId: backupID, Selector: &pb.ReadFileRequest_FileId{FileId: fileID}})
	if err != nil {
		t.Fatalf("ReadFile %s: %v", fileID, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("ReadFile %s: %d bytes (sha %s), want %d bytes (sha %s)", fileID, len(got), sha(got)[:12], len(want), sha(want)[:12])
	}
}

func (e *env) commit(t *testing.T, backupID string) *pb.Backup {
	t.Helper()
	r, err := e.backups.CommitBackup(as(tokenA), &pb.CommitBackupRequest{BackupId: backupID})
	if err != nil {
		t.Fatalf("CommitBackup: %v", err)
	}
	return r.Backup
}

func (e *env) verifyIntact(t *testing.T, backupID string) {
	t.Helper()
	v, err := e.maint.VerifyBackup(as(tokenA), &pb.VerifyBackupRequest{BackupId: backupID, ReadPercent: 100})
	if err != nil {
		t.Fatalf("VerifyBackup: %v", err)
	}
	if len(v.Problems) > 0 || v.Backup.Damaged {
		t.Fatalf("VerifyBackup found problems in an intact backup: %v", v.Problems)
	}
}

// Item 1: stream A (generation 1) completes the multipart upload and is slow
// to commit; the worker resumes as stream B, which commits; A's commit then
// fails, and must not delete the body B's file row points to.
func TestResumedFileStaleCommitKeepsBody(t *testing.T) {
	for _, driver := range []string{"sqlite", "mysql"} {
		t.Run(driver, func(t *testing.T) {
			parkA := newPark()
			e := newEnv(t, driver, func(o *envOptions) {
				o.ingestHooks = &ingest.Hooks{BeforeFileCommit: func(u *metadata.Upload) {
					if u.Generation == 1 {
						parkA.hit()
					}
				}}
			})
			b := e.newBackup(t, "")
			data := randomBytes(11 << 20)
			size := int64(len(data))
			uid := uuid.NewString()
			h := func(off int64) *pb.FileHeader {
				return &pb.FileHeader{BackupId: b.Id, ParentId: sfid18("001", 1), Path: "a.bin", UploadId: uid,
					DeclaredSize: &size, DeclaredSha256: sha(data), WriteOffset: off}
			}
			var resA *pb.UploadFileResponse
			var errA error
			done := make(chan struct{})
			go func() {
				defer close(done)
				resA, errA = e.sendFile(as(tokenA), h(0), data, 1<<20)
			}()
			parkA.wait(t, "stream A to reach its commit")
			off := e.committedSize(t, b.Id, uid)
			if off != size {
				t.Fatalf("committed_size %d, want %d", off, size)
			}
			resB, err := e.sendFile(as(tokenA), h(off), nil, 1<<20)
			if err != nil {
				t.Fatalf("resume B: %v", err)
			}
			close(parkA.release)
			<-done
			if errA != nil {
				t.Fatalf("stream A: %v", errA)
			}
			if resA.Result.FileId != resB.Result.FileId {
				t.Fatalf("A answered file %s, B %s: the first commit's result must win", resA.Result.FileId, resB.Result.FileId)
			}
			e.commit(t, b.Id)
			e.mustReadFile(t, b.Id, resB.Result.FileId, data)
			e.verifyIntact(t, b.Id)
		})
	}
}

// Item 3: a stale stream that ends after a resume — broken off by its
// client, or with bad input — must not abort the new owner's multipart
// upload: only the current generation may end an upload.
func TestStaleStreamDoesNotAbortNewOwner(t *testing.T) {
	for _, ending := range []string{"cancel", "bad input"} {
		t.Run(ending, func(t *testing.T) {
			parkB := newPark()
			aDone := make(chan struct{})
			var aborts atomic.Int32
			e := newEnv(t, "sqlite", func(o *envOptions) {
				o.ingestHooks = &ingest.Hooks{
					AfterResume: func(*metadata.Upload) { parkB.hit() },
					FileUploadDone: func(u *metadata.Upload) {
						if u.Generation == 1 {
							close(aDone)
						}
					},
				}
				o.wrapStore = func(s storage.Store) storage.Store { return &abortCounter{Store: s, n: &aborts} }
			})
			b := e.newBackup(t, "")
			data := randomBytes(11 << 20)
			size := int64(len(data))
			uid := uuid.NewString()
			h := func(off int64) *pb.FileHeader {
				return &pb.FileHeader{BackupId: b.Id, ParentId: sfid18("001", 1), Path: "a.bin", UploadId: uid, DeclaredSize: &size, WriteOffset: off}
			}
			actx, cancelA := context.WithCancel(as(tokenA))
			defer cancelA()
			stA := e.openFileStream(t, actx, h(0), data[:6<<20])
			waitFor(t, "part 1 recorded", func() bool { return e.committedSize(t, b.Id, uid) == 5<<20 })
			var resB *pb.UploadFileResponse
			var errB error
			bDone := make(chan struct{})
			go func() {
				defer close(bDone)
				resB, errB = e.sendFile(as(tokenA), h(5<<20), data[5<<20:], 1<<20)
			}()
			parkB.wait(t, "stream B to resume")
			if ending == "cancel" {
				cancelA()
			} else {
				sendData(t, stA, randomBytes(6<<20)) // past the declared size
				_, err := finish(stA)
				wantCode(t, err, codes.InvalidArgument, "SIZE_MISMATCH")
			}
			select {
			case <-aDone:
			case <-time.After(time.Minute):
				t.Fatal("stream A did not end")
			}
			close(parkB.release)
			<-bDone
			if errB != nil {
				t.Fatalf("resumed stream B: %v", errB)
			}
			if n := aborts.Load(); n != 0 {
				t.Fatalf("%d AbortMultipartUpload calls; the stale stream must not abort", n)
			}
			e.commit(t, b.Id)
			e.mustReadFile(t, b.Id, resB.Result.FileId, data)
		})
	}
}

type abortCounter struct {
	storage.Store
	n *atomic.Int32
}

func (a *abortCounter) AbortMultipart(ctx context.Context, key, id string) error {
	a.n.Add(1)
	return a.Store.AbortMultipart(ctx, key, id)
}

// Item 2: stream B checks write_offset against the row as read; stream A
// records a part before B reopens; B must not continue at the new
// committed_size with bytes sent from the old one.
func TestResumeOffsetCheckAndBumpAreAtomic(t *testing.T) {
	for _, driver := range []string{"sqlite", "mysql"} {
		t.Run(driver, func(t *testing.T) {
			parkB := newPark()
			e := newEnv(t, driver, func(o *envOptions) {
				o.ingestHooks = &ingest.Hooks{BeforeResume: func(*metadata.Upload) { parkB.hit() }}
			})
			b := e.newBackup(t, "")
			data := randomBytes(16 << 20)
			uid := uuid.NewString()
			h := func(off int64) *pb.FileHeader { // undeclared size and SHA-256
				return &pb.FileHeader{BackupId: b.Id, ParentId: sfid18("001", 1), Path: "a.bin", UploadId: uid, WriteOffset: off}
			}
			stA := e.openFileStream(t, as(tokenA), h(0), data[:6<<20])
			waitFor(t, "part 1 recorded", func() bool { return e.committedSize(t, b.Id, uid) == 5<<20 })
			var errB error
			bDone := make(chan struct{})
			go func() {
				defer close(bDone)
				_, errB = e.sendFile(as(tokenA), h(5<<20), data[5<<20:], 1<<20)
			}()
			parkB.wait(t, "stream B to pass its offset check")
			sendData(t, stA, data[6<<20:11<<20])
			waitFor(t, "part 2 recorded", func() bool { return e.committedSize(t, b.Id, uid) == 10<<20 })
			close(parkB.release)
			<-bDone
			wantCode(t, errB, codes.OutOfRange, "WRITE_OFFSET_MISMATCH")
			sendData(t, stA, data[11<<20:])
			resA, err := finish(stA)
			if err != nil {
				t.Fatalf("stream A: %v", err)
			}
			if resA.Result.BytesIn != int64(len(data)) || resA.Result.Sha256 != sha(data) {
				t.Fatalf("stored %d bytes sha %s, want %d sha %s", resA.Result.BytesIn, resA.Result.Sha256, len(data), sha(data))
			}
			e.commit(t, b.Id)
			e.mustReadFile(t, b.Id, resA.Result.FileId, data)
		})
	}
}

// Item 1, second half: a dedup hit whose stored body is missing from the
// bucket stores the body again instead of pointing at nothing.
func TestDedupSkipsMissingBody(t *testing.T) {
	e := newEnv(t, "sqlite")
	sb := e.commitSharedBody(t)
	local, err := storage.NewLocal(storage.LocalConfig{Root: e.local})
	if err != nil {
		t.Fatal(err)
	}
	if err := local.Delete(context.Background(), sb.result.DataKey); err != nil {
		t.Fatal(err)
	}
	b2 := e.newBackup(t, "")
	r2, err := e.sendFile(as(tokenA), sb.hdr(b2.Id), sb.body, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if r2.Result.Deduplicated || r2.Result.DataKey == sb.result.DataKey {
		t.Fatalf("deduplicated onto a missing body: %v", r2.Result)
	}
	e.commit(t, b2.Id)
	e.mustReadFile(t, b2.Id, r2.Result.FileId, sb.body)
}

// Item 9: the only backup referencing a dedup'd body is deleted between the
// lookup and the commit: the upload asks for the body after all.
func TestDedupFallsBackWhenSharedBodyIsDeleted(t *testing.T) {
	for _, driver := range []string{"sqlite", "mysql"} {
		t.Run(driver, func(t *testing.T) {
			parked := newPark()
			var armed atomic.Bool
			e := newEnv(t, driver, func(o *envOptions) {
				o.ingestHooks = &ingest.Hooks{BeforeDedupCommit: func(*metadata.Object) {
					if armed.Load() {
						parked.hit()
					}
				}}
			})
			sb := e.commitSharedBody(t)
			b2 := e.newBackup(t, "")
			armed.Store(true)
			var r2 *pb.UploadFileResponse
			var err2 error
			done := make(chan struct{})
			go func() {
				defer close(done)
				r2, err2 = e.sendFile(as(tokenA), sb.hdr(b2.Id), sb.body, 1<<20)
			}()
			parked.wait(t, "the dedup commit")
			if _, err := e.maint.DeleteBackup(as(tokenA), &pb.DeleteBackupRequest{BackupId: sb.backup}); err != nil {
				t.Fatalf("DeleteBackup: %v", err)
			}
			close(parked.release)
			<-done
			if err2 != nil {
				t.Fatalf("upload whose shared body was deleted meanwhile: %v", err2)
			}
			if r2.Result.Deduplicated {
				t.Fatalf("deduplicated onto a deleted body: %v", r2.Result)
			}
			e.commit(t, b2.Id)
			e.mustReadFile(t, b2.Id, r2.Result.FileId, sb.body)
		})
	}
}

// Item 11: a commit that succeeded but whose OK was lost must not delete the
// object (single-PUT file and record chunk), and answers the stored result.
func TestLostCommitOKDeletesNothing(t *testing.T) {
	var lose atomic.Int32
	lose.Store(2)
	e := newEnv(t, "sqlite", func(o *envOptions) {
		o.ingestHooks = &ingest.Hooks{LoseCommitOK: func(*metadata.Upload) bool { return lose.Add(-1) >= 0 }}
	})
	b := e.newBackup(t, "")
	body := randomBytes(64 << 10)
	rf, err := e.sendFile(as(tokenA), &pb.FileHeader{BackupId: b.Id, ParentId: sfid18("001", 1), Path: "x.bin", UploadId: uuid.NewString()}, body, 1<<20)
	if err != nil {
		t.Fatalf("file whose commit OK was lost: %v", err)
	}
	csv := []byte("Id,Name\n" + sfid18("001", 1) + ",a\n")
	if _, err := e.sendRecords(as(tokenA), &pb.RecordsHeader{BackupId: b.Id, Sobject: "Account"}, csv, 1<<20); err != nil {
		t.Fatalf("records whose commit OK was lost: %v", err)
	}
	e.commit(t, b.Id)
	e.mustReadFile(t, b.Id, rf.Result.FileId, body)
	got, _, err := e.readRecords(t, as(tokenA), &pb.ReadRecordsRequest{BackupId: b.Id, Sobject: "Account"})
	if err != nil || !bytes.Equal(got, csv) {
		t.Fatalf("records: %q %v, want %q", got, err, csv)
	}
	e.verifyIntact(t, b.Id)
}

// A commit whose OK was lost and whose re-read failed too (the catalog
// connection dropped) answers Unavailable — the outcome is unknown — and
// deletes nothing; the retry with the same upload id answers the committed
// result. (Found by the torture run: a records stream answered
// AlreadyExists "another upload id committed it", which a worker does not
// retry.)
func TestUnknownCommitOutcomeIsUnavailable(t *testing.T) {
	var lose atomic.Int32
	e := newEnv(t, "sqlite", func(o *envOptions) {
		o.ingestHooks = &ingest.Hooks{
			LoseCommitOK:   func(*metadata.Upload) bool { return lose.Load() > 0 },
			LoseSettleRead: func(*metadata.Upload) bool { return lose.Add(-1) >= 0 },
		}
	})
	b := e.newBackup(t, "")
	csv := []byte("Id,Name\n" + sfid18("001", 1) + ",a\n")
	body := randomBytes(64 << 10)
	for _, kind := range []string{"records", "file"} {
		lose.Store(1)
		uid := uuid.NewString()
		send := func() (*pb.UploadResult, error) {
			if kind == "records" {
				r, err := e.sendRecords(as(tokenA), &pb.RecordsHeader{BackupId: b.Id, Sobject: "Account", UploadId: uid}, csv, 1<<20)
				return r.GetResult(), err
			}
			r, err := e.sendFile(as(tokenA), &pb.FileHeader{BackupId: b.Id, ParentId: sfid18("001", 1), Path: "x.bin", UploadId: uid}, body, 1<<20)
			return r.GetResult(), err
		}
		_, err := send()
		wantCode(t, err, codes.Unavailable, "COMMIT_OUTCOME_UNKNOWN")
		r, err := send()
		if err != nil || r.GetSha256() == "" {
			t.Fatalf("%s retry with the same upload id: %v %v", kind, r, err)
		}
	}
	e.commit(t, b.Id)
	got, _, err := e.readRecords(t, as(tokenA), &pb.ReadRecordsRequest{BackupId: b.Id, Sobject: "Account"})
	if err != nil || !bytes.Equal(got, csv) {
		t.Fatalf("records: %q %v, want %q", got, err, csv)
	}
	e.verifyIntact(t, b.Id)
}

// Item 5: a single-PUT file committed after the manifest was built and
// before the backup's commit must be in the manifest.
func TestManifestListsFileCommittedDuringCommit(t *testing.T) {
	parked := newPark()
	e := newEnv(t, "sqlite", func(o *envOptions) {
		o.ingestHooks = &ingest.Hooks{AfterManifest: func(string) { parked.hit() }}
	})
	b := e.newBackup(t, "")
	csv := []byte("Id,Name\n" + sfid18("001", 1) + ",a\n")
	if _, err := e.sendRecords(as(tokenA), &pb.RecordsHeader{BackupId: b.Id, Sobject: "Account"}, csv, 1<<20); err != nil {
		t.Fatal(err)
	}
	var cb *pb.Backup
	done := make(chan struct{})
	go func() { defer close(done); cb = e.commit(t, b.Id) }()
	parked.wait(t, "the manifest")
	rf, err := e.sendFile(as(tokenA), &pb.FileHeader{BackupId: b.Id, ParentId: sfid18("001", 1), Path: "late.bin", UploadId: uuid.NewString()}, []byte("late"), 1<<20)
	if err != nil {
		t.Fatalf("file during commit: %v", err)
	}
	close(parked.release)
	<-done
	if cb.FileCount != 1 {
		t.Fatalf("file count %d, want 1", cb.FileCount)
	}
	m := e.manifest(t, b.Id)
	if len(m.Files) != 1 || m.Files[0].ID != rf.Result.FileId {
		t.Fatalf("manifest files %v, want the file committed during the commit (%s)", m.Files, rf.Result.FileId)
	}
	e.verifyIntact(t, b.Id)
}

type manifestJSON struct {
	Files []struct {
		ID string `json:"id"`
	} `json:"files"`
	Chunks []json.RawMessage `json:"record_chunks"`
}

func (e *env) manifest(t *testing.T, backupID string) manifestJSON {
	t.Helper()
	bk, err := e.catalog.GetBackup(context.Background(), "acme", backupID)
	if err != nil {
		t.Fatal(err)
	}
	local, err := storage.NewLocal(storage.LocalConfig{Root: e.local})
	if err != nil {
		t.Fatal(err)
	}
	rc, err := local.Get(context.Background(), bk.ManifestKey, 0, -1)
	if err != nil {
		t.Fatalf("manifest %s: %v", bk.ManifestKey, err)
	}
	defer rc.Close()
	raw, _ := io.ReadAll(rc)
	var m manifestJSON
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("manifest is not JSON: %v\n%s", err, raw)
	}
	return m
}

// Item 6: a commit refused after the manifest was written, then retried,
// leaves a manifest row that matches the manifest in the bucket.
func TestRetriedCommitRewritesManifestRow(t *testing.T) {
	parked := newPark()
	e := newEnv(t, "mysql", func(o *envOptions) {
		o.ingestHooks = &ingest.Hooks{AfterManifest: func(string) { parked.hit() }}
	})
	b := e.newBackup(t, "")
	csv := []byte("Id,Name\n" + sfid18("001", 1) + ",a\n")
	if _, err := e.sendRecords(as(tokenA), &pb.RecordsHeader{BackupId: b.Id, Sobject: "Account"}, csv, 1<<20); err != nil {
		t.Fatal(err)
	}
	var commitErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, commitErr = e.backups.CommitBackup(as(tokenA), &pb.CommitBackupRequest{BackupId: b.Id})
	}()
	parked.wait(t, "the manifest")
	// A stream that opens and breaks off leaves a PENDING upload.
	uid := uuid.NewString()
	cctx, cancel := context.WithCancel(as(tokenA))
	st, err := e.backups.UploadRecords(cctx)
	if err != nil {
		t.Fatal(err)
	}
	st.Send(&pb.UploadRecordsRequest{Message: &pb.UploadRecordsRequest_Header{Header: &pb.RecordsHeader{BackupId: b.Id, Sobject: "Contact", UploadId: uid}}})
	waitFor(t, "the pending upload", func() bool { return e.committedSize(t, b.Id, uid) == 0 })
	cancel()
	close(parked.release)
	<-done
	wantCode(t, commitErr, codes.FailedPrecondition, "UPLOADS_PENDING")
	waitFor(t, "the broken stream to end", func() bool { return e.budget.Used() == 0 })
	contacts := []byte("Id,Name\n" + sfid18("003", 1) + ",c\n")
	if _, err := e.sendRecords(as(tokenA), &pb.RecordsHeader{BackupId: b.Id, Sobject: "Contact", UploadId: uid}, contacts, 1<<20); err != nil {
		t.Fatal(err)
	}
	e.commit(t, b.Id)
	if m := e.manifest(t, b.Id); len(m.Chunks) != 2 {
		t.Fatalf("manifest lists %d chunks, want 2", len(m.Chunks))
	}
	e.verifyIntact(t, b.Id)
}

// Item 8: AbortBackup of a backup that shares a body with a backup being
// deleted: the two purges run one after the other under the maintenance
// lock, and whichever is last deletes the body and its row — none leaks.
func TestAbortAndDeleteOfSharedBodyLeakNothing(t *testing.T) {
	for _, driver := range []string{"sqlite", "mysql"} {
		t.Run(driver, func(t *testing.T) {
			parked := newPark()
			e := newEnv(t, driver, func(o *envOptions) {
				o.ingestHooks = &ingest.Hooks{AfterAbortMark: func(string) { parked.hit() }}
			})
			sb := e.commitSharedBody(t)
			b2 := e.newBackup(t, "")
			if r, err := e.sendFile(as(tokenA), sb.hdr(b2.Id), sb.body, 1<<20); err != nil || !r.Result.Deduplicated {
				t.Fatalf("dedup: %v %v", r, err)
			}
			var abortErr error
			done := make(chan struct{})
			go func() {
				defer close(done)
				_, abortErr = e.backups.AbortBackup(as(tokenA), &pb.AbortBackupRequest{BackupId: b2.Id})
			}()
			parked.wait(t, "the abort mark")
			if _, err := e.maint.DeleteBackup(as(tokenA), &pb.DeleteBackupRequest{BackupId: sb.backup}); err != nil {
				t.Fatalf("DeleteBackup: %v", err)
			}
			close(parked.release)
			<-done
			if abortErr != nil {
				t.Fatalf("AbortBackup: %v", abortErr)
			}
			e.assertNothingStored(t)
		})
	}
}

// An AbortBackup that read the backup OPEN and lost the race to change it
// answers for what it became: OK when another abort marked it ABORTED,
// FailedPrecondition naming COMMITTED when a commit won — never a vague
// "changed state meanwhile".
func TestAbortThatLosesTheRaceAnswersTheNewState(t *testing.T) {
	for _, winner := range []string{"abort", "commit"} {
		t.Run(winner, func(t *testing.T) {
			parked := newPark()
			e := newEnv(t, "sqlite", func(o *envOptions) {
				var calls atomic.Int32
				o.ingestHooks = &ingest.Hooks{BeforeAbortMark: func(string) {
					if calls.Add(1) == 1 { // only the first abort parks
						parked.hit()
					}
				}}
			})
			b := e.newBackup(t, "")
			var abortErr error
			done := make(chan struct{})
			go func() {
				defer close(done)
				_, abortErr = e.backups.AbortBackup(as(tokenA), &pb.AbortBackupRequest{BackupId: b.Id})
			}()
			parked.wait(t, "the first abort, read OPEN")
			if winner == "abort" {
				if _, err := e.backups.AbortBackup(as(tokenA), &pb.AbortBackupRequest{BackupId: b.Id}); err != nil {
					t.Fatalf("second AbortBackup: %v", err)
				}
			} else {
				e.commit(t, b.Id)
			}
			close(parked.release)
			<-done
			got, err := e.backups.GetBackup(as(tokenA), &pb.GetBackupRequest{Id: b.Id})
			if err != nil {
				t.Fatal(err)
			}
			if winner == "abort" {
				if abortErr != nil || got.Backup.Status != pb.BackupStatus_BACKUP_STATUS_ABORTED {
					t.Fatalf("AbortBackup after another abort: %v, backup %v", abortErr, got.Backup.Status)
				}
				return
			}
			wantCode(t, abortErr, codes.FailedPrecondition, "BACKUP_NOT_OPEN")
			if !strings.Contains(status.Convert(abortErr).Message(), "COMMITTED") {
				t.Fatalf("message %q does not say the backup is COMMITTED", status.Convert(abortErr).Message())
			}
			if got.Backup.Status != pb.BackupStatus_BACKUP_STATUS_COMMITTED {
				t.Fatalf("backup is %v after a commit won", got.Backup.Status)
			}
		})
	}
}

// An AbortBackup that died after marking the backup ABORTED is finished by
// cleanup.
func TestCleanupFinishesInterruptedAbort(t *testing.T) {
	e := newEnv(t, "sqlite")
	b := e.newBackup(t, "")
	if _, err := e.sendFile(as(tokenA), &pb.FileHeader{BackupId: b.Id, ParentId: sfid18("001", 1), Path: "x.bin", UploadId: uuid.NewString()}, []byte("body"), 1<<20); err != nil {
		t.Fatal(err)
	}
	csv := []byte("Id,Name\n" + sfid18("001", 1) + ",a\n")
	if _, err := e.sendRecords(as(tokenA), &pb.RecordsHeader{BackupId: b.Id, Sobject: "Account"}, csv, 1<<20); err != nil {
		t.Fatal(err)
	}
	// The crash: the mark landed, the purge never ran.
	if err := e.catalog.SetBackupStatus(context.Background(), "acme", b.Id, metadata.BackupOpen, metadata.BackupAborted); err != nil {
		t.Fatal(err)
	}
	if _, err := e.maint.RunCleanup(as(tokenA), &pb.RunCleanupRequest{}); err != nil {
		t.Fatalf("RunCleanup: %v", err)
	}
	e.assertNothingStored(t)
	got, err := e.backups.GetBackup(as(tokenA), &pb.GetBackupRequest{Id: b.Id})
	if err != nil || got.Backup.Status != pb.BackupStatus_BACKUP_STATUS_ABORTED {
		t.Fatalf("aborted backup after cleanup: %v %v", got, err)
	}
}

// assertNothingStored: no object rows for tenant acme and no keys under its
// prefix in the service-default store.
func (e *env) assertNothingStored(t *testing.T) {
	t.Helper()
	var rows int
	if err := e.db.QueryRow("SELECT COUNT(*) FROM objects WHERE tenant_id = 'acme'").Scan(&rows); err != nil {
		t.Fatal(err)
	}
	local, err := storage.NewLocal(storage.LocalConfig{Root: e.local})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	if err := local.List(context.Background(), "acme/", func(o storage.ObjectInfo) error {
		keys = append(keys, o.Key)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if rows != 0 || len(keys) != 0 {
		t.Fatalf("leaked: %d object rows, keys %v", rows, keys)
	}
}

// Item 12: CommitBackup's parent check reads each index block once, not once
// per file (files come ordered by parent; index readers keep their blocks).
func TestCommitParentCheckReadsBlocksNotFiles(t *testing.T) {
	var idxGets atomic.Int64
	e := newEnv(t, "sqlite", func(o *envOptions) {
		o.wrapStore = func(s storage.Store) storage.Store { return &getCounter{Store: s, suffix: ".idx", n: &idxGets} }
	})
	b := e.newBackup(t, "")
	var csv strings.Builder
	csv.WriteString("Id,Name\n")
	const records = 20000
	for i := 1; i <= records; i++ {
		csv.WriteString(sfid18("001", i) + ",n\n")
	}
	if _, err := e.sendRecords(as(tokenA), &pb.RecordsHeader{BackupId: b.Id, Sobject: "Account"}, []byte(csv.String()), 1<<20); err != nil {
		t.Fatal(err)
	}
	const files = 400
	for i := 0; i < files; i++ {
		parent := sfid18("001", 1+i*(records/files))
		if i == files-1 {
			parent = sfid18("001", records+7) // one orphan
		}
		if _, err := e.sendFile(as(tokenA), &pb.FileHeader{BackupId: b.Id, ParentId: parent, Path: "f", UploadId: uuid.NewString()}, []byte{byte(i)}, 1<<20); err != nil {
			t.Fatal(err)
		}
	}
	idxGets.Store(0)
	r, err := e.backups.CommitBackup(as(tokenA), &pb.CommitBackupRequest{BackupId: b.Id})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.OrphanFiles) != 1 || r.OrphanFiles[0].ParentId[:15] != sfid18("001", records+7)[:15] {
		t.Fatalf("orphans %v, want the one file without a parent", r.OrphanFiles)
	}
	if n := idxGets.Load(); n > 60 {
		t.Fatalf("%d index GETs for %d files: the parent check reads per file", n, files)
	}
	t.Logf("%d index GETs for %d files over %d records", idxGets.Load(), files, records)
}

// VerifyBackup's dangling-reference check reads each target index block once,
// not once per reference: a verify of many references is a few requests, so
// it also completes on a network that drops some (found by the torture run:
// verifies that made one GET per reference never finished under faults).
func TestVerifyDanglingCheckReadsBlocksNotReferences(t *testing.T) {
	var idxGets atomic.Int64
	e := newEnv(t, "sqlite", func(o *envOptions) {
		o.wrapStore = func(s storage.Store) storage.Store { return &getCounter{Store: s, suffix: ".idx", n: &idxGets} }
	})
	b := e.newBackup(t, "")
	const accounts, contacts = 20000, 2000
	var acc, con strings.Builder
	acc.WriteString("Id,Name\n")
	for i := 1; i <= accounts; i++ {
		acc.WriteString(sfid18("001", i) + ",n\n")
	}
	con.WriteString("Id,AccountId\n")
	for i := 1; i <= contacts; i++ {
		parent := sfid18("001", i*(accounts/contacts))
		if i == contacts {
			parent = sfid18("001", accounts+3) // one dangling
		}
		con.WriteString(sfid18("003", i) + "," + parent + "\n")
	}
	if _, err := e.sendRecords(as(tokenA), &pb.RecordsHeader{BackupId: b.Id, Sobject: "Account"}, []byte(acc.String()), 1<<20); err != nil {
		t.Fatal(err)
	}
	if _, err := e.sendRecords(as(tokenA), &pb.RecordsHeader{BackupId: b.Id, Sobject: "Contact",
		References: []*pb.ReferenceField{{Field: "AccountId", Target: "Account"}}}, []byte(con.String()), 1<<20); err != nil {
		t.Fatal(err)
	}
	e.commit(t, b.Id)
	idxGets.Store(0)
	r, err := e.maint.VerifyBackup(as(tokenA), &pb.VerifyBackupRequest{BackupId: b.Id})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Dangling) != 1 || r.Dangling[0].Count != 1 {
		t.Fatalf("dangling %v, want one reference", r.Dangling)
	}
	if n := idxGets.Load(); n > 80 {
		t.Fatalf("%d index GETs for %d references: the dangling check reads per reference", n, contacts)
	}
	t.Logf("%d index GETs for %d references over %d records", idxGets.Load(), contacts, accounts)
}

type getCounter struct {
	storage.Store
	suffix string
	n      *atomic.Int64
}

func (g *getCounter) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	if strings.HasSuffix(key, g.suffix) {
		g.n.Add(1)
	}
	return g.Store.Get(ctx, key, off, n)
}

// A read that fails on the way (network, S3 5xx) while Verify opens a record index is not
// damage: Verify answers Unavailable and flags nothing (found by the torture run).
func TestVerifyTransientIndexReadIsNotDamage(t *testing.T) {
	var failIdx atomic.Bool
	e := newEnv(t, "sqlite", func(o *envOptions) {
		o.wrapStore = func(s storage.Store) storage.Store { return &flakyIdx{Store: s, on: &failIdx} }
	})
	b := e.newBackup(t, "")
	csv := []byte("Id,Name\n" + sfid18("001", 1) + ",a\n")
	if _, err := e.sendRecords(as(tokenA), &pb.RecordsHeader{BackupId: b.Id, Sobject: "Account"}, csv, 1<<20); err != nil {
		t.Fatal(err)
	}
	e.commit(t, b.Id)
	failIdx.Store(true)
	_, err := e.maint.VerifyBackup(as(tokenA), &pb.VerifyBackupRequest{BackupId: b.Id})
	wantCode(t, err, codes.Unavailable, "STORAGE_UNAVAILABLE")
	failIdx.Store(false)
	e.verifyIntact(t, b.Id)
}

type flakyIdx struct {
	storage.Store
	on *atomic.Bool
}

func (f *flakyIdx) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	if f.on.Load() && strings.HasSuffix(key, ".idx") {
		return nil, fmt.Errorf("s3.GetObject %q: connection reset: %w", key, storage.ErrUnavailable)
	}
	return f.Store.Get(ctx, key, off, n)
}

// One HeadObject or GetObject that fails on the way is tried again inside
// Verify: a verify of a whole backup does not start over (and, on a flaky
// network, never finish) because one request of thousands was dropped.
func TestVerifyRetriesAnObjectOnce(t *testing.T) {
	var on atomic.Bool
	e := newEnv(t, "sqlite", func(o *envOptions) {
		o.wrapStore = func(s storage.Store) storage.Store { return &failFirst{Store: s, on: &on, seen: map[string]bool{}} }
	})
	b := e.newBackup(t, "")
	csv := []byte("Id,Name\n" + sfid18("001", 1) + ",a\n")
	if _, err := e.sendRecords(as(tokenA), &pb.RecordsHeader{BackupId: b.Id, Sobject: "Account"}, csv, 1<<20); err != nil {
		t.Fatal(err)
	}
	if _, err := e.sendFile(as(tokenA), &pb.FileHeader{BackupId: b.Id, ParentId: sfid18("001", 1), Path: "x.bin", UploadId: uuid.NewString()}, []byte("body"), 1<<20); err != nil {
		t.Fatal(err)
	}
	e.commit(t, b.Id)
	on.Store(true)
	r, err := e.maint.VerifyBackup(as(tokenA), &pb.VerifyBackupRequest{BackupId: b.Id, ReadPercent: 100})
	if err != nil {
		t.Fatalf("VerifyBackup with every object's first request dropped: %v", err)
	}
	if len(r.Problems) != 0 || r.Backup.Damaged || r.ObjectsRead == 0 {
		t.Fatalf("verify: problems %v, damaged %v, read %d", r.Problems, r.Backup.Damaged, r.ObjectsRead)
	}
}

// failFirst fails the first HeadObject and the first whole GetObject of every
// key as a dropped connection does (a fake: a real server cannot be made to
// drop exactly these).
type failFirst struct {
	storage.Store
	on   *atomic.Bool
	mu   sync.Mutex
	seen map[string]bool
}

func (f *failFirst) first(op, key string) bool {
	if !f.on.Load() {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.seen[op+key] {
		return false
	}
	f.seen[op+key] = true
	return true
}

func (f *failFirst) Head(ctx context.Context, key string) (storage.ObjectInfo, error) {
	if f.first("head", key) {
		return storage.ObjectInfo{}, fmt.Errorf("s3.HeadObject %q: connection reset: %w", key, storage.ErrUnavailable)
	}
	return f.Store.Head(ctx, key)
}

func (f *failFirst) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	if n < 0 && f.first("get", key) {
		return nil, fmt.Errorf("s3.GetObject %q: connection reset: %w", key, storage.ErrUnavailable)
	}
	return f.Store.Get(ctx, key, off, n)
}

// sharedBody is a committed backup holding one file body that later uploads may deduplicate.
type sharedBody struct {
	body   []byte
	backup string           // the committed backup's id
	result *pb.UploadResult // the result of its upload
}

// hdr is the header of a new upload of the body to backup, declaring its size and SHA-256 (a
// deduplication candidate).
func (sb *sharedBody) hdr(backup string) *pb.FileHeader {
	size := int64(len(sb.body))
	return &pb.FileHeader{BackupId: backup, ParentId: sfid18("001", 1), Path: "x.bin", UploadId: uuid.NewString(),
		DeclaredSize: &size, DeclaredSha256: sha(sb.body)}
}

// commitSharedBody uploads a 100 KiB body to a new backup of tenant A and commits the backup.
func (e *env) commitSharedBody(t *testing.T) *sharedBody {
	t.Helper()
	sb := &sharedBody{body: randomBytes(100 << 10)}
	b := e.newBackup(t, "")
	r, err := e.sendFile(as(tokenA), sb.hdr(b.Id), sb.body, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	e.commit(t, b.Id)
	sb.backup, sb.result = b.Id, r.Result
	return sb
}

// Found by the torture run (seed 27443): stream B reopens a record upload
// (new generation) and, before it resets the row, stream C reopens it again
// and commits it; B's reset then finds the upload committed, and its re-read
// of the result fails (the catalog restarting). B must answer a retryable
// error — it answered the bare conflict, AlreadyExists — and B's retry must
// answer C's committed result.
func TestRecordsReopenRaceWithLostReread(t *testing.T) {
	parkB := newPark()
	var lose atomic.Bool
	e := newEnv(t, "sqlite", func(o *envOptions) {
		o.ingestHooks = &ingest.Hooks{
			BeforeRecordsReset: func(u *metadata.Upload) {
				if u.Generation == 2 {
					parkB.hit() // B; C comes with generation 3
				}
			},
			LoseRecordsReread: func(*metadata.Upload) bool { return lose.Load() },
		}
	})
	b := e.newBackup(t, "")
	uid := uuid.NewString()
	csv := []byte("Id,Name\n" + sfid18("001", 1) + ",a\n" + sfid18("001", 2) + ",b\n")
	hdr := func() *pb.RecordsHeader {
		return &pb.RecordsHeader{BackupId: b.Id, Sobject: "Account", UploadId: uid}
	}
	// A opens the upload (generation 1) and goes idle.
	ctxA, cancelA := context.WithCancel(as(tokenA))
	defer cancelA()
	e.idleRecords(t, ctxA, b.Id, uid)
	waitFor(t, "A's upload row", func() bool { return e.committedSize(t, b.Id, uid) >= 0 })
	// B reopens it (generation 2) and parks before its reset.
	var errB error
	bDone := make(chan struct{})
	go func() {
		defer close(bDone)
		_, errB = e.sendRecords(as(tokenA), hdr(), csv, 1<<20)
	}()
	parkB.wait(t, "stream B to reopen the upload")
	// C reopens it (generation 3) and commits it.
	resC, err := e.sendRecords(as(tokenA), hdr(), csv, 1<<20)
	if err != nil {
		t.Fatalf("stream C: %v", err)
	}
	// B resumes: its reset finds the upload committed, and its re-read is lost.
	lose.Store(true)
	close(parkB.release)
	<-bDone
	if c := status.Code(errB); c != codes.Unavailable && c != codes.Aborted {
		t.Fatalf("stream B: %v, want a retryable code (Unavailable or Aborted)", errB)
	}
	lose.Store(false)
	// B's retry answers C's result.
	resB, err := e.sendRecords(as(tokenA), hdr(), csv, 1<<20)
	if err != nil || resB.GetResult().GetSha256() != resC.GetResult().GetSha256() || resB.GetResult().GetDataKey() != resC.GetResult().GetDataKey() {
		t.Fatalf("B's retry: %v %v, want C's result %v", resB, err, resC)
	}
}
