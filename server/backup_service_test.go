package server_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/google/uuid"
	"github.com/klauspost/compress/zstd"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"backupstore/csvscan"
	"backupstore/csvscan/csvgen"
	"backupstore/internal/testenv"
	pb "backupstore/proto/backupstore/v1"
	"backupstore/recindex"
)

const org = "00D000000000001"

// registerRoot registers a fresh bucket with root credentials for tenant acme.
func (e *env) registerRoot(t *testing.T, name string) (storageID, bucket string) {
	t.Helper()
	bucket = e.gw.NewBucket(t)
	resp, err := e.client.RegisterStorage(as(tokenA), e.req(name, bucket, e.gw.RootKey, e.gw.RootSecret))
	if err != nil {
		t.Fatalf("register: %v", err)
	}
	return resp.Storage.Id, bucket
}

func (e *env) newBackup(t *testing.T, storageID string) *pb.Backup {
	t.Helper()
	resp, err := e.backups.CreateBackup(as(tokenA), &pb.CreateBackupRequest{OrgId: org, StorageId: storageID})
	if err != nil {
		t.Fatalf("CreateBackup: %v", err)
	}
	return resp.Backup
}

// sendRecords streams a chunk in messages of at most msg bytes.
func (e *env) sendRecords(ctx context.Context, h *pb.RecordsHeader, data []byte, msg int) (*pb.UploadRecordsResponse, error) {
	st, err := e.backups.UploadRecords(ctx)
	if err != nil {
		return nil, err
	}
	if h.UploadId == "" {
		h.UploadId = uuid.NewString()
	}
	if err := st.Send(&pb.UploadRecordsRequest{Message: &pb.UploadRecordsRequest_Header{Header: h}}); err != nil {
		return st.CloseAndRecv()
	}
	for len(data) > 0 {
		n := min(msg, len(data))
		if err := st.Send(&pb.UploadRecordsRequest{Message: &pb.UploadRecordsRequest_Data{Data: data[:n]}}); err != nil {
			return st.CloseAndRecv()
		}
		data = data[n:]
	}
	if err := st.Send(&pb.UploadRecordsRequest{Message: &pb.UploadRecordsRequest_Finish{Finish: &pb.FinishWrite{}}}); err != nil {
		return st.CloseAndRecv()
	}
	return st.CloseAndRecv()
}

func (e *env) sendFile(ctx context.Context, h *pb.FileHeader, data []byte, msg int) (*pb.UploadFileResponse, error) {
	st, err := e.backups.UploadFile(ctx)
	if err != nil {
		return nil, err
	}
	if err := st.Send(&pb.UploadFileRequest{Message: &pb.UploadFileRequest_Header{Header: h}}); err != nil {
		return st.CloseAndRecv()
	}
	for len(data) > 0 {
		n := min(msg, len(data))
		if err := st.Send(&pb.UploadFileRequest{Message: &pb.UploadFileRequest_Data{Data: data[:n]}}); err != nil {
			return st.CloseAndRecv()
		}
		data = data[n:]
	}
	if err := st.Send(&pb.UploadFileRequest{Message: &pb.UploadFileRequest_Finish{Finish: &pb.FinishWrite{}}}); err != nil {
		return st.CloseAndRecv()
	}
	return st.CloseAndRecv()
}

func (e *env) keys(t *testing.T, bucket string) []string {
	t.Helper()
	out, err := e.gw.RootClient().ListObjectsV2(context.Background(), &s3.ListObjectsV2Input{Bucket: aws.String(bucket)})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, o := range out.Contents {
		keys = append(keys, *o.Key)
	}
	return keys
}

func (e *env) get(t *testing.T, bucket, key string) []byte {
	t.Helper()
	out, err := e.gw.RootClient().GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	defer out.Body.Close()
	b, _ := io.ReadAll(out.Body)
	return b
}

type bytesReaderAt []byte

