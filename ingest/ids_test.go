package ingest

import (
	"slices"
	"testing"
)

// The catalog's clustered indexes keep a backup's file and blob rows in id
// order; the ids must therefore follow the order they were made in (a purge
// and an insert then touch neighbouring rows), including within one
// millisecond.
func TestTimeOrderedIDsFollowCreation(t *testing.T) {
	ids := make([]string, 10000)
	for i := range ids {
		ids[i] = timeOrderedID()
	}
	if !slices.IsSorted(ids) {
		for i := 1; i < len(ids); i++ {
			if ids[i] <= ids[i-1] {
				t.Fatalf("id %d (%s) does not sort after id %d (%s)", i, ids[i], i-1, ids[i-1])
			}
		}
	}
	if len(slices.Compact(slices.Clone(ids))) != len(ids) {
		t.Fatal("duplicate ids")
	}
}
