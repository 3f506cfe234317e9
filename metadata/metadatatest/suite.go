// Package metadatatest is the conformance suite every metadata backend (MySQL, SQLite) must pass.
package metadatatest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"backupstore/metadata"
)

// NewDB returns the driver name ("mysql" or "sqlite") and DSN of a new, empty database that lives
// until t ends. The suite opens it with metadata.Open, sometimes more than once (to check that
// migrations are idempotent and survive concurrent starts).
type NewDB func(t *testing.T) (driver, dsn string)

// Run runs the suite, each test on a database of its own.
func Run(t *testing.T, newDB NewDB) {
	tests := []struct {
		name string
		fn   func(t *testing.T, newDB NewDB)
	}{
		{"Migrations", testMigrations},
		{"RoundTrip", testRoundTrip},
		{"SecretBytes", testSecretBytes},
		{"InvalidArguments", testInvalidArguments},
		{"TenantIsolation", testTenantIsolation},
		{"Conflict", testConflict},
		{"CaseSensitive", testCaseSensitive},
		{"Paging", testPaging},
		{"Default", testDefault},
		{"Delete", testDelete},
		{"Credentials", testCredentials},
		{"Validation", testValidation},
		{"ForEachStorage", testForEachStorage},
		{"InTx", testInTx},
		{"BackupStub", testBackupStub},
		{"Canceled", testCanceled},
		{"Backups", testBackups},
		{"ListBackups", testListBackups},
		{"BackupStatus", testBackupStatus},
		{"Uploads", testUploads},
		{"CommitBackup", testCommitBackup},
		{"PendingUploadsError", testPendingUploadsError},
		{"RecordChunks", testRecordChunks},
		{"Dedup", testDedup},
		{"ExclusivePurge", testExclusivePurge},
		{"ExclusivePages", testExclusivePages},
		{"ResumeUpload", testResumeUpload},
		{"AbandonUpload", testAbandonUpload},
		{"CommitBackupManifest", testCommitBackupManifest},
		{"ForEachFileByParent", testForEachFileByParent},
		{"RecordSetSchema", testRecordSetSchema},
		{"IngestTenantIsolation", testIngestTenantIsolation},
		{"IngestReferences", testIngestReferences},
		{"IngestConcurrent", testIngestConcurrent},
		{"FindBackup", testFindBackup},
		{"ListFiles", testListFiles},
		{"GetFile", testGetFile},
		{"FilesByParent", testFilesByParent},
		{"ObjectDamaged", testObjectDamaged},
		{"RetentionPolicies", testRetentionPolicies},
		{"TenantsAndOrgs", testTenantsAndOrgs},
		{"DeleteBackupRow", testDeleteBackupRow},
		{"ObjectKeys", testObjectKeys},
		{"PendingAndStaleUploads", testPendingAndStaleUploads},
		{"MaintenanceRuns", testMaintenanceRuns},
		{"TryLock", testTryLock},
		{"BackupObjectPages", testBackupObjectPages},
		{"PendingUploadOwns", testPendingUploadOwns},
		{"CountTenant", testCountTenant},
		{"Packs", testPacks},
		{"PackPurgeAndKeys", testPackPurgeAndKeys},
		{"PackRace", testPackRace},
		{"PackConcurrentCommits", testPackConcurrentCommits},
		{"PackRepack", testPackRepack},
		{"PackRepackBatches", testPackRepackBatches},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, newDB) })
	}
}

