package metadatatest

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"backupstore/metadata"
)

// The restore side of the catalog: finding a backup as of a time, reading its files, flagging
// damaged objects.

// addFile commits a file of b with this id and parent (its own object, through the single-PUT
// path) and returns the row as stored.
func addFile(t *testing.T, s *metadata.Store, b *metadata.Backup, id, parent string) *metadata.File {
	t.Helper()
	u := fileUpload(b, "u-"+id)
	obj := fileObject(b, u, "body of "+id)
	f := fileRow(b, id, obj.ID, "body of "+id)
	f.ParentID = parent
	if err := s.CommitFileUpload(t.Context(), u, obj, f); err != nil {
		t.Fatalf("CommitFileUpload(%s): %v", id, err)
	}
	return f
}

func fileIDs(list []*metadata.File) []string {
	ids := []string{}
	for _, f := range list {
		ids = append(ids, f.ID)
	}
	return ids
}

func testFindBackup(t *testing.T, newDB NewDB) {
	s := newStore(t, newDB)
	ctx := t.Context()
	commit := func(tenant, id, org string, at int) {
		t.Helper()
		newBackup(t, s, tenant, id, org, "", minutes(at))
		if _, err := s.CommitBackup(ctx, tenant, id, "m/"+id, minutes(at+1)); err != nil {
			t.Fatalf("CommitBackup(%s): %v", id, err)
		}
	}
	commit("t1", "b1", org1, 1)
	newBackup(t, s, "t1", "b2", org1, "", minutes(2))
	if err := s.SetBackupStatus(ctx, "t1", "b2", metadata.BackupOpen, metadata.BackupAborted); err != nil {
		t.Fatal(err)
	}
	commit("t1", "b3a", org1, 3) // b3a and b3b start at the same time: the greater id wins
	commit("t1", "b3b", org1, 3)
	newBackup(t, s, "t1", "b4", org1, "", minutes(4)) // OPEN
	commit("t1", "b5", org1, 5)
	if err := s.SetBackupStatus(ctx, "t1", "b5", metadata.BackupCommitted, metadata.BackupDeleting); err != nil {
		t.Fatal(err)
	}
	commit("t1", "b6", org2, 6)  // another org
	commit("t2", "b7", org1, 7)  // another tenant
	commit("t2", "b3c", org1, 3) // another tenant, a greater id at the same time

	for _, tt := range []struct {
		tenant, org string
		at          time.Time
		want        string // "" = ErrNotFound
	}{
		{"t1", org1, minutes(0), ""},
		{"t1", org1, minutes(1).Add(-time.Nanosecond), ""}, // below the columns' microsecond
		{"t1", org1, minutes(1), "b1"},                     // at: inclusive
		{"t1", org1, minutes(2), "b1"},                     // ABORTED b2 skipped
		{"t1", org1, minutes(3).Add(-time.Microsecond), "b1"},
		{"t1", org1, minutes(3), "b3b"},
		{"t1", org1, minutes(4), "b3b"},  // OPEN b4 skipped
		{"t1", org1, minutes(99), "b3b"}, // DELETING b5, other orgs and tenants skipped
		{"t1", org2, minutes(99), "b6"},
		{"t1", org2, minutes(5), ""},
		{"t2", org1, minutes(6), "b3c"},
		{"t2", org1, minutes(7), "b7"},
		{"t3", org1, minutes(99), ""},
	} {
		got, err := s.FindBackup(ctx, tt.tenant, tt.org, tt.at)
		if tt.want == "" {
			wantErr(t, fmt.Sprintf("FindBackup(%s, %s, %v)", tt.tenant, tt.org, tt.at), err, metadata.ErrNotFound)
			continue
		}
		if err != nil {
			t.Errorf("FindBackup(%s, %s, %v): %v; want %s", tt.tenant, tt.org, tt.at, err, tt.want)
			continue
		}
		if d := cmp.Diff(getBackup(t, s, tt.tenant, tt.want), got); d != "" {
			t.Errorf("FindBackup(%s, %s, %v) (-want %s +got):\n%s", tt.tenant, tt.org, tt.at, tt.want, d)
		}
	}
}

