package ingest

import (
	"context"
	"encoding"
	"hash"
	"io"

	"backupstore/storage"
)

// partWriter cuts the stored bytes of one upload into the parts of its
// multipart upload, for files and record chunks alike. It owns two part
// buffers, one filling while the other uploads (mpu keeps one part in
// flight); each part's CRC32C is computed as it fills (partBuf), and with sum
// set the input's hash too, whose state is recorded with every part so a
// resumed stream continues it. A part is cut once it holds the part size
// (DESIGN.md "Write protocol" 3), submitted, and recorded in the catalog by
// mpu, which fences it by the upload's generation. A stream that ends within
// its first part has submitted nothing: Single says so, and its bytes go to
// one PUT instead.
type partWriter struct {
	m    *mpu
	size func(n int32) int64 // the size part n is cut at
	sum  hash.Hash           // the input's hash, stored with each part; nil: none
	// grow, when set, accounts a part buffer's growth by delta bytes before
	// it happens (the caller's memory reservation); buffers are then in
	// memory, allocated when first filled with at least base bytes.
	grow func(delta int64) error
	base int
	// alloc, when set, gives a buffer of exactly base bytes (a pool's).
	alloc func(n int) []byte

	bufs       [2]*partBuf
	cur        int
	n          int32 // the number of the part being filled
	cuts       int   // parts this writer submitted
	inputStart int64 // input offset where the part being filled starts
	inputEnd   int64 // input offset its bytes cover up to
	stored     int64 // stored bytes written, recorded parts included
}

// newPartWriter returns a writer continuing m's upload after its recorded
// parts (next is the number of the next part), with buffers bufs.
func newPartWriter(m *mpu, bufs [2]*partBuf, next int32, size func(int32) int64) *partWriter {
	u := m.u
	return &partWriter{m: m, size: size, bufs: bufs, n: next,
		inputStart: u.CommittedSize, inputEnd: u.CommittedSize, stored: u.StoredSize}
}

// Write appends input stored as it is (a file body): hashed, and cut exactly
// at the part size, so the hash state recorded with a part is the state at
// its end.
func (w *partWriter) Write(ctx context.Context, p []byte) error {
	for len(p) > 0 {
		k := min(int64(len(p)), w.size(w.n)-w.bufs[w.cur].Len())
		if w.sum != nil {
			w.sum.Write(p[:k])
		}
		if err := w.put(p[:k]); err != nil {
			return err
		}
		w.inputEnd += k
		p = p[k:]
		if w.bufs[w.cur].Len() >= w.size(w.n) {
			if err := w.cut(ctx); err != nil {
				return err
			}
		}
	}
	return nil
}

// WriteUnit appends b, which must not be split (a compressed frame), whole
// to one part: it covers input up to inputEnd. A part is cut after the unit
// that makes it reach the part size, and before a unit that would overflow
// the buffer once the part holds S3's minimum part size.
func (w *partWriter) WriteUnit(ctx context.Context, b []byte, inputEnd int64) error {
	buf := w.bufs[w.cur]
	if n := buf.Len(); n > 0 && int(n)+len(b) > cap(buf.mem) && n >= storage.MinPartSize {
		if err := w.cut(ctx); err != nil {
			return err
		}
	}
	if err := w.put(b); err != nil {
		return err
	}
	w.inputEnd = inputEnd
	if w.bufs[w.cur].Len() >= w.size(w.n) {
		return w.cut(ctx)
	}
	return nil
}

// put appends b to the part being filled, growing an in-memory buffer (to
// base when first filled, then to exactly what b needs: below S3's minimum
// part size an oversized unit must still go in) after grow accounted it.
func (w *partWriter) put(b []byte) error {
	buf := w.bufs[w.cur]
	if need := len(buf.mem) + len(b); w.grow != nil && need > cap(buf.mem) {
		size := need
		if cap(buf.mem) == 0 {
			size = max(need, w.base)
		}
		if err := w.grow(int64(size - cap(buf.mem))); err != nil {
			return err
		}
		var grown []byte
		if cap(buf.mem) == 0 && size == w.base && w.alloc != nil {
			grown = w.alloc(size)
		} else {
			grown = make([]byte, len(buf.mem), size)
			copy(grown, buf.mem)
		}
		buf.mem = grown
	}
	buf.Write(b)
	w.stored += int64(len(b))
	return nil
}

// cut submits the part being filled and starts the next in the other buffer
// (mpu.submit waits for the part before it, so that buffer is free).
func (w *partWriter) cut(ctx context.Context) error {
	var state []byte
	if w.sum != nil {
		state, _ = w.sum.(encoding.BinaryMarshaler).MarshalBinary()
	}
	if err := w.m.submit(ctx, w.n, w.bufs[w.cur], w.inputStart, w.inputEnd, w.stored, state); err != nil {
		return err
	}
	w.n++
	w.cuts++
	w.inputStart = w.inputEnd
	w.cur = 1 - w.cur
	return w.bufs[w.cur].reset()
}

// Single reports whether this writer has submitted no part: for an upload
// that started from 0 (a record chunk), the whole object is then the part
// being filled (Body).
func (w *partWriter) Single() bool { return w.cuts == 0 }

// Body is the part being filled, for a single PUT.
func (w *partWriter) Body() io.Reader { return w.bufs[w.cur].reader() }

// Close submits the last part, if it holds anything, waits for every part
// and completes the multipart upload.
func (w *partWriter) Close(ctx context.Context) (storage.ObjectInfo, error) {
	if w.bufs[w.cur].Len() > 0 {
		if err := w.cut(ctx); err != nil {
			return storage.ObjectInfo{}, err
		}
	}
	return w.m.complete(ctx)
}

// wait waits for the part in flight, if any, and returns its error.
func (w *partWriter) wait() error { return w.m.wait() }
