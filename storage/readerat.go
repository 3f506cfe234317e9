package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"
)

// ExactBody returns rc cut at n bytes: reading past them fails with ErrBadResponse if rc still
// has bytes (a server that ignored a range sends more, possibly without end), and an rc that
// ends before n bytes fails with ErrBadResponse too. Read errors of rc pass through. name
// (e.g. `s3.GetObject "key"`) starts the errors' text. Close closes rc.
func ExactBody(name string, rc io.ReadCloser, n int64) io.ReadCloser {
	return &exactBody{name: name, rc: rc, left: n, want: n}
}

type exactBody struct {
	name       string
	rc         io.ReadCloser
	left, want int64
	err        error // sticky
}

func (b *exactBody) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if b.left == 0 {
		// Probe for one more byte: a longer body is not the answer to the request.
		var one [1]byte
		n, err := b.rc.Read(one[:])
		for n == 0 && err == nil {
			n, err = b.rc.Read(one[:])
		}
		switch {
		case n > 0:
			b.err = fmt.Errorf("%s: %w: body longer than the %d bytes asked", b.name, ErrBadResponse, b.want)
		case err == io.EOF:
			b.err = io.EOF
		default:
			b.err = err
		}
		return 0, b.err
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	if err == io.EOF && b.left > 0 {
		b.err = fmt.Errorf("%s: %w: body ended after %d of %d bytes", b.name, ErrBadResponse, b.want-b.left, b.want)
		return n, b.err
	}
	if err != nil && err != io.EOF {
		b.err = err
		return n, err
	}
	if err == io.EOF && b.left == 0 {
		b.err = io.EOF
		return n, io.EOF
	}
	return n, nil
}

func (b *exactBody) Close() error { return b.rc.Close() }

// ReaderAt reads one object with a ranged GET per ReadAt call (for example
// a record index, whose lookups read a footer and single blocks). Safe for
// concurrent use if r is.
type ReaderAt struct {
	ctx     context.Context
	timeout time.Duration // per read, when not 0
	r       Reader
	key     string

	// Reads and Bytes, when set, count the GETs issued and the bytes they
	// returned (for tests and benchmarks).
	Reads, Bytes *atomic.Int64
}

// NewReaderAt returns an io.ReaderAt over the object key of r; ctx bounds
// every read.
func NewReaderAt(ctx context.Context, r Reader, key string) *ReaderAt {
	return &ReaderAt{ctx: ctx, r: r, key: key}
}

// NewDetachedReaderAt returns an io.ReaderAt over the object key of r that
// is tied to no request, for readers a cache shares between requests (a
// request's context would end the others' reads); each read has its own
// timeout instead.
func NewDetachedReaderAt(r Reader, key string, timeout time.Duration) *ReaderAt {
	return &ReaderAt{ctx: context.Background(), timeout: timeout, r: r, key: key}
}

// ReadAt implements io.ReaderAt; a read that ends at the object's end
// returns io.EOF with the bytes it got. A body longer than len(p) (a store
// that ignored the range) is an error wrapping ErrBadResponse naming the
// key: ReadAt never reads more than len(p)+1 bytes of it.
func (o *ReaderAt) ReadAt(p []byte, off int64) (int, error) {
	ctx := o.ctx
	if o.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.timeout)
		defer cancel()
	}
	rc, err := o.r.Get(ctx, o.key, off, int64(len(p)))
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	if o.Reads != nil {
		o.Reads.Add(1)
	}
	n, err := io.ReadFull(rc, p)
	if o.Bytes != nil {
		o.Bytes.Add(int64(n))
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return n, io.EOF
	}
	if err != nil || len(p) == 0 {
		return n, err
	}
	// The range is full: the body must end here. One that goes on answers another request
	// (a store or proxy that ignored the range); none of it is used.
	var one [1]byte
	m, perr := rc.Read(one[:])
	for m == 0 && perr == nil {
		m, perr = rc.Read(one[:])
	}
	switch {
	case m > 0:
		return 0, fmt.Errorf("ranged read of %q at %d: %w: body longer than the %d bytes asked", o.key, off, ErrBadResponse, len(p))
	case perr != io.EOF:
		return n, fmt.Errorf("ranged read of %q at %d: %w", o.key, off, perr)
	}
	return n, nil
}

// CountingReader passes the reads of R through, counting the bytes read (N)
// and keeping the latest error of R other than io.EOF (Err), so that a
// caller that decodes or hashes the stream can tell a failure of its source
// (the network, a short body) from bad content. With Ctx set, reads fail once
// it is done. It has no other method, so it also hides any Seek, ReadAt or
// WriteTo of R (an uploader then streams it through its bounded buffers).
type CountingReader struct {
	R   io.Reader
	Ctx context.Context
	N   int64
	Err error
}

func (c *CountingReader) Read(p []byte) (int, error) {
	if c.Ctx != nil {
		if err := c.Ctx.Err(); err != nil {
			return 0, err
		}
	}
	n, err := c.R.Read(p)
	c.N += int64(n)
	if err != nil && err != io.EOF {
		c.Err = err
	}
	return n, err
}
