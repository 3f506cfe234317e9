// Package csvframes turns the stored zstd frames of record chunks back into
// the CSV that came in, checking it end to end on the way: each frame's own
// checksum and its decoded length, then each chunk's frame count, stored and
// decoded sizes and SHA-256. A chunk's last bytes are written only once its
// SHA-256 matched. Frames are independent: they are decoded on several
// goroutines, and one goroutine hashes and writes them in order, dropping
// later chunks' header rows (csvscan.RowSkipper) and putting a line ending
// between chunks whose last row lacks one (csvscan.OwedEOL).
//
// Two readers use it: the client library, on a zstd-encoded ReadRecords
// stream (passthrough restore), and the server's plain ReadRecords, which
// decodes its own stored frames the same way before sending CSV.
//
// csvframes imports csvscan, github.com/klauspost/compress/zstd and the
// standard library only: it knows nothing of gRPC, storage or the catalog.
package csvframes

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/klauspost/compress/zstd"

	"backupstore/csvscan"
)

// Chunk describes one chunk before its frames: what they must add up to and
// decode to.
type Chunk struct {
	Sequence   int32
	BytesIn    int64 // what the frames decode to, header row included
	StoredSize int64 // what the frames add up to
	SHA256     []byte
	Frames     int
	SkipHeader bool // drop the chunk's header row (not the record set's first chunk)
}

// Options configure a Decoder.
type Options struct {
	// MaxFrameBytes bounds what one frame may decode to and the window its
	// decoder may hold (at least 1 MiB). A frame that claims more is refused
	// before anything is allocated for it.
	MaxFrameBytes int
	// Workers decode frames at once; 0 means GOMAXPROCS.
	Workers int
	// Decoder, if set, is the zstd decoder DecodeAll runs on (shared by many
	// Decoders: its concurrency bounds theirs together; it must bound memory
	// to MaxFrameBytes). The Decoder does not close it.
	Decoder *zstd.Decoder
	// MaxInFlight bounds the stored plus decoded bytes of the frames taken
	// by Frames and not yet hashed and written; 0 means DefaultMaxInFlight. A
	// frame larger than it is taken alone. Beyond it a Decoder holds one
	// decoded frame (a chunk's last piece is written only once the chunk
	// checked out) and a few buffers per worker.
	MaxInFlight int64
}

// MaxStored is the most a frame that decodes to at most maxFrame bytes may
// take stored: its input plus zstd's few bytes of framing.
func MaxStored(maxFrame int64) int64 { return maxFrame + maxFrame/64 + 1024 }

// DefaultMaxInFlight is Options.MaxInFlight's default: room for a dozen
// frames of 1 MiB of input (ingest's default frame size) with theirs stored.
const DefaultMaxInFlight = 16 << 20

// ErrMalformed wraps a stream that breaks the protocol (counts that do not
// add up, frames before a chunk, a frame over MaxFrameBytes): the sender's
// fault, not the content's.
var ErrMalformed = errors.New("malformed frame stream")

// ChunkError is a chunk whose frames do not decode or do not check out
// against its Chunk: the content is wrong (in the bucket, or on the way).
type ChunkError struct {
	Sequence int32
	Err      error
}

func (e *ChunkError) Error() string { return fmt.Sprintf("chunk %d: %v", e.Sequence, e.Err) }
func (e *ChunkError) Unwrap() error { return e.Err }

// Decoder decodes and checks the frames of a stream of chunks into a
// writer: Chunk, then its frames in one or more Frames calls, for each
// chunk, then Finish; Close in any case. Its methods are not safe for
// concurrent use (its own goroutines aside).
type Decoder struct {
	w        io.Writer
	maxFrame int64
	dec      *zstd.Decoder
	ownDec   bool

	work   chan *job
	order  chan item
	failed chan struct{} // closed when the writer failed (err says why)
	done   chan struct{} // closed when the writer goroutine ended
	err    error
	closed bool
	wg     sync.WaitGroup
	bufs   sync.Pool
	flight *gate

	// Counted by the feeding goroutine.
	stored int64
	chunks int

	// Owned by the writer goroutine.
	eol       []byte
	wrote     bool
	last      byte
	pending   []byte
	cur       *Chunk
	h         hash.Hash
	skip      csvscan.RowSkipper
	frames    int
	curStored int64
	curInput  int64
	held      *job // the chunk's last piece, owed until its hash matched
	heldPiece []byte
	written   int64
}

type job struct {
	raw      []byte
	inputLen int
	cost     int64
	out      *[]byte
	err      error
	done     chan struct{}
	batch    *batchRef
}

