package recindex

import (
	"os"
	"runtime"
	"testing"
)

// TestRunBufferGrowthIsBounded: a stream's run buffers grow to RunBytes by doubling and then
// stop, instead of creeping towards the last free bytes in halving steps that each copy the
// whole buffer (34.6 MB allocated for a 4 MiB run before, for one chunk of a million records
// with a sparse reference field). Whatever the number of records, growth allocates a small
// multiple of RunBytes.
func TestRunBufferGrowthIsBounded(t *testing.T) {
	const n = 1_000_000
	ids := make([][IDLen]byte, n)
	for i := range ids {
		copy(ids[i][:], sfID("001", 1<<32+uint64(i)*7919))
	}
	f, err := os.CreateTemp(t.TempDir(), "spool")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := NewWriter(f, Options{RefFields: []string{"ParentId"}})
	if err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := range ids {
		if err := w.AddRecordID(ids[i], uint32(i/3000), int64(i)+2); err != nil {
			t.Fatal(err)
		}
		if i%10 == 3 {
			if err := w.AddRefID(0, ids[i/7], ids[i]); err != nil {
				t.Fatal(err)
			}
		}
	}
	runtime.ReadMemStats(&after)
	got := after.TotalAlloc - before.TotalAlloc
	t.Logf("%d records in %d runs: %.1f MB allocated", n, w.Stats().Runs, float64(got)/1e6)
	if limit := uint64(3 * DefaultRunBytes); got > limit {
		t.Errorf("adding %d records allocated %.1f MB, more than 3 × RunBytes (%.1f MB)", n, float64(got)/1e6, float64(limit)/1e6)
	}
}
