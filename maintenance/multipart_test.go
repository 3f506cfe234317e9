package maintenance_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"backupstore/maintenance"
	"backupstore/metadata"
	"backupstore/storage"
)

// uploads lists the store's multipart uploads as "key upload-id".
func uploads(t *testing.T, st storage.Store) []string {
	t.Helper()
	var out []string
	if err := st.ListMultipart(t.Context(), "", func(u storage.MultipartUpload) error {
		out = append(out, u.Key+" "+u.UploadID)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

func items(rep *maintenance.Report, action string) []string {
	var out []string
	for _, it := range rep.Items {
		if it.Action == action && it.S3UploadID != "" {
			out = append(out, it.Key+" "+it.S3UploadID)
		}
	}
	slices.Sort(out)
	return out
}

// Garbage collection aborts multipart uploads under the tenant's prefix that no PENDING upload
// owns once they are older than the grace period (a dry run lists them only), and leaves alone
// the one a PENDING upload owns, a young one and another tenant's.
func TestCleanupAbortsStrayMultipartUploads(t *testing.T) {
	forEachCatalog(t, func(t *testing.T, driver string) {
		e := newEnv(t, driver, nil)
		ctx := t.Context()
		const org = "00D000000000001AAA"
		b, _, err := e.catalog.CreateBackup(ctx, &metadata.Backup{TenantID: "acme", ID: "bak-1", OrgID: org})
		if err != nil {
			t.Fatal(err)
		}
		create := func(key string) string {
			t.Helper()
			id, err := e.store.CreateMultipart(ctx, key)
			if err != nil {
				t.Fatal(err)
			}
			return id
		}
		ownedKey := "acme/" + org + "/files/obj-owned"
		u := &metadata.Upload{TenantID: "acme", BackupID: b.ID, UploadID: "up-1", Kind: metadata.KindFile,
			ObjectID: "obj-owned", ObjectKey: ownedKey, PartSize: 8 << 20, ParentID: "001000000000001AAA",
			Path: "a", Name: "a", DeclaredSize: -1}
		if err := e.catalog.CreateUpload(ctx, u); err != nil {
			t.Fatal(err)
		}
		owned := create(ownedKey)
		if err := e.catalog.SetS3UploadID(ctx, "acme", b.ID, u.UploadID, u.Generation, owned); err != nil {
			t.Fatal(err)
		}
		// The same key's upload of an earlier attempt, an upload whose id was never recorded
		// (a crash after CreateMultipart, or one created after AbortBackup's snapshot), and
		// another tenant's.
		earlier := create(ownedKey)
		unrecorded := create("acme/" + org + "/bak-1/records/Account/chk-1.csv.zst")
		others := create("globex/" + org + "/files/obj-theirs")
		all := uploads(t, e.store)
		strays := []string{ownedKey + " " + earlier, "acme/" + org + "/bak-1/records/Account/chk-1.csv.zst " + unrecorded}
		slices.Sort(strays)

		// Young: reported as skipped, nothing aborted.
		rep, err := e.svc.Cleanup(ctx, "acme", false)
		if err != nil {
			t.Fatal(err)
		}
		if rep.GarbageDeleted != 0 || rep.MultipartAborted != 0 || !slices.Equal(items(rep, "skip"), strays) {
			t.Fatalf("young strays: garbage %d, multipart %d, skipped %v", rep.GarbageDeleted, rep.MultipartAborted, items(rep, "skip"))
		}
		if got := uploads(t, e.store); !slices.Equal(got, all) {
			t.Fatalf("cleanup within the grace period aborted uploads: %v", got)
		}

		e.setClock(time.Now().Add(2 * time.Hour))
		dry, err := e.svc.Cleanup(ctx, "acme", true)
		if err != nil {
			t.Fatal(err)
		}
		if dry.GarbageDeleted != 2 || dry.MultipartAborted != 2 || !slices.Equal(items(dry, maintenance.ActionStrayMultipart), strays) {
			t.Fatalf("dry run: garbage %d, multipart %d, items %v, want %v", dry.GarbageDeleted, dry.MultipartAborted, items(dry, maintenance.ActionStrayMultipart), strays)
		}
		if got := uploads(t, e.store); !slices.Equal(got, all) {
			t.Fatalf("dry run aborted uploads: %v", got)
		}

		rep, err = e.svc.Cleanup(ctx, "acme", false)
		if err != nil {
			t.Fatal(err)
		}
		if rep.MultipartAborted != 2 || !slices.Equal(items(rep, maintenance.ActionStrayMultipart), strays) {
			t.Fatalf("cleanup: multipart %d, items %v", rep.MultipartAborted, items(rep, maintenance.ActionStrayMultipart))
		}
		want := []string{ownedKey + " " + owned, "globex/" + org + "/files/obj-theirs " + others}
		slices.Sort(want)
		if got := uploads(t, e.store); !slices.Equal(got, want) {
			t.Fatalf("uploads after cleanup %v, want %v", got, want)
		}
		for _, it := range rep.Items {
			if it.Action == maintenance.ActionStrayMultipart && !strings.Contains(it.Reason, "no pending upload owns") {
				t.Errorf("reason %q", it.Reason)
			}
		}

		// Once its upload is no longer PENDING, the owned one is a stray too.
		if err := e.catalog.FailUpload(ctx, "acme", b.ID, u.UploadID, u.Generation, metadata.UploadFailed, "test"); err != nil {
			t.Fatal(err)
		}
		rep, err = e.svc.Cleanup(ctx, "acme", false)
		if err != nil || rep.MultipartAborted != 1 {
			t.Fatalf("cleanup after the upload failed: %+v %v", rep, err)
		}
		if got := uploads(t, e.store); !slices.Equal(got, []string{"globex/" + org + "/files/obj-theirs " + others}) {
			t.Fatalf("uploads left %v", got)
		}
	})
}
