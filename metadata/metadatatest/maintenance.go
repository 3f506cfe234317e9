package metadatatest

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"

	"backupstore/metadata"
)

// The maintenance side of the catalog: retention policies, deleting backup rows, garbage
// collection's listings, maintenance runs and the maintenance lock.

func testRetentionPolicies(t *testing.T, newDB NewDB) {
	s := newStore(t, newDB)
	ctx := t.Context()
	_, err := s.GetRetentionPolicy(ctx, "t1", "")
	wantErr(t, "GetRetentionPolicy before any", err, metadata.ErrNotFound)

	get := func(tenant, org string) *metadata.RetentionPolicy {
		t.Helper()
		p, err := s.GetRetentionPolicy(ctx, tenant, org)
		if err != nil {
			t.Fatalf("GetRetentionPolicy(%s, %q): %v", tenant, org, err)
		}
		return p
	}
	put := func(p *metadata.RetentionPolicy) *metadata.RetentionPolicy {
		t.Helper()
		before := time.Now().Add(-time.Second)
		if err := s.PutRetentionPolicy(ctx, p); err != nil {
			t.Fatalf("PutRetentionPolicy(%s, %q): %v", p.TenantID, p.OrgID, err)
		}
		if p.UpdatedAt.Before(before) {
			t.Errorf("PutRetentionPolicy set UpdatedAt %v", p.UpdatedAt)
		}
		return p
	}

	// The tenant's default (a new tenant: recorded by the put) and an org's policy.
	def := put(&metadata.RetentionPolicy{TenantID: "t1", KeepLast: 3, KeepDaily: 7, KeepWeekly: 4,
		KeepMonthly: 12, KeepYearly: 2, KeepWithin: 36*time.Hour + 1500*time.Nanosecond})
	if def.KeepWithin != 36*time.Hour+time.Microsecond {
		t.Errorf("KeepWithin after put = %v, want it truncated to microseconds", def.KeepWithin)
	}
	org := put(&metadata.RetentionPolicy{TenantID: "t1", OrgID: org1, KeepLast: 1})
	if d := cmp.Diff(def, get("t1", "")); d != "" {
		t.Errorf("default policy (-want +got):\n%s", d)
	}
	if d := cmp.Diff(org, get("t1", org1)); d != "" {
		t.Errorf("org policy (-want +got):\n%s", d)
	}
	// Exact match: no fallback from an org without a policy to the default.
	_, err = s.GetRetentionPolicy(ctx, "t1", org2)
	wantErr(t, "GetRetentionPolicy of an org without one", err, metadata.ErrNotFound)
	// Org ids are case-sensitive.
	_, err = s.GetRetentionPolicy(ctx, "t1", strings.ToLower(org1))
	wantErr(t, "GetRetentionPolicy of an org id differing in case", err, metadata.ErrNotFound)

	// Upsert replaces every field.
	org2nd := put(&metadata.RetentionPolicy{TenantID: "t1", OrgID: org1, KeepWithin: 90 * 24 * time.Hour})
	if d := cmp.Diff(org2nd, get("t1", org1)); d != "" {
		t.Errorf("org policy after upsert (-want +got):\n%s", d)
	}

	// Tenant isolation: t2 sees none of t1's, and its own are separate rows.
	_, err = s.GetRetentionPolicy(ctx, "t2", "")
	wantErr(t, "t2 reading t1's default", err, metadata.ErrNotFound)
	wantErr(t, "t2 deleting t1's policy", s.DeleteRetentionPolicy(ctx, "t2", org1), metadata.ErrNotFound)
	other := put(&metadata.RetentionPolicy{TenantID: "t2", KeepLast: 99})
	if d := cmp.Diff(def, get("t1", "")); d != "" {
		t.Errorf("t1's default after t2's put (-want +got):\n%s", d)
	}
	if d := cmp.Diff(other, get("t2", "")); d != "" {
		t.Errorf("t2's default (-want +got):\n%s", d)
	}

	for _, p := range []*metadata.RetentionPolicy{
		{TenantID: ""},
		{TenantID: "t1", KeepLast: -1},
		{TenantID: "t1", KeepYearly: 1 << 31},
		{TenantID: "t1", KeepWithin: -time.Second},
	} {
		wantErr(t, fmt.Sprintf("PutRetentionPolicy(%+v)", *p), s.PutRetentionPolicy(ctx, p), metadata.ErrInvalid)
	}

	if err := s.DeleteRetentionPolicy(ctx, "t1", org1); err != nil {
		t.Fatal(err)
	}
	_, err = s.GetRetentionPolicy(ctx, "t1", org1)
	wantErr(t, "GetRetentionPolicy after delete", err, metadata.ErrNotFound)
	wantErr(t, "DeleteRetentionPolicy twice", s.DeleteRetentionPolicy(ctx, "t1", org1), metadata.ErrNotFound)
	get("t1", "") // the default stays
}

