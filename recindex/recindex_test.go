package recindex

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestRoundTrip(t *testing.T) {
	tests := []struct {
		name   string
		n      int
		opt    Options
		sorted bool // add ids in ascending order (runs with disjoint id ranges)
		runs   int  // at least this many runs
	}{
		{name: "one run", n: 5000, opt: Options{}, runs: 1},
		{name: "many runs", n: 20000, opt: Options{RunBytes: 64 << 10}, runs: 10},
		{name: "many runs small blocks", n: 20000, opt: Options{RunBytes: 64 << 10, BlockSize: 512}, runs: 10},
		{name: "sorted input", n: 20000, opt: Options{RunBytes: 64 << 10}, sorted: true, runs: 10},
		{name: "tiny runs", n: 3000, opt: Options{RunBytes: MinRunBytes, BloomBitsPerKey: 4}, runs: 30},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(1, uint64(tt.n)))
			d := makeData(r, tt.n)
			if tt.sorted {
				slices.Sort(d.ids)
				// Rebuild references against the sorted rows.
				d.refs = d.refs[:0]
				for i, id := range d.ids {
					d.refs = append(d.refs, testRef{0, sfID("001", uint64(i/3)), id}, testRef{1, sfID("005", uint64(i%7)), id})
				}
			}
			sp := &memSpool{}
			size, w := d.write(t, sp, tt.opt)
			if size != int64(len(sp.b)) {
				t.Fatalf("Finish size %d, spool holds %d", size, len(sp.b))
			}
			st := w.Stats()
			if st.Runs < tt.runs || st.Records != int64(tt.n) || st.Size != size {
				t.Fatalf("Stats %+v, want ≥%d runs, %d records, size %d", st, tt.runs, tt.n, size)
			}
			rd, err := Open(sp, size)
			if err != nil {
				t.Fatal(err)
			}
			if rd.Records() != int64(tt.n) || rd.Runs() != st.Runs || rd.Refs() != st.Refs {
				t.Fatalf("Records %d Runs %d Refs %d, want %d %d %d", rd.Records(), rd.Runs(), rd.Refs(), tt.n, st.Runs, st.Refs)
			}
			if diff := cmp.Diff(d.frames, rd.Frames()); diff != "" {
				t.Errorf("Frames (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(d.fields, rd.RefFields()); diff != "" {
				t.Errorf("RefFields (-want +got):\n%s", diff)
			}
			for row, id := range d.ids {
				frame, gotRow, ok, err := rd.LookupRow(id)
				if err != nil || !ok || frame != frameOf(row) || gotRow != int64(row) {
					t.Fatalf("LookupRow(%s) = %d, %d, %v, %v; want %d, %d", id, frame, gotRow, ok, err, frameOf(row), row)
				}
				if !rd.MayContain(id) {
					t.Fatalf("MayContain(%s) = false", id)
				}
			}
			present := make(map[string]bool, len(d.ids))
			for _, id := range d.ids {
				present[id] = true
			}
			for i := 0; i < 2000; i++ {
				id := randID(r)
				if i%2 == 1 {
					id = sfID("003", r.Uint64N(1<<40))
				}
				if present[id] {
					continue
				}
				if _, ok, err := rd.Lookup(id); ok || err != nil {
					t.Fatalf("Lookup(absent %s) = %v, %v", id, ok, err)
				}
			}

			want := d.children()
			for fi, field := range d.fields {
				for parent, kids := range want[fi] {
					got, err := rd.Children(field, parent)
					if err != nil {
						t.Fatal(err)
					}
					if diff := cmp.Diff(kids, got); diff != "" {
						t.Fatalf("Children(%s, %s) (-want +got):\n%s", field, parent, diff)
					}
					// ChildrenMax returns them all within its limit, and
					// stops with ErrTooMany beyond it.
					if got, err := rd.ChildrenMax(field, parent, len(kids)); err != nil || len(got) != len(kids) {
						t.Fatalf("ChildrenMax(%s, %s, %d) = %d ids, %v", field, parent, len(kids), len(got), err)
					}
					if len(kids) > 1 {
						if got, err := rd.ChildrenMax(field, parent, len(kids)-1); !errors.Is(err, ErrTooMany) || got != nil {
							t.Fatalf("ChildrenMax(%s, %s, %d) = %d ids, %v; want ErrTooMany", field, parent, len(kids)-1, len(got), err)
						}
					}
				}
				got, err := rd.Children(field, sfID("001", 1<<50))
				if err != nil || len(got) != 0 {
					t.Fatalf("Children(absent) = %v, %v", got, err)
				}
				n := 0
				var prev string
				err = rd.ForEachRef(field, func(p, c string) error {
					if k := p + c; k <= prev {
						return fmt.Errorf("ForEachRef out of order: %s after %s", k, prev)
					} else {
						prev = k
					}
					if !slices.Contains(want[fi][p], c) {
						return fmt.Errorf("ForEachRef: unexpected %s → %s", c, p)
					}
					n++
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
				total := 0
				for _, kids := range want[fi] {
					total += len(kids)
				}
				if n != total {
					t.Fatalf("ForEachRef(%s) gave %d pairs, want %d", field, n, total)
				}
			}

			sorted := slices.Sorted(slices.Values(d.ids))
			frameOfID := make(map[string]uint32, len(d.ids))
			for row, id := range d.ids {
				frameOfID[id] = frameOf(row)
			}
			var got []string
			err = rd.ForEachRecord(func(id string, frame uint32) error {
				if frame != frameOfID[id] {
					return fmt.Errorf("ForEachRecord %s frame %d, want %d", id, frame, frameOfID[id])
				}
				got = append(got, id)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, sorted) {
				t.Fatalf("ForEachRecord gave %d ids, not the %d sorted ids", len(got), len(sorted))
			}
		})
	}
}

func TestEmptyIndex(t *testing.T) {
	sp := &memSpool{}
	w, err := NewWriter(sp, Options{RefFields: []string{"ParentId"}})
	if err != nil {
		t.Fatal(err)
	}
	size, err := w.Finish()
	if err != nil {
		t.Fatal(err)
	}
	rd, err := Open(sp, size)
	if err != nil {
		t.Fatal(err)
	}
	id := sfID("001", 1)
	if _, ok, err := rd.Lookup(id); ok || err != nil {
		t.Fatalf("Lookup = %v, %v", ok, err)
	}
	if rd.MayContain(id) || rd.Records() != 0 || len(rd.Frames()) != 0 {
		t.Fatal("empty index is not empty")
	}
	if kids, err := rd.Children("ParentId", id); err != nil || len(kids) != 0 {
		t.Fatalf("Children = %v, %v", kids, err)
	}
	if err := rd.ForEachRecord(func(string, uint32) error { return errors.New("called") }); err != nil {
		t.Fatal(err)
	}
}

func TestDuplicateWithinRun(t *testing.T) {
	w, err := NewWriter(&memSpool{}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(2, 2))
	ids := uniqueIDs(r, 100)
	for i, id := range ids {
		if err := w.AddRecord(id, 0, int64(i)); err != nil {
			t.Fatal(err)
		}
	}
	err = w.AddRecord(ids[5], 0, 100)
	var de *DuplicateError
	if !errors.As(err, &de) || !errors.Is(err, ErrDuplicateID) {
		t.Fatalf("AddRecord(duplicate) = %v, want *DuplicateError", err)
	}
	if diff := cmp.Diff(DuplicateError{ID: ids[5], FirstRow: 5, Row: 100}, *de); diff != "" {
		t.Errorf("DuplicateError (-want +got):\n%s", diff)
	}
	// The writer stays usable and the duplicate is not stored.
	if err := w.AddRecord(sfID("003", 7), 0, 101); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Finish(); err != nil {
		t.Fatal(err)
	}
	if got := w.Stats().Records; got != 101 {
		t.Fatalf("Records = %d, want 101", got)
	}
}

func TestDuplicateAcrossRuns(t *testing.T) {
	for _, sorted := range []bool{false, true} {
		t.Run(fmt.Sprintf("sorted=%v", sorted), func(t *testing.T) {
			r := rand.New(rand.NewPCG(3, 3))
			ids := uniqueIDs(r, 5000)
			if sorted {
				slices.Sort(ids)
			}
			sp := &memSpool{}
			w, err := NewWriter(sp, Options{RunBytes: MinRunBytes})
			if err != nil {
				t.Fatal(err)
			}
			for i, id := range ids {
				if err := w.AddRecord(id, 0, int64(i)+1); err != nil {
					t.Fatal(err)
				}
			}
			if err := w.AddRecord(ids[10], 0, 9999); err != nil {
				t.Fatalf("AddRecord of an id of an earlier run: %v (expected it to be caught by Finish)", err)
			}
			if w.Stats().Runs < 10 {
				t.Fatalf("only %d runs", w.Stats().Runs)
			}
			_, err = w.Finish()
			var de *DuplicateError
			if !errors.As(err, &de) {
				t.Fatalf("Finish = %v, want *DuplicateError", err)
			}
			if diff := cmp.Diff(DuplicateError{ID: ids[10], FirstRow: 11, Row: 9999}, *de); diff != "" {
				t.Errorf("DuplicateError (-want +got):\n%s", diff)
			}
			if _, err := w.Finish(); !errors.As(err, &de) {
				t.Fatalf("second Finish = %v, want the same error", err)
			}
			if err := w.AddRecord(sfID("003", 1), 0, 1); !errors.As(err, &de) {
				t.Fatalf("AddRecord after failed Finish = %v", err)
			}
		})
	}
}

// TestSortedInputSkipsMerge checks that runs with disjoint id ranges are not read back.
func TestSortedInputSkipsMerge(t *testing.T) {
	r := rand.New(rand.NewPCG(4, 4))
	ids := slices.Sorted(slices.Values(uniqueIDs(r, 20000)))
	sp := &countingSpool{memSpool: &memSpool{}}
	w, err := NewWriter(sp, Options{RunBytes: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	for i, id := range ids {
		if err := w.AddRecord(id, 0, int64(i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := w.Finish(); err != nil {
		t.Fatal(err)
	}
	if w.Stats().Runs < 10 || sp.reads.Load() != 0 {
		t.Fatalf("%d runs, %d spool reads; want ≥10 runs and no reads", w.Stats().Runs, sp.reads.Load())
	}
}

type countingSpool struct {
	*memSpool
	reads atomic.Int64
}

func (c *countingSpool) ReadAt(p []byte, off int64) (int, error) {
	c.reads.Add(1)
	return c.memSpool.ReadAt(p, off)
}

func TestNoFalseDuplicates(t *testing.T) {
	n := 1_000_000
	if testing.Short() {
		n = 100_000
	}
	r := rand.New(rand.NewPCG(5, 5))
	sp := &memSpool{}
	w, err := NewWriter(sp, Options{RunBytes: n / 2}) // ~12k ids a run
	if err != nil {
		t.Fatal(err)
	}
	seen := make(map[[IDLen]byte]struct{}, n)
	var id [IDLen]byte
	for row := 0; row < n; {
		for i := range id {
			id[i] = alnum[r.IntN(len(alnum))]
		}
		if _, dup := seen[id]; dup {
			continue
		}
		seen[id] = struct{}{}
		if err := w.AddRecord(string(id[:]), uint32(row/3500), int64(row)); err != nil {
			t.Fatalf("row %d: %v", row, err)
		}
		row++
	}
	size, err := w.Finish()
	if err != nil {
		t.Fatalf("Finish: %v", err)
	}
	st := w.Stats()
	t.Logf("%d ids, %d runs, %d bytes (%.2f bytes/id)", n, st.Runs, size, float64(size)/float64(n))
	if st.Runs < 50 {
		t.Fatalf("only %d runs", st.Runs)
	}
	// The footer (blooms for 1M ids) is larger than the first tail read: Open reads twice.
	cr := &countingReaderAt{r: sp}
	rd, err := Open(cr, size)
	if err != nil {
		t.Fatal(err)
	}
	if calls := cr.take(); len(calls) != 2 {
		t.Fatalf("Open made %d reads, want 2", len(calls))
	}
	if rd.Records() != int64(n) {
		t.Fatalf("Records = %d", rd.Records())
	}
}

// TestBoundedMemory writes 3M records with a reference each through a temp file and checks
// that the heap stays far below what keeping the entries would take.
func TestBoundedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("writes ~100 MB")
	}
	const n = 3_000_000
	f, err := os.Create(filepath.Join(t.TempDir(), "idx"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()

	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse
	var peak atomic.Uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		var ms runtime.MemStats
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	})

	w, err := NewWriter(f, Options{RunBytes: 1 << 20, RefFields: []string{"AccountId"}})
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(6, 6))
	var id, parent [IDLen]byte
	for row := 0; row < n; row++ {
		for i := range id {
			id[i] = alnum[r.IntN(len(alnum))]
		}
		copy(parent[:], sfID("001", r.Uint64N(n/4)))
		if err := w.AddRecord(string(id[:]), uint32(row/3500), int64(row)); err != nil {
			t.Fatalf("row %d: %v", row, err) // a random collision in 62^18 would be news
		}
		if err := w.AddRef(0, string(parent[:]), string(id[:])); err != nil {
			t.Fatal(err)
		}
	}
	size, err := w.Finish()
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	grown := int64(peak.Load()) - int64(base)
	st := w.Stats()
	t.Logf("%d records + %d refs in %d runs: object %.1f MB, peak heap growth %.1f MiB", st.Records, st.Refs, st.Runs, float64(size)/1e6, float64(grown)/(1<<20))
	if size < 60e6 {
		t.Fatalf("object is only %d bytes", size)
	}
	// Keeping the entries would take n × (32 + 38) bytes = 210 MB.
	if grown > 48<<20 {
		t.Fatalf("heap grew by %d bytes", grown)
	}
	rd, err := Open(f, size)
	if err != nil {
		t.Fatal(err)
	}
	if rd.Records() != n || rd.Refs() != n {
		t.Fatalf("Records %d Refs %d", rd.Records(), rd.Refs())
	}
}

func TestBlockReadsPerLookup(t *testing.T) {
	const n = 80_000
	r := rand.New(rand.NewPCG(7, 7))
	ids := uniqueIDs(r, n)
	sp := &memSpool{}
	// ~10k records per run: 8 runs.
	w, err := NewWriter(sp, Options{RunBytes: 10_000 * recCost})
	if err != nil {
		t.Fatal(err)
	}
	for i, id := range ids {
		if err := w.AddRecord(id, uint32(i/1000), int64(i)); err != nil {
			t.Fatal(err)
		}
	}
	size, err := w.Finish()
	if err != nil {
		t.Fatal(err)
	}
	cr := &countingReaderAt{r: sp}
	rd, err := Open(cr, size)
	if err != nil {
		t.Fatal(err)
	}
	cr.take()
	if rd.Runs() != 8 {
		t.Fatalf("%d runs, want 8", rd.Runs())
	}
	holder := func(off int64) int {
		for i, ru := range rd.f.runs {
			s := &ru.sections[0]
			if off >= s.offs[0] && off < s.offs[len(s.offs)-1] {
				return i
			}
		}
		return -1
	}
	total := 0
	for i, id := range ids {
		if _, ok, err := rd.Lookup(id); !ok || err != nil {
			t.Fatalf("Lookup(%s) = %v, %v", id, ok, err)
		}
		calls := cr.take()
		total += len(calls)
		inHolder := 0
		want := i / 10_000 // ids were added in order: run k holds rows [10k·k, 10k·(k+1))
		for _, c := range calls {
			if c.n > int64(DefaultBlockSize) {
				t.Fatalf("read of %d bytes", c.n)
			}
			if holder(c.off) == want {
				inHolder++
			}
		}
		if inHolder != 1 {
			t.Fatalf("Lookup(%s) read %d blocks in run %d, which holds it", id, inHolder, want)
		}
	}
	if got := rd.BlockReads(); got != int64(total) {
		t.Errorf("BlockReads() = %d, counted %d", got, total)
	}
	present := float64(total) / n
	absentReads := 0
	const absent = 20_000
	for i := 0; i < absent; i++ {
		if _, ok, err := rd.Lookup(randID(r)); ok || err != nil {
			t.Fatalf("Lookup(absent) = %v, %v", ok, err)
		}
		absentReads += len(cr.take())
	}
	mayContain := 0
	for i := 0; i < absent; i++ {
		if rd.MayContain(randID(r)) {
			mayContain++
		}
	}
	t.Logf("8 runs: %.3f block reads per present lookup, %.4f per absent lookup; MayContain fp %.4f",
		present, float64(absentReads)/absent, float64(mayContain)/absent)
	if present > 1.1 {
		t.Errorf("%.3f block reads per present lookup, want ≤ 1.1", present)
	}
	if a := float64(absentReads) / absent; a > 0.15 {
		t.Errorf("%.3f block reads per absent lookup, want ≤ 0.15", a)
	}
}

func TestCorruption(t *testing.T) {
	r := rand.New(rand.NewPCG(8, 8))
	d := makeData(r, 3000)
	sp := &memSpool{}
	size, _ := d.write(t, sp, Options{})
	good := slices.Clone(sp.b)
	smallest := slices.Min(d.ids)

	t.Run("block", func(t *testing.T) {
		b := slices.Clone(good)
		b[20] ^= 0x40 // inside the first block of the record section
		rd, err := Open(bytes.NewReader(b), size)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := rd.Lookup(smallest); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("Lookup = %v, want ErrCorrupt", err)
		}
		if err := rd.ForEachRecord(func(string, uint32) error { return nil }); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("ForEachRecord = %v, want ErrCorrupt", err)
		}
	})
	t.Run("every block byte", func(t *testing.T) {
		// Each flipped byte is caught by whichever read covers it: lookups never answer wrong.
		rd0, _ := Open(bytes.NewReader(good), size)
		dataEnd := rd0.f.runs[0].sections[len(d.fields)].offs
		end := dataEnd[len(dataEnd)-1]
		for off := int64(0); off < end; off += 97 {
			b := slices.Clone(good)
			b[off] ^= 1
			rd, err := Open(bytes.NewReader(b), size)
			if err != nil {
				t.Fatal(err)
			}
			errRecs := rd.ForEachRecord(func(string, uint32) error { return nil })
			errRefs := error(nil)
			for _, f := range d.fields {
				if err := rd.ForEachRef(f, func(string, string) error { return nil }); err != nil {
					errRefs = err
				}
			}
			if !errors.Is(errRecs, ErrCorrupt) && !errors.Is(errRefs, ErrCorrupt) {
				t.Fatalf("flipped byte %d not detected", off)
			}
		}
	})
	t.Run("footer", func(t *testing.T) {
		rd0, _ := Open(bytes.NewReader(good), size)
		s := rd0.f.runs[len(rd0.f.runs)-1].sections[len(d.fields)]
		start := s.offs[len(s.offs)-1]
		for off := start; off < size; off++ {
			b := slices.Clone(good)
			b[off] ^= 0x10
			_, err := Open(bytes.NewReader(b), size)
			if !errors.Is(err, ErrCorrupt) && !(off >= size-trailerLen && off < size-trailerLen+4 && errors.Is(err, ErrUnsupportedVersion)) {
				t.Fatalf("flipped footer byte %d (of %d..%d): Open = %v", off, start, size, err)
			}
		}
	})
	t.Run("truncated", func(t *testing.T) {
		for _, n := range []int64{0, 10, trailerLen, size / 2, size - 1} {
			if _, err := Open(bytes.NewReader(good[:n]), n); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Open of %d bytes = %v", n, err)
			}
		}
	})
}

