package recindex

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"math"
)

// run is one sorted run: sections[0] holds record ids, sections[1+i] reference field i.
type run struct {
	sections []section
}

// footer is the decoded footer, shared by Writer (which builds it) and Reader.
type footer struct {
	blockSize  int
	bitsPerKey int
	fields     []string
	frames     []FrameInfo
	records    int64
	refs       int64
	runs       []run
}

// appendBody encodes everything in the footer except the bloom bits, which follow it in
// section order (see doc.go).
func (f *footer) appendBody(b []byte) []byte {
	b = binary.AppendUvarint(b, uint64(f.blockSize))
	b = binary.AppendUvarint(b, uint64(f.bitsPerKey))
	b = binary.AppendUvarint(b, uint64(len(f.fields)))
	for _, name := range f.fields {
		b = binary.AppendUvarint(b, uint64(len(name)))
		b = append(b, name...)
	}
	b = binary.AppendUvarint(b, uint64(len(f.frames)))
	for _, fr := range f.frames {
		for _, v := range [...]int64{fr.StoredOffset, fr.StoredLen, fr.InputOffset, fr.InputLen, fr.Rows, fr.FirstRow} {
			b = binary.AppendVarint(b, v)
		}
	}
	b = binary.AppendUvarint(b, uint64(f.records))
	b = binary.AppendUvarint(b, uint64(f.refs))
	b = binary.AppendUvarint(b, uint64(len(f.runs)))
	for i := range f.runs {
		for j := range f.runs[i].sections {
			b = f.runs[i].sections[j].appendDesc(b)
		}
	}
	return b
}

func (s *section) appendDesc(b []byte) []byte {
	b = binary.AppendUvarint(b, uint64(s.count))
	var start int64
	if len(s.offs) > 0 {
		start = s.offs[0]
	}
	b = binary.AppendUvarint(b, uint64(start))
	n := s.blocks()
	b = binary.AppendUvarint(b, uint64(n))
	var prev []byte
	for i := 0; i < n; i++ {
		b = binary.AppendUvarint(b, uint64(s.offs[i+1]-s.offs[i]))
		k := s.firstKey(i)
		sh := commonPrefix(prev, k)
		b = append(b, byte(sh))
		b = append(b, k[sh:]...)
		prev = k
	}
	if n > 0 {
		sh := commonPrefix(prev, s.lastKey)
		b = append(b, byte(sh))
		b = append(b, s.lastKey[sh:]...)
	}
	b = append(b, s.bloom.k)
	return binary.AppendUvarint(b, uint64(len(s.bloom.bits)))
}

// decoder reads footer fields; the first failure sticks and later reads return zero values.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = corruptf("footer: %s", what)
	}
	d.b = nil
}

func (d *decoder) uvarint(what string) uint64 { return next(d, what, binary.Uvarint) }

func (d *decoder) varint(what string) int64 { return next(d, what, binary.Varint) }

// next reads one number with read (binary.Uvarint or binary.Varint).
func next[T uint64 | int64](d *decoder, what string, read func([]byte) (T, int)) T {
	if d.err != nil {
		return 0
	}
	v, n := read(d.b)
	if n <= 0 {
		d.fail(what)
		return 0
	}
	d.b = d.b[n:]
	return v
}

// int reads a uvarint that must lie in [0, max].
func (d *decoder) int(what string, max uint64) int64 {
	v := d.uvarint(what)
	if v > max {
		d.fail(what)
		return 0
	}
	return int64(v)
}

// count reads a number of items each taking at least minBytes more footer bytes, so that a
// corrupt count cannot make the reader allocate more than the footer's size.
func (d *decoder) count(what string, minBytes int) int {
	v := d.uvarint(what)
	if d.err == nil && v > uint64(len(d.b)/minBytes) {
		d.fail(what)
		return 0
	}
	return int(v)
}

func (d *decoder) byte(what string) byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) == 0 {
		d.fail(what)
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) bytes(what string, n int) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || n > len(d.b) {
		d.fail(what)
		return nil
	}
	p := d.b[:n:n]
	d.b = d.b[n:]
	return p
}

