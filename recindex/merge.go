package recindex

import (
	"bytes"
	"container/heap"
	"fmt"
	"io"
	"sync/atomic"
)

// blockSource reads whole blocks: the Reader (counting, pooled) and the Writer's spool
// (at Finish) both provide one.
type blockSource struct {
	ra    io.ReaderAt
	reads *atomic.Int64 // counts block reads; may be nil
}

// readBlock reads block i of s into buf (grown as needed) and parses it.
func (src blockSource) readBlock(s *section, i int, buf []byte) (blockIter, []byte, error) {
	off, end := s.offs[i], s.offs[i+1]
	n := int(end - off)
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if src.reads != nil {
		src.reads.Add(1)
	}
	if err := readFullAt(src.ra, buf, off); err != nil {
		return blockIter{}, buf, fmt.Errorf("recindex: read block %d+%d: %w", off, n, err)
	}
	it, err := parseBlock(buf, s.keyLen, s.keyLen == IDLen)
	if err != nil {
		return blockIter{}, buf, fmt.Errorf("block %d+%d: %w", off, n, err)
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

// sectionIter walks all entries of a section in order, one block in memory at a time, and
// checks that keys strictly increase.
type sectionIter struct {
	src  blockSource
	s    *section
	next int // next block to read
	buf  []byte
	it   blockIter
	prev [maxKeyLen]byte
	have bool // it holds a block
	seen bool // an entry was returned
}

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
					return false, corruptf("keys out of order at block %d", si.next-1)
				}
				copy(si.prev[:], k)
				si.seen = true
				return true, nil
			}
			si.have = false
		}
		if si.next >= si.s.blocks() {
			return false, nil
		}
		it, buf, err := si.src.readBlock(si.s, si.next, si.buf)
		si.buf = buf
		if err != nil {
			return false, err
		}
		// The first key of a block must be the one the block index names.
		if _, err := it.next(); err != nil {
			return false, err
		}
		if !bytes.Equal(it.curKey(), si.s.firstKey(si.next)) {
			return false, corruptf("block %d does not start with its indexed key", si.next)
		}
		it.off, it.started = 0, false
		si.it, si.have = it, true
		si.next++
	}
}

// mergeHeap orders section iterators by current key (then by run, for stable output).
type mergeHeap []*mergeItem

type mergeItem struct {
	si  *sectionIter
	run int
}

func (h mergeHeap) Len() int { return len(h) }
func (h mergeHeap) Less(i, j int) bool {
	if c := bytes.Compare(h[i].si.it.curKey(), h[j].si.it.curKey()); c != 0 {
		return c < 0
	}
	return h[i].run < h[j].run
}
func (h mergeHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *mergeHeap) Push(x any)   { *h = append(*h, x.(*mergeItem)) }
func (h *mergeHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// mergeSections calls fn with every entry of the sections in key order (equal keys in the
// order of secs). key is only valid during the call.
func mergeSections(src blockSource, secs []*section, fn func(key []byte, frame uint32, row int64) error) error {
	h := make(mergeHeap, 0, len(secs))
	for i, s := range secs {
		si := &sectionIter{src: src, s: s}
		ok, err := si.advance()
		if err != nil {
			return err
		}
		if ok {
			h = append(h, &mergeItem{si: si, run: i})
		}
	}
	heap.Init(&h)
	for len(h) > 0 {
		top := h[0]
		it := &top.si.it
		if err := fn(it.curKey(), it.frame, it.row); err != nil {
			return err
		}
		ok, err := top.si.advance()
		if err != nil {
			return err
		}
		if ok {
			heap.Fix(&h, 0)
		} else {
			heap.Pop(&h)
		}
	}
	return nil
}
