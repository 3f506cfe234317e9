package metadatatest

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"backupstore/metadata"
)

// Packed files: packs, blobs, files pointing at blobs (docs/FORMAT.md §2, phase 1).

// packOf builds a pack of b holding bodies, a blob per distinct body, and a packed file per
// upload id (ids[i] holds bodies[i]).
func packOf(b *metadata.Backup, packID string, ids, bodies []string) (*metadata.Pack, []*metadata.Blob, []*metadata.PackedFile) {
	p := &metadata.Pack{TenantID: b.TenantID, ID: packID, BackupID: b.ID, Key: "p/" + b.OrgID + "/packs/" + packID,
		IndexSHA256: digest(packID), KeyID: "mk-0123456789ab"}
	var blobs []*metadata.Blob
	byBody := map[string]*metadata.Blob{}
	off := int64(64)
	for _, body := range bodies {
		if byBody[body] != nil {
			continue
		}
		bl := &metadata.Blob{ID: "blb-" + packID + "-" + body, Offset: off, Size: int64(len(body)), SHA256: digest(body)}
		off += bl.Size
		byBody[body] = bl
		blobs = append(blobs, bl)
	}
	p.IndexOffset, p.BodyCount = off, len(blobs)
	p.Size = off + int64(len(blobs))*56 + 88
	var files []*metadata.PackedFile
	seen := map[string]bool{}
	for i, id := range ids {
		u := fileUpload(b, id)
		u.ObjectID, u.ObjectKey = byBody[bodies[i]].ID, p.Key
		f := fileRow(b, "fil-"+packID+"-"+id, "", bodies[i])
		f.BlobID = byBody[bodies[i]].ID
		if seen[bodies[i]] {
			f.Answer = metadata.AnswerShared
		}
		seen[bodies[i]] = true
		files = append(files, &metadata.PackedFile{Upload: u, File: f})
	}
	return p, blobs, files
}

func commitPack(t *testing.T, s *metadata.Store, b *metadata.Backup, packID string, ids, bodies []string) (*metadata.Pack, []*metadata.PackedFile) {
	t.Helper()
	p, blobs, files := packOf(b, packID, ids, bodies)
	if err := s.CommitPack(t.Context(), p, blobs, files); err != nil {
		t.Fatalf("CommitPack(%s): %v", packID, err)
	}
	return p, files
}