// decodeFooter parses a footer whose CRC has been checked. dataEnd is where the footer
// starts: every block must lie before it. Bloom bits alias buf.
func decodeFooter(buf []byte, dataEnd int64) (*footer, error) {
	d := &decoder{b: buf}
	f := &footer{}
	f.blockSize = int(d.int("block size", maxBlockSize))
	if d.err == nil && f.blockSize < minBlockSize {
		d.fail("block size")
	}
	f.bitsPerKey = int(d.int("bits per key", 1<<10))
	nf := d.count("field count", 2)
	if nf > maxRefFields {
		d.fail("field count")
	}
	for i := 0; i < nf && d.err == nil; i++ {
		name := d.bytes("field name", int(d.int("field name length", maxFieldNameLen)))
		f.fields = append(f.fields, string(name))
	}
	nfr := d.count("frame count", 6)
	if d.err == nil {
		f.frames = make([]FrameInfo, nfr)
	}
	for i := 0; i < nfr && d.err == nil; i++ {
		fr := &f.frames[i]
		for _, p := range [...]*int64{&fr.StoredOffset, &fr.StoredLen, &fr.InputOffset, &fr.InputLen, &fr.Rows, &fr.FirstRow} {
			*p = d.varint("frame")
		}
	}
	f.records = d.int("record count", math.MaxInt64)
	f.refs = d.int("ref count", math.MaxInt64)
	nsec := 1 + nf
	nr := d.count("run count", 5*nsec)
	if d.err == nil {
		f.runs = make([]run, nr)
	}
	var recs, refs int64
	bloomLens := make([]int, 0, nr*nsec)
	for i := 0; i < nr && d.err == nil; i++ {
		f.runs[i].sections = make([]section, nsec)
		for j := range f.runs[i].sections {
			s := &f.runs[i].sections[j]
			s.keyLen = IDLen
			if j > 0 {
				s.keyLen = refKeyLen
			}
			bloomLens = append(bloomLens, s.decodeDesc(d, f.blockSize, dataEnd))
			if j == 0 {
				recs += s.count
			} else {
				refs += s.count
			}
			if recs < 0 || refs < 0 {
				d.fail("entry count overflow")
			}
		}
	}
	for i := 0; i < nr && d.err == nil; i++ {
		for j := range f.runs[i].sections {
			f.runs[i].sections[j].bloom.bits = d.bytes("bloom", bloomLens[i*nsec+j])
		}
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail("trailing bytes")
	}
	if d.err == nil && (recs != f.records || refs != f.refs) {
		d.fail("entry counts do not add up")
	}
	if d.err != nil {
		return nil, d.err
	}
	return f, nil
}

// decodeDesc reads a section descriptor and returns the length of its bloom bits, which are
// read after all descriptors.
func (s *section) decodeDesc(d *decoder, blockSize int, dataEnd int64) (bloomLen int) {
	s.count = d.int("entry count", math.MaxInt64)
	off := d.int("section offset", uint64(dataEnd))
	n := d.count("block count", 2)
	if d.err != nil {
		return 0
	}
	if int64(n) > s.count || (n == 0) != (s.count == 0) {
		d.fail("block count")
		return 0
	}
	if n > 0 {
		s.offs = make([]int64, n+1)
		s.firstKeys = make([]byte, n*s.keyLen)
	}
	var prev []byte
	for i := 0; i < n && d.err == nil; i++ {
		s.offs[i] = off
		l := d.int("block length", uint64(blockSize))
		if l < blockTrailerLen+4 {
			d.fail("block length")
		}
		off += l
		if off > dataEnd {
			d.fail("block past the end of the data")
		}
		k := s.firstKey(i)
		s.decodeKey(d, prev, k)
		if prev != nil && bytes.Compare(prev, k) >= 0 {
			d.fail("block first keys out of order")
		}
		prev = k
	}
	if n > 0 && d.err == nil {
		s.offs[n] = off
		s.lastKey = make([]byte, s.keyLen)
		s.decodeKey(d, prev, s.lastKey)
		if bytes.Compare(prev, s.lastKey) > 0 {
			d.fail("last key before first key")
		}
	}
	s.bloom.k = d.byte("bloom k")
	bl := d.count("bloom length", 1)
	if d.err != nil {
		return 0
	}
	if s.bloom.k == 0 || s.bloom.k > 16 || bl%bloomBlockBytes != 0 || (bl == 0) != (n == 0) {
		d.fail("bloom")
		return 0
	}
	return bl
}

func (s *section) decodeKey(d *decoder, prev, dst []byte) {
	sh := int(d.byte("key prefix"))
	if d.err != nil {
		return
	}
	if sh > len(prev) || sh > len(dst) {
		d.fail("key prefix")
		return
	}
	copy(dst, prev[:sh])
	copy(dst[sh:], d.bytes("key", len(dst)-sh))
}

func footerCRC(body []byte, trailerHead []byte) uint32 {
	c := crc32.Update(0, castagnoli, body)
	return crc32.Update(c, castagnoli, trailerHead)
}
