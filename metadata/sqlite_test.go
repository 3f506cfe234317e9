package metadata_test

import (
	"path/filepath"
	"testing"

	"backupstore/metadata/metadatatest"
)

func TestSQLite(t *testing.T) {
	metadatatest.Run(t, func(t *testing.T) (string, string) {
		return "sqlite", filepath.Join(t.TempDir(), "catalog.db")
	})
}