func testTenantsAndOrgs(t *testing.T, newDB NewDB) {
	s := newStore(t, newDB)
	ctx := t.Context()
	if list, err := s.ListTenants(ctx); err != nil || len(list) != 0 {
		t.Errorf("ListTenants on an empty catalog = %v, %v", list, err)
	}
	for _, id := range []string{"t1", "T2", "t0", "tenant-é"} {
		if err := s.EnsureTenant(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.PutRetentionPolicy(ctx, &metadata.RetentionPolicy{TenantID: "a-policy-only", KeepLast: 1}); err != nil {
		t.Fatal(err)
	}
	tenants, err := s.ListTenants(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{"T2", "a-policy-only", "t0", "t1", "tenant-é"}, tenants); d != "" {
		t.Errorf("ListTenants (-want +got):\n%s", d)
	}

	const org0, org3, org4 = "00D000000000000AAA", "00D000000000003AAA", "00D000000000004AAA"
	commit := func(tenant, id, org string, n int) {
		t.Helper()
		newBackup(t, s, tenant, id, org, "", minutes(n))
		if _, err := s.CommitBackup(ctx, tenant, id, "", minutes(n+1)); err != nil {
			t.Fatal(err)
		}
	}
	commit("t1", "b1", org1, 0)
	commit("t1", "b2", org1, 1)
	commit("t1", "b3", org0, 2)
	newBackup(t, s, "t1", "b4", org2, "", minutes(3)) // OPEN only
	commit("t1", "b5", org3, 4)                       // then DELETING
	if err := s.SetBackupStatus(ctx, "t1", "b5", metadata.BackupCommitted, metadata.BackupDeleting); err != nil {
		t.Fatal(err)
	}
	newBackup(t, s, "t1", "b6", org4, "", minutes(5))
	if err := s.SetBackupStatus(ctx, "t1", "b6", metadata.BackupOpen, metadata.BackupAborted); err != nil {
		t.Fatal(err)
	}
	commit("t2", "b1", org2, 0) // another tenant's

	orgs, err := s.OrgsWithBackups(ctx, "t1")
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{org0, org1}, orgs); d != "" {
		t.Errorf("OrgsWithBackups(t1) (-want +got):\n%s", d)
	}
	if orgs, err := s.OrgsWithBackups(ctx, "nobody"); err != nil || len(orgs) != 0 {
		t.Errorf("OrgsWithBackups(unknown tenant) = %v, %v", orgs, err)
	}
}

func testDeleteBackupRow(t *testing.T, newDB NewDB) {
	s := newStore(t, newDB)
	ctx := t.Context()
	create(t, s, storage("t1", "s1", "one"))
	b1 := newBackup(t, s, "t1", "b1", org1, "s1", minutes(0))
	newBackup(t, s, "t1", "b2", org1, "s1", minutes(1))
	ch := commitChunk(t, s, b1, "r1", "Account", 1, 3, 30, 20, 2)
	if _, _, err := s.PutRecordSetSchema(ctx, "t1", "b1", "Account", []byte("Id\n"), nil); err != nil {
		t.Fatal(err)
	}
	x1 := commitFile(t, s, b1, "f1", "only in b1")
	createUpload(t, s, fileUpload(b1, "f2")) // PENDING
	if _, err := s.CommitBackup(ctx, "t1", "b2", "", minutes(2)); err != nil {
		t.Fatal(err)
	}

	wantErr(t, "DeleteBackupRow of an OPEN backup", s.DeleteBackupRow(ctx, "t1", "b1"), metadata.ErrConflict)
	wantErr(t, "DeleteBackupRow of a COMMITTED backup", s.DeleteBackupRow(ctx, "t1", "b2"), metadata.ErrConflict)
	wantErr(t, "DeleteBackupRow of an unknown backup", s.DeleteBackupRow(ctx, "t1", "nope"), metadata.ErrNotFound)
	wantErr(t, "DeleteBackupRow of another tenant's backup", s.DeleteBackupRow(ctx, "t2", "b1"), metadata.ErrNotFound)

	if err := s.SetBackupStatus(ctx, "t1", "b1", metadata.BackupOpen, metadata.BackupDeleting); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "DeleteBackupRow with rows left", s.DeleteBackupRow(ctx, "t1", "b1"), metadata.ErrReferenced)
	getBackup(t, s, "t1", "b1")
	// The objects' rows alone are enough to keep it: purge the other rows but no object.
	if err := s.PurgeBackupRows(ctx, "t1", "b1", nil); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "DeleteBackupRow with its objects left", s.DeleteBackupRow(ctx, "t1", "b1"), metadata.ErrReferenced)
	if err := s.PurgeBackupRows(ctx, "t1", "b1", []string{ch.DataObjectID, ch.IndexObjectID, x1.ID}); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteBackupRow(ctx, "t1", "b1"); err != nil {
		t.Fatalf("DeleteBackupRow after PurgeBackupRows: %v", err)
	}
	_, err := s.GetBackup(ctx, "t1", "b1")
	wantErr(t, "GetBackup after DeleteBackupRow", err, metadata.ErrNotFound)
	wantErr(t, "DeleteBackupRow twice", s.DeleteBackupRow(ctx, "t1", "b1"), metadata.ErrNotFound)

	// An ABORTED backup with no rows goes at once.
	newBackup(t, s, "t1", "b3", org1, "", minutes(3))
	if err := s.SetBackupStatus(ctx, "t1", "b3", metadata.BackupOpen, metadata.BackupAborted); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteBackupRow(ctx, "t1", "b3"); err != nil {
		t.Errorf("DeleteBackupRow of an empty ABORTED backup: %v", err)
	}

	// A backup whose file body another backup shares can go: the object outlives it (naming no
	// backup) until the last backup using it is purged.
	b4 := newBackup(t, s, "t1", "b4", org1, "s1", minutes(4))
	shared := commitFile(t, s, b4, "f4", "shared")
	b5 := newBackup(t, s, "t1", "b5", org1, "s1", minutes(5))
	if err := dedupFile(t, s, b5, "f5", shared); err != nil {
		t.Fatal(err)
	}
	for _, b := range []*metadata.Backup{b4, b5} {
		if err := s.SetBackupStatus(ctx, "t1", b.ID, metadata.BackupOpen, metadata.BackupAborted); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.PurgeBackupRows(ctx, "t1", "b4", []string{shared.ID}); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteBackupRow(ctx, "t1", "b4"); err != nil {
		t.Errorf("DeleteBackupRow of a backup whose object another shares: %v", err)
	}
	if o, err := s.GetObject(ctx, "t1", shared.ID); err != nil || o.BackupID != "" {
		t.Fatalf("shared object after its first backup went: %+v, %v", o, err)
	}
	if err := s.PurgeBackupRows(ctx, "t1", "b5", []string{shared.ID}); err != nil {
		t.Fatal(err)
	}
	_, err = s.GetObject(ctx, "t1", shared.ID)
	wantErr(t, "the shared object once no backup uses it", err, metadata.ErrNotFound)
	if err := s.DeleteBackupRow(ctx, "t1", "b5"); err != nil {
		t.Errorf("DeleteBackupRow(b5): %v", err)
	}
	getBackup(t, s, "t1", "b2") // untouched
}