// batchRef releases a batch's buffer once every frame of it is decoded.
type batchRef struct {
	left    atomic.Int32
	release func()
}

func (b *batchRef) decoded() {
	if b != nil && b.left.Add(-1) == 0 && b.release != nil {
		b.release()
	}
}

// item is, in stream order, a chunk start, a frame, or (both nil) the end.
type item struct {
	chunk *Chunk
	job   *job
}

// NewDecoder returns a Decoder writing CSV to w; eol is the record set's
// line ending ("\n" or "\r\n"), owed between chunks whose last row lacks one.
func NewDecoder(w io.Writer, eol []byte, o Options) (*Decoder, error) {
	if string(eol) != "\n" && string(eol) != "\r\n" {
		return nil, fmt.Errorf("%w: line ending %q is neither LF nor CRLF", ErrMalformed, eol)
	}
	if o.MaxFrameBytes < 1<<20 {
		return nil, fmt.Errorf("csvframes: MaxFrameBytes %d: want at least 1 MiB", o.MaxFrameBytes)
	}
	workers := o.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = DefaultMaxInFlight
	}
	dec, own := o.Decoder, false
	if dec == nil {
		var err error
		dec, err = zstd.NewReader(nil, zstd.WithDecoderConcurrency(workers),
			zstd.WithDecoderMaxMemory(uint64(o.MaxFrameBytes)), zstd.WithDecoderMaxWindow(uint64(max(o.MaxFrameBytes, zstd.MinWindowSize))))
		if err != nil {
			return nil, err
		}
		own = true
	}
	d := &Decoder{w: w, maxFrame: int64(o.MaxFrameBytes), dec: dec, ownDec: own, eol: bytes.Clone(eol),
		work: make(chan *job, workers), order: make(chan item, 4*workers+4),
		failed: make(chan struct{}), done: make(chan struct{}), h: sha256.New(), flight: newGate(o.MaxInFlight)}
	for range workers {
		d.wg.Add(1)
		go d.decoder()
	}
	go d.writer()
	return d, nil
}

// Written is the CSV bytes written so far (final after Finish or Close).
func (d *Decoder) Written() int64 { return d.written }

// Stored is the frame bytes taken so far.
func (d *Decoder) Stored() int64 { return d.stored }

func (d *Decoder) decoder() {
	defer d.wg.Done()
	for j := range d.work {
		j.out = d.buf(j.inputLen)
		out, err := d.decode(j.raw, (*j.out)[:0], j.inputLen)
		switch {
		case err != nil:
			j.err = fmt.Errorf("a frame does not decode: %w", err)
		case len(out) != j.inputLen:
			j.err = fmt.Errorf("a frame decodes to %d bytes, want %d", len(out), j.inputLen)
		}
		*j.out = out
		j.raw = nil
		j.batch.decoded()
		close(j.done)
	}
}

// decode decodes one frame that should hold n bytes into dst (see DecodeFrame).
func (d *Decoder) decode(raw, dst []byte, n int) ([]byte, error) {
	return DecodeFrame(d.dec, raw, dst, n, d.maxFrame)
}

// DecodeFrame decodes one stored frame that should hold n bytes of input
// (the index says so) into dst (give it a capacity of n), never producing
// more than n+1 — the frame is bucket content: a frame that declares its
// content size must declare n and is decoded at once with dec (DecodeAll,
// bounded by dec's own memory limit); one that does not (zstd leaves it out
// of tiny frames) is decoded as a stream that stops one byte past n, its
// window bounded by maxFrame. Either way a bomb costs at most n+1 bytes. The
// caller checks that the result is n bytes long.
func DecodeFrame(dec *zstd.Decoder, raw, dst []byte, n int, maxFrame int64) ([]byte, error) {
	var h zstd.Header
	if err := h.Decode(raw); err != nil {
		return dst, err
	}
	if h.HasFCS {
		if h.FrameContentSize != uint64(n) {
			return dst, fmt.Errorf("the frame declares %d bytes, the index %d", h.FrameContentSize, n)
		}
		return dec.DecodeAll(raw, dst)
	}
	r, err := zstd.NewReader(bytes.NewReader(raw), zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
		zstd.WithDecoderMaxWindow(uint64(max(maxFrame, zstd.MinWindowSize))), zstd.WithDecoderMaxMemory(uint64(maxFrame)))
	if err != nil {
		return dst, err
	}
	defer r.Close()
	if cap(dst) < n {
		dst = make([]byte, 0, n)
	}
	got, err := io.ReadFull(r, dst[:n])
	dst = dst[:got]
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		return dst, nil // shorter than n: the caller tells
	case err != nil:
		return dst, err
	}
	var one [1]byte
	if m, _ := r.Read(one[:]); m > 0 {
		return dst, fmt.Errorf("the frame decodes to more than the index's %d bytes", n)
	}
	return dst, nil
}

