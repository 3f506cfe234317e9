package metadata

import (
	"database/sql"
	"errors"
	"path/filepath"
	"testing"

	"backupstore/internal/testenv"
)

// TestUpgradeKeepsFiles migrates a catalog holding a file (and its object and backup) to step 19,
// the last before packs, then opens it with every step: the file survives the files rebuild
// (SQLite) or the column changes (MySQL) with its object, and a packed file can be added beside it.
func TestUpgradeKeepsFiles(t *testing.T) {
	for _, tt := range []struct {
		d   dialect
		dsn func(t *testing.T) (raw, store string)
	}{
		{sqliteDialect{}, func(t *testing.T) (string, string) {
			file := filepath.Join(t.TempDir(), "catalog.db")
			return sqliteDSN(file), file
		}},
		{mysqlDialect{}, func(t *testing.T) (string, string) {
			dsn := testenv.MySQLDSN(t)
			return dsn, dsn
		}},
	} {
		t.Run(tt.d.name(), func(t *testing.T) {
			ctx := t.Context()
			rawDSN, storeDSN := tt.dsn(t)
			raw, err := sql.Open(tt.d.name(), rawDSN)
			if err != nil {
				t.Fatal(err)
			}
			defer raw.Close()
			steps, err := loadSteps(migrationFS, tt.d.name())
			if err != nil {
				t.Fatal(err)
			}
			if steps[19].name != "0020_packs" {
				t.Fatalf("step 20 is %s, not 0020_packs: update this test", steps[19].name)
			}
			conn, err := raw.Conn(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := conn.ExecContext(ctx, tt.d.migrationsTable()); err != nil {
				t.Fatal(err)
			}
			for _, s := range steps[:19] {
				if err := applyStep(ctx, conn, tt.d, s); err != nil {
					t.Fatalf("step %s: %v", s.name, err)
				}
			}
			for _, q := range []string{
				"INSERT INTO tenants (id, created_at) VALUES ('t1', 0)",
				`INSERT INTO backups (tenant_id, id, org_id, storage_id, labels, idempotency_key, status, damaged, started_at,
 committed_at, record_count, record_chunk_count, file_count, bytes_in, bytes_stored, manifest_key)
 VALUES ('t1', 'b1', 'o', NULL, X'7B7D', NULL, 'OPEN', 0, 0, NULL, 0, 0, 0, 0, 0, '')`,
				`INSERT INTO objects (tenant_id, id, org_id, storage_id, backup_id, object_key, kind, size, sha256, etag, damaged, created_at)
 VALUES ('t1', 'obj-1', 'o', NULL, 'b1', 't1/o/files/obj-1', 'file', 4, X'00', '', 0, 0)`,
				`INSERT INTO files (tenant_id, backup_id, id, object_id, upload_id, parent_id, path, name, content_type, size, sha256, created_at)
 VALUES ('t1', 'b1', 'fil-1', 'obj-1', 'u1', '001000000000001AAA', 'a/b', 'b', 'text/plain', 4, X'00', 7)`,
			} {
				if _, err := conn.ExecContext(ctx, q); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			conn.Close()

			s, err := Open(ctx, tt.d.name(), storeDSN)
			if err != nil {
				t.Fatalf("Open after step 19: %v", err)
			}
			defer s.Close()
			f, err := s.GetFile(ctx, "t1", "b1", "fil-1")
			if err != nil || f.ObjectID != "obj-1" || f.BlobID != "" || f.Path != "a/b" || f.Size != 4 || f.UploadID != "u1" {
				t.Fatalf("file after the upgrade = %+v, %v", f, err)
			}
			list, err := s.FilesByParent(ctx, "t1", "b1", []string{"001000000000001AAA"})
			if err != nil || len(list) != 1 {
				t.Fatalf("FilesByParent after the upgrade = %v, %v", list, err)
			}
			p := &Pack{TenantID: "t1", ID: "pck-1", BackupID: "b1", Key: "t1/o/packs/pck-1", Size: 64 + 4 + 56 + 88,
				BodyCount: 1, IndexOffset: 68, KeyID: "mk-0123456789ab"}
			bl := &Blob{ID: "blb-1", Offset: 64, Size: 4}
			pf := &PackedFile{Upload: &Upload{UploadID: "u2", DeclaredSize: 4}, File: &File{ID: "fil-2", BlobID: "blb-1", ParentID: "001000000000001AAA", Path: "c", Size: 4}}
			if err := s.CommitPack(ctx, p, []*Blob{bl}, []*PackedFile{pf}); err != nil {
				t.Fatalf("CommitPack after the upgrade: %v", err)
			}
			pf2 := &PackedFile{Upload: &Upload{UploadID: "u1", DeclaredSize: 4}, File: &File{ID: "fil-3", BlobID: "blb-2", Path: "d", Size: 4}}
			p2 := &Pack{TenantID: "t1", ID: "pck-2", BackupID: "b1", Key: "t1/o/packs/pck-2", KeyID: "mk-0123456789ab"}
			// u1 has no upload row (the old catalog's file was written without one here), but
			// files_upload still refuses a second file with its upload id.
			if err := s.CommitPack(ctx, p2, []*Blob{{ID: "blb-2", Offset: 64, Size: 4}}, []*PackedFile{pf2}); !errors.Is(err, ErrConflict) {
				t.Errorf("a second file with upload id u1: %v, want ErrConflict", err)
			}
		})
	}
}