func testObjectKeys(t *testing.T, newDB NewDB) {
	s := newStore(t, newDB)
	ctx := t.Context()
	create(t, s, storage("t1", "s1", "one"))
	if err := s.EnsureTenant(ctx, "t2"); err != nil {
		t.Fatal(err)
	}
	// Byte order, not a collation's: "B" < "a", "a/b" < "a/b/c" < "a/é" (0xc3), "~" (0x7e) < "é".
	odd := []string{"a/b/c", "a/é", "a/B", "a/a", "a/b", "a/~", "A/z", "a/b-", "a/b0"}
	var onDefault []string
	n := 0
	insert := func(tx *metadata.Tx, tenant, storageID, key string) error {
		n++
		return tx.InsertObject(ctx, &metadata.Object{TenantID: tenant, ID: fmt.Sprint("o", n), OrgID: org1,
			StorageID: storageID, Key: key, Kind: metadata.ObjManifest})
	}
	err := s.InTx(ctx, func(tx *metadata.Tx) error {
		// More keys than one internal batch (1000) on the default storage.
		for i := range 1003 {
			k := fmt.Sprintf("t1/%s/k%04d", org1, (i*7919)%1003)
			onDefault = append(onDefault, k)
			if err := insert(tx, "t1", "", k); err != nil {
				return err
			}
		}
		for _, k := range odd {
			onDefault = append(onDefault, k)
			if err := insert(tx, "t1", "", k); err != nil {
				return err
			}
			if err := insert(tx, "t1", "s1", "s1/"+k); err != nil {
				return err
			}
		}
		return insert(tx, "t2", "", "t2/other-tenant")
	})
	if err != nil {
		t.Fatal(err)
	}
	keys := func(tenant, storageID string) []string {
		t.Helper()
		var got []string
		if err := s.ForEachObjectKey(ctx, tenant, storageID, func(k string) error {
			got = append(got, k)
			return nil
		}); err != nil {
			t.Fatalf("ForEachObjectKey(%s, %q): %v", tenant, storageID, err)
		}
		return got
	}
	sorted := func(list []string) []string {
		list = slices.Clone(list)
		slices.Sort(list) // Go compares strings byte by byte
		return list
	}
	if d := cmp.Diff(sorted(onDefault), keys("t1", "")); d != "" {
		t.Errorf("ForEachObjectKey(t1, default) (-want +got):\n%s", d)
	}
	var onS1 []string
	for _, k := range odd {
		onS1 = append(onS1, "s1/"+k)
	}
	if d := cmp.Diff(sorted(onS1), keys("t1", "s1")); d != "" {
		t.Errorf("ForEachObjectKey(t1, s1) (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{"a/B", "a/a", "a/b", "a/b-", "a/b/c", "a/b0", "a/~", "a/é"}, sorted(odd)[1:]); d != "" {
		t.Errorf("the test's own idea of byte order is off (-want +got):\n%s", d)
	}
	if got := keys("t1", "nope"); len(got) != 0 {
		t.Errorf("ForEachObjectKey(unknown storage) = %v", got)
	}
	if d := cmp.Diff([]string{"t2/other-tenant"}, keys("t2", "")); d != "" {
		t.Errorf("ForEachObjectKey(t2) (-want +got):\n%s", d)
	}
	if got := keys("t2", "s1"); len(got) != 0 {
		t.Errorf("ForEachObjectKey(t2, t1's storage id) = %v", got)
	}

	// fn's error stops the walk and is returned as is.
	stop := errors.New("stop")
	calls := 0
	err = s.ForEachObjectKey(ctx, "t1", "", func(string) error {
		calls++
		if calls == 3 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || calls != 3 {
		t.Errorf("ForEachObjectKey with fn failing at 3: err %v after %d calls; want stop after 3", err, calls)
	}
	// fn may use the store: no rows are held while it runs (SQLite has one connection).
	calls = 0
	err = s.ForEachObjectKey(ctx, "t1", "s1", func(string) error {
		calls++
		_, err := s.GetStorage(ctx, "t1", "s1")
		return err
	})
	if err != nil || calls != len(odd) {
		t.Errorf("ForEachObjectKey with fn using the store: %v after %d calls", err, calls)
	}
}

func testPendingAndStaleUploads(t *testing.T, newDB NewDB) {
	s := newStore(t, newDB)
	ctx := t.Context()
	b1 := newBackup(t, s, "t1", "b1", org1, "", minutes(0))
	b2 := newBackup(t, s, "t1", "b2", org2, "", minutes(1))
	other := newBackup(t, s, "t2", "b1", org1, "", minutes(0))

	if keys, err := s.PendingUploadKeys(ctx, "t1"); err != nil || len(keys) != 0 {
		t.Errorf("PendingUploadKeys with no uploads = %v, %v", keys, err)
	}
	if list, err := s.StaleUploads(ctx, "t1", time.Now().Add(time.Hour)); err != nil || len(list) != 0 {
		t.Errorf("StaleUploads with no uploads = %v, %v", list, err)
	}

	// tick waits until the store's clock has moved past the last upload's timestamp.
	tick := func(last time.Time) {
		for !time.Now().UTC().Truncate(time.Microsecond).After(last) {
			time.Sleep(50 * time.Microsecond)
		}
	}
	u1 := createUpload(t, s, fileUpload(b1, "u1"))
	tick(u1.UpdatedAt)
	u2 := createUpload(t, s, recordsUpload(b2, "u2", "Account", 1))
	tick(u2.UpdatedAt)
	createUpload(t, s, fileUpload(b1, "u3"))
	if err := s.FailUpload(ctx, "t1", "b1", "u3", 1, metadata.UploadFailed, "gone"); err != nil {
		t.Fatal(err)
	}
	commitFile(t, s, b1, "u4", "committed") // COMMITTED: not pending
	createUpload(t, s, fileUpload(other, "u5"))

	keys, err := s.PendingUploadKeys(ctx, "t1")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{u1.ObjectKey, u2.ObjectKey}
	slices.Sort(want)
	if d := cmp.Diff(want, keys); d != "" {
		t.Errorf("PendingUploadKeys (-want +got):\n%s", d)
	}

	stale := func(before time.Time) []string {
		t.Helper()
		list, err := s.StaleUploads(ctx, "t1", before)
		if err != nil {
			t.Fatalf("StaleUploads(%v): %v", before, err)
		}
		ids := []string{}
		for _, u := range list {
			ids = append(ids, u.UploadID)
		}
		return ids
	}
	for _, tt := range []struct {
		before time.Time
		want   []string
	}{
		{u1.UpdatedAt, []string{}}, // strictly before
		{u1.UpdatedAt.Add(time.Nanosecond), []string{"u1"}},
		{u2.UpdatedAt, []string{"u1"}},
		{time.Now().Add(time.Hour), []string{"u1", "u2"}}, // least recently updated first
	} {
		if d := cmp.Diff(tt.want, stale(tt.before)); d != "" {
			t.Errorf("StaleUploads(before %v) (-want +got):\n%s", tt.before, d)
		}
	}
	list, err := s.StaleUploads(ctx, "t1", u2.UpdatedAt)
	if err != nil || len(list) != 1 {
		t.Fatalf("StaleUploads = %v, %v", list, err)
	}
	if d := cmp.Diff(u1, list[0]); d != "" {
		t.Errorf("StaleUploads returned (-want +got):\n%s", d)
	}
	// A write to the upload makes it fresh again.
	bumped, err := s.BumpGeneration(ctx, "t1", "b1", "u1")
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{"u2"}, stale(bumped.UpdatedAt)); d != "" {
		t.Errorf("StaleUploads after u1 was written (-want +got):\n%s", d)
	}
}

func testMaintenanceRuns(t *testing.T, newDB NewDB) {
	s := newStore(t, newDB)
	ctx := t.Context()
	insert := func(r *metadata.MaintenanceRun) *metadata.MaintenanceRun {
		t.Helper()
		if err := s.InsertMaintenanceRun(ctx, r); err != nil {
			t.Fatalf("InsertMaintenanceRun(%s): %v", r.ID, err)
		}
		return r
	}
	// r1..r5 a minute apart; r4a and r4b start at the same time (ids break the tie).
	var all []*metadata.MaintenanceRun
	for i, id := range []string{"r1", "r2", "r3", "r4a", "r4b", "r5"} {
		n := min(i, 3)
		if id == "r5" {
			n = 4
		}
		all = append(all, insert(&metadata.MaintenanceRun{TenantID: "t1", ID: id, Kind: metadata.MaintenanceCleanup,
			Replica: "backupd-0", StartedAt: minutes(n).Add(time.Nanosecond), DryRun: i%2 == 0}))
	}
	first := all[0]
	if first.Outcome != metadata.RunRunning || !first.EndedAt.IsZero() || first.StartedAt != minutes(0) {
		t.Errorf("InsertMaintenanceRun normalised to %+v; want running, not ended, started at %v", first, minutes(0))
	}
	insert(&metadata.MaintenanceRun{TenantID: "t2", ID: "r1", Kind: metadata.MaintenanceVerify, Replica: "backupd-1",
		StartedAt: minutes(9), Outcome: metadata.RunOK, EndedAt: minutes(10), Message: "done at once"})

	wantErr(t, "duplicate run id", s.InsertMaintenanceRun(ctx, &metadata.MaintenanceRun{TenantID: "t1", ID: "r1", Kind: metadata.MaintenanceDelete}), metadata.ErrConflict)
	for _, r := range []*metadata.MaintenanceRun{
		{TenantID: "", ID: "x", Kind: metadata.MaintenanceDelete},
		{TenantID: "t1", ID: "", Kind: metadata.MaintenanceDelete},
		{TenantID: "t1", ID: "x", Kind: "defrag"},
		{TenantID: "t1", ID: "x", Kind: metadata.MaintenanceDelete, Outcome: "maybe"},
	} {
		wantErr(t, fmt.Sprintf("InsertMaintenanceRun(%+v)", *r), s.InsertMaintenanceRun(ctx, r), metadata.ErrInvalid)
	}

	// Finish: once, with the message truncated to whole characters within MaxRunMessage bytes.
	long := "a" + strings.Repeat("é", metadata.MaxRunMessage) // 1 + 2*MaxRunMessage bytes
	end := minutes(30)
	if err := s.FinishMaintenanceRun(ctx, "t1", "r2", metadata.RunFailed, long, end); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "FinishMaintenanceRun twice", s.FinishMaintenanceRun(ctx, "t1", "r2", metadata.RunOK, "", end), metadata.ErrConflict)
	wantErr(t, "FinishMaintenanceRun of an unknown run", s.FinishMaintenanceRun(ctx, "t1", "nope", metadata.RunOK, "", end), metadata.ErrNotFound)
	wantErr(t, "FinishMaintenanceRun of another tenant's run", s.FinishMaintenanceRun(ctx, "t2", "r3", metadata.RunOK, "", end), metadata.ErrNotFound)
	wantErr(t, "FinishMaintenanceRun as running", s.FinishMaintenanceRun(ctx, "t1", "r3", metadata.RunRunning, "", end), metadata.ErrInvalid)
	if err := s.FinishMaintenanceRun(ctx, "t1", "r3", metadata.RunOK, "bad \xff utf-8", time.Time{}); err != nil {
		t.Fatal(err)
	}

	list := func(tenant string, size int) [][]*metadata.MaintenanceRun {
		t.Helper()
		return allPages(t, fmt.Sprintf("ListMaintenanceRuns(%s, %d)", tenant, size), func(tok string) ([]*metadata.MaintenanceRun, string, error) {
			return s.ListMaintenanceRuns(ctx, tenant, size, tok)
		})
	}
	pages := list("t1", 2)
	var ids [][]string
	var got []*metadata.MaintenanceRun
	for _, p := range pages {
		var ps []string
		for _, r := range p {
			ps = append(ps, r.ID)
			got = append(got, r)
		}
		ids = append(ids, ps)
	}
	if d := cmp.Diff([][]string{{"r5", "r4b"}, {"r4a", "r3"}, {"r2", "r1"}}, ids); d != "" {
		t.Errorf("pages, newest first (-want +got):\n%s", d)
	}
	r2 := got[4]
	if r2.Outcome != metadata.RunFailed || !r2.EndedAt.Equal(end) || len(r2.Message) > metadata.MaxRunMessage ||
		len(r2.Message) < metadata.MaxRunMessage-1 || !utf8.ValidString(r2.Message) || !strings.HasPrefix(long, r2.Message) {
		t.Errorf("finished run r2: outcome %s, ended %v, message of %d bytes (valid UTF-8 %v)",
			r2.Outcome, r2.EndedAt, len(r2.Message), utf8.ValidString(r2.Message))
	}
	r3 := got[3]
	if r3.Outcome != metadata.RunOK || r3.EndedAt.IsZero() || !utf8.ValidString(r3.Message) || !strings.HasPrefix(r3.Message, "bad ") {
		t.Errorf("finished run r3: %+v", r3)
	}
	if d := cmp.Diff(all[0], got[5]); d != "" {
		t.Errorf("run r1 as listed (-inserted +listed):\n%s", d)
	}

	t2 := list("t2", 0)
	if len(t2) != 1 || len(t2[0]) != 1 || t2[0][0].Message != "done at once" || !t2[0][0].EndedAt.Equal(minutes(10)) {
		t.Errorf("t2's runs: %v", t2)
	}
	if runs, next, err := s.ListMaintenanceRuns(ctx, "t3", 0, ""); err != nil || len(runs) != 0 || next != "" {
		t.Errorf("ListMaintenanceRuns(unknown tenant) = %v, %q, %v", runs, next, err)
	}
	_, _, err := s.ListMaintenanceRuns(ctx, "t1", -1, "")
	wantErr(t, "negative page size", err, metadata.ErrInvalid)
	_, _, err = s.ListMaintenanceRuns(ctx, "t1", 2, "!!")
	wantErr(t, "malformed page token", err, metadata.ErrInvalid)
}

func testTryLock(t *testing.T, newDB NewDB) {
	driver, dsn := newDB(t)
	ctx := t.Context()
	// Two stores on one catalog are what two replicas look like.
	a, b := open(t, driver, dsn), open(t, driver, dsn)

	tryLock := func(s *metadata.Store, name string, want bool) func() {
		t.Helper()
		release, ok, err := s.TryLock(ctx, name)
		if err != nil || ok != want || release == nil {
			t.Fatalf("TryLock(%s) = ok %v, %v; want ok %v and a release func", name, ok, err, want)
		}
		return release
	}
	releaseA := tryLock(a, "maintenance", true)
	tryLock(b, "maintenance", false)()        // held elsewhere; the no-op release is harmless
	tryLock(a, "maintenance", false)          // held, even by the same store
	releaseOther := tryLock(b, "other", true) // names are independent
	releaseA()
	releaseA() // idempotent
	releaseB := tryLock(b, "maintenance", true)
	tryLock(a, "maintenance", false)
	releaseB()
	releaseOther()
	tryLock(a, "other", true)()
	tryLock(a, "maintenance", true)()

	// Another catalog (database) has locks of its own.
	c := newStore(t, newDB)
	releaseA = tryLock(a, "maintenance", true)
	tryLock(c, "maintenance", true)()
	releaseA()

	// A name too long for GET_LOCK (64 characters) still works, and is still exclusive.
	long := strings.Repeat("n", 100)
	release := tryLock(a, long, true)
	tryLock(b, long, false)
	tryLock(b, long[:99], true)()
	release()

	_, ok, err := a.TryLock(ctx, "")
	if ok || !errors.Is(err, metadata.ErrInvalid) {
		t.Errorf("TryLock(\"\") = %v, %v; want ErrInvalid", ok, err)
	}
}
