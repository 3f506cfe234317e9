package recindex

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

type rangeSource struct {
	b     []byte
	reads int
	fail  error
}

func (c *rangeSource) ReadAt(p []byte, off int64) (int, error) {
	c.reads++
	if c.fail != nil {
		return 0, c.fail
	}
	n := copy(p, c.b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// TestBlockCache: a range read twice costs one read; a failed read is not
// kept; the cache holds at most its bytes, evicting the least recently used.
func TestBlockCache(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789abcdef"), 64) // 1 KiB
	src := &rangeSource{b: data}
	c := NewBlockCache(800) // ranges of at most 100 bytes are kept
	ra := c.ReaderAt("obj", src)
	p := make([]byte, 100)
	for range 3 {
		if n, err := ra.ReadAt(p, 16); n != 100 || err != nil || !bytes.Equal(p, data[16:116]) {
			t.Fatalf("ReadAt: %d %v %q", n, err, p)
		}
	}
	if src.reads != 1 {
		t.Fatalf("%d reads of one range, want 1", src.reads)
	}
	// Another object's same range is its own.
	other := &rangeSource{b: bytes.Repeat([]byte("x"), 1024)}
	if _, err := c.ReaderAt("other", other).ReadAt(p, 16); err != nil || p[0] != 'x' || other.reads != 1 {
		t.Fatalf("other object: %v %q reads %d", err, p[:4], other.reads)
	}
	// A range past a failure is read again.
	bad := &rangeSource{fail: errors.New("connection reset")}
	rb := c.ReaderAt("bad", bad)
	for range 2 {
		if _, err := rb.ReadAt(p, 0); err == nil {
			t.Fatal("a failed read answered nil")
		}
	}
	if bad.reads != 2 {
		t.Fatalf("failed range read %d times, want 2 (not cached)", bad.reads)
	}
	// Bounded: 20 distinct ranges of 100 bytes leave at most 800 bytes.
	for i := range 20 {
		if _, err := ra.ReadAt(p, int64(i*40)); err != nil {
			t.Fatal(err)
		}
	}
	if c.size > 800 {
		t.Fatalf("cache holds %d bytes, limit 800", c.size)
	}
	// Too large to keep: read through every time.
	big := make([]byte, 200)
	before := src.reads
	ra.ReadAt(big, 0)
	ra.ReadAt(big, 0)
	if src.reads-before != 2 {
		t.Fatalf("a range over max/8 was cached")
	}
	c.Reset()
	if c.size != 0 || c.ll.Len() != 0 {
		t.Fatal("Reset left entries")
	}
}
