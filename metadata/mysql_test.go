package metadata_test

import (
	"database/sql"
	"testing"

	"backupstore/internal/testenv"
	"backupstore/metadata"
	"backupstore/metadata/metadatatest"
)

func TestMySQL(t *testing.T) {
	metadatatest.Run(t, func(t *testing.T) (string, string) {
		return "mysql", testenv.MySQLDSN(t)
	})
}

// openMySQL opens the catalog on the test server's database and, beside it, a plain connection
// for what the API does not show; both close when the test ends.
func openMySQL(t *testing.T) (*metadata.Store, *sql.DB) {
	t.Helper()
	dsn := testenv.MySQLDSN(t)
	s, err := metadata.Open(t.Context(), "mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	raw, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	return s, raw
}

// TestMySQLSchema checks what the conformance suite cannot see through the API: the tables are
// InnoDB, and id columns compare bytes even though the database's default collation (Debian's
// MariaDB: utf8mb4_general_ci) is case-insensitive.
func TestMySQLSchema(t *testing.T) {
	ctx := t.Context()
	_, raw := openMySQL(t) // Open migrates the schema

	var collation string
	if err := raw.QueryRowContext(ctx, "SELECT @@collation_database").Scan(&collation); err != nil {
		t.Fatal(err)
	}
	t.Logf("database default collation: %s", collation)

	for _, id := range []string{"001000000000001AAA", "001000000000001aaa"} {
		if _, err := raw.ExecContext(ctx, "INSERT INTO tenants (id, created_at) VALUES (?, 0)", id); err != nil {
			t.Errorf("insert tenant %s: %v", id, err)
		}
	}
	var n int
	if err := raw.QueryRowContext(ctx, "SELECT COUNT(*) FROM tenants WHERE id = ?", "001000000000001AAA").Scan(&n); err != nil || n != 1 {
		t.Errorf("tenants matching 001000000000001AAA = %d, %v; want 1", n, err)
	}

	rows, err := raw.QueryContext(ctx, `SELECT table_name, engine, table_collation FROM information_schema.tables
 WHERE table_schema = DATABASE()`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	tables := 0
	for rows.Next() {
		var name, engine, coll string
		if err := rows.Scan(&name, &engine, &coll); err != nil {
			t.Fatal(err)
		}
		tables++
		if engine != "InnoDB" || coll != "utf8mb4_bin" {
			t.Errorf("table %s: engine %s, collation %s; want InnoDB, utf8mb4_bin", name, engine, coll)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if tables < 5 {
		t.Errorf("%d tables, want at least 5", tables)
	}

	// Every id-like column is binary.
	rows2, err := raw.QueryContext(ctx, `SELECT table_name, column_name, data_type FROM information_schema.columns
 WHERE table_schema = DATABASE() AND table_name <> 'schema_migrations' AND (column_name IN ('id', 'name') OR column_name LIKE '%\_id')
   AND column_name NOT IN ('access_key_id', 'secret_key_id', 'kms_key_id')`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows2.Close()
	for rows2.Next() {
		var table, col, typ string
		if err := rows2.Scan(&table, &col, &typ); err != nil {
			t.Fatal(err)
		}
		if typ != "varbinary" {
			t.Errorf("%s.%s is %s, want varbinary", table, col, typ)
		}
	}
	if err := rows2.Err(); err != nil {
		t.Fatal(err)
	}
}

func TestMySQLDSNMustNameDatabase(t *testing.T) {
	_, err := metadata.Open(t.Context(), "mysql", "root@tcp(127.0.0.1:3306)/")
	if err == nil {
		t.Fatal("Open without a database name succeeded")
	}
}
