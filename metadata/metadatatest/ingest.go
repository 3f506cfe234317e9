package metadatatest

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"backupstore/metadata"
)

// The ingest catalog: backups, uploads and parts, objects, files, record chunks.

const (
	org1 = "00D000000000001AAA"
	org2 = "00D000000000002AAA"
)

// t0 is a fixed start time; backups in a test start at t0 + n minutes.
var t0 = time.Date(2026, 5, 1, 12, 0, 0, 123456000, time.UTC)

func minutes(n int) time.Time { return t0.Add(time.Duration(n) * time.Minute) }

func digest(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

// newBackup creates an OPEN backup.
func newBackup(t *testing.T, s *metadata.Store, tenant, id, org, storageID string, started time.Time) *metadata.Backup {
	t.Helper()
	b, created, err := s.CreateBackup(t.Context(), &metadata.Backup{
		TenantID: tenant, ID: id, OrgID: org, StorageID: storageID, StartedAt: started})
	if err != nil || !created {
		t.Fatalf("CreateBackup(%s/%s) = created %v, %v", tenant, id, created, err)
	}
	return b
}

func getBackup(t *testing.T, s *metadata.Store, tenant, id string) *metadata.Backup {
	t.Helper()
	b, err := s.GetBackup(t.Context(), tenant, id)
	if err != nil {
		t.Fatalf("GetBackup(%s, %s): %v", tenant, id, err)
	}
	return b
}

func getUpload(t *testing.T, s *metadata.Store, tenant, backup, id string) *metadata.Upload {
	t.Helper()
	u, err := s.GetUpload(t.Context(), tenant, backup, id)
	if err != nil {
		t.Fatalf("GetUpload(%s, %s, %s): %v", tenant, backup, id, err)
	}
	return u
}

// fileUpload is a PENDING file upload of b with every field set.
func fileUpload(b *metadata.Backup, id string) *metadata.Upload {
	return &metadata.Upload{
		TenantID: b.TenantID, BackupID: b.ID, UploadID: id, Kind: metadata.KindFile,
		ObjectID: "obj-" + b.ID + "-" + id, ObjectKey: "p/" + b.ID + "/files/" + id, PartSize: 8 << 20,
		ParentID: "001000000000001AAA", Path: "Attachment/001/report.pdf", Name: "report.pdf",
		ContentType: "application/pdf", DeclaredSize: -1, DeclaredSHA256: fmt.Sprintf("%x", digest(id)),
	}
}

// recordsUpload is a PENDING records upload of b.
func recordsUpload(b *metadata.Backup, id, sobject string, seq int32) *metadata.Upload {
	return &metadata.Upload{
		TenantID: b.TenantID, BackupID: b.ID, UploadID: id, Kind: metadata.KindRecords,
		ObjectID: "obj-" + b.ID + "-" + id, ObjectKey: "p/" + b.ID + "/records/" + sobject + "/" + id + ".csv.zst",
		PartSize: 8 << 20, SObject: sobject, Sequence: seq, DeclaredSize: -1,
		References: []byte(`{"AccountId":"Account"}`),
	}
}

func createUpload(t *testing.T, s *metadata.Store, u *metadata.Upload) *metadata.Upload {
	t.Helper()
	if err := s.CreateUpload(t.Context(), u); err != nil {
		t.Fatalf("CreateUpload(%s): %v", u.UploadID, err)
	}
	return u
}

// fileObject is the object a file upload u of b stores, holding body.
func fileObject(b *metadata.Backup, u *metadata.Upload, body string) *metadata.Object {
	return &metadata.Object{TenantID: b.TenantID, ID: u.ObjectID, OrgID: b.OrgID, StorageID: b.StorageID,
		BackupID: b.ID, Key: u.ObjectKey, Kind: metadata.ObjFile, Size: int64(len(body)), SHA256: digest(body),
		ETag: `"etag-` + u.UploadID + `"`}
}

func fileRow(b *metadata.Backup, id, objectID, body string) *metadata.File {
	return &metadata.File{TenantID: b.TenantID, BackupID: b.ID, ID: id, ObjectID: objectID,
		ParentID: "001000000000001AAA", Path: "Attachment/" + id, Name: id + ".bin",
		ContentType: "application/octet-stream", Size: int64(len(body)), SHA256: digest(body)}
}

// commitFile stores a file of body in b through the single-PUT path (no PENDING row) and returns
// its object.
func commitFile(t *testing.T, s *metadata.Store, b *metadata.Backup, uploadID, body string) *metadata.Object {
	t.Helper()
	u := fileUpload(b, uploadID)
	obj := fileObject(b, u, body)
	if err := s.CommitFileUpload(t.Context(), u, obj, fileRow(b, "fil-"+uploadID, obj.ID, body)); err != nil {
		t.Fatalf("CommitFileUpload(%s): %v", uploadID, err)
	}
	return obj
}

// dedupFile adds a file of b that shares obj.
func dedupFile(t *testing.T, s *metadata.Store, b *metadata.Backup, uploadID string, obj *metadata.Object) error {
	t.Helper()
	u := fileUpload(b, uploadID)
	u.ObjectID, u.ObjectKey = obj.ID, obj.Key
	f := fileRow(b, "fil-"+uploadID, obj.ID, "")
	f.Size, f.SHA256 = obj.Size, obj.SHA256
	return s.CommitFileUpload(t.Context(), u, nil, f)
}

// chunkParts are the objects and chunk row of a records upload u of b.
func chunkParts(b *metadata.Backup, u *metadata.Upload, records, bytesIn, dataSize, indexSize int64) (data, index *metadata.Object, ch *metadata.RecordChunk) {
	data = &metadata.Object{TenantID: b.TenantID, ID: u.ObjectID, OrgID: b.OrgID, StorageID: b.StorageID,
		BackupID: b.ID, Key: u.ObjectKey, Kind: metadata.ObjRecords, Size: dataSize, SHA256: digest(u.UploadID)}
	index = &metadata.Object{TenantID: b.TenantID, ID: u.ObjectID + "-idx", OrgID: b.OrgID, StorageID: b.StorageID,
		BackupID: b.ID, Key: u.ObjectKey + ".idx", Kind: metadata.ObjIndex, Size: indexSize, SHA256: digest(u.UploadID + ".idx")}
	ch = &metadata.RecordChunk{TenantID: b.TenantID, BackupID: b.ID, SObject: u.SObject, Sequence: u.Sequence,
		UploadID: u.UploadID, DataObjectID: data.ID, IndexObjectID: index.ID, Records: records, BytesIn: bytesIn,
		BytesStored: dataSize + indexSize, SHA256: digest(u.UploadID + ".csv"), References: u.References}
	return data, index, ch
}

// commitChunk creates a records upload and commits it as a chunk.
func commitChunk(t *testing.T, s *metadata.Store, b *metadata.Backup, uploadID, sobject string, seq int32, records, bytesIn, dataSize, indexSize int64) *metadata.RecordChunk {
	t.Helper()
	u := createUpload(t, s, recordsUpload(b, uploadID, sobject, seq))
	data, index, ch := chunkParts(b, u, records, bytesIn, dataSize, indexSize)
	if err := s.CommitRecordsUpload(t.Context(), u, data, index, ch); err != nil {
		t.Fatalf("CommitRecordsUpload(%s): %v", uploadID, err)
	}
	return ch
}

func objectIDs(list []*metadata.Object) []string {
	ids := []string{}
	for _, o := range list {
		ids = append(ids, o.ID)
	}
	return ids
}

func testBackups(t *testing.T, newDB NewDB) {
	s := newStore(t, newDB)
	ctx := t.Context()
	create(t, s, storage("t1", "s1", "one"))

	want := &metadata.Backup{
		TenantID: "t1", ID: "b1", OrgID: org1, StorageID: "s1",
		Labels:         map[string]string{"env": "prod", "run": "nightly"},
		IdempotencyKey: "key-1", Status: metadata.BackupOpen, StartedAt: minutes(0),
	}
	got, created, err := s.CreateBackup(ctx, want)
	if err != nil || !created {
		t.Fatalf("CreateBackup = created %v, %v", created, err)
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("CreateBackup returned (-want +got):\n%s", d)
	}
	if d := cmp.Diff(want, getBackup(t, s, "t1", "b1")); d != "" {
		t.Errorf("GetBackup (-want +got):\n%s", d)
	}

	// The service default storage (NULL), no labels, no key, defaults filled in.
	minimal, created, err := s.CreateBackup(ctx, &metadata.Backup{TenantID: "t1", ID: "b2", OrgID: org1, Labels: map[string]string{}})
	if err != nil || !created {
		t.Fatalf("CreateBackup(minimal) = %v, %v", created, err)
	}
	if minimal.Status != metadata.BackupOpen || minimal.StartedAt.IsZero() || minimal.Labels != nil {
		t.Errorf("CreateBackup(minimal) = %+v; want OPEN, started now, nil labels", minimal)
	}
	if d := cmp.Diff(minimal, getBackup(t, s, "t1", "b2")); d != "" {
		t.Errorf("GetBackup(minimal) (-want +got):\n%s", d)
	}

	// Idempotency: the key returns the first backup, whatever else the request says.
	again, created, err := s.CreateBackup(ctx, &metadata.Backup{TenantID: "t1", ID: "b3", OrgID: org2, IdempotencyKey: "key-1"})
	if err != nil || created {
		t.Fatalf("CreateBackup with a used key = created %v, %v; want the existing backup", created, err)
	}
	if d := cmp.Diff(want, again); d != "" {
		t.Errorf("CreateBackup with a used key returned (-want +got):\n%s", d)
	}
	if _, err := s.GetBackup(ctx, "t1", "b3"); !errors.Is(err, metadata.ErrNotFound) {
		t.Errorf("a replayed create inserted b3: %v", err)
	}
	// Keys are per tenant and case-sensitive.
	newBackup(t, s, "t2", "b1", org1, "", minutes(0))
	if _, created, err := s.CreateBackup(ctx, &metadata.Backup{TenantID: "t2", ID: "b9", OrgID: org1, IdempotencyKey: "key-1"}); err != nil || !created {
		t.Errorf("same key in another tenant = created %v, %v; want a new backup", created, err)
	}
	if _, created, err := s.CreateBackup(ctx, &metadata.Backup{TenantID: "t1", ID: "b4", OrgID: org1, IdempotencyKey: "KEY-1"}); err != nil || !created {
		t.Errorf("key differing in case = created %v, %v; want a new backup", created, err)
	}

	_, _, err = s.CreateBackup(ctx, &metadata.Backup{TenantID: "t1", ID: "b1", OrgID: org1})
	wantErr(t, "duplicate backup id", err, metadata.ErrConflict)
	_, _, err = s.CreateBackup(ctx, &metadata.Backup{TenantID: "t1", ID: "b5", OrgID: org1, StorageID: "nope"})
	wantErr(t, "unknown storage", err, metadata.ErrNotFound)
	for _, b := range []*metadata.Backup{
		{TenantID: "", ID: "x", OrgID: org1},
		{TenantID: "t1", ID: "", OrgID: org1},
		{TenantID: "t1", ID: "x", OrgID: ""},
		{TenantID: "t1", ID: "x", OrgID: org1, Status: "WEIRD"},
	} {
		_, _, err := s.CreateBackup(ctx, b)
		wantErr(t, fmt.Sprintf("CreateBackup(%+v)", b), err, metadata.ErrInvalid)
	}
}

func testListBackups(t *testing.T, newDB NewDB) {
	s := newStore(t, newDB)
	ctx := t.Context()
	// b-a and b-b start at the same time: id breaks the tie.
	for _, b := range []struct {
		id, org string
		at      int
	}{{"b-1", org1, 1}, {"b-2", org2, 2}, {"b-3", org1, 3}, {"b-a", org1, 4}, {"b-b", org2, 4}, {"b-5", org1, 5}} {
		newBackup(t, s, "t1", b.id, b.org, "", minutes(b.at))
	}
	newBackup(t, s, "t2", "b-x", org1, "", minutes(9))
	if err := s.SetBackupStatus(ctx, "t1", "b-3", metadata.BackupOpen, metadata.BackupAborted); err != nil {
		t.Fatal(err)
	}

	list := func(f metadata.BackupFilter, size int) [][]string {
		t.Helper()
		return pageKeys(allPages(t, fmt.Sprintf("ListBackups(%+v, %d)", f, size), func(tok string) ([]*metadata.Backup, string, error) {
			return s.ListBackups(ctx, "t1", f, size, tok)
		}), func(b *metadata.Backup) string { return b.ID })
	}
	for _, tt := range []struct {
		name string
		f    metadata.BackupFilter
		size int
		want [][]string
	}{
		{"all", metadata.BackupFilter{}, 2, [][]string{{"b-5", "b-b"}, {"b-a", "b-3"}, {"b-2", "b-1"}}},
		{"default size", metadata.BackupFilter{}, 0, [][]string{{"b-5", "b-b", "b-a", "b-3", "b-2", "b-1"}}},
		{"org", metadata.BackupFilter{OrgID: org1}, 3, [][]string{{"b-5", "b-a", "b-3"}, {"b-1"}}},
		{"status", metadata.BackupFilter{Status: metadata.BackupOpen}, 4, [][]string{{"b-5", "b-b", "b-a", "b-2"}, {"b-1"}}},
		{"from", metadata.BackupFilter{From: minutes(4)}, 1, [][]string{{"b-5"}, {"b-b"}, {"b-a"}}},
		{"to (exclusive)", metadata.BackupFilter{To: minutes(4)}, 0, [][]string{{"b-3", "b-2", "b-1"}}},
		{"as of", metadata.BackupFilter{OrgID: org1, Status: metadata.BackupOpen, To: minutes(4).Add(time.Microsecond)}, 1, [][]string{{"b-a"}, {"b-1"}}},
		{"none", metadata.BackupFilter{OrgID: "00D000000000009AAA"}, 0, [][]string{nil}},
	} {
		if d := cmp.Diff(tt.want, list(tt.f, tt.size)); d != "" {
			t.Errorf("%s: pages (-want +got):\n%s", tt.name, d)
		}
	}
	_, _, err := s.ListBackups(ctx, "t1", metadata.BackupFilter{}, -1, "")
	wantErr(t, "negative page size", err, metadata.ErrInvalid)
	for _, tok := range []string{"!!", "bm90LWEtdG9rZW4"} { // not base64; base64 of "not-a-token"
		_, _, err = s.ListBackups(ctx, "t1", metadata.BackupFilter{}, 2, tok)
		wantErr(t, "malformed page token "+tok, err, metadata.ErrInvalid)
	}
}

func testBackupStatus(t *testing.T, newDB NewDB) {
	s := newStore(t, newDB)
	ctx := t.Context()
	newBackup(t, s, "t1", "b1", org1, "", minutes(0))
	if err := s.SetBackupStatus(ctx, "t1", "b1", metadata.BackupOpen, metadata.BackupAborted); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "CAS from a stale status", s.SetBackupStatus(ctx, "t1", "b1", metadata.BackupOpen, metadata.BackupCommitted), metadata.ErrConflict)
	if got := getBackup(t, s, "t1", "b1"); got.Status != metadata.BackupAborted {
		t.Errorf("status = %s after a refused CAS, want ABORTED", got.Status)
	}
	if err := s.SetBackupStatus(ctx, "t1", "b1", metadata.BackupAborted, metadata.BackupDeleting); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "unknown backup", s.SetBackupStatus(ctx, "t1", "nope", metadata.BackupOpen, metadata.BackupAborted), metadata.ErrNotFound)
	wantErr(t, "unknown status", s.SetBackupStatus(ctx, "t1", "b1", metadata.BackupDeleting, "GONE"), metadata.ErrInvalid)

	for range 2 { // idempotent
		if err := s.SetBackupDamaged(ctx, "t1", "b1"); err != nil {
			t.Fatal(err)
		}
	}
	if got := getBackup(t, s, "t1", "b1"); !got.Damaged || got.Status != metadata.BackupDeleting {
		t.Errorf("after SetBackupDamaged: %+v", got)
	}
	wantErr(t, "SetBackupDamaged of an unknown backup", s.SetBackupDamaged(ctx, "t1", "nope"), metadata.ErrNotFound)
}