func (d *Decoder) buf(n int) *[]byte {
	if p, ok := d.bufs.Get().(*[]byte); ok && cap(*p) >= n {
		return p
	}
	b := make([]byte, 0, n)
	return &b
}

// free gives a frame's decoded buffer back.
func (d *Decoder) free(j *job) {
	if j.out != nil {
		d.bufs.Put(j.out)
		j.out = nil
	}
}

// enqueue hands an item to the writer, unless it failed.
func (d *Decoder) enqueue(it item) error {
	select {
	case d.order <- it:
		return nil
	case <-d.failed:
		return d.err
	}
}

// failure is the writer's failure, if it failed.
func (d *Decoder) failure() error {
	select {
	case <-d.failed:
		return d.err
	default:
		return nil
	}
}

// Chunk starts a chunk.
func (d *Decoder) Chunk(c Chunk) error {
	switch {
	case c.Frames < 0 || c.BytesIn < 0 || c.StoredSize < 0:
		return fmt.Errorf("%w: chunk %d: negative counts", ErrMalformed, c.Sequence)
	case len(c.SHA256) != sha256.Size:
		return fmt.Errorf("%w: chunk %d: a SHA-256 of %d bytes", ErrMalformed, c.Sequence, len(c.SHA256))
	}
	d.chunks++
	return d.enqueue(item{chunk: &c})
}

// Frames takes whole frames of the current chunk: their stored and decoded
// lengths, and data, their concatenation. data must stay unchanged until
// release is called (once every frame of it is decoded; release may be nil,
// and is not called if Frames fails).
func (d *Decoder) Frames(stored, input []uint32, data []byte, release func()) error {
	if len(stored) != len(input) || len(stored) == 0 {
		return fmt.Errorf("%w: a frame batch of %d stored and %d decoded lengths", ErrMalformed, len(stored), len(input))
	}
	var off int64
	for i := range stored {
		if int64(input[i]) > d.maxFrame || int64(stored[i]) > MaxStored(d.maxFrame) || stored[i] == 0 {
			return fmt.Errorf("%w: a frame of %d bytes stored, %d decoded (at most %d decoded)", ErrMalformed, stored[i], input[i], d.maxFrame)
		}
		off += int64(stored[i])
	}
	if off != int64(len(data)) {
		return fmt.Errorf("%w: a frame batch whose frames add up to %d bytes holds %d", ErrMalformed, off, len(data))
	}
	d.stored += int64(len(data))
	ref := &batchRef{release: release}
	ref.left.Store(int32(len(stored)))
	off = 0
	for i := range stored {
		j := &job{raw: data[off : off+int64(stored[i])], inputLen: int(input[i]), cost: int64(stored[i]) + int64(input[i]),
			done: make(chan struct{}), batch: ref}
		off += int64(stored[i])
		if !d.flight.acquire(j.cost) {
			ref.release = nil // not all frames reach a decoder
			return d.err
		}
		// To the decoders first: every job the writer sees gets decoded (it
		// waits for each), and the decoders never stop before Close.
		d.work <- j
		if err := d.enqueue(item{job: j}); err != nil {
			return err
		}
	}
	return nil
}

// Finish ends the stream and returns the CSV bytes written, once every
// frame is decoded, checked and written and the last chunk checked out.
func (d *Decoder) Finish() (int64, error) {
	if err := d.enqueue(item{}); err != nil {
		d.Close()
		return 0, err
	}
	d.Close()
	if err := d.failure(); err != nil {
		return 0, err
	}
	return d.written, nil
}

// Close stops the goroutines. Idempotent; Finish calls it.
func (d *Decoder) Close() {
	if d.closed {
		return
	}
	d.closed = true
	close(d.order)
	<-d.done
	close(d.work)
	d.wg.Wait()
	if d.ownDec {
		d.dec.Close()
	}
}

