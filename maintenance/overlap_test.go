package maintenance_test

import (
	"testing"

	"backupstore/metadata"
)

// Two maintenance runs can overlap (the lock is a MySQL session's; a dropped
// connection frees it while its holder works on): a run that listed a
// DELETING backup which the other run has purged and removed finishes
// quietly instead of failing the whole cleanup with NotFound (found by the
// torture run).
func TestPurgeOfABackupPurgedMeanwhileIsDone(t *testing.T) {
	forEachCatalog(t, func(t *testing.T, driver string) {
		e := newEnv(t, driver, nil)
		ctx := t.Context()
		dataKey, fileKey := committedBackup(t, e, []byte("data"), []byte("data"), []byte("file"))
		if err := e.catalog.SetBackupStatus(ctx, "acme", "bak-v", metadata.BackupCommitted, metadata.BackupDeleting); err != nil {
			t.Fatal(err)
		}
		listed, err := e.catalog.GetBackup(ctx, "acme", "bak-v") // what the slower run listed
		if err != nil {
			t.Fatal(err)
		}
		d, err := e.svc.FinishDeletion(ctx, listed)
		if err != nil || d.Objects != 3 {
			t.Fatalf("first run: %+v %v, want 3 objects deleted", d, err)
		}
		d, err = e.svc.FinishDeletion(ctx, listed)
		if err != nil || d.Objects != 0 {
			t.Fatalf("second run on the purged backup: %+v %v, want nothing to do", d, err)
		}
		for _, k := range []string{dataKey, dataKey + ".idx", fileKey} {
			if _, err := e.store.Head(ctx, k); err == nil {
				t.Fatalf("%s still in the bucket", k)
			}
		}
	})
}