func testUploads(t *testing.T, newDB NewDB) {
	s := newStore(t, newDB)
	ctx := t.Context()
	b := newBackup(t, s, "t1", "b1", org1, "", minutes(0))

	u := fileUpload(b, "u1")
	u.References, u.HashState, u.Result = []byte("{}"), []byte{0, 1}, []byte(`{"r":1}`) // round trip only
	createUpload(t, s, u)
	if u.State != metadata.UploadPending || u.Generation != 1 || u.CreatedAt.IsZero() {
		t.Errorf("CreateUpload set state %s, generation %d, created %v", u.State, u.Generation, u.CreatedAt)
	}
	if d := cmp.Diff(u, getUpload(t, s, "t1", "b1", "u1")); d != "" {
		t.Errorf("GetUpload (-want +got):\n%s", d)
	}
	wantErr(t, "duplicate upload", s.CreateUpload(ctx, fileUpload(b, "u1")), metadata.ErrConflict)
	wantErr(t, "upload of an unknown backup", s.CreateUpload(ctx, fileUpload(&metadata.Backup{TenantID: "t1", ID: "nope"}, "u1")), metadata.ErrNotFound)
	bad := fileUpload(b, "u9")
	bad.Kind = "TAPE"
	wantErr(t, "unknown kind", s.CreateUpload(ctx, bad), metadata.ErrInvalid)

	// Parts: recorded with the sizes and hash state; the same number replaces.
	if err := s.SetS3UploadID(ctx, "t1", "b1", "u1", 1, "mpu-1"); err != nil {
		t.Fatal(err)
	}
	p1 := metadata.Part{Number: 1, ETag: `"e1"`, CRC32C: 0xffffffff, Size: 5 << 20, InputOffset: 0, InputEnd: 6 << 20}
	p2 := metadata.Part{Number: 2, ETag: `"e2"`, CRC32C: 7, Size: 5 << 20, InputOffset: 6 << 20, InputEnd: 12 << 20}
	p2b := metadata.Part{Number: 2, ETag: `"e2b"`, CRC32C: 8, Size: 4 << 20, InputOffset: 6 << 20, InputEnd: 11 << 20}
	for i, p := range []metadata.Part{p1, p2, p2b} {
		if err := s.RecordPart(ctx, "t1", "b1", "u1", 1, p, p.InputEnd, int64(i+1)<<20, []byte{byte(i)}); err != nil {
			t.Fatalf("RecordPart(%d): %v", p.Number, err)
		}
	}
	parts, err := s.ListParts(ctx, "t1", "b1", "u1")
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]metadata.Part{p1, p2b}, parts); d != "" {
		t.Errorf("ListParts (-want +got):\n%s", d)
	}
	got := getUpload(t, s, "t1", "b1", "u1")
	if got.S3UploadID != "mpu-1" || got.CommittedSize != 11<<20 || got.StoredSize != 3<<20 || !bytes.Equal(got.HashState, []byte{2}) {
		t.Errorf("after RecordPart: s3 %q, committed %d, stored %d, hash %x", got.S3UploadID, got.CommittedSize, got.StoredSize, got.HashState)
	}
	wantErr(t, "part number 0", s.RecordPart(ctx, "t1", "b1", "u1", 1, metadata.Part{}, 0, 0, nil), metadata.ErrInvalid)

	// A reopen bumps the generation; the old stream's writes are stale and change nothing.
	bumped, err := s.BumpGeneration(ctx, "t1", "b1", "u1")
	if err != nil {
		t.Fatal(err)
	}
	if bumped.Generation != 2 || bumped.S3UploadID != "mpu-1" || bumped.CommittedSize != 11<<20 {
		t.Errorf("BumpGeneration = %+v; want generation 2, the rest unchanged", bumped)
	}
	stale := map[string]error{
		"RecordPart":    s.RecordPart(ctx, "t1", "b1", "u1", 1, p1, 1, 1, nil),
		"SetS3UploadID": s.SetS3UploadID(ctx, "t1", "b1", "u1", 1, "mpu-old"),
		"FailUpload":    s.FailUpload(ctx, "t1", "b1", "u1", 1, metadata.UploadFailed, "old"),
		"ResetUpload":   s.ResetUpload(ctx, "t1", "b1", "u1", 1, "o-old", "k-old", 1),
	}
	oldU := fileUpload(b, "u1")
	oldU.Generation = 1
	stale["CommitFileUpload"] = s.CommitFileUpload(ctx, oldU, fileObject(b, oldU, "x"), fileRow(b, "f-old", oldU.ObjectID, "x"))
	oldR := recordsUpload(b, "u1", "Account", 1)
	oldR.Generation = 1
	data, index, ch := chunkParts(b, oldR, 1, 1, 1, 1)
	stale["CommitRecordsUpload"] = s.CommitRecordsUpload(ctx, oldR, data, index, ch)
	for name, err := range stale {
		wantErr(t, name+" with an old generation", err, metadata.ErrStale)
	}
	if d := cmp.Diff(bumped, getUpload(t, s, "t1", "b1", "u1")); d != "" {
		t.Errorf("upload changed by stale writes (-want +got):\n%s", d)
	}
	if _, err := s.GetObject(ctx, "t1", oldU.ObjectID); !errors.Is(err, metadata.ErrNotFound) {
		t.Errorf("a stale commit left its object: %v", err)
	}

	// Reset: a fresh start at the current generation; the parts are gone.
	if err := s.ResetUpload(ctx, "t1", "b1", "u1", 2, "obj-2", "key-2", 16<<20); err != nil {
		t.Fatal(err)
	}
	got = getUpload(t, s, "t1", "b1", "u1")
	want := *bumped
	want.ObjectID, want.ObjectKey, want.PartSize, want.S3UploadID = "obj-2", "key-2", 16<<20, ""
	want.CommittedSize, want.StoredSize, want.HashState, want.Result = 0, 0, nil, nil
	want.UpdatedAt = got.UpdatedAt
	if d := cmp.Diff(&want, got); d != "" {
		t.Errorf("after ResetUpload (-want +got):\n%s", d)
	}
	if parts, err := s.ListParts(ctx, "t1", "b1", "u1"); err != nil || len(parts) != 0 {
		t.Errorf("ListParts after reset = %v, %v; want none", parts, err)
	}

	// Failure: only from PENDING, and final for the generation.
	wantErr(t, "FailUpload to COMMITTED", s.FailUpload(ctx, "t1", "b1", "u1", 2, metadata.UploadCommitted, ""), metadata.ErrInvalid)
	if err := s.FailUpload(ctx, "t1", "b1", "u1", 2, metadata.UploadFailed, "stream reset"); err != nil {
		t.Fatal(err)
	}
	if got := getUpload(t, s, "t1", "b1", "u1"); got.State != metadata.UploadFailed || got.Error != "stream reset" {
		t.Errorf("after FailUpload: state %s, error %q", got.State, got.Error)
	}
	wantErr(t, "RecordPart on a failed upload", s.RecordPart(ctx, "t1", "b1", "u1", 2, p1, 1, 1, nil), metadata.ErrStale)
	wantErr(t, "SetS3UploadID on a failed upload", s.SetS3UploadID(ctx, "t1", "b1", "u1", 2, "x"), metadata.ErrStale)
	wantErr(t, "FailUpload twice", s.FailUpload(ctx, "t1", "b1", "u1", 2, metadata.UploadAbandoned, ""), metadata.ErrStale)
	// A failed upload can be reopened.
	if bumped, err = s.BumpGeneration(ctx, "t1", "b1", "u1"); err != nil || bumped.Generation != 3 {
		t.Fatalf("BumpGeneration of a failed upload = %+v, %v", bumped, err)
	}
	if err := s.ResetUpload(ctx, "t1", "b1", "u1", 3, "obj-3", "key-3", 8<<20); err != nil {
		t.Fatal(err)
	}
	if got := getUpload(t, s, "t1", "b1", "u1"); got.State != metadata.UploadPending || got.Error != "" {
		t.Errorf("after reopening a failed upload: state %s, error %q", got.State, got.Error)
	}

	// Unknown uploads.
	for name, err := range map[string]error{
		"RecordPart":    s.RecordPart(ctx, "t1", "b1", "nope", 1, p1, 1, 1, nil),
		"SetS3UploadID": s.SetS3UploadID(ctx, "t1", "b1", "nope", 1, "x"),
		"FailUpload":    s.FailUpload(ctx, "t1", "b1", "nope", 1, metadata.UploadFailed, ""),
		"ResetUpload":   s.ResetUpload(ctx, "t1", "b1", "nope", 1, "o", "k", 1),
	} {
		wantErr(t, name+" of an unknown upload", err, metadata.ErrNotFound)
	}
	_, err = s.BumpGeneration(ctx, "t1", "b1", "nope")
	wantErr(t, "BumpGeneration of an unknown upload", err, metadata.ErrNotFound)
	_, err = s.GetUpload(ctx, "t1", "b1", "nope")
	wantErr(t, "GetUpload of an unknown upload", err, metadata.ErrNotFound)

	// Listing, by upload id, all or by state.
	for _, id := range []string{"u4", "u2", "u3", "u5"} {
		createUpload(t, s, fileUpload(b, id))
	}
	if err := s.FailUpload(ctx, "t1", "b1", "u3", 1, metadata.UploadAbandoned, "abort denied"); err != nil {
		t.Fatal(err)
	}
	// GetUploads is GetUpload for many: what it finds, as GetUpload reads it.
	many, err := s.GetUploads(ctx, "t1", "b1", []string{"u3", "nope", "u2", "u3"})
	if err != nil {
		t.Fatal(err)
	}
	if len(many) != 2 {
		t.Errorf("GetUploads(u3, nope, u2, u3) found %d uploads, want 2", len(many))
	}
	for _, id := range []string{"u2", "u3"} {
		if d := cmp.Diff(getUpload(t, s, "t1", "b1", id), many[id]); d != "" {
			t.Errorf("GetUploads[%s] (-GetUpload +GetUploads):\n%s", id, d)
		}
	}
	if bs, err := s.GetBackups(ctx, "t1", []string{"b1", "nope"}); err != nil || len(bs) != 1 || cmp.Diff(getBackup(t, s, "t1", "b1"), bs["b1"]) != "" {
		t.Errorf("GetBackups(b1, nope) = %v, %v; want b1 as GetBackup reads it", bs, err)
	}
	listIDs := func(state string, size int) [][]string {
		t.Helper()
		return pageKeys(allPages(t, fmt.Sprintf("ListUploads(%q, %d)", state, size), func(tok string) ([]*metadata.Upload, string, error) {
			return s.ListUploads(ctx, "t1", "b1", state, size, tok)
		}), func(u *metadata.Upload) string { return u.UploadID })
	}
	if d := cmp.Diff([][]string{{"u1", "u2"}, {"u3", "u4"}, {"u5"}}, listIDs("", 2)); d != "" {
		t.Errorf("ListUploads (-want +got):\n%s", d)
	}
	if d := cmp.Diff([][]string{{"u1", "u2", "u4"}, {"u5"}}, listIDs(metadata.UploadPending, 3)); d != "" {
		t.Errorf("ListUploads(PENDING) (-want +got):\n%s", d)
	}
	if d := cmp.Diff([][]string{{"u3"}}, listIDs(metadata.UploadAbandoned, 0)); d != "" {
		t.Errorf("ListUploads(ABANDONED) (-want +got):\n%s", d)
	}
	_, _, err = s.ListUploads(ctx, "t1", "b1", "", 2, "%%%")
	wantErr(t, "ListUploads with a malformed token", err, metadata.ErrInvalid)
	pending, err := s.PendingUploads(ctx, "t1", "b1")
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, u := range pending {
		ids = append(ids, u.UploadID)
	}
	if d := cmp.Diff([]string{"u1", "u2", "u4", "u5"}, ids); d != "" {
		t.Errorf("PendingUploads (-want +got):\n%s", d)
	}

	// A committed upload is final: no reset, no second commit.
	u2 := getUpload(t, s, "t1", "b1", "u2")
	if err := s.CommitFileUpload(ctx, u2, fileObject(b, u2, "body"), fileRow(b, "f2", u2.ObjectID, "body")); err != nil {
		t.Fatal(err)
	}
	if u2.State != metadata.UploadCommitted {
		t.Errorf("CommitFileUpload left u.State = %s", u2.State)
	}
	wantErr(t, "ResetUpload of a committed upload", s.ResetUpload(ctx, "t1", "b1", "u2", 1, "o", "k", 1), metadata.ErrConflict)
	wantErr(t, "RecordPart on a committed upload", s.RecordPart(ctx, "t1", "b1", "u2", 1, p1, 1, 1, nil), metadata.ErrStale)
}