func open(t *testing.T, driver, dsn string) *metadata.Store {
	t.Helper()
	s, err := metadata.Open(t.Context(), driver, dsn)
	if err != nil {
		t.Fatalf("metadata.Open(%s): %v", driver, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func newStore(t *testing.T, newDB NewDB) *metadata.Store {
	t.Helper()
	driver, dsn := newDB(t)
	return open(t, driver, dsn)
}

// storage returns a storage with every field set, as a caller would create it.
func storage(tenant, id, name string) *metadata.Storage {
	return &metadata.Storage{
		ID:                  id,
		TenantID:            tenant,
		Name:                name,
		Region:              "eu-west-3",
		Bucket:              "acme-backups",
		AccessKeyID:         "AKIAEXAMPLE",
		SecretCiphertext:    []byte{0x01, 0x00, 0xff, 0x7f, 0x80},
		SecretKeyID:         "mk-1",
		Endpoint:            "https://s3.example.test:9000",
		Prefix:              "salesforce/prod",
		KMSKeyID:            "arn:aws:kms:eu-west-3:111122223333:key/abcd",
		PathStyle:           true,
		Status:              "UNVALIDATED",
		StatusMessage:       "not validated yet",
		ValidatedAt:         time.Date(2026, 1, 2, 3, 4, 5, 123456000, time.UTC),
		ConsecutiveFailures: 2,
		AbortDenied:         true,
		Report:              []byte(`{"checks":[]}`),
	}
}

func create(t *testing.T, s *metadata.Store, st *metadata.Storage) *metadata.Storage {
	t.Helper()
	if err := s.CreateStorage(t.Context(), st); err != nil {
		t.Fatalf("CreateStorage(%s/%s %q): %v", st.TenantID, st.ID, st.Name, err)
	}
	return st
}

func get(t *testing.T, s *metadata.Store, tenant, id string) *metadata.Storage {
	t.Helper()
	got, err := s.GetStorage(t.Context(), tenant, id)
	if err != nil {
		t.Fatalf("GetStorage(%s, %s): %v", tenant, id, err)
	}
	return got
}

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Errorf("%s: err = %v, want %v", what, err, want)
	}
}

func testMigrations(t *testing.T, newDB NewDB) {
	driver, dsn := newDB(t)
	ctx := t.Context()

	// Replicas starting at once against one empty database.
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range errs {
		wg.Go(func() {
			s, err := metadata.Open(ctx, driver, dsn)
			if err == nil {
				err = s.Close()
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("concurrent Open %d: %v", i, err)
		}
	}

	raw, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	steps := func() (n, max int64) {
		t.Helper()
		if err := raw.QueryRowContext(ctx, "SELECT COUNT(*), MAX(version) FROM schema_migrations").Scan(&n, &max); err != nil {
			t.Fatalf("schema_migrations: %v", err)
		}
		return n, max
	}
	n, last := steps()
	if n == 0 || n != last {
		t.Fatalf("schema_migrations: %d rows, last version %d; want 1..n each once", n, last)
	}

	// Data survives a restart, and a restart applies nothing twice.
	s := open(t, driver, dsn)
	create(t, s, storage("t1", "s1", "one"))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, driver, dsn)
	get(t, s, "t1", "s1")
	if n2, last2 := steps(); n2 != n || last2 != last {
		t.Errorf("after reopen: %d rows, last %d; want %d, %d", n2, last2, n, last)
	}

	// A crash after a step's DDL but before its version was recorded: the next start re-runs it.
	if _, err := raw.ExecContext(ctx, "DELETE FROM schema_migrations WHERE version = ?", last); err != nil {
		t.Fatal(err)
	}
	s2 := open(t, driver, dsn)
	get(t, s2, "t1", "s1")
	if n2, last2 := steps(); n2 != n || last2 != last {
		t.Errorf("after re-running step %d: %d rows, last %d; want %d, %d", last, n2, last2, n, last)
	}
}

func testRoundTrip(t *testing.T, newDB NewDB) {
	s := newStore(t, newDB)
	want := create(t, s, storage("t1", "s1", "prod"))
	if want.CreatedAt.IsZero() || !want.UpdatedAt.Equal(want.CreatedAt) {
		t.Errorf("CreateStorage set CreatedAt %v, UpdatedAt %v; want both set and equal", want.CreatedAt, want.UpdatedAt)
	}
	if d := cmp.Diff(want, get(t, s, "t1", "s1")); d != "" {
		t.Errorf("GetStorage (-want +got):\n%s", d)
	}
	got, err := s.GetStorageByName(t.Context(), "t1", "prod")
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("GetStorageByName (-want +got):\n%s", d)
	}

	// Optional fields left empty come back empty (nil, zero time).
	min := &metadata.Storage{TenantID: "t1", ID: "s2", Name: "minimal", Region: "us-east-1", Bucket: "b"}
	create(t, s, min)
	if d := cmp.Diff(min, get(t, s, "t1", "s2")); d != "" {
		t.Errorf("minimal storage (-want +got):\n%s", d)
	}
	if err := s.EnsureTenant(t.Context(), "t1"); err != nil {
		t.Errorf("EnsureTenant of an existing tenant: %v", err)
	}
	if err := s.EnsureTenant(t.Context(), "t9"); err != nil {
		t.Errorf("EnsureTenant: %v", err)
	}
}

func testSecretBytes(t *testing.T, newDB NewDB) {
	s := newStore(t, newDB)
	all := make([]byte, 0, 512)
	for i := range 256 {
		all = append(all, byte(i), byte(255-i))
	}
	for i, secret := range [][]byte{{0x00}, {0xff}, {0x00, 0x00, 0xff, 0x00}, all} {
		st := storage("t1", fmt.Sprint("s", i), fmt.Sprint("n", i))
		st.SecretCiphertext = secret
		create(t, s, st)
		if d := cmp.Diff(secret, get(t, s, "t1", st.ID).SecretCiphertext); d != "" {
			t.Errorf("secret %d (-want +got):\n%s", i, d)
		}
		rotated := append([]byte{0xff, 0x00}, secret...)
		if err := s.UpdateStorageCredentials(t.Context(), "t1", st.ID, "AKIA2", rotated, "mk-2"); err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(rotated, get(t, s, "t1", st.ID).SecretCiphertext); d != "" {
			t.Errorf("rotated secret %d (-want +got):\n%s", i, d)
		}
	}
}

func testInvalidArguments(t *testing.T, newDB NewDB) {
	s := newStore(t, newDB)
	ctx := t.Context()
	for _, st := range []*metadata.Storage{
		{TenantID: "", ID: "s1", Name: "n"},
		{TenantID: "t1", ID: "", Name: "n"},
		{TenantID: "t1", ID: "s1", Name: ""},
	} {
		wantErr(t, fmt.Sprintf("CreateStorage(%q, %q, %q)", st.TenantID, st.ID, st.Name), s.CreateStorage(ctx, st), metadata.ErrInvalid)
	}
	wantErr(t, "EnsureTenant(\"\")", s.EnsureTenant(ctx, ""), metadata.ErrInvalid)
	wantErr(t, "CreateBackupStub with empty org", s.CreateBackupStub(ctx, "t1", "b1", "", "s1"), metadata.ErrInvalid)
}

func testTenantIsolation(t *testing.T, newDB NewDB) {
	s := newStore(t, newDB)
	ctx := t.Context()
	a := create(t, s, storage("tA", "s1", "prod"))
	if err := s.SetDefaultStorage(ctx, "tA", "s1"); err != nil {
		t.Fatal(err)
	}
	a.IsDefault = true
	if err := s.EnsureTenant(ctx, "tB"); err != nil {
		t.Fatal(err)
	}

	_, err := s.GetStorage(ctx, "tB", "s1")
	wantErr(t, "GetStorage of another tenant's id", err, metadata.ErrNotFound)
	_, err = s.GetStorageByName(ctx, "tB", "prod")
	wantErr(t, "GetStorageByName of another tenant's name", err, metadata.ErrNotFound)
	wantErr(t, "UpdateStorageCredentials", s.UpdateStorageCredentials(ctx, "tB", "s1", "AKIAX", []byte("x"), "mk"), metadata.ErrNotFound)
	wantErr(t, "UpdateStorageValidation", s.UpdateStorageValidation(ctx, "tB", "s1", metadata.Validation{Status: "AVAILABLE"}), metadata.ErrNotFound)
	wantErr(t, "SetDefaultStorage", s.SetDefaultStorage(ctx, "tB", "s1"), metadata.ErrNotFound)
	_, err = s.DefaultStorage(ctx, "tB")
	wantErr(t, "DefaultStorage", err, metadata.ErrNotFound)
	wantErr(t, "DeleteStorage", s.DeleteStorage(ctx, "tB", "s1"), metadata.ErrNotFound)
	wantErr(t, "CreateBackupStub on another tenant's storage", s.CreateBackupStub(ctx, "tB", "b1", "00D000000000001AAA", "s1"), metadata.ErrNotFound)
	list, next, err := s.ListStorages(ctx, "tB", 0, "")
	if err != nil || len(list) != 0 || next != "" {
		t.Errorf("ListStorages(tB) = %d storages, %q, %v; want none", len(list), next, err)
	}
	if d := cmp.Diff(a, get(t, s, "tA", "s1")); d != "" {
		t.Errorf("tA's storage changed by tB's calls (-want +got):\n%s", d)
	}

	// Ids and names are per tenant: tB may use the same ones, and they are different rows.
	b := create(t, s, storage("tB", "s1", "prod"))
	b.Bucket = "other"
	if err := s.UpdateStorageCredentials(ctx, "tB", "s1", "AKIAB", []byte("b"), "mk"); err != nil {
		t.Fatal(err)
	}
	if got := get(t, s, "tA", "s1"); got.AccessKeyID != a.AccessKeyID {
		t.Errorf("tB's update reached tA: access key %q", got.AccessKeyID)
	}
	if got := get(t, s, "tB", "s1"); got.IsDefault {
		t.Error("tB's storage is default because tA's storage with the same id is")
	}
}

func testConflict(t *testing.T, newDB NewDB) {
	s := newStore(t, newDB)
	create(t, s, storage("t1", "s1", "prod"))
	wantErr(t, "same name, new id", s.CreateStorage(t.Context(), storage("t1", "s2", "prod")), metadata.ErrConflict)
	wantErr(t, "same id, new name", s.CreateStorage(t.Context(), storage("t1", "s1", "dev")), metadata.ErrConflict)
	if _, err := s.GetStorage(t.Context(), "t1", "s2"); !errors.Is(err, metadata.ErrNotFound) {
		t.Errorf("a refused create left a row: %v", err)
	}
}

func testCaseSensitive(t *testing.T, newDB NewDB) {
	s := newStore(t, newDB)
	ctx := t.Context()
	// 15-character Salesforce-style ids that differ only in case, and names likewise.
	create(t, s, storage("00D000000000001", "001000000000001AAA", "Prod"))
	create(t, s, storage("00D000000000001", "001000000000001aaa", "prod"))
	create(t, s, storage("00D000000000001", "001000000000001AaA", "PROD"))
	for id, name := range map[string]string{"001000000000001AAA": "Prod", "001000000000001aaa": "prod", "001000000000001AaA": "PROD"} {
		if got := get(t, s, "00D000000000001", id); got.Name != name {
			t.Errorf("GetStorage(%s).Name = %q, want %q", id, got.Name, name)
		}
		got, err := s.GetStorageByName(ctx, "00D000000000001", name)
		if err != nil || got.ID != id {
			t.Errorf("GetStorageByName(%q) = %v, %v; want id %s", name, got, err, id)
		}
	}
	_, err := s.GetStorage(ctx, "00D000000000001", "001000000000001aAa")
	wantErr(t, "GetStorage of an id differing only in case", err, metadata.ErrNotFound)
	_, err = s.GetStorageByName(ctx, "00D000000000001", "pROD")
	wantErr(t, "GetStorageByName of a name differing only in case", err, metadata.ErrNotFound)
	_, err = s.GetStorage(ctx, "00d000000000001", "001000000000001AAA")
	wantErr(t, "GetStorage with a tenant differing only in case", err, metadata.ErrNotFound)
	wantErr(t, "DeleteStorage of an id differing only in case", s.DeleteStorage(ctx, "00D000000000001", "001000000000001aAa"), metadata.ErrNotFound)
}

func testPaging(t *testing.T, newDB NewDB) {
	s := newStore(t, newDB)
	ctx := t.Context()
	names := []string{"g", "B", "e", "a", "c", "f", "d"}
	for i, n := range names {
		create(t, s, storage("t1", fmt.Sprint("s", i), n))
	}
	create(t, s, storage("t2", "x", "zz-other-tenant"))
	sort.Strings(names) // byte order: "B" before "a"

	list := func() [][]string {
		return pageKeys(allPages(t, "ListStorages(3)", func(tok string) ([]*metadata.Storage, string, error) {
			return s.ListStorages(ctx, "t1", 3, tok)
		}), func(st *metadata.Storage) string { return st.Name })
	}
	want := [][]string{names[0:3], names[3:6], names[6:7]}
	got := list()
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("pages (-want +got):\n%s", d)
	}
	if d := cmp.Diff(got, list()); d != "" {
		t.Errorf("second listing differs (-first +second):\n%s", d)
	}

	all, next, err := s.ListStorages(ctx, "t1", 0, "")
	if err != nil || len(all) != len(names) || next != "" {
		t.Errorf("ListStorages(0) = %d, %q, %v; want all %d (default page size) and no next page", len(all), next, err, len(names))
	}
	all, next, err = s.ListStorages(ctx, "t1", metadata.MaxPageSize+1, "")
	if err != nil || len(all) != len(names) || next != "" {
		t.Errorf("ListStorages(max+1) = %d, %q, %v; want all %d", len(all), next, err, len(names))
	}
	_, _, err = s.ListStorages(ctx, "t1", -1, "")
	wantErr(t, "negative page size", err, metadata.ErrInvalid)
	_, _, err = s.ListStorages(ctx, "t1", 3, "!!not a token")
	wantErr(t, "malformed page token", err, metadata.ErrInvalid)
}

