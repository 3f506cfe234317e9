package metadatatest

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"backupstore/metadata"
)

// testResumeUpload: the offset check and the generation bump are one step.
func testResumeUpload(t *testing.T, newDB NewDB) {
	s := newStore(t, newDB)
	ctx := t.Context()
	b := newBackup(t, s, "t1", "b1", org1, "", minutes(0))
	u := createUpload(t, s, fileUpload(b, "u1"))
	if err := s.RecordPart(ctx, "t1", "b1", "u1", 1, metadata.Part{Number: 1, Size: 5}, 5, 5, []byte("h")); err != nil {
		t.Fatal(err)
	}
	// Resuming at an offset the upload is no longer at changes nothing and returns the row as it is.
	cur, err := s.ResumeUpload(ctx, "t1", "b1", "u1", 0)
	wantErr(t, "ResumeUpload at a stale offset", err, metadata.ErrConflict)
	if cur == nil || cur.Generation != 1 || cur.CommittedSize != 5 {
		t.Fatalf("ResumeUpload at a stale offset returned %+v, want generation 1 at 5", cur)
	}
	nu, err := s.ResumeUpload(ctx, "t1", "b1", "u1", 5)
	if err != nil || nu.Generation != 2 || nu.CommittedSize != 5 || string(nu.HashState) != "h" {
		t.Fatalf("ResumeUpload(5) = %+v, %v; want generation 2 at 5", nu, err)
	}
	// The old generation can no longer record a part.
	wantErr(t, "RecordPart of the old generation", s.RecordPart(ctx, "t1", "b1", "u1", u.Generation, metadata.Part{Number: 2}, 9, 9, nil), metadata.ErrStale)
	// Not PENDING: no resume.
	if err := s.FailUpload(ctx, "t1", "b1", "u1", 2, metadata.UploadFailed, "bad"); err != nil {
		t.Fatal(err)
	}
	cur, err = s.ResumeUpload(ctx, "t1", "b1", "u1", 5)
	wantErr(t, "ResumeUpload of a FAILED upload", err, metadata.ErrConflict)
	if cur == nil || cur.State != metadata.UploadFailed {
		t.Fatalf("ResumeUpload of a FAILED upload returned %+v", cur)
	}
	_, err = s.ResumeUpload(ctx, "t1", "b1", "nope", 0)
	wantErr(t, "ResumeUpload of an unknown upload", err, metadata.ErrNotFound)
	_, err = s.ResumeUpload(ctx, "t2", "b1", "u1", 5)
	wantErr(t, "ResumeUpload of another tenant's upload", err, metadata.ErrNotFound)
}

// testAbandonUpload: only the current generation marks an upload ABANDONED, never a committed one.
func testAbandonUpload(t *testing.T, newDB NewDB) {
	s := newStore(t, newDB)
	ctx := t.Context()
	b := newBackup(t, s, "t1", "b1", org1, "", minutes(0))
	createUpload(t, s, fileUpload(b, "u1"))
	if err := s.FailUpload(ctx, "t1", "b1", "u1", 1, metadata.UploadFailed, "bad"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.BumpGeneration(ctx, "t1", "b1", "u1"); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "AbandonUpload by an old generation", s.AbandonUpload(ctx, "t1", "b1", "u1", 1), metadata.ErrStale)
	if err := s.AbandonUpload(ctx, "t1", "b1", "u1", 2); err != nil {
		t.Fatalf("AbandonUpload: %v", err)
	}
	if u := getUpload(t, s, "t1", "b1", "u1"); u.State != metadata.UploadAbandoned || u.Error != "bad" {
		t.Fatalf("after AbandonUpload: state %s error %q", u.State, u.Error)
	}
	commitFile(t, s, b, "u2", "body")
	wantErr(t, "AbandonUpload of a committed upload", s.AbandonUpload(ctx, "t1", "b1", "u2", 1), metadata.ErrConflict)
	wantErr(t, "AbandonUpload of an unknown upload", s.AbandonUpload(ctx, "t1", "b1", "nope", 1), metadata.ErrNotFound)
}

