package metadatatest

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"backupstore/metadata"
)

// testBackupObjectPages checks ForEachChunkObjects and ForEachFileObject across page boundaries
// (more chunks and files than one page), their order, the joined objects, isolation between
// backups and tenants, and that an error from fn stops them.
func testBackupObjectPages(t *testing.T, newDB NewDB) {
	s := newStore(t, newDB)
	ctx := t.Context()
	b1 := newBackup(t, s, "t1", "b1", org1, "", minutes(0))
	b2 := newBackup(t, s, "t1", "b2", org1, "", minutes(1))
	other := newBackup(t, s, "t2", "b1", org1, "", minutes(0))

	type chunkWant struct {
		sobject     string
		seq         int32
		data, index string // object keys
	}
	var wantChunks []chunkWant
	var wantFiles []string // "file id -> object id"
	var shared *metadata.Object
	err := s.InTx(ctx, func(tx *metadata.Tx) error {
		add := func(b *metadata.Backup, so string, seq int32) error {
			u := recordsUpload(b, fmt.Sprintf("r-%s-%04d", so, seq), so, seq)
			if err := tx.CreateUpload(ctx, u); err != nil {
				return err
			}
			data, index, ch := chunkParts(b, u, 1, 10, 5, 5)
			if b == b1 {
				wantChunks = append(wantChunks, chunkWant{so, seq, data.Key, index.Key})
			}
			return tx.CommitRecordsUpload(ctx, u, data, index, ch)
		}
		// Contact before Account in insertion order; the pages come sorted by sObject, seq.
		for seq := int32(1); seq <= 202; seq++ {
			if err := add(b1, "Contact", seq); err != nil {
				return err
			}
		}
		for seq := int32(300); seq >= 1; seq-- {
			if err := add(b1, "Account", seq); err != nil {
				return err
			}
		}
		for _, b := range []*metadata.Backup{b2, other} {
			if err := add(b, "Account", 1); err != nil {
				return err
			}
		}
		file := func(b *metadata.Backup, id string) (*metadata.Object, error) {
			u := fileUpload(b, id)
			obj := fileObject(b, u, "body "+id)
			if err := tx.CommitFileUpload(ctx, u, obj, fileRow(b, "fil-"+id, obj.ID, "body "+id)); err != nil {
				return nil, err
			}
			if b == b1 {
				wantFiles = append(wantFiles, "fil-"+id+" -> "+obj.ID)
			}
			return obj, nil
		}
		for i := 504; i >= 0; i-- {
			obj, err := file(b1, fmt.Sprintf("f%04d", i))
			if err != nil {
				return err
			}
			if i == 7 {
				shared = obj
			}
		}
		// A second file of b1 with the same body (dedup): listed with the shared object.
		u := fileUpload(b1, "f9999")
		u.ObjectID, u.ObjectKey = shared.ID, shared.Key
		f := fileRow(b1, "fil-f9999", shared.ID, "")
		f.Size, f.SHA256 = shared.Size, shared.SHA256
		if err := tx.CommitFileUpload(ctx, u, nil, f); err != nil {
			return err
		}
		wantFiles = append(wantFiles, "fil-f9999 -> "+shared.ID)
		for _, b := range []*metadata.Backup{b2, other} {
			if _, err := file(b, "f0000"); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(wantChunks, func(a, b chunkWant) int {
		if a.sobject != b.sobject {
			return map[bool]int{true: -1, false: 1}[a.sobject < b.sobject]
		}
		return int(a.seq - b.seq)
	})
	slices.Sort(wantFiles)

	var gotChunks []chunkWant
	err = s.ForEachChunkObjects(ctx, "t1", "b1", func(co *metadata.ChunkObjects) error {
		if co.Data.Kind != metadata.ObjRecords || co.Index.Kind != metadata.ObjIndex || co.Data.TenantID != "t1" ||
			co.Data.Size != 5 || len(co.Data.SHA256) != 32 || string(co.References) != `{"AccountId":"Account"}` {
			t.Errorf("chunk %s %d: data %+v index %+v references %q", co.SObject, co.Sequence, co.Data, co.Index, co.References)
		}
		gotChunks = append(gotChunks, chunkWant{co.SObject, co.Sequence, co.Data.Key, co.Index.Key})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(wantChunks, gotChunks, cmp.AllowUnexported(chunkWant{})); d != "" {
		t.Errorf("ForEachChunkObjects (-want +got):\n%s", d)
	}

	var gotFiles []string
	err = s.ForEachFileObject(ctx, "t1", "b1", func(fo *metadata.FileObject) error {
		if fo.Object.Kind != metadata.ObjFile || fo.Object.Key == "" || fo.Object.TenantID != "t1" {
			t.Errorf("file %s: object %+v", fo.FileID, fo.Object)
		}
		gotFiles = append(gotFiles, fo.FileID+" -> "+fo.Object.ID)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(wantFiles, gotFiles); d != "" {
		t.Errorf("ForEachFileObject (-want +got):\n%s", d)
	}

	// Other backups and tenants: one each; unknown backup: none.
	for _, tc := range []struct {
		tenant, backup string
		want           int
	}{{"t1", "b2", 1}, {"t2", "b1", 1}, {"t1", "nope", 0}, {"t3", "b1", 0}} {
		n, m := 0, 0
		if err := s.ForEachChunkObjects(ctx, tc.tenant, tc.backup, func(*metadata.ChunkObjects) error { n++; return nil }); err != nil {
			t.Fatal(err)
		}
		if err := s.ForEachFileObject(ctx, tc.tenant, tc.backup, func(*metadata.FileObject) error { m++; return nil }); err != nil {
			t.Fatal(err)
		}
		if n != tc.want || m != tc.want {
			t.Errorf("%s/%s: %d chunks, %d files, want %d each", tc.tenant, tc.backup, n, m, tc.want)
		}
	}

	stop := errors.New("stop")
	calls := 0
	err = s.ForEachChunkObjects(ctx, "t1", "b1", func(*metadata.ChunkObjects) error { calls++; return stop })
	if !errors.Is(err, stop) || calls != 1 {
		t.Errorf("ForEachChunkObjects stopped: %v after %d calls", err, calls)
	}
	calls = 0
	err = s.ForEachFileObject(ctx, "t1", "b1", func(*metadata.FileObject) error { calls++; return stop })
	if !errors.Is(err, stop) || calls != 1 {
		t.Errorf("ForEachFileObject stopped: %v after %d calls", err, calls)
	}
}

// testPendingUploadOwns: only a PENDING upload of the tenant with the same key and S3 upload id
// owns a multipart upload.
func testPendingUploadOwns(t *testing.T, newDB NewDB) {
	s := newStore(t, newDB)
	ctx := t.Context()
	b := newBackup(t, s, "t1", "b1", org1, "", minutes(0))
	other := newBackup(t, s, "t2", "b1", org1, "", minutes(0))
	u := createUpload(t, s, fileUpload(b, "u1"))
	owns := func(tenant, key, id string) bool {
		t.Helper()
		ok, err := s.PendingUploadOwns(ctx, tenant, key, id)
		if err != nil {
			t.Fatalf("PendingUploadOwns: %v", err)
		}
		return ok
	}
	if owns("t1", u.ObjectKey, "") == false {
		// A PENDING upload before its multipart upload exists has s3_upload_id "".
		t.Error("PENDING upload without a multipart id does not own the empty id")
	}
	if err := s.SetS3UploadID(ctx, "t1", "b1", "u1", u.Generation, "Mp-Upload-1"); err != nil {
		t.Fatal(err)
	}
	ou := createUpload(t, s, fileUpload(other, "u1"))
	if err := s.SetS3UploadID(ctx, "t2", "b1", "u1", ou.Generation, "Mp-Upload-2"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		tenant, key, id string
		want            bool
	}{
		{"t1", u.ObjectKey, "Mp-Upload-1", true},
		{"t1", u.ObjectKey, "mp-upload-1", false}, // ids are case-sensitive
		{"t1", u.ObjectKey, "Mp-Upload-2", false},
		{"t1", u.ObjectKey + "x", "Mp-Upload-1", false},
		{"t2", u.ObjectKey, "Mp-Upload-1", false},
		{"t2", ou.ObjectKey, "Mp-Upload-2", true},
	} {
		if got := owns(tc.tenant, tc.key, tc.id); got != tc.want {
			t.Errorf("PendingUploadOwns(%s, %s, %s) = %v, want %v", tc.tenant, tc.key, tc.id, got, tc.want)
		}
	}
	if err := s.FailUpload(ctx, "t1", "b1", "u1", u.Generation, metadata.UploadFailed, "gone"); err != nil {
		t.Fatal(err)
	}
	if owns("t1", u.ObjectKey, "Mp-Upload-1") {
		t.Error("a FAILED upload still owns its multipart upload")
	}
}

// allPages follows a List query's page tokens from the first page and returns the pages; what
// names the call in failures. More than 10 pages fail the test: no test lists that many, so a
// token that never ends shows up as a failure, not a hang.
func allPages[T any](t *testing.T, what string, list func(token string) ([]T, string, error)) [][]T {
	t.Helper()
	var pages [][]T
	tok := ""
	for range 10 {
		page, next, err := list(tok)
		if err != nil {
			t.Fatalf("%s, token %q: %v", what, tok, err)
		}
		pages = append(pages, page)
		if next == "" {
			return pages
		}
		tok = next
	}
	t.Fatalf("%s: more than 10 pages", what)
	return nil
}

// pageKeys returns the key of every item of every page (nil for an empty page).
func pageKeys[T any](pages [][]T, key func(T) string) [][]string {
	out := make([][]string, len(pages))
	for i, page := range pages {
		for _, it := range page {
			out[i] = append(out[i], key(it))
		}
	}
	return out
}