func testDefault(t *testing.T, newDB NewDB) {
	s := newStore(t, newDB)
	ctx := t.Context()
	_, err := s.DefaultStorage(ctx, "t1")
	wantErr(t, "DefaultStorage before any", err, metadata.ErrNotFound)

	create(t, s, storage("t1", "a", "a"))
	create(t, s, storage("t1", "b", "b"))
	c := storage("t1", "c", "c")
	c.IsDefault = true
	create(t, s, c)
	create(t, s, storage("t2", "other", "other"))
	if err := s.SetDefaultStorage(ctx, "t2", "other"); err != nil {
		t.Fatal(err)
	}

	defaults := func() (ids []string) {
		t.Helper()
		list, _, err := s.ListStorages(ctx, "t1", 0, "")
		if err != nil {
			t.Fatal(err)
		}
		for _, st := range list {
			if st.IsDefault {
				ids = append(ids, st.ID)
			}
		}
		return ids
	}
	check := func(want string) {
		t.Helper()
		if d := cmp.Diff([]string{want}, defaults()); d != "" {
			t.Errorf("defaults (-want +got):\n%s", d)
		}
		got, err := s.DefaultStorage(ctx, "t1")
		if err != nil || got.ID != want || !got.IsDefault {
			t.Errorf("DefaultStorage = %+v, %v; want %s", got, err, want)
		}
	}
	check("c") // created as default
	for _, id := range []string{"a", "b", "b", "a"} {
		if err := s.SetDefaultStorage(ctx, "t1", id); err != nil {
			t.Fatalf("SetDefaultStorage(%s): %v", id, err)
		}
		check(id)
	}
	wantErr(t, "SetDefaultStorage of an unknown id", s.SetDefaultStorage(ctx, "t1", "nope"), metadata.ErrNotFound)
	wantErr(t, "SetDefaultStorage of another tenant's id", s.SetDefaultStorage(ctx, "t1", "other"), metadata.ErrNotFound)
	check("a")
	if got, err := s.DefaultStorage(ctx, "t2"); err != nil || got.ID != "other" {
		t.Errorf("t2's default = %v, %v; want other", got, err)
	}

	// Deleting the default storage leaves the tenant without one.
	if err := s.DeleteStorage(ctx, "t1", "a"); err != nil {
		t.Fatal(err)
	}
	_, err = s.DefaultStorage(ctx, "t1")
	wantErr(t, "DefaultStorage after deleting it", err, metadata.ErrNotFound)
	if ids := defaults(); len(ids) != 0 {
		t.Errorf("defaults after delete = %v, want none", ids)
	}
}

