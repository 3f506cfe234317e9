package ingest

import (
	"bytes"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"backupstore/csvscan"
	"backupstore/csvscan/csvgen"
	"backupstore/recindex"
)

// indexBenchInput is about 64 MiB of the benchmark's Account-like CSV (215,000 rows, ids in
// order, a third of the rows with a ParentId), as backupbench ingest sends it.
var indexBenchInput = sync.OnceValue(func() []byte {
	var b bytes.Buffer
	if err := csvgen.Generate(&b, 215_000, 1); err != nil {
		panic(err)
	}
	return b.Bytes()
})

// BenchmarkIndexRows measures the record-index path of a chunk upload on the caller's
// goroutine: the scanner feeding rows (1 MiB messages, reference ParentId, as backupbench
// ingest declares it) to recWriter.indexRow, and the writer's Finish. "scan" is the same
// without indexRow (what --benchmark-without-index leaves): the index's own cost is the
// difference, and a before/after ratio of "scan+index" is what the index costs the
// receiving goroutine.
func BenchmarkIndexRows(b *testing.B) {
	in := indexBenchInput()
	refs := []string{"ParentId"}
	for _, index := range []bool{false, true} {
		name := "scan"
		if index {
			name = "scan+index"
		}
		b.Run(name, func(b *testing.B) {
			dir := b.TempDir()
			b.SetBytes(int64(len(in)))
			b.ReportAllocs()
			var rows int64
			cpu := processCPU()
			for b.Loop() {
				spool, err := os.Create(filepath.Join(dir, "idx"))
				if err != nil {
					b.Fatal(err)
				}
				idx, err := recindex.NewWriter(spool, recindex.Options{RunBytes: recindex.DefaultRunBytes, RefFields: refs})
				if err != nil {
					b.Fatal(err)
				}
				w := &recWriter{idx: idx}
				rows = 0
				emit := func(r *csvscan.Row) error {
					rows++
					if rows%3500 == 0 {
						w.frameNo++
					}
					if !index {
						return nil
					}
					return w.indexRow(r)
				}
				sc := csvscan.New(refs, csvscan.Limits{})
				for p := in; len(p) > 0; {
					n := min(1<<20, len(p))
					if err := sc.Feed(p[:n], emit); err != nil {
						b.Fatal(err)
					}
					p = p[n:]
				}
				if err := sc.Close(emit); err != nil {
					b.Fatal(err)
				}
				for f := uint32(0); f <= w.frameNo; f++ {
					idx.AddFrame(recindex.FrameInfo{})
				}
				if _, err := idx.Finish(); err != nil {
					b.Fatal(err)
				}
				spool.Close()
			}
			reportCPU(b, cpu)
			b.ReportMetric(float64(rows)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}