// testCommitBackupManifest: the manifest's counts are checked under the backup's lock and its row
// is written in the committing transaction.
func testCommitBackupManifest(t *testing.T, newDB NewDB) {
	s := newStore(t, newDB)
	ctx := t.Context()
	b := newBackup(t, s, "t1", "b1", org1, "", minutes(0))
	commitFile(t, s, b, "u1", "one")
	commitChunk(t, s, b, "r1", "Account", 0, 3, 30, 20, 2)
	man := func(size int64) *metadata.Object {
		return &metadata.Object{ID: "m-b1", Key: "t1/b1/manifest.json", Size: size, SHA256: digest(fmt.Sprint(size))}
	}
	_, err := s.CommitBackupManifest(ctx, "t1", "b1", metadata.ManifestCommit{Object: man(10), Files: 0, Chunks: 1}, minutes(1))
	var changed *metadata.BackupChangedError
	if !errors.As(err, &changed) || !errors.Is(err, metadata.ErrConflict) || changed.Files != 1 || changed.Chunks != 1 {
		t.Fatalf("CommitBackupManifest missing a file: %v, want a BackupChangedError (1 file, 1 chunk)", err)
	}
	if _, err := s.GetObject(ctx, "t1", "m-b1"); !errors.Is(err, metadata.ErrNotFound) {
		t.Fatalf("a refused commit left the manifest row: %v", err)
	}
	if got := getBackup(t, s, "t1", "b1"); got.Status != metadata.BackupOpen {
		t.Fatalf("refused commit: status %s", got.Status)
	}
	got, err := s.CommitBackupManifest(ctx, "t1", "b1", metadata.ManifestCommit{Object: man(20), Files: 1, Chunks: 1}, minutes(2))
	if err != nil || got.Status != metadata.BackupCommitted || got.ManifestKey != "t1/b1/manifest.json" || got.FileCount != 1 {
		t.Fatalf("CommitBackupManifest = %+v, %v", got, err)
	}
	o, err := s.GetObject(ctx, "t1", "m-b1")
	if err != nil || o.Size != 20 || o.Kind != metadata.ObjManifest || o.BackupID != "b1" || o.OrgID != org1 {
		t.Fatalf("manifest row %+v, %v", o, err)
	}
	// A repeated commit returns the committed backup and leaves the row alone.
	if again, err := s.CommitBackupManifest(ctx, "t1", "b1", metadata.ManifestCommit{Object: man(30), Files: 5, Chunks: 5}, minutes(3)); err != nil || again.Status != metadata.BackupCommitted {
		t.Fatalf("repeated CommitBackupManifest = %v, %v", again, err)
	}
	if o, _ := s.GetObject(ctx, "t1", "m-b1"); o.Size != 20 {
		t.Fatalf("a repeated commit changed the manifest row: %d", o.Size)
	}
	_, err = s.CommitBackupManifest(ctx, "t1", "nope", metadata.ManifestCommit{Object: man(1)}, minutes(3))
	wantErr(t, "CommitBackupManifest of an unknown backup", err, metadata.ErrNotFound)
}

