package csvscan

import (
	"bytes"
	"strconv"
	"sync"
	"testing"

	"backupstore/csvscan/csvgen"
)

var benchInput = sync.OnceValue(func() []byte {
	var b bytes.Buffer
	// About 64 MiB at ~313 bytes a row.
	if err := csvgen.Generate(&b, 215_000, 1); err != nil {
		panic(err)
	}
	return b.Bytes()
})

// BenchmarkScanner scans a generated ~64 MiB Account-like CSV fed in 1 MiB chunks (the gRPC
// message size the service favours), extracting Id, ParentId and OwnerId.
func BenchmarkScanner(b *testing.B) {
	in := benchInput()
	for _, chunk := range []int{1 << 20, 64 << 10} {
		b.Run(sizeName(chunk), func(b *testing.B) {
			b.SetBytes(int64(len(in)))
			b.ReportAllocs()
			var rows int64
			cpu0 := cpuTime()
			for b.Loop() {
				s := New(csvgen.RefColumns(), Limits{})
				rows = 0
				emit := func(r *Row) error { rows++; return nil }
				for p := in; len(p) > 0; {
					n := min(chunk, len(p))
					if err := s.Feed(p[:n], emit); err != nil {
						b.Fatal(err)
					}
					p = p[n:]
				}
				if err := s.Close(emit); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(rows)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
			if cpu := cpuTime() - cpu0; cpu > 0 {
				// Throughput per CPU-second: steadier than MB/s when others share the cores.
				b.ReportMetric(float64(len(in))*float64(b.N)/cpu.Seconds()/1e6, "MB/cpu-s")
			}
		})
	}
}

func sizeName(n int) string {
	if n >= 1<<20 {
		return strconv.Itoa(n>>20) + "MiB"
	}
	return strconv.Itoa(n>>10) + "KiB"
}