func testDelete(t *testing.T, newDB NewDB) {
	s := newStore(t, newDB)
	ctx := t.Context()
	used := create(t, s, storage("t1", "used", "used"))
	create(t, s, storage("t1", "free", "free"))
	if err := s.CreateBackupStub(ctx, "t1", "b1", "00D000000000001AAA", "used"); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "DeleteStorage of a referenced storage", s.DeleteStorage(ctx, "t1", "used"), metadata.ErrReferenced)
	if d := cmp.Diff(used, get(t, s, "t1", "used")); d != "" {
		t.Errorf("referenced storage after refused delete (-want +got):\n%s", d)
	}
	if err := s.DeleteStorage(ctx, "t1", "free"); err != nil {
		t.Fatalf("DeleteStorage(free): %v", err)
	}
	_, err := s.GetStorage(ctx, "t1", "free")
	wantErr(t, "GetStorage after delete", err, metadata.ErrNotFound)
	wantErr(t, "DeleteStorage twice", s.DeleteStorage(ctx, "t1", "free"), metadata.ErrNotFound)
	// The name is free again.
	create(t, s, storage("t1", "free2", "free"))
}

func testCredentials(t *testing.T, newDB NewDB) {
	s := newStore(t, newDB)
	want := create(t, s, storage("t1", "s1", "prod"))
	if err := s.UpdateStorageCredentials(t.Context(), "t1", "s1", "AKIANEW", []byte{9, 0, 9}, "mk-2"); err != nil {
		t.Fatal(err)
	}
	got := get(t, s, "t1", "s1")
	want.AccessKeyID, want.SecretCiphertext, want.SecretKeyID = "AKIANEW", []byte{9, 0, 9}, "mk-2"
	if got.UpdatedAt.Before(want.CreatedAt) {
		t.Errorf("UpdatedAt %v before CreatedAt %v", got.UpdatedAt, want.CreatedAt)
	}
	want.UpdatedAt = got.UpdatedAt
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("after UpdateStorageCredentials (-want +got):\n%s", d)
	}
	// Same values again: still found (the row matched even though nothing changed).
	if err := s.UpdateStorageCredentials(t.Context(), "t1", "s1", "AKIANEW", []byte{9, 0, 9}, "mk-2"); err != nil {
		t.Errorf("repeated UpdateStorageCredentials: %v", err)
	}
	wantErr(t, "UpdateStorageCredentials of an unknown id",
		s.UpdateStorageCredentials(t.Context(), "t1", "nope", "A", nil, "mk"), metadata.ErrNotFound)
}

