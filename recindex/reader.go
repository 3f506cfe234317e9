package recindex

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
)

// Reader answers lookups on an index object. It keeps the footer (block indexes and bloom
// filters: ≈1.3 bytes per record and per distinct parent) in memory and reads blocks with one
// ReadAt each, of exactly the block's offset and length, so a cache keyed by (offset, length)
// in front of the ReaderAt serves repeated reads. A Reader is safe for concurrent use if its
// ReaderAt is (io.ReaderAt's contract says it is).
type Reader struct {
	ra     io.ReaderAt
	f      *footer
	reads  atomic.Int64
	bufs   sync.Pool // *[]byte of blockSize
	fields map[string]int
}

// Open reads the trailer and footer of the index object of size bytes in r: one ReadAt of the
// last 64 KiB, and one more if the footer is larger. A bad magic, checksum or structure is
// ErrCorrupt; a format version this code does not know is ErrUnsupportedVersion.
func Open(r io.ReaderAt, size int64) (*Reader, error) {
	if size < trailerLen {
		return nil, corruptf("%d bytes is too short for an index", size)
	}
	n := min(size, tailRead)
	tail := make([]byte, n)
	if err := readFullAt(r, tail, size-n); err != nil {
		return nil, fmt.Errorf("recindex: read tail: %w", err)
	}
	tr := tail[n-trailerLen:]
	if string(tr[16:]) != magic {
		return nil, corruptf("bad magic")
	}
	if v := binary.LittleEndian.Uint32(tr[0:]); v != formatVersion {
		return nil, fmt.Errorf("%w %d", ErrUnsupportedVersion, v)
	}
	flen := binary.LittleEndian.Uint64(tr[4:])
	if flen > uint64(size-trailerLen) {
		return nil, corruptf("footer length %d in a %d-byte object", flen, size)
	}
	start := size - trailerLen - int64(flen)
	var buf []byte
	if have := n - trailerLen; int64(flen) <= have {
		buf = tail[have-int64(flen) : have]
	} else {
		buf = make([]byte, flen)
		copy(buf[int64(flen)-have:], tail[:have])
		if err := readFullAt(r, buf[:int64(flen)-have], start); err != nil {
			return nil, fmt.Errorf("recindex: read footer: %w", err)
		}
	}
	if footerCRC(buf, tr[:12]) != binary.LittleEndian.Uint32(tr[12:]) {
		return nil, corruptf("footer checksum mismatch")
	}
	f, err := decodeFooter(buf, start)
	if err != nil {
		return nil, err
	}
	rd := &Reader{ra: r, f: f, fields: make(map[string]int, len(f.fields))}
	for i, name := range f.fields {
		if _, dup := rd.fields[name]; dup {
			return nil, corruptf("reference field %q twice", name)
		}
		rd.fields[name] = i
	}
	bs := f.blockSize
	rd.bufs.New = func() any { b := make([]byte, bs); return &b }
	return rd, nil
}

// Frames returns the chunk's frames, numbered from 0.
func (r *Reader) Frames() []FrameInfo { return slices.Clone(r.f.frames) }

// Records returns the number of record ids in the index.
func (r *Reader) Records() int64 { return r.f.records }

// Refs returns the number of stored (parent, child) entries, all fields together (a pair
// repeated across runs counts once per run).
func (r *Reader) Refs() int64 { return r.f.refs }

// RefFields returns the declared reference fields.
func (r *Reader) RefFields() []string { return slices.Clone(r.f.fields) }

// Runs returns the number of sorted runs: a lookup reads at most one block in each.
func (r *Reader) Runs() int { return len(r.f.runs) }

// BlockReads returns the number of blocks read so far.
func (r *Reader) BlockReads() int64 { return r.reads.Load() }

func (r *Reader) src() blockSource { return blockSource{ra: r.ra, reads: &r.reads} }

// MayContain reports, without I/O, whether id may be in the index: false means it is not.
func (r *Reader) MayContain(id string) bool {
	if !ValidID(id) {
		return false
	}
	var k [IDLen]byte
	copy(k[:], id)
	h := keyHash(k[:])
	for i := range r.f.runs {
		if r.f.runs[i].sections[0].admits(k[:], h) {
			return true
		}
	}
	return false
}

// Lookup returns the frame holding record id. It reads at most one block in each run whose
// key range and bloom filter admit id, and stops at the run that has it.
func (r *Reader) Lookup(id string) (frame uint32, ok bool, err error) {
	frame, _, ok, err = r.LookupRow(id)
	return frame, ok, err
}

// LookupRow is Lookup that also returns the record's row number in the chunk.
func (r *Reader) LookupRow(id string) (frame uint32, row int64, ok bool, err error) {
	if !ValidID(id) {
		return 0, 0, false, fmt.Errorf("recindex.Lookup: %w: %s", ErrInvalidID, quoteID(id))
	}
	var k [IDLen]byte
	copy(k[:], id)
	h := keyHash(k[:])
	bp := r.bufs.Get().(*[]byte)
	defer r.bufs.Put(bp)
	for i := range r.f.runs {
		s := &r.f.runs[i].sections[0]
		if !s.admits(k[:], h) {
			continue
		}
		// The block holding id is the last one whose first key is <= id.
		b := s.blockGE(k[:])
		if b == s.blocks() || !bytes.Equal(s.firstKey(b), k[:]) {
			b--
		}
		if b < 0 {
			continue
		}
		it, buf, err := r.src().readBlock(s, b, *bp)
		*bp = buf
		if err != nil {
			return 0, 0, false, fmt.Errorf("recindex.Lookup %s: %w", id, err)
		}
		found, err := it.seekGE(k[:])
		if err != nil {
			return 0, 0, false, fmt.Errorf("recindex.Lookup %s: %w", id, err)
		}
		if found && bytes.Equal(it.curKey(), k[:]) {
			return it.frame, it.row, true, nil
		}
	}
	return 0, 0, false, nil
}

