package csvscan

import (
	"bytes"
	"encoding/csv"
	"io"
	"sync"
	"testing"

	"backupstore/csvscan/csvgen"
)

// benchInput is about 64 MiB of Account-like CSV (some 215,000 rows of ~313 bytes).
var benchInput = sync.OnceValue(func() []byte {
	var b bytes.Buffer
	if err := csvgen.Generate(&b, 215_000, 1); err != nil {
		panic(err)
	}
	return b.Bytes()
})

// BenchmarkScanner scans benchInput fed in chunks of 1 MiB (the gRPC message size the service
// favours) or 64 KiB, extracting Id, ParentId and OwnerId and validating everything. The
// "idstring" case also turns each Id into a string, as a caller wanting strings would; the
// "encoding-csv" case reads the same input with encoding/csv, for a ratio measured in the same run
// (absolute figures on a shared machine drift; see PERF-NOTES.md).
func BenchmarkScanner(b *testing.B) {
	in := benchInput()
	run := func(b *testing.B, chunk int, emit func(*Row) error) {
		b.SetBytes(int64(len(in)))
		b.ReportAllocs()
		var rows int64
		count := func(r *Row) error { rows++; return emit(r) }
		for b.Loop() {
			rows = 0
			s := New(csvgen.RefColumns(), Limits{})
			for p := in; len(p) > 0; {
				n := min(chunk, len(p))
				if err := s.Feed(p[:n], count); err != nil {
					b.Fatal(err)
				}
				p = p[n:]
			}
			if err := s.Close(count); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(rows)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
	}
	nop := func(*Row) error { return nil }
	b.Run("chunk=1MiB", func(b *testing.B) { run(b, 1<<20, nop) })
	b.Run("chunk=64KiB", func(b *testing.B) { run(b, 64<<10, nop) })
	var sink string
	b.Run("chunk=1MiB/idstring", func(b *testing.B) {
		run(b, 1<<20, func(r *Row) error { sink = r.ID.String(); return nil })
	})
	_ = sink
	b.Run("encoding-csv", func(b *testing.B) {
		b.SetBytes(int64(len(in)))
		b.ReportAllocs()
		for b.Loop() {
			r := csv.NewReader(bytes.NewReader(in))
			r.ReuseRecord = true
			for {
				if _, err := r.Read(); err == io.EOF {
					break
				} else if err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}
