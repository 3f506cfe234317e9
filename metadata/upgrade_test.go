package metadata

import (
	"database/sql"
	"path/filepath"
	"testing"

	"backupstore/internal/testenv"
)

// TestUpgradeFromBackupsStub opens, with the current steps, a catalog migrated only to step 5
// (the stub backups table) that holds a stub backup row: the stub goes and the full table
// replaces it.
func TestUpgradeFromBackupsStub(t *testing.T) {
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
			conn, err := raw.Conn(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := conn.ExecContext(ctx, tt.d.migrationsTable()); err != nil {
				t.Fatal(err)
			}
			for _, s := range steps[:5] {
				if err := applyStep(ctx, conn, tt.d, s); err != nil {
					t.Fatalf("step %s: %v", s.name, err)
				}
			}
			for _, q := range []string{
				"INSERT INTO tenants (id, created_at) VALUES ('t1', 0)",
				`INSERT INTO storages (tenant_id, id, name, region, bucket, access_key_id, secret_ciphertext,
 secret_key_id, endpoint, key_prefix, kms_key_id, path_style, status, status_message,
 consecutive_failures, abort_denied, created_at, updated_at)
 VALUES ('t1', 's1', 'one', 'r', 'b', 'a', X'00', 'k', '', '', '', 0, 'X', '', 0, 0, 0, 0)`,
				"INSERT INTO backups (tenant_id, id, org_id, storage_id, status, created_at) VALUES ('t1', 'b1', 'o', 's1', 'OPEN', 0)",
			} {
				if _, err := conn.ExecContext(ctx, q); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			conn.Close()

			s, err := Open(ctx, tt.d.name(), storeDSN)
			if err != nil {
				t.Fatalf("Open after step 5: %v", err)
			}
			defer s.Close()
			if _, err := s.GetBackup(ctx, "t1", "b1"); err == nil {
				t.Error("the stub backup survived the upgrade")
			}
			if err := s.CreateBackupStub(ctx, "t1", "b1", "o", "s1"); err != nil {
				t.Errorf("CreateBackupStub after the upgrade: %v", err)
			}
		})
	}
}
