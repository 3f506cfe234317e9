//go:build unix

package csvframes

import (
	"bytes"
	"crypto/sha256"
	"io"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"backupstore/csvscan/csvgen"
)

// benchChunk is about 64 MiB of the benchmarks' Account-like CSV (csvgen, as backupbench restore
// stores it) cut into 1 MiB zstd frames as ingest stores them, with its chunk description.
var benchChunk = sync.OnceValues(func() (encoded, Chunk) {
	var b bytes.Buffer
	if err := csvgen.Generate(&b, 215_000, 1); err != nil {
		panic(err)
	}
	e := encode(nil, b.Bytes(), 1<<20)
	return e, e.chunk(0, false)
})

func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchChunks is how many times an op of BenchmarkDecoderCSV reads benchChunk: one Decoder
// for 512 MiB, as a whole read of backupbench restore's record set uses one (a Decoder's costs
// that last, its buffers among them, show as they do in a long read).
const benchChunks = 8

// BenchmarkDecoderCSV measures what a passthrough read costs its client: one Decoder over
// benchChunks chunks of the benchmarks' CSV, fed batches of 4 frames from reused buffers (the
// client library's receive buffers are pooled, internal/wirecodec), with the process's CPU per
// op beside the wall time.
// "serial" is the floor the Decoder's CPU is compared with: the same frames decoded and hashed
// one after the other on one goroutine, nothing else. The Decoder's cpu-ns/op above serial's is
// its own cost (goroutine hand-offs, buffers, the garbage collector).
func BenchmarkDecoderCSV(b *testing.B) {
	e, c := benchChunk()
	b.Run("decoder", func(b *testing.B) {
		b.SetBytes(benchChunks * int64(len(e.csv)))
		b.ReportAllocs()
		// Buffers as the wire gives them: 4 frames each, reused once released.
		type batch struct {
			stored, input []uint32
			data          []byte
		}
		var batches []batch
		var off uint32
		for i := 0; i < len(e.stored); i += 4 {
			j := min(i+4, len(e.stored))
			var n uint32
			for _, s := range e.stored[i:j] {
				n += s
			}
			batches = append(batches, batch{e.stored[i:j], e.input[i:j], e.data[off : off+n]})
			off += n
		}
		pool := sync.Pool{New: func() any { return new([]byte) }}
		cpu := processCPU()
		for b.Loop() {
			d, err := NewDecoder(io.Discard, []byte("\n"), Options{MaxFrameBytes: 16 << 20})
			if err != nil {
				b.Fatal(err)
			}
			for i := range benchChunks {
				c.Sequence, c.SkipHeader = int32(i), i > 0
				if err := d.Chunk(c); err != nil {
					b.Fatal(err)
				}
				for _, bt := range batches {
					p := pool.Get().(*[]byte)
					*p = append((*p)[:0], bt.data...)
					if err := d.Frames(bt.stored, bt.input, *p, func() { pool.Put(p) }); err != nil {
						b.Fatal(err)
					}
				}
			}
			if _, err := d.Finish(); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(processCPU()-cpu)/float64(b.N), "cpu-ns/op")
	})
	b.Run("serial", func(b *testing.B) {
		b.SetBytes(benchChunks * int64(len(e.csv)))
		dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
		if err != nil {
			b.Fatal(err)
		}
		defer dec.Close()
		out := make([]byte, 0, 1<<20)
		buf := make([]byte, 0, 4<<20)
		cpu := processCPU()
		for b.Loop() {
			for range benchChunks {
				h := sha256.New()
				var off uint32
				for i, s := range e.stored {
					// The copy the decoder's feed makes, so that the two compare like for like.
					buf = append(buf[:0], e.data[off:off+s]...)
					out, err = dec.DecodeAll(buf, out[:0])
					if err != nil || len(out) != int(e.input[i]) {
						b.Fatal(err)
					}
					h.Write(out)
					off += s
				}
				if !bytes.Equal(h.Sum(nil), c.SHA256) {
					b.Fatal("SHA-256 differs")
				}
			}
		}
		b.ReportMetric(float64(processCPU()-cpu)/float64(b.N), "cpu-ns/op")
	})
}
