package server_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/uuid"

	"backupstore/fault"
	pb "backupstore/proto/backupstore/v1"
	"backupstore/restore"
)

// PlanRestore holds at most MaxPlanIDs record and file ids: a plan that would hold more is
// refused as InvalidArgument saying what to narrow, before it grows further.
func TestPlanRestoreIsBounded(t *testing.T) {
	id := func(p string, n int) string { return fmt.Sprintf("%s%012d", p, n) }
	// plan plans from one account of a backup holding it, 50 contacts of it and 3 files of
	// theirs, on a service whose plans hold at most max ids.
	plan := func(max, depth int) (*restore.Plan, error) {
		e := newEnv(t, "sqlite", func(o *envOptions) { o.restore.MaxPlanIDs = max })
		ctx := as(tokenA)
		b := e.newBackup(t, "")
		var contacts strings.Builder
		contacts.WriteString("Id,AccountId\n")
		for i := 1; i <= 50; i++ {
			fmt.Fprintf(&contacts, "%s,%s\n", id("003", i), id("001", 1))
		}
		if _, err := e.sendRecords(ctx, &pb.RecordsHeader{BackupId: b.Id, Sobject: "Account"}, []byte("Id\n"+id("001", 1)+"\n"), 1<<20); err != nil {
			t.Fatal(err)
		}
		if _, err := e.sendRecords(ctx, &pb.RecordsHeader{BackupId: b.Id, Sobject: "Contact", References: []*pb.ReferenceField{{Field: "AccountId", Target: "Account"}}},
			[]byte(contacts.String()), 1<<20); err != nil {
			t.Fatal(err)
		}
		for i := 1; i <= 3; i++ {
			if _, err := e.sendFile(ctx, &pb.FileHeader{BackupId: b.Id, ParentId: id("003", i), Path: fmt.Sprint(i), UploadId: uuid.NewString()}, []byte("f"), 1); err != nil {
				t.Fatal(err)
			}
		}
		e.commit(t, b.Id)
		return e.rst.Plan(t.Context(), "acme", b.Id, []restore.Root{{SObject: "Account", IDs: []string{id("001", 1)}}}, depth)
	}
	wantRefused := func(err error, what string) {
		t.Helper()
		fe, ok := fault.As(err)
		if !ok || fe.Kind != fault.InvalidArgument || !strings.Contains(fe.Error(), "narrow it") || !strings.Contains(fe.Error(), what) {
			t.Fatalf("error %v, want InvalidArgument saying what to narrow (%s)", err, what)
		}
	}
	// 1 account + 50 contacts + 3 files = 54 ids.
	if p, err := plan(54, 1); err != nil || p.Records != 51 || p.Files != 3 {
		t.Fatalf("plan within the limit: %+v, %v", p, err)
	}
	_, err := plan(53, 1)
	wantRefused(err, "records and their files")
	_, err = plan(20, 1)
	wantRefused(err, "(records)")
	if p, err := plan(20, 0); err != nil || p.Records != 1 {
		t.Fatalf("narrowed plan (depth 0): %+v, %v", p, err)
	}
}
