package testenv

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// SetModTime sets the modification time of bucket/key in the gateway's posix backend, which
// versitygw reports as the object's LastModified: tests that judge an object's age (garbage
// collection's grace period) set it instead of sleeping.
func (g *GW) SetModTime(t testing.TB, bucket, key string, mtime time.Time) {
	t.Helper()
	name := filepath.Join(g.dir, "data", bucket, filepath.FromSlash(key))
	if err := os.Chtimes(name, mtime, mtime); err != nil {
		t.Fatalf("testenv.SetModTime(%s/%s): %v", bucket, key, err)
	}
}