// writer takes items in stream order: it waits for each frame's decoding,
// hashes and writes it; the end item checks the last chunk. After a
// failure, or after the end, it only drains what follows until Close.
func (d *Decoder) writer() {
	defer close(d.done)
	defer func() {
		if d.held != nil {
			d.free(d.held)
			d.held = nil
		}
	}()
	ended := false
	for it := range d.order {
		if it.job != nil {
			<-it.job.done
			// Out of the gate once taken here: what stays (the held piece) is
			// bounded by one frame.
			d.flight.release(it.job.cost)
		}
		if ended || d.err != nil {
			if it.job != nil {
				d.free(it.job)
			}
			continue
		}
		var err error
		switch {
		case it.chunk != nil:
			if err = d.endChunk(); err == nil {
				d.beginChunk(it.chunk)
			}
		case it.job != nil:
			err = d.frame(it.job)
		default:
			err = d.endChunk()
			ended = true
		}
		if err != nil {
			d.err = err
			close(d.failed)
			d.flight.fail()
		}
	}
}

func (d *Decoder) beginChunk(c *Chunk) {
	d.cur = c
	d.h.Reset()
	d.skip = csvscan.RowSkipper{}
	d.frames, d.curStored, d.curInput = 0, 0, 0
	d.pending = nil
	if d.wrote {
		d.pending = csvscan.OwedEOL([]byte{d.last}, d.eol)
	}
}

func (d *Decoder) frame(j *job) error {
	c := d.cur
	if c == nil {
		d.free(j)
		return fmt.Errorf("%w: frames before the first chunk", ErrMalformed)
	}
	if j.err != nil {
		d.free(j)
		return &ChunkError{Sequence: c.Sequence, Err: fmt.Errorf("frame %d: %w", d.frames, j.err)}
	}
	d.frames++
	d.curStored += int64(j.cost) - int64(j.inputLen)
	d.curInput += int64(len(*j.out))
	if d.frames > c.Frames || d.curStored > c.StoredSize || d.curInput > c.BytesIn {
		d.free(j)
		return &ChunkError{Sequence: c.Sequence, Err: fmt.Errorf("more frames or bytes than announced (%d frames, %d stored, %d decoded)",
			c.Frames, c.StoredSize, c.BytesIn)}
	}
	plain := *j.out
	d.h.Write(plain)
	piece := plain
	if c.SkipHeader {
		piece = d.skip.Skip(plain)
	}
	if err := d.release(); err != nil {
		d.free(j)
		return err
	}
	d.held, d.heldPiece = j, piece
	return nil
}

// release writes the held piece (the chunk goes on, or its hash matched).
func (d *Decoder) release() error {
	j := d.held
	if j == nil {
		return nil
	}
	p := d.heldPiece
	d.held, d.heldPiece = nil, nil
	defer d.free(j)
	if len(p) == 0 {
		return nil
	}
	if d.pending != nil {
		pend := d.pending
		d.pending = nil
		if _, err := d.w.Write(pend); err != nil {
			return err
		}
		d.written += int64(len(pend))
	}
	if _, err := d.w.Write(p); err != nil {
		return err
	}
	d.written += int64(len(p))
	d.wrote, d.last = true, p[len(p)-1]
	return nil
}

// endChunk checks the current chunk whole, then writes its last piece.
func (d *Decoder) endChunk() error {
	c := d.cur
	if c == nil {
		return nil
	}
	d.cur = nil
	if d.frames != c.Frames || d.curStored != c.StoredSize || d.curInput != c.BytesIn {
		return &ChunkError{Sequence: c.Sequence, Err: fmt.Errorf("%d frames, %d bytes stored, %d decoded arrived; want %d, %d, %d",
			d.frames, d.curStored, d.curInput, c.Frames, c.StoredSize, c.BytesIn)}
	}
	if !bytes.Equal(d.h.Sum(nil), c.SHA256) {
		return &ChunkError{Sequence: c.Sequence, Err: errors.New("decodes to content whose SHA-256 does not match")}
	}
	return d.release()
}

// gate bounds the bytes in flight; one taker larger than the bound goes
// when nothing else is in flight.
type gate struct {
	mu     sync.Mutex
	cond   *sync.Cond
	max    int64
	used   int64
	failed bool
}

func newGate(max int64) *gate {
	g := &gate{max: max}
	g.cond = sync.NewCond(&g.mu)
	return g
}

// acquire waits for room for n bytes; false once the writer failed.
func (g *gate) acquire(n int64) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	for !g.failed && g.used > 0 && g.used+n > g.max {
		g.cond.Wait()
	}
	if g.failed {
		return false
	}
	g.used += n
	return true
}

func (g *gate) release(n int64) {
	g.mu.Lock()
	g.used -= n
	g.mu.Unlock()
	g.cond.Broadcast()
}

func (g *gate) fail() {
	g.mu.Lock()
	g.failed = true
	g.mu.Unlock()
	g.cond.Broadcast()
}