func (r *Reader) field(name string) (int, error) {
	f, ok := r.fields[name]
	if !ok {
		return 0, fmt.Errorf("%w %q", ErrUnknownField, name)
	}
	return f, nil
}

// Children returns the ids of the records that reference parent through field, sorted and
// without repeats. Per run whose range and bloom filter admit parent it reads the block where
// parent's entries start, and the following ones while they continue.
func (r *Reader) Children(field string, parent string) ([]string, error) {
	return r.ChildrenMax(field, parent, 0)
}

// ErrTooMany: ChildrenMax found more entries than it may return.
var ErrTooMany = errors.New("recindex: too many entries")

// ChildrenMax is Children that stops with ErrTooMany once it has collected more than limit entries
// (limit ≤ 0: no limit), so a parent with millions of children costs at most about twice limit
// ids of memory.
func (r *Reader) ChildrenMax(field string, parent string, limit int) ([]string, error) {
	fi, err := r.field(field)
	if err != nil {
		return nil, fmt.Errorf("recindex.Children: %w", err)
	}
	if !ValidID(parent) {
		return nil, fmt.Errorf("recindex.Children: %w: %s", ErrInvalidID, quoteID(parent))
	}
	var p [IDLen]byte
	copy(p[:], parent)
	h := keyHash(p[:])
	bp := r.bufs.Get().(*[]byte)
	defer r.bufs.Put(bp)
	var out []string
	for i := range r.f.runs {
		s := &r.f.runs[i].sections[1+fi]
		if !s.admits(p[:], h) {
			continue
		}
		// Entries of parent start in the block before the first one whose first key has a
		// parent >= p, and continue through blocks that start with p.
		first := max(s.blockGE(p[:])-1, 0)
	blocks:
		for b := first; b < s.blocks(); b++ {
			if b > first && !bytes.Equal(s.firstKey(b)[:IDLen], p[:]) {
				break
			}
			it, buf, err := r.src().readBlock(s, b, *bp)
			*bp = buf
			if err != nil {
				return nil, fmt.Errorf("recindex.Children %s %s: %w", field, parent, err)
			}
			ok, err := it.seekGE(p[:])
			for ; ok && err == nil; ok, err = it.next() {
				k := it.curKey()
				if !bytes.Equal(k[:IDLen], p[:]) {
					break blocks
				}
				out = append(out, string(k[IDLen:]))
				if limit > 0 && len(out) > 2*limit {
					// Runs may repeat an entry: count distinct ones.
					slices.Sort(out)
					if out = slices.Compact(out); len(out) > limit {
						return nil, fmt.Errorf("recindex.Children %s %s: %w: more than %d", field, parent, ErrTooMany, limit)
					}
				}
			}
			if err != nil {
				return nil, fmt.Errorf("recindex.Children %s %s: %w", field, parent, err)
			}
		}
	}
	slices.Sort(out)
	if out = slices.Compact(out); limit > 0 && len(out) > limit {
		return nil, fmt.Errorf("recindex.Children %s %s: %w: more than %d", field, parent, ErrTooMany, limit)
	}
	return out, nil
}

// ForEachRecord calls fn with every record id and its frame in ascending id order (a merge
// over the runs reading each block once). An id present in two runs is ErrCorrupt: the writer
// does not produce that. An error from fn stops the walk and is returned as is.
func (r *Reader) ForEachRecord(fn func(id string, frame uint32) error) error {
	secs := make([]*section, len(r.f.runs))
	for i := range r.f.runs {
		secs[i] = &r.f.runs[i].sections[0]
	}
	var prev [IDLen]byte
	have := false
	return mergeSections(r.src(), secs, nil, nil, func(key []byte, frame uint32, _ int64) error {
		if have && bytes.Equal(prev[:], key) {
			return corruptf("record id %s in two runs", key)
		}
		copy(prev[:], key)
		have = true
		return fn(string(key), frame)
	})
}

// ForEachRef calls fn with every (parent, child) pair of field in ascending order, each pair
// once. An error from fn stops the walk and is returned as is.
func (r *Reader) ForEachRef(field string, fn func(parent, child string) error) error {
	fi, err := r.field(field)
	if err != nil {
		return fmt.Errorf("recindex.ForEachRef: %w", err)
	}
	secs := make([]*section, len(r.f.runs))
	for i := range r.f.runs {
		secs[i] = &r.f.runs[i].sections[1+fi]
	}
	var prev [refKeyLen]byte
	have := false
	return mergeSections(r.src(), secs, nil, nil, func(key []byte, _ uint32, _ int64) error {
		if have && bytes.Equal(prev[:], key) {
			return nil
		}
		copy(prev[:], key)
		have = true
		return fn(string(key[:IDLen]), string(key[IDLen:]))
	})
}
