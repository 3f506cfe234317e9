package metadatatest

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"backupstore/metadata"
)

// testCountTenant: quotas count one tenant's open backups, pending uploads
// and object + file rows, and only the kinds asked for.
func testCountTenant(t *testing.T, newDB NewDB) {
	s := newStore(t, newDB)
	ctx := t.Context()
	all := metadata.CountOpenBackups | metadata.CountPendingUploads | metadata.CountCatalogRows
	count := func(tenant string, kinds int) metadata.TenantCounts {
		t.Helper()
		tc, err := s.CountTenant(ctx, tenant, kinds)
		if err != nil {
			t.Fatalf("CountTenant(%s): %v", tenant, err)
		}
		return tc
	}
	if d := cmp.Diff(metadata.TenantCounts{}, count("t1", all)); d != "" {
		t.Errorf("empty tenant (-want +got):\n%s", d)
	}
	b1 := newBackup(t, s, "t1", "b1", org1, "", minutes(0))
	b2 := newBackup(t, s, "t1", "b2", org1, "", minutes(1))
	newBackup(t, s, "t1", "b3", org2, "", minutes(2))
	other := newBackup(t, s, "t2", "b1", org1, "", minutes(0))
	createUpload(t, s, fileUpload(b1, "u1"))
	createUpload(t, s, recordsUpload(b2, "u2", "Account", 1))
	createUpload(t, s, fileUpload(b1, "u3"))
	if err := s.FailUpload(ctx, "t1", "b1", "u3", 1, metadata.UploadFailed, "gone"); err != nil {
		t.Fatal(err)
	}
	obj := commitFile(t, s, b1, "u4", "committed")         // one object, one file row
	if err := dedupFile(t, s, b2, "u5", obj); err != nil { // one more file row, no object
		t.Fatal(err)
	}
	createUpload(t, s, fileUpload(other, "u6"))
	commitFile(t, s, other, "u7", "other's")
	if err := s.SetBackupStatus(ctx, "t1", "b3", metadata.BackupOpen, metadata.BackupAborted); err != nil {
		t.Fatal(err)
	}

	want := metadata.TenantCounts{OpenBackups: 2, PendingUploads: 2, CatalogRows: 3}
	if d := cmp.Diff(want, count("t1", all)); d != "" {
		t.Errorf("t1 (-want +got):\n%s", d)
	}
	if d := cmp.Diff(metadata.TenantCounts{PendingUploads: 2}, count("t1", metadata.CountPendingUploads)); d != "" {
		t.Errorf("pending uploads only (-want +got):\n%s", d)
	}
	want = metadata.TenantCounts{OpenBackups: 1, PendingUploads: 1, CatalogRows: 2}
	if d := cmp.Diff(want, count("t2", all)); d != "" {
		t.Errorf("t2 (-want +got):\n%s", d)
	}
	got, created, err := s.CreateBackup(ctx, &metadata.Backup{TenantID: "t1", ID: "b4", OrgID: org1, IdempotencyKey: "k1"})
	if err != nil || !created {
		t.Fatal(created, err)
	}
	if b, err := s.BackupByIdempotencyKey(ctx, "t1", "k1"); err != nil || b.ID != got.ID {
		t.Errorf("BackupByIdempotencyKey = %v, %v; want %s", b, err, got.ID)
	}
	if _, err := s.BackupByIdempotencyKey(ctx, "t2", "k1"); !errors.Is(err, metadata.ErrNotFound) {
		t.Errorf("another tenant's key: %v, want ErrNotFound", err)
	}
	if _, err := s.CountTenant(ctx, "", all); !errors.Is(err, metadata.ErrInvalid) {
		t.Errorf("empty tenant id: %v, want ErrInvalid", err)
	}
}