func testCommitBackup(t *testing.T, newDB NewDB) {
	s := newStore(t, newDB)
	ctx := t.Context()
	create(t, s, storage("t1", "s1", "one"))

	// An earlier backup stored the body the new one deduplicates.
	b0 := newBackup(t, s, "t1", "b0", org1, "s1", minutes(0))
	shared := commitFile(t, s, b0, "u-old", strings.Repeat("s", 70))

	b := newBackup(t, s, "t1", "b1", org1, "s1", minutes(1))
	if _, _, err := s.PutRecordSetSchema(ctx, "t1", "b1", "Account", []byte("Id,Name\r\n"), nil); err != nil {
		t.Fatal(err)
	}
	ur := createUpload(t, s, recordsUpload(b, "u-rec", "Account", 1))
	if err := s.RecordPart(ctx, "t1", "b1", "u-rec", 1, metadata.Part{Number: 1, ETag: `"e"`, Size: 90, InputEnd: 500}, 500, 90, nil); err != nil {
		t.Fatal(err)
	}
	uf := createUpload(t, s, fileUpload(b, "u-file"))
	failed := createUpload(t, s, fileUpload(b, "u-failed"))
	if err := s.FailUpload(ctx, "t1", "b1", failed.UploadID, 1, metadata.UploadFailed, "client went away"); err != nil {
		t.Fatal(err)
	}

	_, err := s.CommitBackup(ctx, "t1", "b1", "m", minutes(2))
	var pe *metadata.PendingUploadsError
	if !errors.As(err, &pe) || !errors.Is(err, metadata.ErrConflict) {
		t.Fatalf("CommitBackup with pending uploads: %v; want a *PendingUploadsError that is ErrConflict", err)
	}
	if d := cmp.Diff([]string{"u-file", "u-rec"}, pe.UploadIDs); d != "" {
		t.Errorf("PendingUploadsError.UploadIDs (-want +got):\n%s", d)
	}
	if msg := err.Error(); !strings.Contains(msg, "u-file") || !strings.Contains(msg, "u-rec") {
		t.Errorf("error %q does not name the pending uploads", msg)
	}
	if got := getBackup(t, s, "t1", "b1"); got.Status != metadata.BackupOpen {
		t.Errorf("refused commit left status %s", got.Status)
	}

	// Finish everything: a multipart records chunk, a second chunk, a multipart file, a single
	// PUT (no upload row yet), a deduplicated file.
	data, index, ch := chunkParts(b, ur, 3, 500, 90, 20)
	if err := s.CommitRecordsUpload(ctx, ur, data, index, ch); err != nil {
		t.Fatal(err)
	}
	commitChunk(t, s, b, "u-rec2", "Account", 2, 2, 300, 50, 10)
	uf.Result = []byte(`{"upload_id":"u-file"}`)
	if err := s.CommitFileUpload(ctx, uf, fileObject(b, uf, strings.Repeat("f", 1000)), fileRow(b, "f-file", uf.ObjectID, strings.Repeat("f", 1000))); err != nil {
		t.Fatal(err)
	}
	if got := getUpload(t, s, "t1", "b1", "u-file"); got.State != metadata.UploadCommitted || string(got.Result) != `{"upload_id":"u-file"}` {
		t.Errorf("committed upload: state %s, result %q", got.State, got.Result)
	}
	put := fileUpload(b, "u-put")
	put.Result = []byte(`{"upload_id":"u-put"}`)
	putObj := fileObject(b, put, strings.Repeat("p", 50))
	if err := s.CommitFileUpload(ctx, put, putObj, fileRow(b, "f-put", putObj.ID, strings.Repeat("p", 50))); err != nil {
		t.Fatal(err)
	}
	got := getUpload(t, s, "t1", "b1", "u-put")
	if got.State != metadata.UploadCommitted || got.Generation != 1 || string(got.Result) != `{"upload_id":"u-put"}` || got.ObjectKey != put.ObjectKey {
		t.Errorf("single-PUT upload row = %+v", got)
	}
	if d := cmp.Diff(put, got); d != "" {
		t.Errorf("single-PUT upload: u after commit vs stored (-u +stored):\n%s", d)
	}
	if err := dedupFile(t, s, b, "u-dup", shared); err != nil {
		t.Fatalf("dedup commit: %v", err)
	}

	// A second commit of the same upload, by either path, is a conflict.
	again := fileUpload(b, "u-put")
	wantErr(t, "second commit of a single PUT", s.CommitFileUpload(ctx, again, fileObject(b, again, "z"), fileRow(b, "f-again", again.ObjectID, "z")), metadata.ErrConflict)
	again = fileUpload(b, "u-file")
	again.ObjectID = "obj-again"
	again.Generation = 1
	wantErr(t, "second commit of a multipart upload", s.CommitFileUpload(ctx, again, fileObject(b, again, "z"), fileRow(b, "f-again", again.ObjectID, "z")), metadata.ErrConflict)

	at := minutes(3)
	committed, err := s.CommitBackup(ctx, "t1", "b1", "p/b1/manifest.json", at)
	if err != nil {
		t.Fatal(err)
	}
	want := *b
	want.Status, want.CommittedAt, want.ManifestKey = metadata.BackupCommitted, at, "p/b1/manifest.json"
	want.RecordCount, want.RecordChunkCount, want.FileCount = 5, 2, 3
	want.BytesIn = 500 + 300 + 1000 + 50 + 70 // chunks' input plus all files, deduplicated too
	want.BytesStored = 110 + 60 + 1000 + 50   // chunks' objects plus the file bodies stored first here
	if d := cmp.Diff(&want, committed); d != "" {
		t.Errorf("CommitBackup (-want +got):\n%s", d)
	}
	if d := cmp.Diff(&want, getBackup(t, s, "t1", "b1")); d != "" {
		t.Errorf("GetBackup after commit (-want +got):\n%s", d)
	}
	// Idempotent: the committed backup, unchanged.
	again2, err := s.CommitBackup(ctx, "t1", "b1", "other-key", minutes(9))
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(&want, again2); d != "" {
		t.Errorf("second CommitBackup (-want +got):\n%s", d)
	}

	// Nothing joins a committed backup.
	late := fileUpload(b, "u-late")
	wantErr(t, "file commit into a committed backup", s.CommitFileUpload(ctx, late, fileObject(b, late, "l"), fileRow(b, "f-late", late.ObjectID, "l")), metadata.ErrConflict)
	lr := recordsUpload(b, "u-late2", "Contact", 1)
	data, index, ch = chunkParts(b, lr, 1, 1, 1, 1)
	wantErr(t, "chunk commit into a committed backup", s.CommitRecordsUpload(ctx, lr, data, index, ch), metadata.ErrConflict)

	ab := newBackup(t, s, "t1", "b-aborted", org1, "s1", minutes(4))
	if err := s.SetBackupStatus(ctx, "t1", ab.ID, metadata.BackupOpen, metadata.BackupAborted); err != nil {
		t.Fatal(err)
	}
	_, err = s.CommitBackup(ctx, "t1", ab.ID, "m", at)
	wantErr(t, "CommitBackup of an aborted backup", err, metadata.ErrConflict)
	_, err = s.CommitBackup(ctx, "t1", "nope", "m", at)
	wantErr(t, "CommitBackup of an unknown backup", err, metadata.ErrNotFound)

	// An empty backup commits with zero counts.
	empty := newBackup(t, s, "t1", "b-empty", org2, "", minutes(5))
	got2, err := s.CommitBackup(ctx, "t1", empty.ID, "", time.Time{})
	if err != nil || got2.Status != metadata.BackupCommitted || got2.CommittedAt.IsZero() || got2.BytesIn != 0 || got2.FileCount != 0 {
		t.Errorf("CommitBackup(empty) = %+v, %v", got2, err)
	}
}

