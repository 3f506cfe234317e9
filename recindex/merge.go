package recindex

import (
	"bytes"
	"fmt"
	"io"
	"sync/atomic"
)

// blockSource reads blocks: the Reader's (counted, one block per ReadAt, so that a cache
// keyed by offset and length sees the same reads lookups make) and the Writer's spool at
// Finish (read ahead in larger reads).
type blockSource struct {
	ra        io.ReaderAt
	reads     *atomic.Int64 // counts ReadAt calls; may be nil
	readAhead int           // a sequential scan reads whole blocks up to this many bytes at once
}

// read reads [off, off+n) into buf (grown as needed).
func (src blockSource) read(buf []byte, off int64, n int) ([]byte, error) {
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if src.reads != nil {
		src.reads.Add(1)
	}
	if err := readFullAt(src.ra, buf, off); err != nil {
		return buf, fmt.Errorf("recindex: read %d+%d: %w", off, n, err)
	}
	return buf, nil
}

// readBlock reads block i of s into buf (grown as needed) and parses it.
func (src blockSource) readBlock(s *section, i int, buf []byte) (blockIter, []byte, error) {
	off := s.offs[i]
	buf, err := src.read(buf, off, int(s.offs[i+1]-off))
	if err != nil {
		return blockIter{}, buf, err
	}
	it, err := parseBlock(buf, s.keyLen, s.keyLen == IDLen)
	if err != nil {
		return blockIter{}, buf, fmt.Errorf("block at %d: %w", off, err)
	}
	return it, buf, nil
}

// readFullAt is ReadAt that accepts io.EOF together with a full read, as io.ReaderAt allows.
func readFullAt(ra io.ReaderAt, p []byte, off int64) error {
	n, err := ra.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// sectionIter walks the entries of a section in order, optionally only those in [lo, hi],
// and checks that keys strictly increase and that each block starts with its indexed key.
type sectionIter struct {
	src    blockSource
	s      *section
	lo, hi []byte // bounds, nil for none
	next   int    // next block to parse
	buf    []byte // blocks [bufFirst, bufEnd) as read
	bufOff int64  // file offset of buf[0]
	it     blockIter
	prev   [maxKeyLen]byte
	have   bool // it holds a block
	seen   bool // prev is set
}

func newSectionIter(src blockSource, s *section, lo, hi []byte) *sectionIter {
	si := &sectionIter{src: src, s: s, lo: lo, hi: hi}
	if lo != nil {
		si.next = max(s.blockGE(lo)-1, 0)
	}
	return si
}

// advance moves to the next entry; false at the end.
func (si *sectionIter) advance() (bool, error) {
	for {
		if si.have {
			ok, err := si.it.next()
			if err != nil {
				return false, err
			}
			if ok {
				k := si.it.curKey()
				if si.seen && bytes.Compare(si.prev[:len(k)], k) >= 0 {
					return false, corruptf("keys out of order in block at %d", si.s.offs[si.next-1])
				}
				copy(si.prev[:], k)
				si.seen = true
				if si.hi != nil && bytes.Compare(k, si.hi) > 0 {
					si.have, si.next = false, si.s.blocks()
					return false, nil
				}
				if si.lo != nil && bytes.Compare(k, si.lo) < 0 {
					continue
				}
				return true, nil
			}
			si.have = false
		}
		if si.next >= si.s.blocks() {
			return false, nil
		}
		if err := si.load(); err != nil {
			return false, err
		}
	}
}

// load parses block si.next, reading it (and, with read-ahead, the blocks after it) if it is
// not in the buffer.
func (si *sectionIter) load() error {
	s, b := si.s, si.next
	off, end := s.offs[b], s.offs[b+1]
	if off < si.bufOff || end > si.bufOff+int64(len(si.buf)) {
		last := b + 1
		for last < s.blocks() && s.offs[last+1]-off <= int64(si.src.readAhead) {
			last++
		}
		buf, err := si.src.read(si.buf, off, int(s.offs[last]-off))
		si.buf, si.bufOff = buf, off
		if err != nil {
			si.buf = si.buf[:0]
			return err
		}
	}
	it, err := parseBlock(si.buf[off-si.bufOff:end-si.bufOff], s.keyLen, s.keyLen == IDLen)
	if err != nil {
		return fmt.Errorf("block at %d: %w", off, err)
	}
	if _, err := it.next(); err != nil {
		return err
	}
	if !bytes.Equal(it.curKey(), s.firstKey(b)) {
		return corruptf("block at %d does not start with its indexed key", off)
	}
	it.off, it.started = 0, false
	si.it, si.have = it, true
	si.next++
	return nil
}

func (si *sectionIter) key() []byte { return si.it.curKey() }

// iterHeap is a binary min-heap of section iterators by current key.
type iterHeap []*sectionIter

func (h iterHeap) less(i, j int) bool { return bytes.Compare(h[i].key(), h[j].key()) < 0 }

func (h iterHeap) down(i int) {
	for {
		l := 2*i + 1
		if l >= len(h) {
			return
		}
		m := l
		if r := l + 1; r < len(h) && h.less(r, l) {
			m = r
		}
		if !h.less(m, i) {
			return
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
}

// mergeSections calls fn with every entry of the sections with a key in [lo, hi] (nil: no
// bound) in key order; equal keys of different sections come one after the other. key is
// only valid during the call.
func mergeSections(src blockSource, secs []*section, lo, hi []byte, fn func(key []byte, frame uint32, row int64) error) error {
	h := make(iterHeap, 0, len(secs))
	for _, s := range secs {
		si := newSectionIter(src, s, lo, hi)
		ok, err := si.advance()
		if err != nil {
			return err
		}
		if ok {
			h = append(h, si)
		}
	}
	for i := len(h)/2 - 1; i >= 0; i-- {
		h.down(i)
	}
	for len(h) > 0 {
		top := h[0]
		if err := fn(top.key(), top.it.frame, top.it.row); err != nil {
			return err
		}
		ok, err := top.advance()
		if err != nil {
			return err
		}
		if !ok {
			h[0] = h[len(h)-1]
			h = h[:len(h)-1]
		}
		h.down(0)
	}
	return nil
}
