package recindex

import (
	"os"
	"runtime"
	"runtime/debug"
	"sync"
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
	got := addRecordsAndRefs(t, w, ids)
	t.Logf("%d records in %d runs: %.1f MB allocated", n, w.Stats().Runs, float64(got)/1e6)
	if limit := uint64(3 * DefaultRunBytes); got > limit {
		t.Errorf("adding %d records allocated %.1f MB, more than 3 × RunBytes (%.1f MB)", n, float64(got)/1e6, float64(limit)/1e6)
	}
}

// TestNextWriterReusesRunBuffers: a writer starts on the run buffers an earlier one finished
// with, so the second chunk of a stream allocates next to nothing for them, where it used to
// grow, copy and drop them once more (a peak-RSS item: that garbage came on top of what the
// previous chunk left). The runs end where they did (the same count: budget capacities, not
// the arrays' sizes, decide; golden_test pins the bytes). The collector is off meanwhile, so
// that the pool keeps what the first writer left, and there is one P: a sync.Pool's private
// slot belongs to the P that put it, so a second writer whose goroutine the scheduler moved to
// another P (as CI met on a loaded machine) would not see that array and allocate anew. Reuse is
// best effort across Ps; this test pins the writers' side of it, deterministically.
func TestNextWriterReusesRunBuffers(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	recArrays, refArrays = sync.Pool{}, sync.Pool{} // what earlier tests (or -count) left
	const n = 400_000
	ids := make([][IDLen]byte, n)
	for i := range ids {
		copy(ids[i][:], sfID("001", 1<<32+uint64(i)*7919))
	}
	write := func() (alloc uint64, runs int) {
		w, err := NewWriter(&memSpool{b: make([]byte, 0, 64<<20)}, Options{RefFields: []string{"ParentId"}, RunBytes: 4 << 20})
		if err != nil {
			t.Fatal(err)
		}
		alloc = addRecordsAndRefs(t, w, ids)
		runs = w.Stats().Runs
		if _, err := w.Finish(); err != nil {
			t.Fatal(err)
		}
		return alloc, runs
	}
	first, runs1 := write()
	second, runs2 := write()
	t.Logf("first writer %.1f MB, second %.1f MB (%d and %d runs)", float64(first)/1e6, float64(second)/1e6, runs1, runs2)
	if runs1 != runs2 {
		t.Errorf("runs: %d then %d; reused buffers must not move where runs end", runs1, runs2)
	}
	if second > first/3 {
		t.Errorf("the second writer allocated %.1f MB, the first %.1f MB: its run buffers were not reused", float64(second)/1e6, float64(first)/1e6)
	}
}

// addRecordsAndRefs adds ids as records (rows from 2, 3,000 a frame) and every tenth a
// reference to an earlier id, and returns the bytes that allocated.
func addRecordsAndRefs(t *testing.T, w *Writer, ids [][IDLen]byte) uint64 {
	t.Helper()
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
	return after.TotalAlloc - before.TotalAlloc
}