func testPendingUploadsError(t *testing.T, _ NewDB) {
	var ids []string
	for i := range 25 {
		ids = append(ids, fmt.Sprintf("u%02d", i))
	}
	err := fmt.Errorf("wrapped: %w", &metadata.PendingUploadsError{UploadIDs: ids})
	if !errors.Is(err, metadata.ErrConflict) {
		t.Error("PendingUploadsError is not ErrConflict")
	}
	msg := err.Error()
	if !strings.Contains(msg, "u19") || strings.Contains(msg, "u20") || !strings.Contains(msg, "and 5 more") {
		t.Errorf("Error() = %q; want the first 20 ids and \"and 5 more\"", msg)
	}
}

func testRecordChunks(t *testing.T, newDB NewDB) {
	s := newStore(t, newDB)
	ctx := t.Context()
	b := newBackup(t, s, "t1", "b1", org1, "", minutes(0))
	first := commitChunk(t, s, b, "u1", "Account", 1, 10, 100, 40, 5)

	// Another upload of the same chunk: refused whole, the upload stays PENDING.
	u2 := createUpload(t, s, recordsUpload(b, "u2", "Account", 1))
	data, index, ch := chunkParts(b, u2, 10, 100, 40, 5)
	wantErr(t, "duplicate (sobject, sequence)", s.CommitRecordsUpload(ctx, u2, data, index, ch), metadata.ErrConflict)
	if got := getUpload(t, s, "t1", "b1", "u2"); got.State != metadata.UploadPending {
		t.Errorf("refused chunk commit left the upload %s", got.State)
	}
	for _, id := range []string{data.ID, index.ID} {
		if _, err := s.GetObject(ctx, "t1", id); !errors.Is(err, metadata.ErrNotFound) {
			t.Errorf("refused chunk commit left object %s: %v", id, err)
		}
	}

	// Byte order of sObject names: uppercase before lowercase.
	c3 := commitChunk(t, s, b, "u3", "account__c", 1, 1, 1, 1, 1)
	c4 := commitChunk(t, s, b, "u4", "Contact", 1, 1, 1, 1, 1)
	c5 := commitChunk(t, s, b, "u5", "Account", 2, 1, 1, 1, 1)
	c6 := commitChunk(t, s, b, "u6", "Account", 10, 1, 1, 1, 1)
	list, err := s.ListRecordChunks(ctx, "t1", "b1")
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]*metadata.RecordChunk{first, c5, c6, c4, c3}, list); d != "" {
		t.Errorf("ListRecordChunks (-want +got):\n%s", d)
	}
	o, err := s.GetObject(ctx, "t1", first.DataObjectID)
	if err != nil || o.Kind != metadata.ObjRecords || o.Size != 40 || o.BackupID != "b1" || o.StorageID != "" {
		t.Errorf("GetObject(data) = %+v, %v", o, err)
	}

	// Objects must be in the backup's org and on its storage.
	u7 := createUpload(t, s, recordsUpload(b, "u7", "Lead", 1))
	data, index, ch = chunkParts(b, u7, 1, 1, 1, 1)
	index.OrgID = org2
	wantErr(t, "index object of another org", s.CommitRecordsUpload(ctx, u7, data, index, ch), metadata.ErrInvalid)
}

