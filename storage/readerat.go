package storage

import (
	"context"
	"errors"
	"io"
)

// ReaderAt reads one object with a ranged GET per ReadAt call (for example
// a record index, whose lookups read a footer and single blocks). ctx bounds
// every read. Safe for concurrent use if r is.
type ReaderAt struct {
	ctx context.Context
	r   Reader
	key string
}

// NewReaderAt returns an io.ReaderAt over the object key of r.
func NewReaderAt(ctx context.Context, r Reader, key string) *ReaderAt {
	return &ReaderAt{ctx: ctx, r: r, key: key}
}

// ReadAt implements io.ReaderAt; a read that ends at the object's end
// returns io.EOF with the bytes it got.
func (o *ReaderAt) ReadAt(p []byte, off int64) (int, error) {
	rc, err := o.r.Get(o.ctx, o.key, off, int64(len(p)))
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	n, err := io.ReadFull(rc, p)
	if errors.Is(err, io.ErrUnexpectedEOF) {
		err = io.EOF
	}
	return n, err
}