func (b bytesReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(b)) {
		return 0, io.EOF
	}
	n := copy(p, b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func sfid18(prefix string, n int) string {
	// A valid 15-character id; the server normalises to 18.
	return fmt.Sprintf("%s%012d", prefix, n)
}

func accountCSV(from, to int, eol string) []byte {
	var b strings.Builder
	b.WriteString("Id,Name,ParentId,Description" + eol)
	for i := from; i < to; i++ {
		parent := ""
		if i > from {
			parent = sfid18("001", i-1)
		}
		fmt.Fprintf(&b, "%s,\"Acme, %d\",%s,\"line one\nline \"\"two\"\" ü\"%s", sfid18("001", i), i, parent, eol)
	}
	return []byte(b.String())
}

// splitAtRow returns the offset where data row n (1-based, after the header) starts.
func splitAtRow(t *testing.T, data []byte, n int) int {
	t.Helper()
	sc := csvscan.New(nil, csvscan.Limits{})
	off, cut := len(sc.Header()), 0
	err := sc.Feed(data, func(r *csvscan.Row) error {
		if off == 0 {
			off = len(sc.Header())
		}
		if r.Number == int64(n)+1 {
			cut = off
		}
		off += len(r.Raw)
		return nil
	})
	if err != nil || cut == 0 {
		t.Fatalf("split: %v", err)
	}
	return cut
}

func TestBackupIngestEndToEnd(t *testing.T) {
	forEachCatalog(t, func(t *testing.T, e *env) {
		ctx := as(tokenA)
		sid, bucket := e.registerRoot(t, "prod")
		b := e.newBackup(t, sid)
		if b.Status != pb.BackupStatus_BACKUP_STATUS_OPEN || b.StorageId != sid || len(b.OrgId) != 18 {
			t.Fatalf("backup %v", b)
		}
		// Idempotent create.
		r1, err := e.backups.CreateBackup(ctx, &pb.CreateBackupRequest{OrgId: org, StorageId: sid, IdempotencyKey: "run-1"})
		if err != nil {
			t.Fatal(err)
		}
		r2, err := e.backups.CreateBackup(ctx, &pb.CreateBackupRequest{OrgId: org, StorageId: sid, IdempotencyKey: "run-1"})
		if err != nil || r2.Backup.Id != r1.Backup.Id || r2.Created || !r1.Created {
			t.Fatalf("idempotent create: %v %v %v", r1, r2, err)
		}

		// Account: a generated export big enough for several frames and two
		// parts, split in two chunks that each start with the header row.
		var gen bytes.Buffer
		if err := csvgen.Generate(&gen, 80000, 1); err != nil {
			t.Fatal(err)
		}
		all := gen.Bytes()
		hdrEnd := bytes.IndexByte(all, '\n') + 1
		cut := splitAtRow(t, all, 70000)
		chunk0 := all[:cut]
		chunk1 := append(append([]byte{}, all[:hdrEnd]...), all[cut:]...)
		refs := []*pb.ReferenceField{{Field: "ParentId", Target: "Account"}}
		res0, err := e.sendRecords(ctx, &pb.RecordsHeader{BackupId: b.Id, Sobject: "Account", Sequence: 0, References: refs}, chunk0, 1<<20)
		if err != nil {
			t.Fatalf("chunk 0: %v", err)
		}
		sum := sha256.Sum256(chunk0)
		if r := res0.Result; r.Records != 69999 || r.BytesIn != int64(len(chunk0)) || r.Sha256 != hex.EncodeToString(sum[:]) ||
			r.BytesStored <= 5<<20 || r.BytesStored >= r.BytesIn/2 || !strings.HasSuffix(r.DataKey, ".csv.zst") || !strings.HasSuffix(r.IndexKey, ".idx") {
			t.Fatalf("chunk 0 result %v (input %d bytes)", r, len(chunk0))
		}
		res1, err := e.sendRecords(ctx, &pb.RecordsHeader{BackupId: b.Id, Sobject: "Account", Sequence: 1, References: refs}, chunk1, 7777)
		if err != nil || res1.Result.Records != 10001 {
			t.Fatalf("chunk 1: %v %v", res1, err)
		}
		// Case: a hand-made set with CRLF rows and known parent links.
		cases := accountCSV(0, 1000, "\r\n")
		if _, err := e.sendRecords(ctx, &pb.RecordsHeader{BackupId: b.Id, Sobject: "Case", Sequence: 0,
			References: []*pb.ReferenceField{{Field: "ParentId", Target: "Case"}}}, cases, 10); err != nil {
			t.Fatalf("cases: %v", err)
		}

		// The stored object decodes to the chunk byte for byte; the index finds records and children.
		data := e.get(t, bucket, res0.Result.DataKey)
		if int64(len(data)) != res0.Result.BytesStored {
			t.Fatalf("stored %d bytes, result says %d", len(data), res0.Result.BytesStored)
		}
		dec, _ := zstd.NewReader(nil)
		plain, err := dec.DecodeAll(data, nil)
		if err != nil || !bytes.Equal(plain, chunk0) {
			t.Fatalf("decoded chunk differs (err %v, %d vs %d bytes)", err, len(plain), len(chunk0))
		}
		idxBytes := e.get(t, bucket, res0.Result.IndexKey)
		idx, err := recindex.Open(bytesReaderAt(idxBytes), int64(len(idxBytes)))
		if err != nil {
			t.Fatal(err)
		}
		if idx.Records() != 69999 || len(idx.Frames()) < 15 {
			t.Fatalf("index: %d records, %d frames", idx.Records(), len(idx.Frames()))
		}
		id := csvgen.ID(csvgen.AccountPrefix, 1_000_000+31234) // seed 1 numbers rows from 1,000,000
		frame, ok, err := idx.Lookup(id)
		if err != nil || !ok {
			t.Fatalf("lookup %s: %v %v", id, ok, err)
		}
		f := idx.Frames()[frame]
		fr, err := dec.DecodeAll(data[f.StoredOffset:f.StoredOffset+f.StoredLen], nil)
		if err != nil || !bytes.Contains(fr, []byte(id)) {
			t.Fatalf("frame %d does not hold %s (err %v)", frame, id, err)
		}
		var caseKey string
		for _, k := range e.keys(t, bucket) {
			if strings.Contains(k, "/records/Case/") && strings.HasSuffix(k, ".idx") {
				caseKey = k
			}
		}
		cidx := e.get(t, bucket, caseKey)
		ci, err := recindex.Open(bytesReaderAt(cidx), int64(len(cidx)))
		if err != nil {
			t.Fatal(err)
		}
		kids, err := ci.Children("ParentId", sfid18("001", 100)+"AAA")
		if err != nil || len(kids) != 1 || kids[0] != sfid18("001", 101)+"AAA" {
			t.Fatalf("children: %v %v", kids, err)
		}

		// Files: a small one (one PUT), a multipart one (> part size), a deduplicated one.
		small := []byte("%PDF-1.4 tiny attachment")
		smallSum := sha256.Sum256(small)
		ds := int64(len(small))
		fr1, err := e.sendFile(ctx, &pb.FileHeader{BackupId: b.Id, ParentId: sfid18("001", 7), Path: "files/a.pdf", Name: "a.pdf",
			ContentType: "application/pdf", UploadId: uuid.NewString(), DeclaredSize: &ds, DeclaredSha256: hex.EncodeToString(smallSum[:])}, small, 1<<20)
		if err != nil || fr1.Result.Deduplicated || fr1.Result.BytesStored != ds {
			t.Fatalf("small file: %v %v", fr1, err)
		}
		big := make([]byte, 12<<20+12345)
		rand.NewChaCha8([32]byte{1, 2}).Read(big)
		fr2, err := e.sendFile(ctx, &pb.FileHeader{BackupId: b.Id, ParentId: sfid18("001", 8), Path: "files/big.bin", UploadId: uuid.NewString()}, big, 1<<20)
		if err != nil {
			t.Fatalf("big file: %v", err)
		}
		if got := e.get(t, bucket, fr2.Result.DataKey); !bytes.Equal(got, big) {
			t.Fatal("big file stored differently")
		}
		orphanParent := sfid18("001", 999999)
		if _, err := e.sendFile(ctx, &pb.FileHeader{BackupId: b.Id, ParentId: orphanParent, Path: "files/orphan.txt", UploadId: uuid.NewString()}, []byte("x"), 10); err != nil {
			t.Fatal(err)
		}

		// Commit: counts, manifest, orphan reported (not refused).
		_, err = e.backups.CommitBackup(ctx, &pb.CommitBackupRequest{BackupId: b.Id, RequireParents: true})
		wantCode(t, err, codes.FailedPrecondition, "ORPHAN_FILES")
		cr, err := e.backups.CommitBackup(ctx, &pb.CommitBackupRequest{BackupId: b.Id})
		if err != nil {
			t.Fatalf("commit: %v", err)
		}
		cb := cr.Backup
		if cb.Status != pb.BackupStatus_BACKUP_STATUS_COMMITTED || cb.RecordCount != 81000 || cb.RecordChunkCount != 3 || cb.FileCount != 3 || cb.CommitTime == nil {
			t.Fatalf("committed backup %v", cb)
		}
		if len(cr.OrphanFiles) != 1 || cr.OrphanFiles[0].ParentId != orphanParent+"AAA" {
			t.Fatalf("orphans %v", cr.OrphanFiles)
		}
		man := e.get(t, bucket, cb.ManifestKey)
		if !bytes.Contains(man, []byte(res0.Result.IndexKey)) || !bytes.Contains(man, []byte("files/big.bin")) {
			t.Fatalf("manifest lacks entries: %s", man[:min(len(man), 400)])
		}
		again, err := e.backups.CommitBackup(ctx, &pb.CommitBackupRequest{BackupId: b.Id})
		if err != nil || again.Backup.Status != pb.BackupStatus_BACKUP_STATUS_COMMITTED {
			t.Fatalf("second commit: %v", err)
		}
		// A committed backup takes no more uploads.
		_, err = e.sendRecords(ctx, &pb.RecordsHeader{BackupId: b.Id, Sobject: "Lead", Sequence: 0}, []byte("Id\n"+sfid18("00Q", 1)+"\n"), 100)
		wantCode(t, err, codes.FailedPrecondition, "BACKUP_NOT_OPEN")

		// A second backup of the org: the same attachment is not uploaded again.
		b2 := e.newBackup(t, sid)
		before := len(e.keys(t, bucket))
		dup, err := e.sendFile(ctx, &pb.FileHeader{BackupId: b2.Id, ParentId: sfid18("001", 7), Path: "files/a.pdf", UploadId: uuid.NewString(),
			DeclaredSize: &ds, DeclaredSha256: hex.EncodeToString(smallSum[:])}, nil, 1)
		if err != nil || !dup.Result.Deduplicated || dup.Result.BytesStored != 0 || dup.Result.DataKey != fr1.Result.DataKey {
			t.Fatalf("dedup: %v %v", dup, err)
		}
		if after := len(e.keys(t, bucket)); after != before {
			t.Fatalf("dedup stored objects: %d → %d", before, after)
		}
		// Aborting the second backup keeps the shared body.
		ab, err := e.backups.AbortBackup(ctx, &pb.AbortBackupRequest{BackupId: b2.Id})
		if err != nil || ab.Backup.Status != pb.BackupStatus_BACKUP_STATUS_ABORTED || ab.ObjectsDeleted != 0 {
			t.Fatalf("abort: %v %v", ab, err)
		}
		if got := e.get(t, bucket, fr1.Result.DataKey); !bytes.Equal(got, small) {
			t.Fatal("shared body lost")
		}

		// Listing and filters.
		list, err := e.backups.ListBackups(ctx, &pb.ListBackupsRequest{OrgId: org, Status: pb.BackupStatus_BACKUP_STATUS_COMMITTED})
		if err != nil || len(list.Backups) != 1 || list.Backups[0].Id != b.Id {
			t.Fatalf("list committed: %v %v", list, err)
		}
		ups, err := e.backups.ListUploads(ctx, &pb.ListUploadsRequest{BackupId: b.Id})
		if err != nil || len(ups.Uploads) != 6 {
			t.Fatalf("uploads: %v %v", ups, err)
		}
		for _, u := range ups.Uploads {
			if u.State != pb.UploadState_UPLOAD_STATE_COMMITTED || u.Result == nil {
				t.Fatalf("upload %v", u)
			}
		}
		// Another tenant sees none of it.
		_, err = e.backups.GetBackup(as(tokenB), &pb.GetBackupRequest{Id: b.Id})
		wantCode(t, err, codes.NotFound, "BACKUP_NOT_FOUND")
		_, err = e.sendRecords(as(tokenB), &pb.RecordsHeader{BackupId: b2.Id, Sobject: "Lead"}, []byte("Id\n"), 10)
		wantCode(t, err, codes.NotFound, "BACKUP_NOT_FOUND")
	})
}

func violationField(st *status.Status) string {
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok && len(br.FieldViolations) > 0 {
			return br.FieldViolations[0].Field
		}
	}
	return ""
}

