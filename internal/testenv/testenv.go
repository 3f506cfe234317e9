// Package testenv starts and connects the real servers that integration tests need
// (MariaDB, versitygw) on loopback. A test that cannot reach its server is skipped with a
// reason when run by hand, and fails when CI=true: in CI a skipped integration test is a
// failure.
//
// testenv is imported by tests, and by cmd/backupbench for the same child-process helpers
// (proc.go takes no testing.TB); it must not import any backupstore package.
package testenv

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// Unavailable reports that an integration dependency is missing: Skip locally, Fatal in CI.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("integration dependency unavailable (CI=true forbids skipping): "+format, args...)
	}
	t.Skipf("integration dependency unavailable: "+format, args...)
}

// RepoRoot returns the repository's root directory (where go.mod lives).
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}
