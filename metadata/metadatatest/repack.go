package metadatatest

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"backupstore/metadata"
)

// testPackRepack: a pack whose live bodies fell below a fraction of its size is found
// (PrunablePacks), switched to a new pack in one transaction (SwitchPack: blobs move, files do
// not, the source is RETIRED), kept from the purge's EmptyPacks, found by RetiredPacks once its
// grace passed, and its key stays claimed until its row goes. A switch that would lose a live
// body, or runs twice, changes nothing.
func testPackRepack(t *testing.T, newDB NewDB) {
	s := newStore(t, newDB)
	ctx := t.Context()
	create(t, s, storage("t1", "s1", "one"))
	bK := newBackup(t, s, "t1", "bK", org1, "s1", minutes(0))
	bX := newBackup(t, s, "t1", "bX", org1, "s1", minutes(1))
	framing := metadata.PackFraming{Fixed: 64 + 88, PerBody: 56} // packOf's layout
	// Pack A: nine bodies of bX, one of them shared by bK. Pack B: bX's only. Pack C: two of
	// bK's, one damaged. Pack D: two tiny bodies of bK, nothing dead (its framing is most of it).
	pA, _ := commitPack(t, s, bX, "pck-A", []string{"x0", "x1", "x2", "x3", "x4", "x5", "x6", "x7", "x8"},
		[]string{"keep-1", "d-1", "d-2", "d-3", "d-4", "d-5", "d-6", "d-7", "d-8"})
	kf := fileRow(bK, "fil-k1", "", "keep-1")
	kf.BlobID = "blb-pck-A-keep-1"
	if err := s.CommitFileUpload(ctx, fileUpload(bK, "k1"), nil, kf); err != nil {
		t.Fatal(err)
	}
	commitPack(t, s, bX, "pck-B", []string{"xb"}, []string{"b-only"})
	commitPack(t, s, bK, "pck-C", []string{"k2", "k3"}, []string{"c-live", "c-bad"})
	if err := s.SetBlobDamaged(ctx, "t1", "blb-pck-C-c-bad"); err != nil {
		t.Fatal(err)
	}
	pD, _ := commitPack(t, s, bK, "pck-D", []string{"k4", "k5"}, []string{"t1", "t2"})

	// Deleting bX leaves B without a blob (the purge's, not a repack's), and A with one live
	// body: a pack of it alone would be 214 of A's 686 bytes. C is damaged (Verify's and the
	// operator's); D is wholly live however small its bodies.
	if err := s.SetBackupStatus(ctx, "t1", "bX", metadata.BackupOpen, metadata.BackupDeleting); err != nil {
		t.Fatal(err)
	}
	if err := s.PurgeBackupRows(ctx, "t1", "bX", nil); err != nil {
		t.Fatal(err)
	}
	got, err := s.PrunablePacks(ctx, "t1", "s1", 0.5, framing, "", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Pack.ID != "pck-A" || got[0].LiveBytes != 6 || got[0].LiveCount != 1 || got[0].Pack.Key != pA.Key {
		t.Fatalf("PrunablePacks = %+v, want pck-A alone (6 live bytes, 1 body)", packLives(got))
	}
	if pD.Size != framing.Fixed+2*framing.PerBody+4 {
		t.Fatalf("pck-D is %d bytes: the test's framing does not match packOf's", pD.Size)
	}
	if got, err := s.PrunablePacks(ctx, "t1", "s1", 1, framing, "", 10); err != nil || len(got) != 1 || got[0].Pack.ID != "pck-A" {
		t.Errorf("PrunablePacks(1) = %v, %v; want pck-A only: pck-D has no dead byte", packLives(got), err)
	}
	if got, err := s.PrunablePacks(ctx, "t1", "s1", float64(214)/float64(pA.Size), framing, "", 10); err != nil || len(got) != 0 {
		t.Errorf("PrunablePacks at exactly A's live fraction = %v, %v; want none (below, not at)", packLives(got), err)
	}
	if got, err := s.PrunablePacks(ctx, "t1", "s1", 0.5, framing, "pck-A", 10); err != nil || len(got) != 0 {
		t.Errorf("PrunablePacks after pck-A = %v, %v; want none", packLives(got), err)
	}
	for _, c := range []struct{ tenant, storage string }{{"t1", ""}, {"t2", "s1"}} {
		if got, err := s.PrunablePacks(ctx, c.tenant, c.storage, 0.5, framing, "", 10); err != nil || len(got) != 0 {
			t.Errorf("PrunablePacks(%s, %q) = %v, %v; want none", c.tenant, c.storage, packLives(got), err)
		}
	}
	for _, bad := range []float64{0, -1, 1.5} {
		if _, err := s.PrunablePacks(ctx, "t1", "s1", bad, framing, "", 10); !errors.Is(err, metadata.ErrInvalid) {
			t.Errorf("PrunablePacks(fraction %g): %v, want ErrInvalid", bad, err)
		}
	}

	at := t0.Add(time.Hour)
	newPack := func(id string) *metadata.Pack { // one body of 6 bytes, as packOf lays it out
		return &metadata.Pack{TenantID: "t1", ID: id, OrgID: org1, StorageID: "s1", Key: "p/" + org1 + "/packs/" + id,
			Size: 214, BodyCount: 1, IndexOffset: 70, IndexSHA256: digest(id), KeyID: "mk-0123456789ab"}
	}
	// A switch that would leave a live body behind: nothing happens.
	pC2 := newPack("pck-C2")
	if _, err := s.SwitchPack(ctx, pC2, []metadata.BlobMove{{BlobID: "blb-pck-C-c-live", From: "pck-C", Offset: 64}}, []string{"pck-C"}, at); !errors.Is(err, metadata.ErrInvalid) {
		t.Errorf("SwitchPack missing a live blob: %v, want ErrInvalid", err)
	}
	if p, err := s.GetPack(ctx, "t1", "pck-C"); err != nil || p.State != metadata.PackSealed {
		t.Errorf("pck-C after the refused switch: %+v, %v; want SEALED", p, err)
	}
	if _, err := s.GetPack(ctx, "t1", "pck-C2"); !errors.Is(err, metadata.ErrNotFound) {
		t.Errorf("the refused switch's new pack: %v, want no row", err)
	}
	if bls, _ := s.PackBlobs(ctx, "t1", "pck-C"); len(bls) != 2 {
		t.Errorf("pck-C's blobs after the refused switch: %d, want 2", len(bls))
	}

	// The switch: A's live blob moves to N (a blob purged since is not there to move), A retires.
	pN := newPack("pck-N")
	moved, err := s.SwitchPack(ctx, pN, []metadata.BlobMove{
		{BlobID: "blb-pck-A-keep-1", From: "pck-A", Offset: 64},
		{BlobID: "blb-gone", From: "pck-A", Offset: 70},
	}, []string{"pck-A"}, at)
	if err != nil || moved != 1 {
		t.Fatalf("SwitchPack = %d, %v; want 1 blob moved", moved, err)
	}
	if pN.State != metadata.PackSealed || pN.BackupID != "" {
		t.Errorf("the new pack: %+v", pN)
	}
	f, bl, p, err := s.FileLocation(ctx, "t1", "bK", "fil-k1")
	if err != nil || f.BlobID != "blb-pck-A-keep-1" || bl.Offset != 64 || p.ID != "pck-N" || p.Key != pN.Key || p.State != metadata.PackSealed {
		t.Fatalf("FileLocation after the switch = %+v %+v %+v, %v; want the same blob at 64 of pck-N", f, bl, p, err)
	}
	if found, err := s.FindBlobs(ctx, "t1", org1, "s1", [][]byte{digest("keep-1")}); err != nil || len(found) != 1 {
		t.Errorf("FindBlobs of the moved body = %v, %v; want it (dedup follows the blob)", found, err)
	}
	if a, err := s.GetPack(ctx, "t1", "pck-A"); err != nil || a.State != metadata.PackRetired {
		t.Errorf("pck-A after the switch: %+v, %v; want RETIRED", a, err)
	}
	if empty, err := s.EmptyPacks(ctx, "t1", "s1", 10); err != nil || len(empty) != 1 || empty[0].ID != "pck-B" {
		t.Errorf("EmptyPacks = %v, %v; want pck-B only (a RETIRED pack waits out its grace)", empty, err)
	}
	if got, _ := s.PrunablePacks(ctx, "t1", "s1", 1, framing, "", 10); len(got) != 0 {
		t.Errorf("PrunablePacks(1) after the switch = %v; want none: pck-N is wholly live, pck-A RETIRED", packLives(got))
	}
	if un, err := s.UnclaimedKeys(ctx, "t1", []string{pA.Key, pN.Key}); err != nil || len(un) != 0 {
		t.Errorf("UnclaimedKeys(retired, new) = %v, %v; want both claimed", un, err)
	}
	// Run twice: the sources are no longer SEALED.
	if _, err := s.SwitchPack(ctx, newPack("pck-N2"), []metadata.BlobMove{{BlobID: "blb-pck-A-keep-1", From: "pck-A", Offset: 64}}, []string{"pck-A"}, at); !errors.Is(err, metadata.ErrConflict) {
		t.Errorf("a second switch of pck-A: %v, want ErrConflict", err)
	}
	if _, err := s.GetPack(ctx, "t1", "pck-N2"); !errors.Is(err, metadata.ErrNotFound) {
		t.Errorf("the second switch's pack: %v, want no row", err)
	}

	// The grace: before it passed nothing is due; after, pck-A is, on its storage only.
	if due, err := s.RetiredPacks(ctx, "t1", "s1", at.Add(-time.Second), 10); err != nil || len(due) != 0 {
		t.Errorf("RetiredPacks before the switch time = %v, %v; want none", due, err)
	}
	due, err := s.RetiredPacks(ctx, "t1", "s1", at, 10)
	if err != nil || len(due) != 1 || due[0].ID != "pck-A" || due[0].Key != pA.Key {
		t.Fatalf("RetiredPacks = %v, %v; want pck-A", due, err)
	}
	if due, err := s.RetiredPacks(ctx, "t1", "", at, 10); err != nil || len(due) != 0 {
		t.Errorf("RetiredPacks on the default storage = %v, %v; want none", due, err)
	}
	if err := s.DeletePackRows(ctx, "t1", []string{"pck-A", "pck-B"}); err != nil {
		t.Fatal(err)
	}
	if un, _ := s.UnclaimedKeys(ctx, "t1", []string{pA.Key, pN.Key}); !slices.Equal(un, []string{pA.Key}) {
		t.Errorf("UnclaimedKeys after deleting pck-A's row = %v; want its key only", un)
	}
	// bK's purge empties pck-N like any pack.
	if err := s.SetBackupStatus(ctx, "t1", "bK", metadata.BackupOpen, metadata.BackupDeleting); err != nil {
		t.Fatal(err)
	}
	if err := s.PurgeBackupRows(ctx, "t1", "bK", nil); err != nil {
		t.Fatal(err)
	}
	if empty, _ := s.EmptyPacks(ctx, "t1", "s1", 10); len(empty) != 3 || empty[0].ID != "pck-C" || empty[1].ID != "pck-D" || empty[2].ID != "pck-N" {
		t.Errorf("EmptyPacks after purging bK = %v; want pck-C, pck-D and pck-N", empty)
	}
}

// testPackRepackBatches: a switch moves more blobs of a source than one statement takes, each
// to its own offset.
func testPackRepackBatches(t *testing.T, newDB NewDB) {
	s := newStore(t, newDB)
	ctx := t.Context()
	create(t, s, storage("t1", "s1", "one"))
	b := newBackup(t, s, "t1", "b1", org1, "s1", minutes(0))
	var ids, bodies []string
	for i := range 450 {
		ids, bodies = append(ids, fmt.Sprintf("u%03d", i)), append(bodies, fmt.Sprintf("m-%03d", i))
	}
	commitPack(t, s, b, "pck-M", ids, bodies)
	var moves []metadata.BlobMove
	for i, body := range bodies {
		moves = append(moves, metadata.BlobMove{BlobID: "blb-pck-M-" + body, From: "pck-M", Offset: int64(100 + 10*i)})
	}
	np := &metadata.Pack{TenantID: "t1", ID: "pck-M2", OrgID: org1, StorageID: "s1", Key: "p/" + org1 + "/packs/pck-M2",
		Size: 100 + 4500 + 450*56 + 88, BodyCount: 450, IndexOffset: 4600, IndexSHA256: digest("pck-M2"), KeyID: "mk-0123456789ab"}
	moved, err := s.SwitchPack(ctx, np, moves, []string{"pck-M"}, t0.Add(time.Hour))
	if err != nil || moved != 450 {
		t.Fatalf("SwitchPack of 450 blobs = %d, %v", moved, err)
	}
	for _, i := range []int{0, 199, 200, 399, 449} {
		_, bl, p, err := s.FileLocation(ctx, "t1", "b1", "fil-pck-M-"+ids[i])
		if err != nil || p.ID != "pck-M2" || bl.Offset != int64(100+10*i) {
			t.Errorf("file %d after the switch: blob %+v in %v, %v; want offset %d of pck-M2", i, bl, p, err, 100+10*i)
		}
	}
}

func packLives(l []*metadata.PackLive) []string {
	var out []string
	for _, pl := range l {
		out = append(out, pl.Pack.ID)
	}
	return out
}