func testValidation(t *testing.T, newDB NewDB) {
	s := newStore(t, newDB)
	want := create(t, s, storage("t1", "s1", "prod"))
	for _, v := range []metadata.Validation{
		{Status: "AVAILABLE", Message: "all checks passed", ValidatedAt: time.Date(2026, 3, 4, 5, 6, 7, 999999000, time.UTC),
			AbortDenied: true, Report: []byte(`{"GetBucketLocation":"ok"}`)},
		{Status: "UNAVAILABLE", Message: "AccessDenied: PutObject", ValidatedAt: time.Date(2026, 3, 5, 0, 0, 0, 1000, time.UTC),
			ConsecutiveFailures: 3, Report: []byte{0x00, 0xff}},
		{Status: "UNVALIDATED"}, // cleared: never validated, no report
	} {
		if err := s.UpdateStorageValidation(t.Context(), "t1", "s1", v); err != nil {
			t.Fatal(err)
		}
		got := get(t, s, "t1", "s1")
		want.Status, want.StatusMessage, want.ValidatedAt = v.Status, v.Message, v.ValidatedAt
		want.ConsecutiveFailures, want.AbortDenied, want.Report = v.ConsecutiveFailures, v.AbortDenied, v.Report
		want.UpdatedAt = got.UpdatedAt
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("after UpdateStorageValidation(%s) (-want +got):\n%s", v.Status, d)
		}
		if err := s.UpdateStorageValidation(t.Context(), "t1", "s1", v); err != nil {
			t.Errorf("repeated UpdateStorageValidation: %v", err)
		}
	}
	wantErr(t, "UpdateStorageValidation of an unknown id",
		s.UpdateStorageValidation(t.Context(), "t1", "nope", metadata.Validation{}), metadata.ErrNotFound)
}