func TestRecordsBadInputStoresNothing(t *testing.T) {
	e := newEnv(t, "sqlite")
	ctx := as(tokenA)
	sid, bucket := e.registerRoot(t, "prod")
	b := e.newBackup(t, sid)
	good := []byte("Id,Name\n" + sfid18("001", 1) + ",a\n")
	if _, err := e.sendRecords(ctx, &pb.RecordsHeader{BackupId: b.Id, Sobject: "Account", Sequence: 0}, good, 100); err != nil {
		t.Fatal(err)
	}
	committedKeys := len(e.keys(t, bucket))
	big := strings.Repeat("x", 2<<20)
	tests := []struct {
		name   string
		hdr    *pb.RecordsHeader
		data   string
		code   codes.Code
		reason string
		field  string
	}{
		{"unknown backup", &pb.RecordsHeader{BackupId: "bkp-nope", Sobject: "Account", Sequence: 1}, string(good), codes.NotFound, "BACKUP_NOT_FOUND", ""},
		{"path in sobject", &pb.RecordsHeader{BackupId: b.Id, Sobject: "../x", Sequence: 1}, string(good), codes.InvalidArgument, "INVALID_ARGUMENT", "header.sobject"},
		{"write offset", &pb.RecordsHeader{BackupId: b.Id, Sobject: "Account", Sequence: 1, WriteOffset: 5}, string(good), codes.OutOfRange, "WRITE_OFFSET_MISMATCH", ""},
		{"header differs", &pb.RecordsHeader{BackupId: b.Id, Sobject: "Account", Sequence: 1}, "Id,Other\n" + sfid18("001", 2) + ",b\n", codes.InvalidArgument, "HEADER_MISMATCH", "row 1"},
		{"unclosed quote", &pb.RecordsHeader{BackupId: b.Id, Sobject: "Account", Sequence: 1}, "Id,Name\n" + sfid18("001", 2) + ",\"open\n", codes.InvalidArgument, "UNCLOSED_QUOTE", ""},
		{"wrong width", &pb.RecordsHeader{BackupId: b.Id, Sobject: "Account", Sequence: 1}, "Id,Name\n" + sfid18("001", 2) + ",a\n" + sfid18("001", 3) + ",b,c\n", codes.InvalidArgument, "WRONG_WIDTH", "row 3"},
		{"no Id column", &pb.RecordsHeader{BackupId: b.Id, Sobject: "Lead", Sequence: 0}, "Name\nx\n", codes.InvalidArgument, "NO_ID_COLUMN", ""},
		{"invalid id", &pb.RecordsHeader{BackupId: b.Id, Sobject: "Account", Sequence: 1}, "Id,Name\nnot-an-id,a\n", codes.InvalidArgument, "BAD_ID", "row 2, column Id"},
		{"repeated id", &pb.RecordsHeader{BackupId: b.Id, Sobject: "Account", Sequence: 1}, "Id,Name\n" + sfid18("001", 2) + ",a\n" + sfid18("001", 3) + ",b\n" + sfid18("001", 2) + "AAA,c\n", codes.InvalidArgument, "DUPLICATE_ID", "row 4, column Id"},
		{"invalid utf8", &pb.RecordsHeader{BackupId: b.Id, Sobject: "Account", Sequence: 1}, "Id,Name\n" + sfid18("001", 2) + ",\xff\xfe\n", codes.InvalidArgument, "INVALID_UTF8", "row 2"},
		{"huge field", &pb.RecordsHeader{BackupId: b.Id, Sobject: "Account", Sequence: 1}, "Id,Name\n" + sfid18("001", 2) + "," + big + "\n", codes.InvalidArgument, "", ""},
		{"bad reference field", &pb.RecordsHeader{BackupId: b.Id, Sobject: "Account", Sequence: 1, References: []*pb.ReferenceField{{Field: "Nope", Target: "Account"}}}, string(good), codes.InvalidArgument, "", ""},
		{"empty chunk", &pb.RecordsHeader{BackupId: b.Id, Sobject: "Account", Sequence: 1}, "", codes.InvalidArgument, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.sendRecords(ctx, tc.hdr, []byte(tc.data), 1000)
			st := wantCode(t, err, tc.code, tc.reason)
			if tc.field != "" && !strings.HasPrefix(violationField(st), tc.field) {
				t.Fatalf("violation field %q, want prefix %q (%v)", violationField(st), tc.field, err)
			}
		})
	}

	// Protocol errors.
	t.Run("missing header", func(t *testing.T) {
		st, _ := e.backups.UploadRecords(ctx)
		st.Send(&pb.UploadRecordsRequest{Message: &pb.UploadRecordsRequest_Data{Data: good}})
		_, err := st.CloseAndRecv()
		wantCode(t, err, codes.InvalidArgument, "MISSING_HEADER")
	})
	// A stream that ends without finish, or that the client cancels, breaks
	// off: its upload stays PENDING and resumable (DESIGN.md, write protocol
	// step 6), so the commit below refuses until the worker resends them.
	noFinish, cancelled := uuid.NewString(), uuid.NewString()
	t.Run("no finish", func(t *testing.T) {
		st, _ := e.backups.UploadRecords(ctx)
		st.Send(&pb.UploadRecordsRequest{Message: &pb.UploadRecordsRequest_Header{Header: &pb.RecordsHeader{BackupId: b.Id, Sobject: "Account", Sequence: 2, UploadId: noFinish}}})
		st.Send(&pb.UploadRecordsRequest{Message: &pb.UploadRecordsRequest_Data{Data: good}})
		_, err := st.CloseAndRecv()
		wantCode(t, err, codes.InvalidArgument, "NO_FINISH")
	})
	t.Run("data after finish", func(t *testing.T) {
		st, _ := e.backups.UploadRecords(ctx)
		st.Send(&pb.UploadRecordsRequest{Message: &pb.UploadRecordsRequest_Header{Header: &pb.RecordsHeader{BackupId: b.Id, Sobject: "Account", Sequence: 1, UploadId: uuid.NewString()}}})
		st.Send(&pb.UploadRecordsRequest{Message: &pb.UploadRecordsRequest_Finish{Finish: &pb.FinishWrite{}}})
		st.Send(&pb.UploadRecordsRequest{Message: &pb.UploadRecordsRequest_Data{Data: good}})
		_, err := st.CloseAndRecv()
		wantCode(t, err, codes.InvalidArgument, "DATA_AFTER_FINISH")
	})
	t.Run("message over the limit", func(t *testing.T) {
		_, err := e.sendRecords(ctx, &pb.RecordsHeader{BackupId: b.Id, Sobject: "Account", Sequence: 1}, bytes.Repeat([]byte("a"), 5<<20), 5<<20)
		if status.Code(err) != codes.ResourceExhausted {
			t.Fatalf("got %v, want ResourceExhausted", err)
		}
	})
	t.Run("client cancels halfway", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		st, _ := e.backups.UploadRecords(cctx)
		st.Send(&pb.UploadRecordsRequest{Message: &pb.UploadRecordsRequest_Header{Header: &pb.RecordsHeader{BackupId: b.Id, Sobject: "Account", Sequence: 3, UploadId: cancelled}}})
		var buf bytes.Buffer
		buf.WriteString("Id,Name\n")
		for i := 100; i < 400000; i++ {
			buf.WriteString(sfid18("001", i) + ",some name\n")
		}
		body := buf.Bytes()
		for i := 0; i < len(body)/2; i += 1 << 20 {
			st.Send(&pb.UploadRecordsRequest{Message: &pb.UploadRecordsRequest_Data{Data: body[i:min(i+1<<20, len(body))]}})
		}
		time.Sleep(300 * time.Millisecond)
		cancel()
		// The server's stream has ended once it released its budget.
		deadline := time.Now().Add(10 * time.Second)
		for e.budget.Used() != 0 && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		q, err := e.backups.QueryUploadStatus(ctx, &pb.QueryUploadStatusRequest{BackupId: b.Id, UploadId: cancelled})
		if err != nil || q.Upload.State != pb.UploadState_UPLOAD_STATE_PENDING {
			t.Fatalf("cancelled upload: %v %v, want PENDING (resumable)", q, err)
		}
	})
	_, err := e.backups.CommitBackup(ctx, &pb.CommitBackupRequest{BackupId: b.Id})
	if st := wantCode(t, err, codes.FailedPrecondition, "UPLOADS_PENDING"); !strings.Contains(st.Message(), noFinish) || !strings.Contains(st.Message(), cancelled) {
		t.Fatalf("commit names %q, want both broken uploads", st.Message())
	}
	for seq, uid := range map[int32]string{2: noFinish, 3: cancelled} {
		if _, err := e.sendRecords(ctx, &pb.RecordsHeader{BackupId: b.Id, Sobject: "Account", Sequence: seq, UploadId: uid}, good, 100); err != nil {
			t.Fatalf("resending upload %s: %v", uid, err)
		}
	}
	committedKeys += 4 // two more chunks: data and index each

	// Nothing of any failed upload is in the bucket or catalog, no budget is held, and the server still serves.
	deadline := time.Now().Add(5 * time.Second)
	for len(e.keys(t, bucket)) != committedKeys && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := len(e.keys(t, bucket)); n != committedKeys {
		t.Fatalf("bucket has %d objects, want %d: %v", n, committedKeys, e.keys(t, bucket))
	}
	mp, _ := e.gw.RootClient().ListMultipartUploads(context.Background(), &s3.ListMultipartUploadsInput{Bucket: aws.String(bucket)})
	if len(mp.Uploads) != 0 {
		t.Fatalf("multipart uploads left: %d", len(mp.Uploads))
	}
	if e.budget.Used() != 0 {
		t.Fatalf("budget still holds %d bytes", e.budget.Used())
	}
	cr, err := e.backups.CommitBackup(ctx, &pb.CommitBackupRequest{BackupId: b.Id})
	if err != nil || cr.Backup.RecordCount != 3 || cr.Backup.RecordChunkCount != 3 {
		t.Fatalf("commit after bad input: %v %v", cr, err)
	}
}