func testListFiles(t *testing.T, newDB NewDB) {
	s := newStore(t, newDB)
	ctx := t.Context()
	b := newBackup(t, s, "t1", "b1", org1, "", minutes(0))
	other := newBackup(t, s, "t1", "b2", org1, "", minutes(1))
	// Byte order: upper case before lower case.
	ids := []string{"f-c", "f-a", "F-z", "f-b", "f-e", "f-d", "f-g"}
	want := map[string]*metadata.File{}
	for _, id := range ids {
		want[id] = addFile(t, s, b, id, "001000000000001AAA")
	}
	addFile(t, s, other, "f-0", "001000000000001AAA")
	slices.Sort(ids)

	list := func(size int) [][]string {
		t.Helper()
		pages := allPages(t, fmt.Sprintf("ListFiles(%d)", size), func(tok string) ([]*metadata.File, string, error) {
			return s.ListFiles(ctx, "t1", "b1", size, tok)
		})
		for _, page := range pages {
			for _, f := range page {
				if d := cmp.Diff(want[f.ID], f); d != "" {
					t.Errorf("ListFiles: file %s (-want +got):\n%s", f.ID, d)
				}
			}
		}
		return pageKeys(pages, func(f *metadata.File) string { return f.ID })
	}
	for _, tt := range []struct {
		size int
		want [][]string
	}{
		{3, [][]string{ids[0:3], ids[3:6], ids[6:]}},
		{7, [][]string{ids}},
		{0, [][]string{ids}}, // default size
		{metadata.MaxPageSize, [][]string{ids}},
	} {
		if d := cmp.Diff(tt.want, list(tt.size)); d != "" {
			t.Errorf("ListFiles size %d: pages (-want +got):\n%s", tt.size, d)
		}
	}

	page, next, err := s.ListFiles(ctx, "t1", "nope", 0, "")
	if err != nil || len(page) != 0 || next != "" {
		t.Errorf("ListFiles of an unknown backup = %v, %q, %v; want none", fileIDs(page), next, err)
	}
	for _, size := range []int{-1, metadata.MaxPageSize + 1} {
		_, _, err := s.ListFiles(ctx, "t1", "b1", size, "")
		wantErr(t, fmt.Sprintf("ListFiles page size %d", size), err, metadata.ErrInvalid)
	}
	for _, tok := range []string{"!!", "="} {
		_, _, err := s.ListFiles(ctx, "t1", "b1", 2, tok)
		wantErr(t, "ListFiles malformed page token "+tok, err, metadata.ErrInvalid)
	}
}

func testGetFile(t *testing.T, newDB NewDB) {
	s := newStore(t, newDB)
	ctx := t.Context()
	b := newBackup(t, s, "t1", "b1", org1, "", minutes(0))
	want := addFile(t, s, b, "f1", "001000000000001AAA")
	newBackup(t, s, "t1", "b2", org1, "", minutes(1))
	newBackup(t, s, "t2", "b1", org1, "", minutes(0))

	got, err := s.GetFile(ctx, "t1", "b1", "f1")
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("GetFile (-want +got):\n%s", d)
	}
	for _, k := range [][3]string{
		{"t2", "b1", "f1"}, // another tenant (with a backup of the same id)
		{"t1", "b2", "f1"}, // another backup
		{"t1", "b1", "F1"}, // case differs
		{"t1", "b1", "nope"},
		{"t1", "nope", "f1"},
	} {
		_, err := s.GetFile(ctx, k[0], k[1], k[2])
		wantErr(t, fmt.Sprintf("GetFile%v", k), err, metadata.ErrNotFound)
	}
}

