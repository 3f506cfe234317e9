package testenv

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"os"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// DefaultMySQLDSN is the server MySQLDSN uses when BACKUPSTORE_TEST_MYSQL is unset: the local
// MariaDB as root without a password.
const DefaultMySQLDSN = "root@tcp(127.0.0.1:3306)/"

// MySQLDSN creates an empty database bs_test_<random> on the MySQL/MariaDB server named by
// BACKUPSTORE_TEST_MYSQL (a go-sql-driver DSN; default DefaultMySQLDSN), drops it when the test
// ends, and returns a DSN naming it, with parseTime=true. The database takes the server's default
// character set and collation, deliberately: on Debian's MariaDB that is case-insensitive, and
// the schema must not depend on it. An unreachable server is Unavailable.
func MySQLDSN(t testing.TB) string {
	t.Helper()
	base := os.Getenv("BACKUPSTORE_TEST_MYSQL")
	if base == "" {
		base = DefaultMySQLDSN
	}
	cfg, err := mysql.ParseDSN(base)
	if err != nil {
		t.Fatalf("BACKUPSTORE_TEST_MYSQL=%q: %v", base, err)
	}
	cfg.DBName = ""
	cfg.ParseTime = true
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Second
	}
	admin, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		t.Fatalf("testenv.MySQLDSN: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := admin.PingContext(ctx); err != nil {
		admin.Close()
		Unavailable(t, "MySQL at %s (set BACKUPSTORE_TEST_MYSQL): %v", cfg.Addr, err)
		return ""
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	name := "bs_test_" + hex.EncodeToString(b[:])
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		admin.Close()
		t.Fatalf("testenv.MySQLDSN: CREATE DATABASE %s: %v", name, err)
	}
	t.Cleanup(func() {
		defer admin.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := admin.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name); err != nil {
			t.Errorf("testenv.MySQLDSN: DROP DATABASE %s: %v", name, err)
		}
	})
	cfg.DBName = name
	return cfg.FormatDSN()
}