func testForEachStorage(t *testing.T, newDB NewDB) {
	s := newStore(t, newDB)
	ctx := t.Context()
	if err := s.ForEachStorage(ctx, func(*metadata.Storage) error {
		t.Error("fn called on an empty catalog")
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// More than one internal batch, over several tenants.
	want := map[string]bool{}
	for ti := range 3 {
		for i := range 45 {
			tenant, id := fmt.Sprint("t", ti), fmt.Sprintf("s%03d", i)
			create(t, s, storage(tenant, id, id))
			want[tenant+"/"+id] = true
		}
	}
	got := map[string]bool{}
	err := s.ForEachStorage(ctx, func(st *metadata.Storage) error {
		key := st.TenantID + "/" + st.ID
		if got[key] {
			t.Errorf("ForEachStorage: %s twice", key)
		}
		got[key] = true
		// fn may use the store (no rows are held open meanwhile).
		return s.UpdateStorageValidation(ctx, st.TenantID, st.ID, metadata.Validation{Status: "AVAILABLE"})
	})
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("ForEachStorage visited (-want +got):\n%s", d)
	}
	if st := get(t, s, "t2", "s044"); st.Status != "AVAILABLE" {
		t.Errorf("status after ForEachStorage = %q", st.Status)
	}

	stop := errors.New("stop")
	n := 0
	err = s.ForEachStorage(ctx, func(*metadata.Storage) error {
		n++
		if n == 5 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || n != 5 {
		t.Errorf("ForEachStorage with fn failing at 5: err %v after %d calls; want stop after 5", err, n)
	}
}

func testInTx(t *testing.T, newDB NewDB) {
	s := newStore(t, newDB)
	ctx := t.Context()
	boom := errors.New("boom")
	err := s.InTx(ctx, func(tx *metadata.Tx) error {
		if err := tx.CreateStorage(ctx, storage("t1", "s1", "one")); err != nil {
			return err
		}
		if _, err := tx.GetStorage(ctx, "t1", "s1"); err != nil {
			return err
		}
		return boom
	})
	wantErr(t, "InTx", err, boom)
	_, err = s.GetStorage(ctx, "t1", "s1")
	wantErr(t, "GetStorage after rollback", err, metadata.ErrNotFound)

	err = s.InTx(ctx, func(tx *metadata.Tx) error {
		for _, id := range []string{"s1", "s2"} {
			if err := tx.CreateStorage(ctx, storage("t1", id, id)); err != nil {
				return err
			}
		}
		return tx.SetDefaultStorage(ctx, "t1", "s2")
	})
	if err != nil {
		t.Fatal(err)
	}
	if d, err := s.DefaultStorage(ctx, "t1"); err != nil || d.ID != "s2" {
		t.Errorf("DefaultStorage after committed InTx = %v, %v", d, err)
	}
	err = s.InTx(ctx, func(tx *metadata.Tx) error {
		return tx.CreateStorage(ctx, storage("t1", "s3", "s1"))
	})
	wantErr(t, "conflict inside InTx", err, metadata.ErrConflict)

	func() {
		defer func() {
			if recover() == nil {
				t.Error("InTx swallowed a panic")
			}
		}()
		_ = s.InTx(ctx, func(tx *metadata.Tx) error {
			_ = tx.CreateStorage(ctx, storage("t1", "p", "p"))
			panic("boom")
		})
	}()
	_, err = s.GetStorage(ctx, "t1", "p")
	wantErr(t, "GetStorage after a panic in InTx", err, metadata.ErrNotFound)
}

func testBackupStub(t *testing.T, newDB NewDB) {
	s := newStore(t, newDB)
	ctx := t.Context()
	create(t, s, storage("t1", "s1", "one"))
	if err := s.CreateBackupStub(ctx, "t1", "b1", "00D000000000001AAA", "s1"); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "duplicate backup id", s.CreateBackupStub(ctx, "t1", "b1", "00D000000000001AAA", "s1"), metadata.ErrConflict)
	wantErr(t, "backup on an unknown storage", s.CreateBackupStub(ctx, "t1", "b2", "00D000000000001AAA", "nope"), metadata.ErrNotFound)
	if err := s.CreateBackupStub(ctx, "t1", "B1", "00D000000000001AAA", "s1"); err != nil {
		t.Errorf("backup id differing only in case: %v", err)
	}
}

func testCanceled(t *testing.T, newDB NewDB) {
	s := newStore(t, newDB)
	create(t, s, storage("t1", "s1", "one"))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	calls := map[string]func() error{
		"EnsureTenant":  func() error { return s.EnsureTenant(ctx, "t2") },
		"CreateStorage": func() error { return s.CreateStorage(ctx, storage("t1", "s2", "two")) },
		"GetStorage":    func() error { _, err := s.GetStorage(ctx, "t1", "s1"); return err },
		"ListStorages":  func() error { _, _, err := s.ListStorages(ctx, "t1", 0, ""); return err },
		"UpdateStorageValidation": func() error {
			return s.UpdateStorageValidation(ctx, "t1", "s1", metadata.Validation{Status: "X"})
		},
		"SetDefaultStorage": func() error { return s.SetDefaultStorage(ctx, "t1", "s1") },
		"DeleteStorage":     func() error { return s.DeleteStorage(ctx, "t1", "s1") },
		"ForEachStorage": func() error {
			return s.ForEachStorage(ctx, func(*metadata.Storage) error { return nil })
		},
		"InTx": func() error { return s.InTx(ctx, func(*metadata.Tx) error { return nil }) },
		"CreateBackup": func() error {
			_, _, err := s.CreateBackup(ctx, &metadata.Backup{TenantID: "t1", ID: "b1", OrgID: "o"})
			return err
		},
		"ListBackups":  func() error { _, _, err := s.ListBackups(ctx, "t1", metadata.BackupFilter{}, 0, ""); return err },
		"CommitBackup": func() error { _, err := s.CommitBackup(ctx, "t1", "b1", "", time.Time{}); return err },
	}
	for name, call := range calls {
		wantErr(t, name+" with a canceled context", call(), context.Canceled)
	}
	// Nothing happened.
	if got := get(t, s, "t1", "s1"); got.Status != "UNVALIDATED" || got.IsDefault {
		t.Errorf("storage changed by canceled calls: %+v", got)
	}
}
