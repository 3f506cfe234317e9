package maintenance_test

import (
	"slices"
	"testing"
	"time"

	"backupstore/metadata"
)

// Cleanup's retention ignores damaged backups for keep-last: with keep-last 2 and the two newest
// backups damaged, the two newest intact ones are kept, the damaged newest stay (nothing intact
// is newer), and only the oldest intact and the damaged one an intact backup supersedes expire.
func TestCleanupRetentionSkipsDamagedBackups(t *testing.T) {
	forEachCatalog(t, func(t *testing.T, driver string) {
		e := newEnv(t, driver, nil)
		ctx := t.Context()
		const org = "00D000000000001AAA"
		start := time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC)
		// bak-1 intact, bak-2 damaged, bak-3 intact, bak-4 intact, bak-5 damaged, bak-6 damaged.
		damaged := map[string]bool{"bak-2": true, "bak-5": true, "bak-6": true}
		for i := 1; i <= 6; i++ {
			id := "bak-" + string(rune('0'+i))
			if _, _, err := e.catalog.CreateBackup(ctx, &metadata.Backup{TenantID: "acme", ID: id, OrgID: org,
				StartedAt: start.AddDate(0, 0, i)}); err != nil {
				t.Fatal(err)
			}
			if err := e.catalog.SetBackupStatus(ctx, "acme", id, metadata.BackupOpen, metadata.BackupCommitted); err != nil {
				t.Fatal(err)
			}
			if damaged[id] {
				if err := e.catalog.SetBackupDamaged(ctx, "acme", id); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := e.catalog.PutRetentionPolicy(ctx, &metadata.RetentionPolicy{TenantID: "acme", KeepLast: 2}); err != nil {
			t.Fatal(err)
		}
		rep, err := e.svc.Cleanup(ctx, "acme", true)
		if err != nil {
			t.Fatal(err)
		}
		var expired []string
		for _, it := range rep.Items {
			if it.Action == "expire" {
				expired = append(expired, it.BackupID)
			}
		}
		slices.Sort(expired)
		if !slices.Equal(expired, []string{"bak-1", "bak-2"}) {
			t.Fatalf("expired %v, want [bak-1 bak-2] (keep-last 2 keeps intact bak-3 and bak-4; damaged bak-5 and bak-6 have nothing intact newer)", expired)
		}
	})
}