func TestFileResumeFencingAndBadInput(t *testing.T) {
	forEachCatalog(t, func(t *testing.T, e *env) {
		ctx := as(tokenA)
		sid, bucket := e.registerRoot(t, "prod")
		b := e.newBackup(t, sid)
		body := make([]byte, 23<<20+777)
		rand.NewChaCha8([32]byte{3, 4}).Read(body)
		sum := sha256.Sum256(body)
		size := int64(len(body))
		uid := uuid.NewString()
		hdr := func(off int64) *pb.FileHeader {
			return &pb.FileHeader{BackupId: b.Id, ParentId: sfid18("001", 1), Path: "files/big.bin", UploadId: uid,
				WriteOffset: off, DeclaredSize: &size, DeclaredSha256: hex.EncodeToString(sum[:])}
		}
		// Stream A sends ~12 MiB (two 5 MiB parts get recorded), then dies.
		actx, cancelA := context.WithCancel(ctx)
		a, _ := e.backups.UploadFile(actx)
		a.Send(&pb.UploadFileRequest{Message: &pb.UploadFileRequest_Header{Header: hdr(0)}})
		for i := 0; i < 12; i++ {
			a.Send(&pb.UploadFileRequest{Message: &pb.UploadFileRequest_Data{Data: body[i<<20 : (i+1)<<20]}})
		}
		var committed int64
		deadline := time.Now().Add(10 * time.Second)
		for committed < 10<<20 && time.Now().Before(deadline) {
			q, err := e.backups.QueryUploadStatus(ctx, &pb.QueryUploadStatusRequest{BackupId: b.Id, UploadId: uid})
			if err == nil {
				committed = q.Upload.CommittedSize
			}
			time.Sleep(20 * time.Millisecond)
		}
		if committed != 10<<20 {
			t.Fatalf("committed_size %d, want two 5 MiB parts", committed)
		}
		// Wrong offsets: ahead, behind.
		for _, off := range []int64{committed + 1, committed - 1, 0} {
			_, err := e.sendFile(ctx, hdr(off), body[off:off+10], 10)
			wantCode(t, err, codes.OutOfRange, "WRITE_OFFSET_MISMATCH")
		}
		// Stream B takes over at committed_size; A is now stale and its next part fails Aborted.
		bst, _ := e.backups.UploadFile(ctx)
		if err := bst.Send(&pb.UploadFileRequest{Message: &pb.UploadFileRequest_Header{Header: hdr(committed)}}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond) // B has bumped the generation
		for i := 12; i < 16; i++ {
			a.Send(&pb.UploadFileRequest{Message: &pb.UploadFileRequest_Data{Data: body[i<<20 : (i+1)<<20]}})
		}
		_, err := a.CloseAndRecv()
		wantCode(t, err, codes.Aborted, "STALE_GENERATION")
		cancelA()
		for off := committed; off < size; off += 1 << 20 {
			if err := bst.Send(&pb.UploadFileRequest{Message: &pb.UploadFileRequest_Data{Data: body[off:min(off+1<<20, size)]}}); err != nil {
				t.Fatal(err)
			}
		}
		bst.Send(&pb.UploadFileRequest{Message: &pb.UploadFileRequest_Finish{Finish: &pb.FinishWrite{}}})
		res, err := bst.CloseAndRecv()
		if err != nil {
			t.Fatalf("resumed upload: %v", err)
		}
		if res.Result.Sha256 != hex.EncodeToString(sum[:]) || res.Result.BytesIn != size {
			t.Fatalf("result %v", res.Result)
		}
		if got := e.get(t, bucket, res.Result.DataKey); !bytes.Equal(got, body) {
			t.Fatal("resumed file is not byte-identical")
		}
		// A repeated finish returns the first result.
		again, err := e.sendFile(ctx, hdr(0), nil, 1)
		if err != nil || again.Result.FileId != res.Result.FileId {
			t.Fatalf("repeat: %v %v", again, err)
		}

		// Declarations that do not match the body: nothing stored.
		keys := len(e.keys(t, bucket))
		small := []byte("hello world")
		wrongSize := int64(5)
		_, err = e.sendFile(ctx, &pb.FileHeader{BackupId: b.Id, ParentId: sfid18("001", 1), Path: "x", UploadId: uuid.NewString(), DeclaredSize: &wrongSize}, small, 3)
		wantCode(t, err, codes.InvalidArgument, "SIZE_MISMATCH")
		_, err = e.sendFile(ctx, &pb.FileHeader{BackupId: b.Id, ParentId: sfid18("001", 1), Path: "x", UploadId: uuid.NewString(), DeclaredSha256: strings.Repeat("ab", 32)}, small, 3)
		wantCode(t, err, codes.InvalidArgument, "SHA256_MISMATCH")
		bigWrong := strings.Repeat("cd", 32)
		_, err = e.sendFile(ctx, &pb.FileHeader{BackupId: b.Id, ParentId: sfid18("001", 1), Path: "y", UploadId: uuid.NewString(), DeclaredSha256: bigWrong}, body[:11<<20], 1<<20)
		wantCode(t, err, codes.InvalidArgument, "SHA256_MISMATCH")
		_, err = e.sendFile(ctx, &pb.FileHeader{BackupId: b.Id, ParentId: "bad", Path: "x", UploadId: uuid.NewString()}, small, 3)
		wantCode(t, err, codes.InvalidArgument, "INVALID_ARGUMENT")
		if n := len(e.keys(t, bucket)); n != keys {
			t.Fatalf("failed uploads left objects: %d → %d", keys, n)
		}
		// Commit refuses while an upload is pending, naming it.
		pst, _ := e.backups.UploadFile(ctx)
		pid := uuid.NewString()
		pst.Send(&pb.UploadFileRequest{Message: &pb.UploadFileRequest_Header{Header: &pb.FileHeader{BackupId: b.Id, ParentId: sfid18("001", 1), Path: "p", UploadId: pid}}})
		for i := 0; i < 6; i++ {
			pst.Send(&pb.UploadFileRequest{Message: &pb.UploadFileRequest_Data{Data: body[i<<20 : (i+1)<<20]}})
		}
		deadline = time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			q, err := e.backups.QueryUploadStatus(ctx, &pb.QueryUploadStatusRequest{BackupId: b.Id, UploadId: pid})
			if err == nil && q.Upload.State == pb.UploadState_UPLOAD_STATE_PENDING {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		_, err = e.backups.CommitBackup(ctx, &pb.CommitBackupRequest{BackupId: b.Id})
		st := wantCode(t, err, codes.FailedPrecondition, "UPLOADS_PENDING")
		if !strings.Contains(st.Message(), pid) {
			t.Fatalf("message does not name the pending upload: %s", st.Message())
		}
		pst.CloseSend()
	})
}

func TestAbortDeniedLeavesUploadAbandoned(t *testing.T) {
	e := newEnv(t, "sqlite")
	ctx := as(tokenA)
	bucket := e.gw.NewBucket(t)
	key, secret := e.newUser(bucket, testenv.SeedActions())
	reg, err := e.client.RegisterStorage(ctx, e.req("seed", bucket, key, secret))
	if err != nil {
		t.Fatal(err)
	}
	b := e.newBackup(t, reg.Storage.Id)
	body := make([]byte, 11<<20)
	wrong := strings.Repeat("ee", 32)
	uid := uuid.NewString()
	_, err = e.sendFile(ctx, &pb.FileHeader{BackupId: b.Id, ParentId: sfid18("001", 1), Path: "f", UploadId: uid, DeclaredSha256: wrong}, body, 1<<20)
	wantCode(t, err, codes.InvalidArgument, "SHA256_MISMATCH")
	q, err := e.backups.QueryUploadStatus(ctx, &pb.QueryUploadStatusRequest{BackupId: b.Id, UploadId: uid})
	if err != nil || q.Upload.State != pb.UploadState_UPLOAD_STATE_ABANDONED {
		t.Fatalf("upload %v %v, want ABANDONED", q, err)
	}
	if !strings.Contains(e.logs.String(), "s3_upload_id") {
		t.Fatal("abandoned upload's S3 upload id not logged")
	}
	// The service still works with the seed policy.
	if _, err := e.sendFile(ctx, &pb.FileHeader{BackupId: b.Id, ParentId: sfid18("001", 1), Path: "g", UploadId: uuid.NewString()}, body, 1<<20); err != nil {
		t.Fatalf("upload with the seed policy: %v", err)
	}
	if _, err := e.backups.CommitBackup(ctx, &pb.CommitBackupRequest{BackupId: b.Id}); err != nil {
		t.Fatal(err)
	}
}

func TestServiceDefaultStorageAndUnavailable(t *testing.T) {
	e := newEnv(t, "sqlite")
	ctx := as(tokenA)
	// No storage registered: the service default (local directory) is used.
	b := e.newBackup(t, "")
	if b.StorageId != "" {
		t.Fatalf("storage %q, want the service default", b.StorageId)
	}
	res, err := e.sendRecords(ctx, &pb.RecordsHeader{BackupId: b.Id, Sobject: "Account"}, accountCSV(0, 10, "\n"), 100)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.backups.CommitBackup(ctx, &pb.CommitBackupRequest{BackupId: b.Id}); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(res.Result.DataKey, "acme/"+b.OrgId+"/"+b.Id+"/records/Account/") {
		t.Fatalf("key %s", res.Result.DataKey)
	}

	// A storage marked unavailable (several failed validations) refuses new backups.
	bucket := e.gw.NewBucket(t)
	key, secret := e.newUser(bucket, testenv.SeedActions())
	reg, err := e.client.RegisterStorage(ctx, e.req("flaky", bucket, key, secret))
	if err != nil {
		t.Fatal(err)
	}
	e.gw.PutBucketPolicy(t, bucket, testenv.BucketPolicy(bucket, key, []string{"s3:GetBucketLocation"}))
	for i := 0; i < 3; i++ {
		e.client.ValidateStorage(ctx, &pb.ValidateStorageRequest{Id: reg.Storage.Id})
	}
	_, err = e.backups.CreateBackup(ctx, &pb.CreateBackupRequest{OrgId: org, StorageId: reg.Storage.Id})
	wantCode(t, err, codes.FailedPrecondition, "STORAGE_UNAVAILABLE")
	// The tenant's default storage is used when none is named.
	e.gw.PutBucketPolicy(t, bucket, testenv.SeedPolicy(bucket, key))
	if _, err := e.client.ValidateStorage(ctx, &pb.ValidateStorageRequest{Id: reg.Storage.Id}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.SetDefaultStorage(ctx, &pb.SetDefaultStorageRequest{Id: reg.Storage.Id}); err != nil {
		t.Fatal(err)
	}
	if b := e.newBackup(t, ""); b.StorageId != reg.Storage.Id {
		t.Fatalf("backup on %q, want the tenant default %s", b.StorageId, reg.Storage.Id)
	}
}
