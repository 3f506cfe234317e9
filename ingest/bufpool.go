package ingest

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// bufPool keeps buffers of fixed sizes between their users: the record
// path's (a frame's input and output, a part), which a stream that ends gives
// back and the next takes, and packs' (a pack gives its buffer back once its
// PUT succeeded). Without it a chunk that follows a chunk
// allocates a stream's worth of buffers (~40 MiB by default) while the
// first one's wait for the garbage collector, and the peak RSS grows with
// the number of chunks (measured: 87.9 MiB for one 64 MiB chunk, 104.4 and
// then 125.8 MiB over two 1 GiB chunks).
//
// Only buffers nothing references any more go back: a stream returns its
// own after its compress workers, its assembler and its part uploads have
// ended; a pack after its PUT returned without error. Buffers in use are accounted to their stream's reservation as
// before; idle ones are sync.Pool's, which the garbage collector empties,
// so the pool never holds memory a busy process lacks for long.
type bufPool struct {
	pools map[int]*sync.Pool // by capacity; only the sizes given to newBufPool
}

func newBufPool(sizes ...int) *bufPool {
	p := &bufPool{pools: map[int]*sync.Pool{}}
	for _, n := range sizes {
		if n > 0 {
			p.pools[n] = &sync.Pool{}
		}
	}
	return p
}

// get returns an empty buffer of capacity n: a pooled one, else new.
func (p *bufPool) get(n int) []byte {
	if pl := p.pools[n]; pl != nil {
		if b, ok := pl.Get().(*[]byte); ok {
			return (*b)[:0]
		}
	}
	return make([]byte, 0, n)
}

// put gives b back for reuse; the caller must hold the only reference. A
// capacity the pool does not keep is left to the garbage collector.
func (p *bufPool) put(b []byte) {
	if pl := p.pools[cap(b)]; pl != nil {
		b = b[:0]
		pl.Put(&b)
	}
}

// A record stream starts a garbage collection (collectSoon) every
// collectEvery bytes of input, and when it ends after collectAfter.
const (
	collectEvery = 256 << 20
	collectAfter = 64 << 20
)

var lastCollect atomic.Int64 // unix nanoseconds of the last collectSoon

// Gaps between collections collectSoon keeps: during a stream (its
// collectEvery) and at a stream's end. The end of a stream frees everything
// it held (index runs, buffers): a collection skipped there because one ran
// less than a second before left that garbage to the next stream, whose own
// allocations came on top of it before its first collection (the peak RSS
// of two 1 GiB chunks sent one after the other: 88 MiB, the heap 82 MB at the
// second chunk's first collection, 58 MB live after it).
const (
	collectGapDuring = time.Second
	collectGapAtEnd  = 100 * time.Millisecond
)

// collectSoon starts a garbage collection in the background, unless one
// started less than gap ago. The record path allocates little per byte (pooled frames and
// parts, upload data not copied), so Go's pacer, which lets the heap grow to
// twice what was live at the last collection, runs few collections on a
// long stream (7 over two 1 GiB chunks) and lets its garbage — gRPC receive
// buffers, index and scanner buffers, and at its end everything the stream
// held — pile up to that bound, on top of which the next chunk allocates:
// peak RSS grew with the input rather than with what a stream holds. A
// collection per 256 MiB of input (~2 CPU-seconds of ingest) costs well
// under 1 % of that and keeps the heap near what is live.
func collectSoon(gap time.Duration) {
	now := time.Now().UnixNano()
	last := lastCollect.Load()
	if now-last < int64(gap) || !lastCollect.CompareAndSwap(last, now) {
		return
	}
	go runtime.GC()
}