func testPacks(t *testing.T, newDB NewDB) {
	s := newStore(t, newDB)
	ctx := t.Context()
	create(t, s, storage("t1", "s1", "one"))
	b := newBackup(t, s, "t1", "b1", org1, "s1", minutes(0))

	// Four files, two sharing a body (dedup within the pack), and one upload id twice (a
	// resend within one pack): the second is answered by the first.
	p, files := commitPack(t, s, b, "pck-1", []string{"u1", "u2", "u3", "u1"}, []string{"alpha", "beta", "alpha", "gamma"})
	if p.State != metadata.PackSealed || p.OrgID != org1 || p.StorageID != "s1" {
		t.Errorf("pack after commit: %+v", p)
	}
	for i, pf := range files[:3] {
		if pf.Winner != nil || pf.Upload.State != metadata.UploadCommitted {
			t.Errorf("file %d: winner %v, upload state %s", i, pf.Winner, pf.Upload.State)
		}
	}
	if w := files[3].Winner; w == nil || w.UploadID != "u1" || w.State != metadata.UploadCommitted {
		t.Errorf("the repeated upload id: winner %+v, want u1's COMMITTED row", w)
	}
	// A packed file's upload has no row: its file answers for it (docs/FORMAT.md §2.5), with
	// what the finish response is made of.
	u := getUpload(t, s, "t1", "b1", "u2")
	if u.State != metadata.UploadCommitted || u.Kind != metadata.KindFile || u.Result != nil || u.ObjectKey != p.Key ||
		u.ObjectID != "blb-pck-1-beta" || u.Path != "Attachment/fil-pck-1-u2" || u.CommittedSize != 4 || u.StoredSize != 4 ||
		u.Answered == nil || u.Answered.ID != "fil-pck-1-u2" || u.Answered.Answer != metadata.AnswerStored || !bytes.Equal(u.Answered.SHA256, digest("beta")) {
		t.Errorf("upload u2 = %+v (answered by %+v)", u, u.Answered)
	}
	if u3 := getUpload(t, s, "t1", "b1", "u3"); u3.Answered == nil || u3.Answered.Answer != metadata.AnswerShared || u3.StoredSize != 0 || u3.CommittedSize != 5 {
		t.Errorf("upload u3 (a body its pack held) = %+v", u3)
	}
	if su, err := s.SettledUpload(ctx, "t1", "b1", "u1"); err != nil || su.Answered == nil || su.Answered.ID != "fil-pck-1-u1" {
		t.Errorf("SettledUpload(u1) = %+v, %v", su, err)
	}
	if _, err := s.SettledUpload(ctx, "t1", "b1", "nope"); !errors.Is(err, metadata.ErrNotFound) {
		t.Errorf("SettledUpload(nope): %v", err)
	}
	if _, err := s.GetUpload(ctx, "t2", "b1", "u2"); !errors.Is(err, metadata.ErrNotFound) {
		t.Errorf("GetUpload of a packed file as another tenant: %v", err)
	}
	if ups, _, err := s.ListUploads(ctx, "t1", "b1", metadata.UploadPending, 0, ""); err != nil || len(ups) != 0 {
		t.Errorf("ListUploads(PENDING) = %v, %v; packed files are committed", ups, err)
	}
	f, bl, gp, err := s.FileLocation(ctx, "t1", "b1", "fil-pck-1-u3")
	if err != nil {
		t.Fatal(err)
	}
	if f.BlobID != "blb-pck-1-alpha" || f.ObjectID != "" || bl.Offset != 64 || bl.Size != 5 || gp.Key != p.Key || gp.IndexOffset != p.IndexOffset {
		t.Errorf("FileLocation = file %+v blob %+v pack %+v", f, bl, gp)
	}
	if _, _, _, err := s.FileLocation(ctx, "t1", "b1", "nope"); !errors.Is(err, metadata.ErrNotFound) {
		t.Errorf("FileLocation of no file: %v", err)
	}
	if _, _, _, err := s.FileLocation(ctx, "t2", "b1", "fil-pck-1-u3"); !errors.Is(err, metadata.ErrNotFound) {
		t.Errorf("FileLocation as another tenant: %v", err)
	}
	plain := commitFile(t, s, b, "uplain", "a whole object")
	// Uploads with a row and uploads their files answer for, listed together in upload id
	// order, on pages of every size (the rows of u0 and u2a, failed uploads, lie between the
	// files'); GetUploads finds both.
	for _, id := range []string{"u0", "u2a"} {
		fu := fileUpload(b, id)
		if err := s.CreateUpload(ctx, fu); err != nil {
			t.Fatal(err)
		}
		if err := s.FailUpload(ctx, "t1", "b1", id, fu.Generation, metadata.UploadFailed, "test"); err != nil {
			t.Fatal(err)
		}
	}
	for size := 1; size <= 7; size++ {
		pages := allPages(t, fmt.Sprintf("ListUploads(%d)", size), func(tok string) ([]*metadata.Upload, string, error) {
			return s.ListUploads(ctx, "t1", "b1", "", size, tok)
		})
		var got []string
		for _, page := range pageKeys(pages, func(u *metadata.Upload) string { return u.UploadID }) {
			if len(page) > size {
				t.Errorf("ListUploads(%d): a page of %d", size, len(page))
			}
			got = append(got, page...)
		}
		if want := []string{"u0", "u1", "u2", "u2a", "u3", "uplain"}; !slices.Equal(got, want) {
			t.Errorf("ListUploads(%d) = %v, want %v", size, got, want)
		}
	}
	if ups, _, err := s.ListUploads(ctx, "t1", "b1", metadata.UploadCommitted, 2, ""); err != nil || len(ups) != 2 || ups[0].UploadID != "u1" || ups[1].UploadID != "u2" {
		t.Errorf("ListUploads(COMMITTED, 2) = %v, %v", ups, err)
	}
	if m, err := s.GetUploads(ctx, "t1", "b1", []string{"u3", "uplain", "nope"}); err != nil || len(m) != 2 || m["u3"].Answered == nil || m["uplain"].Answered != nil {
		t.Errorf("GetUploads = %v, %v", m, err)
	}
	if _, _, _, err := s.FileLocation(ctx, "t1", "b1", "fil-uplain"); !errors.Is(err, metadata.ErrInvalid) {
		t.Errorf("FileLocation of an unpacked file: %v", err)
	}
	got, err := s.GetFile(ctx, "t1", "b1", "fil-pck-1-u2")
	if err != nil || got.BlobID != "blb-pck-1-beta" || got.ObjectID != "" {
		t.Errorf("GetFile of a packed file = %+v, %v", got, err)
	}
	list, _, err := s.ListFiles(ctx, "t1", "b1", 0, "")
	if err != nil || len(list) != 4 {
		t.Fatalf("ListFiles = %d files, %v; want 3 packed + 1 object", len(list), err)
	}
	keys := map[string]string{}
	if err := s.ForEachFileByParent(ctx, "t1", "b1", func(f *metadata.FileWithKey) error {
		keys[f.ID] = f.ObjectKey
		if f.BlobID != "" && f.PackOffset < 64 {
			t.Errorf("file %s at pack offset %d", f.ID, f.PackOffset)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if keys["fil-pck-1-u2"] != p.Key || keys["fil-uplain"] != plain.Key || len(keys) != 4 {
		t.Errorf("ForEachFileByParent keys = %v", keys)
	}

	// Dedup: batched by SHA-256, per org and storage, only live, undamaged blobs.
	found, err := s.FindBlobs(ctx, "t1", org1, "s1", [][]byte{digest("alpha"), digest("beta"), digest("nope"), digest("alpha")})
	if err != nil {
		t.Fatal(err)
	}
	if len(found) != 2 || found[string(digest("alpha"))].ID != "blb-pck-1-alpha" || found[string(digest("beta"))].PackID != "pck-1" {
		t.Errorf("FindBlobs = %v", found)
	}
	for _, c := range []struct{ org, storage string }{{org2, "s1"}, {org1, ""}} {
		if found, err := s.FindBlobs(ctx, "t1", c.org, c.storage, [][]byte{digest("alpha")}); err != nil || len(found) != 0 {
			t.Errorf("FindBlobs in org %s storage %q = %v, %v", c.org, c.storage, found, err)
		}
	}
	// A file of another backup sharing a sealed blob (CommitFileUpload with a blob id).
	b2 := newBackup(t, s, "t1", "b2", org1, "s1", minutes(1))
	du := fileUpload(b2, "ud")
	df := fileRow(b2, "fil-ud", "", "alpha")
	df.BlobID = "blb-pck-1-alpha"
	du.Result = []byte(`{"upload_id":"ud"}`)
	if err := s.CommitFileUpload(ctx, du, nil, df); err != nil {
		t.Fatalf("sharing a blob: %v", err)
	}
	// A packed file with an upload row (a restarted upload's, or any committed before files
	// answered for their uploads): the row answers, once.
	if ud := getUpload(t, s, "t1", "b2", "ud"); ud.Answered != nil || string(ud.Result) != `{"upload_id":"ud"}` {
		t.Errorf("upload ud = %+v, want its row", ud)
	}
	if ups, _, err := s.ListUploads(ctx, "t1", "b2", "", 0, ""); err != nil || len(ups) != 1 || ups[0].Answered != nil {
		t.Errorf("ListUploads(b2) = %v, %v; want ud's row alone", ups, err)
	}
	// The same without an upload row: the file answers for its upload, and a second commit of
	// that upload id, or one whose upload has a row, is refused.
	nf := fileRow(b2, "fil-un", "", "alpha")
	nf.BlobID, nf.Answer = "blb-pck-1-alpha", metadata.AnswerSharedUnsent
	if err := s.CommitFileUpload(ctx, fileUpload(b2, "un"), nil, nf); err != nil {
		t.Fatalf("sharing a blob without an upload row: %v", err)
	}
	if un := getUpload(t, s, "t1", "b2", "un"); un.Answered == nil || un.Answered.Answer != metadata.AnswerSharedUnsent || un.StoredSize != 0 || un.ObjectKey != p.Key {
		t.Errorf("upload un = %+v", un)
	}
	again := *nf
	again.ID = "fil-un2"
	wantErr(t, "a second file for one upload id", s.CommitFileUpload(ctx, fileUpload(b2, "un"), nil, &again), metadata.ErrConflict)
	pend := fileUpload(b2, "upend")
	if err := s.CreateUpload(ctx, pend); err != nil {
		t.Fatal(err)
	}
	rowed := *nf
	rowed.ID, rowed.UploadID = "fil-upend", ""
	wantErr(t, "a file answering for an upload with a row", s.CommitFileUpload(ctx, fileUpload(b2, "upend"), nil, &rowed), metadata.ErrConflict)
	objAnswer := fileRow(b2, "fil-oa", plain.ID, "a whole object")
	objAnswer.Answer = metadata.AnswerStored
	wantErr(t, "an object file answering for its upload", s.CommitFileUpload(ctx, fileUpload(b2, "uoa"), nil, objAnswer), metadata.ErrInvalid)
	bad := fileRow(b2, "fil-both", plain.ID, "alpha")
	bad.BlobID = "blb-pck-1-alpha"
	wantErr(t, "a file with an object and a blob", s.CommitFileUpload(ctx, fileUpload(b2, "uboth"), nil, bad), metadata.ErrInvalid)
	if err := s.SetBlobDamaged(ctx, "t1", "blb-pck-1-beta"); err != nil {
		t.Fatal(err)
	}
	if found, _ := s.FindBlobs(ctx, "t1", org1, "s1", [][]byte{digest("beta"), digest("alpha")}); len(found) != 0 {
		t.Errorf("FindBlobs after the pack was flagged damaged = %v, want none", found)
	}
	bf := fileRow(b2, "fil-ub", "", "beta")
	bf.BlobID = "blb-pck-1-beta"
	wantErr(t, "sharing a damaged blob", s.CommitFileUpload(ctx, fileUpload(b2, "ub"), nil, bf), metadata.ErrNotFound)

	// Fenced like other writes: only into an OPEN backup.
	if err := s.SetBackupStatus(ctx, "t1", "b2", metadata.BackupOpen, metadata.BackupAborted); err != nil {
		t.Fatal(err)
	}
	p2, blobs2, files2 := packOf(b2, "pck-2", []string{"ux"}, []string{"delta"})
	wantErr(t, "CommitPack into an ABORTED backup", s.CommitPack(ctx, p2, blobs2, files2), metadata.ErrConflict)
	nb := *b2
	nb.ID = "nope"
	p2, blobs2, files2 = packOf(&nb, "pck-2", []string{"ux"}, []string{"delta"})
	wantErr(t, "CommitPack into no backup", s.CommitPack(ctx, p2, blobs2, files2), metadata.ErrNotFound)
	if _, err := s.GetPack(ctx, "t1", "pck-2"); !errors.Is(err, metadata.ErrNotFound) {
		t.Errorf("a refused pack has a row: %v", err)
	}

	// A pack whose every file lost to an existing upload writes no row.
	p3, blobs3, files3 := packOf(b, "pck-3", []string{"u2"}, []string{"epsilon"})
	if err := s.CommitPack(ctx, p3, blobs3, files3); err != nil || files3[0].Winner == nil {
		t.Fatalf("CommitPack of a resent upload: %v, winner %v", err, files3[0].Winner)
	}
	if _, err := s.GetPack(ctx, "t1", "pck-3"); !errors.Is(err, metadata.ErrNotFound) {
		t.Errorf("a pack of no new file has a row: %v", err)
	}

	// CommitBackup counts packed files and the packs the backup wrote.
	c, err := s.CommitBackup(ctx, "t1", "b1", "", minutes(5))
	if err != nil {
		t.Fatal(err)
	}
	if c.FileCount != 4 || c.BytesStored != p.Size+plain.Size {
		t.Errorf("committed: %d files, %d bytes stored; want 4, %d", c.FileCount, c.BytesStored, p.Size+plain.Size)
	}
	if ps, err := s.BackupPacks(ctx, "t1", "b1"); err != nil || len(ps) != 1 || ps[0].ID != "pck-1" {
		t.Errorf("BackupPacks = %v, %v", ps, err)
	}
	// gamma's only file lost to u1's first row: its body has no blob row.
	if bls, err := s.PackBlobs(ctx, "t1", "pck-1"); err != nil || len(bls) != 2 || bls[0].Offset != 64 || bls[1].ID != "blb-pck-1-beta" {
		t.Errorf("PackBlobs = %v, %v; want alpha and beta", bls, err)
	}
}

func testPackPurgeAndKeys(t *testing.T, newDB NewDB) {
	s := newStore(t, newDB)
	ctx := t.Context()
	create(t, s, storage("t1", "s1", "one"))
	bA := newBackup(t, s, "t1", "bA", org1, "s1", minutes(0))
	pA, _ := commitPack(t, s, bA, "pck-A", []string{"a1", "a2"}, []string{"shared", "onlyA"})
	bB := newBackup(t, s, "t1", "bB", org1, "s1", minutes(1))
	pB, _ := commitPack(t, s, bB, "pck-B", []string{"b1"}, []string{"onlyB"})
	sf := fileRow(bB, "fil-share", "", "shared")
	sf.BlobID = "blb-pck-A-shared"
	if err := s.CommitFileUpload(ctx, fileUpload(bB, "b2"), nil, sf); err != nil {
		t.Fatal(err)
	}

	// GC sees pack keys as catalog keys.
	var walked []string
	if err := s.ForEachObjectKey(ctx, "t1", "s1", func(k string) error { walked = append(walked, k); return nil }); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(walked, pA.Key) || !slices.Contains(walked, pB.Key) || !slices.IsSorted(walked) {
		t.Errorf("ForEachObjectKey = %v, want both pack keys in order", walked)
	}
	un, err := s.UnclaimedKeys(ctx, "t1", []string{pA.Key, "p/stray"})
	if err != nil || !slices.Equal(un, []string{"p/stray"}) {
		t.Errorf("UnclaimedKeys = %v, %v; want only the stray key", un, err)
	}

	// Deleting A: its files go, the blob only A referenced goes, the shared one stays, and the
	// pack stays while B's file uses it.
	if err := s.SetBackupStatus(ctx, "t1", "bA", metadata.BackupOpen, metadata.BackupDeleting); err != nil {
		t.Fatal(err)
	}
	if err := s.PurgeBackupRows(ctx, "t1", "bA", nil); err != nil {
		t.Fatal(err)
	}
	bls, err := s.PackBlobs(ctx, "t1", "pck-A")
	if err != nil || len(bls) != 1 || bls[0].ID != "blb-pck-A-shared" {
		t.Errorf("pck-A's blobs after purging A = %v, %v; want the shared one", bls, err)
	}
	if empty, err := s.EmptyPacks(ctx, "t1", "s1", 10); err != nil || len(empty) != 0 {
		t.Errorf("EmptyPacks = %v, %v; want none", empty, err)
	}
	if err := s.DeleteBackupRow(ctx, "t1", "bA"); err != nil {
		t.Errorf("DeleteBackupRow(bA): %v", err)
	}
	// Deleting B too: both packs end up empty, are listed, and their rows go.
	if err := s.SetBackupStatus(ctx, "t1", "bB", metadata.BackupOpen, metadata.BackupDeleting); err != nil {
		t.Fatal(err)
	}
	if err := s.PurgeBackupRows(ctx, "t1", "bB", nil); err != nil {
		t.Fatal(err)
	}
	empty, err := s.EmptyPacks(ctx, "t1", "s1", 10)
	if err != nil || len(empty) != 2 || empty[0].Key != pA.Key || empty[1].Key != pB.Key {
		t.Fatalf("EmptyPacks = %v, %v; want both packs", empty, err)
	}
	if other, err := s.EmptyPacks(ctx, "t1", "", 10); err != nil || len(other) != 0 {
		t.Errorf("EmptyPacks on the default storage = %v, %v; want none", other, err)
	}
	if err := s.DeletePackRows(ctx, "t1", []string{"pck-A", "pck-B"}); err != nil {
		t.Fatal(err)
	}
	if empty, _ := s.EmptyPacks(ctx, "t1", "s1", 10); len(empty) != 0 {
		t.Errorf("EmptyPacks after DeletePackRows = %v", empty)
	}
	if err := s.DeleteBackupRow(ctx, "t1", "bB"); err != nil {
		t.Errorf("DeleteBackupRow(bB): %v", err)
	}
	if un, _ := s.UnclaimedKeys(ctx, "t1", []string{pA.Key}); !slices.Equal(un, []string{pA.Key}) {
		t.Errorf("a deleted pack's key is still claimed: %v", un)
	}
}

// testPackRace commits two packs holding the same upload id at once: exactly one file row, and
// the other commit answers the winner.
func testPackRace(t *testing.T, newDB NewDB) {
	s := newStore(t, newDB)
	ctx := t.Context()
	create(t, s, storage("t1", "s1", "one"))
	b := newBackup(t, s, "t1", "b1", org1, "s1", minutes(0))
	var wg sync.WaitGroup
	res := make([][]*metadata.PackedFile, 2)
	errs := make([]error, 2)
	for i := range res {
		p, blobs, files := packOf(b, []string{"pck-x", "pck-y"}[i], []string{"same", []string{"x", "y"}[i]}, []string{"body", "other" + []string{"x", "y"}[i]})
		res[i] = files
		wg.Go(func() { errs[i] = s.CommitPack(ctx, p, blobs, files) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("CommitPack %d: %v", i, err)
		}
	}
	winners := 0
	for _, files := range res {
		if files[0].Winner != nil {
			winners++
		}
	}
	if winners != 1 {
		t.Errorf("%d of the two commits saw a winner for the shared upload id, want exactly 1", winners)
	}
	list, _, err := s.ListFiles(ctx, "t1", "b1", 0, "")
	if err != nil || len(list) != 3 {
		t.Errorf("ListFiles = %d files, %v; want 3 (one for the shared upload id)", len(list), err)
	}
}

// testPackConcurrentCommits commits many packs of one backup at once, with distinct upload ids
// interleaved in key order (as concurrent streams make them): every commit succeeds. A locking
// read of the upload ids would take gap locks on MySQL that the other commits' inserts wait for,
// in a cycle: deadlocks that outlast the retries.
func testPackConcurrentCommits(t *testing.T, newDB NewDB) {
	s := newStore(t, newDB)
	ctx := t.Context()
	create(t, s, storage("t1", "s1", "one"))
	b := newBackup(t, s, "t1", "b1", org1, "s1", minutes(0))
	const writers, packs, per = 8, 4, 20
	var wg sync.WaitGroup
	errs := make([]error, writers)
	for w := range writers {
		wg.Go(func() {
			for p := range packs {
				var ids, bodies []string
				for i := range per {
					// Upload ids of all writers interleave: u-<i>-<writer>-<pack>.
					ids = append(ids, fmt.Sprintf("u-%03d-%d-%d", i, w, p))
					bodies = append(bodies, fmt.Sprintf("body %d %d %d", i, w, p))
				}
				pk, blobs, files := packOf(b, fmt.Sprintf("pck-%d-%d", w, p), ids, bodies)
				if err := s.CommitPack(ctx, pk, blobs, files); err != nil {
					errs[w] = err
					return
				}
			}
		})
	}
	wg.Wait()
	for w, err := range errs {
		if err != nil {
			t.Errorf("writer %d: %v", w, err)
		}
	}
	list, _, err := s.ListFiles(ctx, "t1", "b1", metadata.MaxPageSize, "")
	if err != nil || len(list) != writers*packs*per {
		t.Errorf("ListFiles = %d files, %v; want %d", len(list), err, writers*packs*per)
	}
}