func TestFramesChecked(t *testing.T) {
	w, _ := NewWriter(&memSpool{}, Options{})
	w.AddFrame(FrameInfo{Rows: 1})
	if err := w.AddRecord(sfID("001", 1), 3, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Finish(); err == nil {
		t.Fatal("Finish accepted a record in frame 3 of 1")
	}
}

func TestErrors(t *testing.T) {
	if _, err := NewWriter(nil, Options{}); err == nil {
		t.Error("NewWriter(nil) succeeded")
	}
	for _, opt := range []Options{
		{RunBytes: 100}, {BlockSize: 10}, {BlockSize: 2 << 20}, {BloomBitsPerKey: -1},
		{RefFields: []string{""}}, {RefFields: []string{"A", "A"}},
	} {
		if _, err := NewWriter(&memSpool{}, opt); err == nil {
			t.Errorf("NewWriter(%+v) succeeded", opt)
		}
	}
	w, _ := NewWriter(&memSpool{}, Options{RefFields: []string{"AccountId"}})
	good := sfID("001", 1)
	for _, id := range []string{"", "001", "0015g000000000AAA", "0015g000000000AAAA!", "0015g000000000AA-A"} {
		if err := w.AddRecord(id, 0, 0); !errors.Is(err, ErrInvalidID) {
			t.Errorf("AddRecord(%q) = %v", id, err)
		}
		if err := w.AddRef(0, id, good); !errors.Is(err, ErrInvalidID) {
			t.Errorf("AddRef(parent %q) = %v", id, err)
		}
	}
	if err := w.AddRef(1, good, good); !errors.Is(err, ErrUnknownField) {
		t.Errorf("AddRef(field 1) = %v", err)
	}
	if err := w.AddRecord(good, 0, -1); err == nil {
		t.Error("AddRecord(row -1) succeeded")
	}
	if err := w.AddRecord(good, 0, 0); err != nil {
		t.Fatal(err)
	}
	sp := w.sp.(*memSpool)
	size, err := w.Finish()
	if err != nil {
		t.Fatal(err)
	}
	if err := w.AddRecord(sfID("001", 2), 0, 1); !errors.Is(err, ErrFinished) {
		t.Errorf("AddRecord after Finish = %v", err)
	}
	if _, err := w.Finish(); !errors.Is(err, ErrFinished) {
		t.Errorf("Finish twice = %v", err)
	}
	rd, err := Open(sp, size)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rd.Children("OwnerId", good); !errors.Is(err, ErrUnknownField) {
		t.Errorf("Children(unknown field) = %v", err)
	}
	if _, _, err := rd.Lookup("short"); !errors.Is(err, ErrInvalidID) {
		t.Errorf("Lookup(short) = %v", err)
	}
	if rd.MayContain("short") {
		t.Error("MayContain(short)")
	}
}

type failingSpool struct {
	memSpool
	after int
}

func (f *failingSpool) Write(p []byte) (int, error) {
	if len(f.b)+len(p) > f.after {
		return 0, errors.New("disk full")
	}
	return f.memSpool.Write(p)
}

func TestSpoolFailure(t *testing.T) {
	w, _ := NewWriter(&failingSpool{after: 10_000}, Options{RunBytes: MinRunBytes})
	r := rand.New(rand.NewPCG(9, 9))
	var err error
	for i := 0; i < 10_000 && err == nil; i++ {
		err = w.AddRecord(randID(r), 0, int64(i))
	}
	if err == nil {
		_, err = w.Finish()
	}
	if err == nil {
		t.Fatal("no error from a failing spool")
	}
	if err2 := w.AddRecord(randID(r), 0, 0); err2 == nil {
		t.Fatal("writer usable after a spool failure")
	}
}

func TestConcurrentReaders(t *testing.T) {
	r := rand.New(rand.NewPCG(10, 10))
	d := makeData(r, 20000)
	sp := &memSpool{}
	size, _ := d.write(t, sp, Options{RunBytes: 128 << 10})
	rd, err := Open(sp, size)
	if err != nil {
		t.Fatal(err)
	}
	want := d.children()
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for g := 0; g < 4; g++ {
		wg.Go(func() {
			for i := g; i < len(d.ids); i += 4 {
				frame, ok, err := rd.Lookup(d.ids[i])
				if err != nil || !ok || frame != frameOf(i) {
					errs <- fmt.Errorf("Lookup(%s) = %d, %v, %v", d.ids[i], frame, ok, err)
					return
				}
				if i%20 == 0 {
					p := d.refs[i].parent
					got, err := rd.Children(d.fields[d.refs[i].field], p)
					if err != nil || !slices.Equal(got, want[d.refs[i].field][p]) {
						errs <- fmt.Errorf("Children(%s) = %d ids, %v", p, len(got), err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// TestRunBalance checks that runs use most of RunBytes whatever the mix of records and
// references (the buffers rebalance after the first run).
func TestRunBalance(t *testing.T) {
	for _, tc := range []struct{ refsPerRow, runBytes, n int }{
		{0, 256 << 10, 60_000}, {1, 256 << 10, 60_000}, {3, 256 << 10, 60_000}, {10, 256 << 10, 60_000},
		{0, MinRunBytes, 2000}, {2, MinRunBytes, 2000}, {10, MinRunBytes, 500},
	} {
		refsPerRow, runBytes, n := tc.refsPerRow, tc.runBytes, tc.n
		t.Run(fmt.Sprint(refsPerRow, "/", runBytes), func(t *testing.T) {
			fields := []string{"A", "B", "C", "D", "E", "F", "G", "H", "I", "J"}
			w, err := NewWriter(&memSpool{}, Options{RunBytes: runBytes, RefFields: fields})
			if err != nil {
				t.Fatal(err)
			}
			r := rand.New(rand.NewPCG(11, uint64(refsPerRow)))
			for row := 0; row < n; row++ {
				id := randID(r)
				if err := w.AddRecord(id, 0, int64(row)); err != nil {
					t.Fatal(err)
				}
				for f := 0; f < refsPerRow; f++ {
					if err := w.AddRef(f, randID(r), id); err != nil {
						t.Fatal(err)
					}
				}
				if w.memUsed() > runBytes {
					t.Fatalf("memUsed %d > RunBytes", w.memUsed())
				}
			}
			perRow := recCost + refsPerRow*refEntrySize
			ideal := float64(n*perRow) / float64(runBytes)
			runs := w.Stats().Runs + 1 // the last one is still in memory
			t.Logf("%d refs/row: %d runs, ideal %.1f", refsPerRow, runs, ideal)
			if float64(runs) > ideal*1.35+2 {
				t.Errorf("%d runs for an ideal of %.1f", runs, ideal)
			}
		})
	}
}