// testForEachFileByParent: every file once, ordered by parent then id, with its object's key,
// across batch boundaries.
func testForEachFileByParent(t *testing.T, newDB NewDB) {
	s := newStore(t, newDB)
	ctx := t.Context()
	b := newBackup(t, s, "t1", "b1", org1, "", minutes(0))
	other := newBackup(t, s, "t1", "b2", org1, "", minutes(0))
	const n = 1203 // more than two batches
	type pf struct{ parent, id string }
	var want []pf
	for i := 0; i < n; i++ {
		u := fileUpload(b, fmt.Sprintf("u%04d", i))
		obj := fileObject(b, u, fmt.Sprint(i))
		f := fileRow(b, fmt.Sprintf("fil-%04d", (i*7919)%n), obj.ID, fmt.Sprint(i))
		f.ParentID = fmt.Sprintf("001%012dAAA", i%37)
		if err := s.CommitFileUpload(ctx, u, obj, f); err != nil {
			t.Fatal(err)
		}
		want = append(want, pf{f.ParentID, f.ID})
	}
	commitFile(t, s, other, "x", "not b1's")
	slices.SortFunc(want, func(a, b pf) int {
		if a.parent != b.parent {
			if a.parent < b.parent {
				return -1
			}
			return 1
		}
		if a.id < b.id {
			return -1
		}
		return 1
	})
	var got []pf
	err := s.ForEachFileByParent(ctx, "t1", "b1", func(f *metadata.FileWithKey) error {
		if f.ObjectKey != "p/b1/files/"+f.UploadID {
			return fmt.Errorf("file %s: object key %q", f.ID, f.ObjectKey)
		}
		got = append(got, pf{f.ParentID, f.ID})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("ForEachFileByParent: %d files, want %d in parent, id order", len(got), len(want))
	}
	stop := errors.New("stop")
	calls := 0
	if err := s.ForEachFileByParent(ctx, "t1", "b1", func(*metadata.FileWithKey) error { calls++; return stop }); err != stop || calls != 1 {
		t.Fatalf("ForEachFileByParent stopping: %v after %d calls", err, calls)
	}
}

// testExclusivePages: pages cover exactly ExclusiveObjects' set in id order; PurgeObjectRows
// removes a page's rows and keeps what another backup references.
func testExclusivePages(t *testing.T, newDB NewDB) {
	s := newStore(t, newDB)
	ctx := t.Context()
	b1 := newBackup(t, s, "t1", "b1", org1, "", minutes(0))
	b2 := newBackup(t, s, "t1", "b2", org1, "", minutes(1))
	var shared *metadata.Object
	for i := 0; i < 25; i++ {
		o := commitFile(t, s, b1, fmt.Sprintf("f%02d", i), fmt.Sprint("body", i))
		if i == 7 {
			shared = o
		}
	}
	commitChunk(t, s, b1, "r1", "Account", 0, 3, 30, 20, 2)
	if err := dedupFile(t, s, b2, "d1", shared); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.ExclusiveObjectsPage(ctx, "t1", "b1", "", 0); !errors.Is(err, metadata.ErrInvalid) {
		t.Fatalf("limit 0: %v", err)
	}
	wantSet, err := s.ExclusiveObjects(ctx, "t1", "b1")
	if err != nil {
		t.Fatal(err)
	}
	if len(wantSet) != 26 || slices.Contains(objectIDs(wantSet), shared.ID) {
		t.Fatalf("ExclusiveObjects: %d objects (shared included: %v), want 26 without the shared one",
			len(wantSet), slices.Contains(objectIDs(wantSet), shared.ID))
	}
	if err := s.SetBackupStatus(ctx, "t1", "b1", metadata.BackupOpen, metadata.BackupDeleting); err != nil {
		t.Fatal(err)
	}
	var got []string
	after := ""
	for pages := 0; ; pages++ {
		if pages > 20 {
			t.Fatal("pages do not end")
		}
		page, next, err := s.ExclusiveObjectsPage(ctx, "t1", "b1", after, 4)
		if err != nil {
			t.Fatal(err)
		}
		ids := objectIDs(page)
		got = append(got, ids...)
		if err := s.PurgeObjectRows(ctx, "t1", "b1", ids); err != nil {
			t.Fatalf("PurgeObjectRows: %v", err)
		}
		if next == "" {
			break
		}
		after = next
	}
	if !slices.Equal(got, objectIDs(wantSet)) {
		t.Fatalf("pages gave %v, want %v", got, objectIDs(wantSet))
	}
	for _, id := range got {
		if _, err := s.GetObject(ctx, "t1", id); !errors.Is(err, metadata.ErrNotFound) {
			t.Fatalf("object %s survived its purge: %v", id, err)
		}
	}
	if _, err := s.GetObject(ctx, "t1", shared.ID); err != nil {
		t.Fatalf("the shared object went: %v", err)
	}
	if err := s.PurgeBackupRows(ctx, "t1", "b1", nil); err != nil {
		t.Fatal(err)
	}
	if o, err := s.GetObject(ctx, "t1", shared.ID); err != nil || o.BackupID != "" {
		t.Fatalf("shared object after b1's purge: %+v, %v (want kept, no longer naming b1)", o, err)
	}
	wantErr(t, "PurgeObjectRows of an OPEN backup", s.PurgeObjectRows(ctx, "t1", "b2", []string{shared.ID}), metadata.ErrConflict)
}
