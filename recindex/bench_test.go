package recindex

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

const (
	benchRows     = 3_500_000 // a 1 GiB chunk
	benchRowBytes = 305       // CSV bytes a row (PERF-NOTES)
)

// benchIDs returns a chunk's worth of ids: realistic (sequential with gaps, as Salesforce
// allocates them; order shuffled within windows of 50k rows, as a query without ORDER BY
// returns them) or uniformly random (worst case for prefix compression and run overlap).
func benchIDs(realistic bool) []string {
	r := rand.New(rand.NewPCG(42, 42))
	ids := make([]string, benchRows)
	next := r.Uint64N(1 << 40)
	for i := range ids {
		if realistic {
			next += 1 + r.Uint64N(3)
			ids[i] = sfID("003", next)
		} else {
			ids[i] = randID(r)
		}
	}
	if realistic {
		for w := 0; w < len(ids); w += 50_000 {
			win := ids[w:min(w+50_000, len(ids))]
			r.Shuffle(len(win), func(i, j int) { win[i], win[j] = win[j], win[i] })
		}
	}
	return ids
}

func BenchmarkWriter(b *testing.B) {
	for _, bc := range []struct {
		name      string
		realistic bool
		refs      bool
	}{
		{"realistic", true, false},
		{"realistic+1ref", true, true},
		{"random", false, false},
	} {
		b.Run(bc.name, func(b *testing.B) {
			ids := benchIDs(bc.realistic)
			var parents []string
			opt := Options{}
			if bc.refs {
				opt.RefFields = []string{"AccountId"}
				r := rand.New(rand.NewPCG(1, 1))
				parents = make([]string, len(ids)/4)
				for i := range parents {
					parents[i] = sfID("001", r.Uint64N(1<<40))
				}
			}
			dir := b.TempDir()
			b.SetBytes(benchRows * benchRowBytes)
			b.ReportAllocs()
			var size int64
			var runs int
			cpu := processCPU()
			for i := 0; b.Loop(); i++ {
				f, err := os.Create(filepath.Join(dir, "idx"))
				if err != nil {
					b.Fatal(err)
				}
				w, err := NewWriter(f, opt)
				if err != nil {
					b.Fatal(err)
				}
				for row, id := range ids {
					if err := w.AddRecord(id, uint32(row/3500), int64(row)); err != nil {
						b.Fatal(err)
					}
					if bc.refs {
						if err := w.AddRef(0, parents[row%len(parents)], id); err != nil {
							b.Fatal(err)
						}
					}
				}
				if size, err = w.Finish(); err != nil {
					b.Fatal(err)
				}
				runs = w.Stats().Runs
				f.Close()
			}
			reportCPU(b, cpu)
			b.ReportMetric(float64(benchRows*b.N)/b.Elapsed().Seconds(), "ids/s")
			b.ReportMetric(float64(size)/benchRows, "idxB/rec")
			b.ReportMetric(float64(runs), "runs")
		})
	}
}

func BenchmarkLookup(b *testing.B) {
	for _, realistic := range []bool{true, false} {
		name := "random"
		if realistic {
			name = "realistic"
		}
		b.Run(name, func(b *testing.B) {
			ids := benchIDs(realistic)
			f, err := os.Create(filepath.Join(b.TempDir(), "idx"))
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			w, _ := NewWriter(f, Options{})
			for row, id := range ids {
				if err := w.AddRecord(id, uint32(row/3500), int64(row)); err != nil {
					b.Fatal(err)
				}
			}
			size, err := w.Finish()
			if err != nil {
				b.Fatal(err)
			}
			rd, err := Open(f, size)
			if err != nil {
				b.Fatal(err)
			}
			r := rand.New(rand.NewPCG(2, 2))
			probe := make([]string, 100_000) // from all runs: a lookup stops at the run holding it
			for i := range probe {
				probe[i] = ids[r.IntN(len(ids))]
			}
			b.ReportAllocs()
			start := rd.BlockReads()
			for i := 0; b.Loop(); i++ {
				if _, ok, err := rd.Lookup(probe[i%len(probe)]); !ok || err != nil {
					b.Fatal(ok, err)
				}
			}
			b.ReportMetric(float64(rd.BlockReads()-start)/float64(b.N), "blocks/op")
			b.ReportMetric(float64(rd.Runs()), "runs")
		})
	}
}