func testFilesByParent(t *testing.T, newDB NewDB) {
	s := newStore(t, newDB)
	ctx := t.Context()
	b := newBackup(t, s, "t1", "b1", org1, "", minutes(0))
	parent := func(i int) string { return fmt.Sprintf("001%012dAAA", i) }

	// 1200 parents asked for: three batches. Files sit at the batch edges, two on some parents
	// (added in reverse id order), one on a parent nobody asks for.
	var want []*metadata.File
	for _, f := range []struct {
		id     string
		parent int
	}{
		{"f-1199", 1199}, {"f-0b", 0}, {"f-0a", 0}, {"f-499", 499}, {"f-500", 500},
		{"f-501b", 501}, {"f-501a", 501}, {"f-999", 999}, {"f-1000", 1000},
	} {
		want = append(want, addFile(t, s, b, f.id, parent(f.parent)))
	}
	addFile(t, s, b, "f-unasked", parent(5000))
	// The same parents in another backup and another tenant are not this backup's.
	addFile(t, s, newBackup(t, s, "t1", "b2", org1, "", minutes(1)), "f-x", parent(0))
	addFile(t, s, newBackup(t, s, "t2", "b1", org1, "", minutes(0)), "f-y", parent(0))
	slices.SortFunc(want, func(x, y *metadata.File) int {
		if x.ParentID != y.ParentID {
			return strings.Compare(x.ParentID, y.ParentID)
		}
		return strings.Compare(x.ID, y.ID)
	})

	// Descending, with repeats.
	var parents []string
	for i := 1199; i >= 0; i-- {
		parents = append(parents, parent(i))
	}
	parents = append(parents, parent(0), parent(501), parent(1199))
	saved := slices.Clone(parents)
	got, err := s.FilesByParent(ctx, "t1", "b1", parents)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("FilesByParent (-want +got):\n%s", d)
	}
	if !slices.Equal(saved, parents) {
		t.Error("FilesByParent changed its argument")
	}

	for _, tt := range []struct {
		name    string
		parents []string
		want    []string
	}{
		{"one batch", []string{parent(501), parent(0)}, []string{"f-0a", "f-0b", "f-501a", "f-501b"}},
		{"none asked", nil, []string{}},
		{"no files", []string{parent(7)}, []string{}},
		{"case differs", []string{"001000000000000aaa"}, []string{}},
	} {
		got, err := s.FilesByParent(ctx, "t1", "b1", tt.parents)
		if err != nil {
			t.Errorf("FilesByParent(%s): %v", tt.name, err)
			continue
		}
		if d := cmp.Diff(tt.want, fileIDs(got)); d != "" {
			t.Errorf("FilesByParent(%s) (-want +got):\n%s", tt.name, d)
		}
	}
}

func testObjectDamaged(t *testing.T, newDB NewDB) {
	s := newStore(t, newDB)
	ctx := t.Context()
	b := newBackup(t, s, "t1", "b1", org1, "", minutes(0))
	x := commitFile(t, s, b, "u1", "body")
	y := commitFile(t, s, b, "u2", "other body")
	bB := newBackup(t, s, "t2", "b1", org1, "", minutes(0))
	xB := commitFile(t, s, bB, "u1", "body") // same object id, another tenant

	if _, err := s.FindFileObject(ctx, "t1", org1, "", digest("body")); err != nil {
		t.Fatalf("FindFileObject before damage: %v", err)
	}
	for range 2 { // idempotent
		if err := s.SetObjectDamaged(ctx, "t1", x.ID); err != nil {
			t.Fatal(err)
		}
	}
	for _, tt := range []struct {
		tenant string
		o      *metadata.Object
		want   bool
	}{{"t1", x, true}, {"t1", y, false}, {"t2", xB, false}} {
		got, err := s.GetObject(ctx, tt.tenant, tt.o.ID)
		if err != nil {
			t.Fatal(err)
		}
		want := *tt.o
		want.Damaged = tt.want
		if d := cmp.Diff(&want, got); d != "" {
			t.Errorf("GetObject(%s, %s) after SetObjectDamaged (-want +got):\n%s", tt.tenant, tt.o.ID, d)
		}
	}
	_, err := s.FindFileObject(ctx, "t1", org1, "", digest("body"))
	wantErr(t, "FindFileObject of a damaged object", err, metadata.ErrNotFound)
	wantErr(t, "SetObjectDamaged of an unknown object", s.SetObjectDamaged(ctx, "t1", "nope"), metadata.ErrNotFound)
	wantErr(t, "SetObjectDamaged of another tenant's object", s.SetObjectDamaged(ctx, "t3", x.ID), metadata.ErrNotFound)
}