func testDedup(t *testing.T, newDB NewDB) {
	s := newStore(t, newDB)
	ctx := t.Context()
	create(t, s, storage("t1", "s1", "one"))
	create(t, s, storage("t1", "s2", "two"))
	body := "attachment body"
	sum := digest(body)

	bA := newBackup(t, s, "t1", "bA", org1, "s1", minutes(0))
	x := commitFile(t, s, bA, "ux", body)
	bN := newBackup(t, s, "t1", "bN", org1, "", minutes(1)) // service default storage
	y := commitFile(t, s, bN, "uy", body)
	bO := newBackup(t, s, "t1", "bO", org2, "s2", minutes(2))
	commitFile(t, s, bO, "uo", body)

	// find asks FindFileObject, and FindFileObjects (batched, with a sum
	// nothing has and a repeat) must agree with it.
	find := func(org, storageID string, sum []byte) string {
		t.Helper()
		many, err := s.FindFileObjects(ctx, "t1", org, storageID, [][]byte{digest("never stored"), sum, sum})
		if err != nil {
			t.Fatalf("FindFileObjects(%s, %q): %v", org, storageID, err)
		}
		batched := ""
		if o := many[string(sum)]; o != nil {
			batched = o.ID
		}
		if len(many) > 1 || (len(many) == 1 && batched == "") {
			t.Errorf("FindFileObjects(%s, %q) found sums not asked for or never stored: %v", org, storageID, many)
		}
		o, err := s.FindFileObject(ctx, "t1", org, storageID, sum)
		if errors.Is(err, metadata.ErrNotFound) {
			o, err = &metadata.Object{}, nil
		}
		if err != nil {
			t.Fatalf("FindFileObject(%s, %q): %v", org, storageID, err)
		}
		if o.ID != batched {
			t.Errorf("FindFileObjects(%s, %q) = %q, FindFileObject %q", org, storageID, batched, o.ID)
		}
		return o.ID
	}
	for _, tt := range []struct {
		name, org, storage string
		sum                []byte
		want               string
	}{
		{"same org and storage", org1, "s1", sum, x.ID},
		{"service default storage", org1, "", sum, y.ID},
		{"other storage", org1, "s2", sum, ""},
		{"other org", org2, "s1", sum, ""},
		{"other digest", org1, "s1", digest("other"), ""},
	} {
		if got := find(tt.org, tt.storage, tt.sum); got != tt.want {
			t.Errorf("%s: FindFileObject = %q, want %q", tt.name, got, tt.want)
		}
	}
	got, err := s.FindFileObject(ctx, "t1", org1, "s1", sum)
	if err != nil {
		t.Fatal(err)
	}
	x.CreatedAt = got.CreatedAt
	if d := cmp.Diff(x, got); d != "" {
		t.Errorf("FindFileObject (-want +got):\n%s", d)
	}

	// A damaged body is not reused, nor one that no file references.
	bD := newBackup(t, s, "t1", "bD", org1, "s1", minutes(3))
	ud := fileUpload(bD, "ud")
	dobj := fileObject(bD, ud, "damaged body")
	dobj.Damaged = true
	if err := s.CommitFileUpload(ctx, ud, dobj, fileRow(bD, "fd", dobj.ID, "damaged body")); err != nil {
		t.Fatal(err)
	}
	if got := find(org1, "s1", digest("damaged body")); got != "" {
		t.Errorf("FindFileObject found damaged object %s", got)
	}
	loose := &metadata.Object{TenantID: "t1", ID: "loose", OrgID: org1, StorageID: "s1", Key: "loose", Kind: metadata.ObjFile, SHA256: digest("loose")}
	if err := s.InsertObject(ctx, loose); err != nil {
		t.Fatal(err)
	}
	if got := find(org1, "s1", digest("loose")); got != "" {
		t.Errorf("FindFileObject found unreferenced object %s", got)
	}

	// A body referenced only by an aborted backup is not reused.
	bAb := newBackup(t, s, "t1", "bAb", org1, "s2", minutes(4))
	w := commitFile(t, s, bAb, "uw", "aborted body")
	if got := find(org1, "s2", digest("aborted body")); got != w.ID {
		t.Errorf("FindFileObject before abort = %q, want %s", got, w.ID)
	}
	if err := s.SetBackupStatus(ctx, "t1", "bAb", metadata.BackupOpen, metadata.BackupAborted); err != nil {
		t.Fatal(err)
	}
	if got := find(org1, "s2", digest("aborted body")); got != "" {
		t.Errorf("FindFileObject found %s, a file of an aborted backup", got)
	}

	// Dedup commits: onto a live body; not onto one only an aborted backup holds (the body
	// must be uploaded after all), nor across storages.
	bB := newBackup(t, s, "t1", "bB", org1, "s1", minutes(5))
	if err := dedupFile(t, s, bB, "u-dedup", x); err != nil {
		t.Fatalf("dedup commit: %v", err)
	}
	var files []*metadata.File
	if err := s.ForEachFile(ctx, "t1", "bB", func(f *metadata.File) error { files = append(files, f); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(files) != 1 || files[0].ObjectID != x.ID || files[0].UploadID != "u-dedup" || files[0].Size != x.Size {
		t.Errorf("ForEachFile(bB) = %+v; want one file sharing %s", files, x.ID)
	}
	bC := newBackup(t, s, "t1", "bC", org1, "s2", minutes(6))
	wantErr(t, "dedup onto a body only an aborted backup holds", dedupFile(t, s, bC, "u-c1", w), metadata.ErrNotFound)
	wantErr(t, "dedup across storages", dedupFile(t, s, bC, "u-c2", x), metadata.ErrInvalid)
	wantErr(t, "dedup onto an unknown object", dedupFile(t, s, bC, "u-c3", &metadata.Object{ID: "nope"}), metadata.ErrNotFound)
	if _, err := s.GetUpload(ctx, "t1", "bC", "u-c1"); !errors.Is(err, metadata.ErrNotFound) {
		t.Errorf("a refused single-PUT commit left its upload row: %v", err)
	}
}

func testExclusivePurge(t *testing.T, newDB NewDB) {
	s := newStore(t, newDB)
	ctx := t.Context()
	create(t, s, storage("t1", "s1", "one"))
	b1 := newBackup(t, s, "t1", "b1", org1, "s1", minutes(0))
	b2 := newBackup(t, s, "t1", "b2", org1, "s1", minutes(1))

	ch1 := commitChunk(t, s, b1, "r1", "Account", 1, 3, 30, 20, 2)
	if _, _, err := s.PutRecordSetSchema(ctx, "t1", "b1", "Account", []byte("Id\n"), nil); err != nil {
		t.Fatal(err)
	}
	x1 := commitFile(t, s, b1, "f1", "only in b1")
	x2 := commitFile(t, s, b1, "f2", "shared with b2")
	pending := createUpload(t, s, fileUpload(b1, "f3"))
	if err := s.RecordPart(ctx, "t1", "b1", pending.UploadID, 1, metadata.Part{Number: 1}, 1, 1, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.FailUpload(ctx, "t1", "b1", pending.UploadID, 1, metadata.UploadFailed, ""); err != nil {
		t.Fatal(err)
	}
	manifest := &metadata.Object{TenantID: "t1", ID: "m1", OrgID: org1, StorageID: "s1", BackupID: "b1",
		Key: "p/b1/manifest.json", Kind: metadata.ObjManifest, Size: 99, SHA256: digest("m")}
	if err := s.InsertObject(ctx, manifest); err != nil {
		t.Fatal(err)
	}
	ch2 := commitChunk(t, s, b2, "r2", "Account", 1, 1, 10, 5, 1)
	if err := dedupFile(t, s, b2, "f4", x2); err != nil {
		t.Fatal(err)
	}
	// Another tenant's object with the same id as one of b1's must not be touched.
	newBackup(t, s, "t2", "b1", org1, "", minutes(0))
	other := &metadata.Object{TenantID: "t2", ID: x1.ID, OrgID: org1, Key: "t2-key", Kind: metadata.ObjManifest}
	if err := s.InsertObject(ctx, other); err != nil {
		t.Fatal(err)
	}

	exclusive := func(b string) []string {
		t.Helper()
		list, err := s.ExclusiveObjects(ctx, "t1", b)
		if err != nil {
			t.Fatalf("ExclusiveObjects(%s): %v", b, err)
		}
		return objectIDs(list)
	}
	sorted := func(ids ...string) []string { sort.Strings(ids); return ids }
	want1 := sorted(ch1.DataObjectID, ch1.IndexObjectID, x1.ID, manifest.ID)
	if d := cmp.Diff(want1, exclusive("b1")); d != "" {
		t.Errorf("ExclusiveObjects(b1) (-want +got):\n%s", d)
	}
	if d := cmp.Diff(sorted(ch2.DataObjectID, ch2.IndexObjectID), exclusive("b2")); d != "" {
		t.Errorf("ExclusiveObjects(b2) (-want +got):\n%s", d)
	}

	wantErr(t, "PurgeBackupRows of an OPEN backup", s.PurgeBackupRows(ctx, "t1", "b1", nil), metadata.ErrConflict)
	if err := s.SetBackupStatus(ctx, "t1", "b1", metadata.BackupOpen, metadata.BackupDeleting); err != nil {
		t.Fatal(err)
	}
	// Purge names x2 too: it stays, b2 still references it.
	ids := append(want1, x2.ID, "no-such-object")
	for range 2 { // re-running finishes nothing twice
		if err := s.PurgeBackupRows(ctx, "t1", "b1", ids); err != nil {
			t.Fatalf("PurgeBackupRows: %v", err)
		}
	}
	for _, id := range want1 {
		if _, err := s.GetObject(ctx, "t1", id); !errors.Is(err, metadata.ErrNotFound) {
			t.Errorf("object %s after purge: %v; want it deleted", id, err)
		}
	}
	for _, o := range []*metadata.Object{x2} {
		if _, err := s.GetObject(ctx, "t1", o.ID); err != nil {
			t.Errorf("shared object %s after purge: %v", o.ID, err)
		}
	}
	if _, err := s.GetObject(ctx, "t2", other.ID); err != nil {
		t.Errorf("t2's object %s after t1's purge: %v", other.ID, err)
	}
	if got := getBackup(t, s, "t1", "b1"); got.Status != metadata.BackupDeleting {
		t.Errorf("backup row after purge: %+v", got)
	}
	n := 0
	if err := s.ForEachFile(ctx, "t1", "b1", func(*metadata.File) error { n++; return nil }); err != nil || n != 0 {
		t.Errorf("files of b1 after purge: %d, %v", n, err)
	}
	if list, err := s.ListRecordChunks(ctx, "t1", "b1"); err != nil || len(list) != 0 {
		t.Errorf("chunks of b1 after purge: %v, %v", list, err)
	}
	if list, _, err := s.ListUploads(ctx, "t1", "b1", "", 0, ""); err != nil || len(list) != 0 {
		t.Errorf("uploads of b1 after purge: %v, %v", list, err)
	}
	if parts, err := s.ListParts(ctx, "t1", "b1", pending.UploadID); err != nil || len(parts) != 0 {
		t.Errorf("parts of b1 after purge: %v, %v", parts, err)
	}
	_, _, err := s.GetRecordSetSchema(ctx, "t1", "b1", "Account")
	wantErr(t, "record set schema after purge", err, metadata.ErrNotFound)

	// b2 is untouched, and x2 is now b2's alone.
	if list, err := s.ListRecordChunks(ctx, "t1", "b2"); err != nil || len(list) != 1 {
		t.Errorf("chunks of b2 after b1's purge: %v, %v", list, err)
	}
	if d := cmp.Diff(sorted(ch2.DataObjectID, ch2.IndexObjectID, x2.ID), exclusive("b2")); d != "" {
		t.Errorf("ExclusiveObjects(b2) after b1's purge (-want +got):\n%s", d)
	}
	wantErr(t, "PurgeBackupRows of an unknown backup", s.PurgeBackupRows(ctx, "t1", "nope", nil), metadata.ErrNotFound)
}

func testRecordSetSchema(t *testing.T, newDB NewDB) {
	s := newStore(t, newDB)
	ctx := t.Context()
	newBackup(t, s, "t1", "b1", org1, "", minutes(0))
	// Larger than a 64 KiB BLOB, with bytes that are not UTF-8.
	header := append(bytes.Repeat([]byte("Field__c,"), 10000), 0x00, 0xff, '\r', '\n')
	refs := []byte(`{"AccountId":"Account"}`)
	h, r, err := s.PutRecordSetSchema(ctx, "t1", "b1", "Contact", header, refs)
	if err != nil || !bytes.Equal(h, header) || !bytes.Equal(r, refs) {
		t.Fatalf("PutRecordSetSchema = %d bytes, %q, %v", len(h), r, err)
	}
	// The first writer wins.
	h, r, err = s.PutRecordSetSchema(ctx, "t1", "b1", "Contact", []byte("Id\n"), nil)
	if err != nil || !bytes.Equal(h, header) || !bytes.Equal(r, refs) {
		t.Errorf("second PutRecordSetSchema = %d bytes, %q, %v; want the first's", len(h), r, err)
	}
	h, r, err = s.GetRecordSetSchema(ctx, "t1", "b1", "Contact")
	if err != nil || !bytes.Equal(h, header) || !bytes.Equal(r, refs) {
		t.Errorf("GetRecordSetSchema = %d bytes, %q, %v", len(h), r, err)
	}
	if h, r, err := s.PutRecordSetSchema(ctx, "t1", "b1", "Account", []byte("Id\n"), nil); err != nil || string(h) != "Id\n" || r != nil {
		t.Errorf("PutRecordSetSchema without references = %q, %q, %v", h, r, err)
	}
	_, _, err = s.GetRecordSetSchema(ctx, "t1", "b1", "contact")
	wantErr(t, "GetRecordSetSchema of an sObject differing in case", err, metadata.ErrNotFound)
	_, _, err = s.PutRecordSetSchema(ctx, "t1", "nope", "Contact", header, nil)
	wantErr(t, "PutRecordSetSchema of an unknown backup", err, metadata.ErrNotFound)
}

func testIngestTenantIsolation(t *testing.T, newDB NewDB) {
	s := newStore(t, newDB)
	ctx := t.Context()
	create(t, s, storage("tA", "s1", "one"))
	b := newBackup(t, s, "tA", "b1", org1, "s1", minutes(0))
	ch := commitChunk(t, s, b, "r1", "Account", 1, 1, 1, 1, 1)
	if _, _, err := s.PutRecordSetSchema(ctx, "tA", "b1", "Account", []byte("Id\n"), nil); err != nil {
		t.Fatal(err)
	}
	x := commitFile(t, s, b, "f1", "body")
	createUpload(t, s, fileUpload(b, "f2"))
	if err := s.RecordPart(ctx, "tA", "b1", "f2", 1, metadata.Part{Number: 1}, 1, 1, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.EnsureTenant(ctx, "tB"); err != nil {
		t.Fatal(err)
	}
	before := getBackup(t, s, "tA", "b1")

	notFound := map[string]error{}
	_, notFound["GetBackup"] = s.GetBackup(ctx, "tB", "b1")
	notFound["SetBackupStatus"] = s.SetBackupStatus(ctx, "tB", "b1", metadata.BackupOpen, metadata.BackupAborted)
	notFound["SetBackupDamaged"] = s.SetBackupDamaged(ctx, "tB", "b1")
	_, notFound["CommitBackup"] = s.CommitBackup(ctx, "tB", "b1", "m", time.Time{})
	_, notFound["GetUpload"] = s.GetUpload(ctx, "tB", "b1", "f2")
	_, notFound["BumpGeneration"] = s.BumpGeneration(ctx, "tB", "b1", "f2")
	notFound["ResetUpload"] = s.ResetUpload(ctx, "tB", "b1", "f2", 1, "o", "k", 1)
	notFound["SetS3UploadID"] = s.SetS3UploadID(ctx, "tB", "b1", "f2", 1, "x")
	notFound["RecordPart"] = s.RecordPart(ctx, "tB", "b1", "f2", 1, metadata.Part{Number: 2}, 1, 1, nil)
	notFound["FailUpload"] = s.FailUpload(ctx, "tB", "b1", "f2", 1, metadata.UploadFailed, "")
	notFound["CreateUpload"] = s.CreateUpload(ctx, fileUpload(&metadata.Backup{TenantID: "tB", ID: "b1"}, "f9"))
	bB := &metadata.Backup{TenantID: "tB", ID: "b1", OrgID: org1, StorageID: "s1"}
	uB := fileUpload(bB, "f9")
	notFound["CommitFileUpload"] = s.CommitFileUpload(ctx, uB, fileObject(bB, uB, "z"), fileRow(bB, "f9", uB.ObjectID, "z"))
	notFound["CommitFileUpload (dedup)"] = dedupFile(t, s, bB, "f8", x)
	uR := recordsUpload(bB, "r9", "Account", 2)
	data, index, chB := chunkParts(bB, uR, 1, 1, 1, 1)
	notFound["CommitRecordsUpload"] = s.CommitRecordsUpload(ctx, uR, data, index, chB)
	_, notFound["GetObject"] = s.GetObject(ctx, "tB", x.ID)
	_, notFound["FindFileObject"] = s.FindFileObject(ctx, "tB", org1, "s1", digest("body"))
	// The batched lookups find nothing of another tenant either.
	bs, err := s.GetBackups(ctx, "tB", []string{"b1"})
	us, uerr := s.GetUploads(ctx, "tB", "b1", []string{"f1", "f2"})
	os, oerr := s.FindFileObjects(ctx, "tB", org1, "s1", [][]byte{digest("body")})
	if len(bs)+len(us)+len(os) != 0 || err != nil || uerr != nil || oerr != nil {
		t.Errorf("batched lookups as another tenant: backups %v (%v), uploads %v (%v), objects %v (%v)", bs, err, us, uerr, os, oerr)
	}
	_, _, notFound["GetRecordSetSchema"] = s.GetRecordSetSchema(ctx, "tB", "b1", "Account")
	_, _, notFound["PutRecordSetSchema"] = s.PutRecordSetSchema(ctx, "tB", "b1", "Account", []byte("x"), nil)
	notFound["PurgeBackupRows"] = s.PurgeBackupRows(ctx, "tB", "b1", []string{x.ID})
	_, notFound["FindBackup"] = s.FindBackup(ctx, "tB", org1, minutes(99))
	_, notFound["GetFile"] = s.GetFile(ctx, "tB", "b1", "fil-f1")
	notFound["SetObjectDamaged"] = s.SetObjectDamaged(ctx, "tB", x.ID)
	for name, err := range notFound {
		wantErr(t, name+" of another tenant's backup", err, metadata.ErrNotFound)
	}

	empty := map[string]int{}
	list, _, err := s.ListBackups(ctx, "tB", metadata.BackupFilter{}, 0, "")
	empty["ListBackups"] = len(list) + errCount(err)
	ups, _, err := s.ListUploads(ctx, "tB", "b1", "", 0, "")
	empty["ListUploads"] = len(ups) + errCount(err)
	ups, err = s.PendingUploads(ctx, "tB", "b1")
	empty["PendingUploads"] = len(ups) + errCount(err)
	parts, err := s.ListParts(ctx, "tB", "b1", "f2")
	empty["ListParts"] = len(parts) + errCount(err)
	chunks, err := s.ListRecordChunks(ctx, "tB", "b1")
	empty["ListRecordChunks"] = len(chunks) + errCount(err)
	objs, err := s.ExclusiveObjects(ctx, "tB", "b1")
	empty["ExclusiveObjects"] = len(objs) + errCount(err)
	n := 0
	err = s.ForEachFile(ctx, "tB", "b1", func(*metadata.File) error { n++; return nil })
	empty["ForEachFile"] = n + errCount(err)
	files, _, err := s.ListFiles(ctx, "tB", "b1", 0, "")
	empty["ListFiles"] = len(files) + errCount(err)
	files, err = s.FilesByParent(ctx, "tB", "b1", []string{"001000000000001AAA"})
	empty["FilesByParent"] = len(files) + errCount(err)
	for name, n := range empty {
		if n != 0 {
			t.Errorf("%s of another tenant's backup: %d results or errors, want none", name, n)
		}
	}

	// Nothing of tA's changed.
	if d := cmp.Diff(before, getBackup(t, s, "tA", "b1")); d != "" {
		t.Errorf("tA's backup changed by tB's calls (-want +got):\n%s", d)
	}
	if u := getUpload(t, s, "tA", "b1", "f2"); u.Generation != 1 || u.State != metadata.UploadPending {
		t.Errorf("tA's upload changed by tB's calls: %+v", u)
	}
	if list, err := s.ListRecordChunks(ctx, "tA", "b1"); err != nil || len(list) != 1 || list[0].DataObjectID != ch.DataObjectID {
		t.Errorf("tA's chunks after tB's calls: %v, %v", list, err)
	}

	// Ids are per tenant: tB may reuse them.
	newBackup(t, s, "tB", "b1", org1, "", minutes(0))
	commitFile(t, s, &metadata.Backup{TenantID: "tB", ID: "b1", OrgID: org1}, "f1", "body")
}

func errCount(err error) int {
	if err != nil {
		return 1
	}
	return 0
}

func testIngestReferences(t *testing.T, newDB NewDB) {
	s := newStore(t, newDB)
	ctx := t.Context()
	create(t, s, storage("t1", "by-backup", "by-backup"))
	create(t, s, storage("t1", "by-object", "by-object"))
	create(t, s, storage("t1", "free", "free"))
	newBackup(t, s, "t1", "b1", org1, "by-backup", minutes(0))
	o := &metadata.Object{TenantID: "t1", ID: "o1", OrgID: org1, StorageID: "by-object", Key: "k", Kind: metadata.ObjManifest}
	if err := s.InsertObject(ctx, o); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "DeleteStorage referenced by a backup", s.DeleteStorage(ctx, "t1", "by-backup"), metadata.ErrReferenced)
	wantErr(t, "DeleteStorage referenced by an object", s.DeleteStorage(ctx, "t1", "by-object"), metadata.ErrReferenced)
	if err := s.DeleteStorage(ctx, "t1", "free"); err != nil {
		t.Errorf("DeleteStorage(free): %v", err)
	}

	wantErr(t, "InsertObject on an unknown storage", s.InsertObject(ctx, &metadata.Object{TenantID: "t1", ID: "o2", OrgID: org1, StorageID: "free", Key: "k2", Kind: metadata.ObjManifest}), metadata.ErrNotFound)
	wantErr(t, "InsertObject with a duplicate id", s.InsertObject(ctx, &metadata.Object{TenantID: "t1", ID: "o1", OrgID: org1, Key: "k3", Kind: metadata.ObjManifest}), metadata.ErrConflict)
	wantErr(t, "InsertObject with a duplicate key", s.InsertObject(ctx, &metadata.Object{TenantID: "t1", ID: "o3", OrgID: org1, Key: "k", Kind: metadata.ObjManifest}), metadata.ErrConflict)
	wantErr(t, "InsertObject of an unknown kind", s.InsertObject(ctx, &metadata.Object{TenantID: "t1", ID: "o4", OrgID: org1, Key: "k4", Kind: "blob"}), metadata.ErrInvalid)
	wantErr(t, "InsertObject with a short digest", s.InsertObject(ctx, &metadata.Object{TenantID: "t1", ID: "o5", OrgID: org1, Key: "k5", Kind: metadata.ObjFile, SHA256: []byte{1}}), metadata.ErrInvalid)
	got, err := s.GetObject(ctx, "t1", "o1")
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(o, got); d != "" {
		t.Errorf("GetObject (-want +got):\n%s", d)
	}
	// A 1024-byte key fits.
	long := &metadata.Object{TenantID: "t1", ID: "o6", OrgID: org1, Key: strings.Repeat("k", 1024), Kind: metadata.ObjFile, SHA256: digest("x")}
	if err := s.InsertObject(ctx, long); err != nil {
		t.Errorf("InsertObject with a 1024-byte key: %v", err)
	}
}

func testIngestConcurrent(t *testing.T, newDB NewDB) {
	s := newStore(t, newDB)
	ctx := t.Context()
	const n = 12

	// Creates with one idempotency key: one backup, the same for everyone.
	var wg sync.WaitGroup
	ids, created, errs := make([]string, n), make([]bool, n), make([]error, n)
	for i := range n {
		wg.Go(func() {
			b, c, err := s.CreateBackup(ctx, &metadata.Backup{TenantID: "t1", ID: fmt.Sprint("b", i), OrgID: org1, IdempotencyKey: "once"})
			if err == nil {
				ids[i], created[i] = b.ID, c
			}
			errs[i] = err
		})
	}
	wg.Wait()
	nCreated := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("concurrent CreateBackup %d: %v", i, errs[i])
		}
		if created[i] {
			nCreated++
		}
		if ids[i] != ids[0] {
			t.Errorf("concurrent CreateBackup returned %s and %s", ids[0], ids[i])
		}
	}
	if nCreated != 1 {
		t.Errorf("concurrent CreateBackup with one key created %d backups, want 1", nCreated)
	}
	b := getBackup(t, s, "t1", ids[0])

	// Single-PUT commits of one upload id: one wins, the others conflict.
	for i := range n {
		wg.Go(func() {
			u := fileUpload(b, "same")
			u.ObjectID, u.ObjectKey = fmt.Sprint("obj-same-", i), fmt.Sprint("key-same-", i)
			obj := fileObject(b, u, "same")
			errs[i] = s.CommitFileUpload(ctx, u, obj, fileRow(b, fmt.Sprint("f-same-", i), obj.ID, "same"))
		})
	}
	wg.Wait()
	won := 0
	for i, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, metadata.ErrConflict):
			t.Errorf("concurrent commit %d of one upload: %v; want success or ErrConflict", i, err)
		}
	}
	if won != 1 {
		t.Errorf("%d concurrent commits of one upload succeeded, want 1", won)
	}

	// File commits racing CommitBackup: each either lands before the commit and is counted, or
	// fails with ErrConflict.
	var commitErr error
	var final *metadata.Backup
	for i := range n {
		wg.Go(func() {
			if i == n/2 {
				final, commitErr = s.CommitBackup(ctx, "t1", b.ID, "m", time.Time{})
				return
			}
			u := fileUpload(b, fmt.Sprint("race-", i))
			obj := fileObject(b, u, fmt.Sprint("race body ", i))
			errs[i] = s.CommitFileUpload(ctx, u, obj, fileRow(b, fmt.Sprint("f-race-", i), obj.ID, "x"))
		})
	}
	wg.Wait()
	if commitErr != nil {
		t.Fatalf("CommitBackup racing file commits: %v", commitErr)
	}
	landed := 1 // "same"
	for i, err := range errs {
		switch {
		case i == n/2:
		case err == nil:
			landed++
		case !errors.Is(err, metadata.ErrConflict):
			t.Errorf("file commit %d racing CommitBackup: %v; want success or ErrConflict", i, err)
		}
	}
	t.Logf("%d of %d racing file commits landed before CommitBackup", landed-1, n-1)
	rows := 0
	if err := s.ForEachFile(ctx, "t1", b.ID, func(*metadata.File) error { rows++; return nil }); err != nil {
		t.Fatal(err)
	}
	if final.FileCount != int64(rows) || rows != landed {
		t.Errorf("committed FileCount %d, file rows %d, successful commits %d; want all equal", final.FileCount, rows, landed)
	}
}
