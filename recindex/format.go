package recindex

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"math/bits"
)

const (
	// IDLen is the length of a normalised Salesforce record id.
	IDLen = 18

	refKeyLen       = 2 * IDLen
	maxKeyLen       = refKeyLen
	formatVersion   = 1
	magic           = "BSRECIDX"
	trailerLen      = 24
	restartInterval = 16
	blockTrailerLen = 8 // restart count + CRC32C
	minBlockSize    = 256
	maxBlockSize    = 1 << 20
	tailRead        = 64 << 10
	maxRefFields    = 1024
	maxFieldNameLen = 255
	maxValueLen     = 2 * binary.MaxVarintLen64
)

var (
	// ErrCorrupt reports index bytes that fail a checksum or do not parse.
	ErrCorrupt = errors.New("recindex: corrupt index")
	// ErrUnsupportedVersion reports an index written in a format version this code cannot read.
	ErrUnsupportedVersion = errors.New("recindex: unsupported index format version")
	// ErrInvalidID reports an id that is not 18 bytes of [A-Za-z0-9].
	ErrInvalidID = errors.New("recindex: invalid record id")
	// ErrUnknownField reports a reference field the index was not built with.
	ErrUnknownField = errors.New("recindex: unknown reference field")
	// ErrDuplicateID is what a *DuplicateError matches with errors.Is.
	ErrDuplicateID = errors.New("recindex: duplicate record id")
	// ErrFinished reports use of a Writer after Finish (or after a failure that ended it).
	ErrFinished = errors.New("recindex: writer finished")
)

// DuplicateError reports a record id added twice. Row is the row number of the second
// occurrence (the later row), FirstRow that of the first.
type DuplicateError struct {
	ID       string
	FirstRow int64
	Row      int64
}

func (e *DuplicateError) Error() string {
	return fmt.Sprintf("recindex: duplicate record id %s at row %d (first at row %d)", e.ID, e.Row, e.FirstRow)
}

// Is makes errors.Is(err, ErrDuplicateID) true for a *DuplicateError.
func (e *DuplicateError) Is(target error) bool { return target == ErrDuplicateID }

// FrameInfo describes one independently decodable zstd frame of the record-set chunk.
type FrameInfo struct {
	StoredOffset, StoredLen int64
	InputOffset, InputLen   int64
	Rows                    int64
	FirstRow                int64 // row number of its first data row
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// idBad is 0 for the bytes of a normalised id ([A-Za-z0-9]) and 1 for the others.
var idBad = func() (t [256]byte) {
	for i := range t {
		c := byte(i)
		if !('0' <= c && c <= '9' || 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z') {
			t[i] = 1
		}
	}
	return t
}()

// ValidID reports whether id is a normalised record id: exactly 18 bytes of [A-Za-z0-9].
func ValidID(id string) bool { return validID(id) }

func validID[T ~string | ~[]byte](id T) bool {
	if len(id) != IDLen {
		return false
	}
	var bad byte
	for i := 0; i < IDLen; i++ {
		bad |= idBad[id[i]]
	}
	return bad == 0
}

// quoteID quotes a rejected id for an error message, cut short if it is long.
func quoteID(s string) string {
	if len(s) > 40 {
		return fmt.Sprintf("%q…", s[:40])
	}
	return fmt.Sprintf("%q", s)
}

func corruptf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrCorrupt}, args...)...)
}

// keyHash is the bloom filter hash of an 18-byte id. It is part of the format: changing it
// needs a new format version.
func keyHash(k []byte) uint64 {
	_ = k[IDLen-1]
	a := binary.LittleEndian.Uint64(k[0:8])
	b := binary.LittleEndian.Uint64(k[8:16])
	c := uint64(binary.LittleEndian.Uint16(k[16:18]))
	h := mix64(a ^ 0x9e3779b97f4a7c15)
	h = mix64(h ^ b)
	return mix64(h ^ c)
}

// mix64 is MurmurHash3's 64-bit finaliser.
func mix64(x uint64) uint64 {
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return x
}

// bloom is a cache-line blocked bloom filter: a key sets k bits inside one 512-bit block.
type bloom struct {
	bits []byte // a multiple of 64 bytes; empty for an empty section
	k    uint8
}

const bloomBlockBytes = 64

func bloomK(bitsPerKey int) uint8 {
	k := bitsPerKey * 69 / 100 // ln 2 × bits per key, rounded down (blocked filters prefer fewer probes)
	return uint8(min(max(k, 1), 16))
}

func newBloom(keys, bitsPerKey int) bloom {
	f := bloom{k: bloomK(bitsPerKey)}
	if keys > 0 {
		blocks := (keys*bitsPerKey + 511) / 512
		f.bits = make([]byte, blocks*bloomBlockBytes)
	}
	return f
}

func (f bloom) add(h uint64) {
	base := f.block(h)
	blk := (*[bloomBlockBytes]byte)(f.bits[base : base+bloomBlockBytes]) // one bounds check, not k
	x := uint32(h)
	for i := uint8(0); i < f.k; i++ {
		bit := x >> 23 // top 9 bits: 0..511
		blk[bit>>3] |= 1 << (bit & 7)
		x *= 0x9e3779b9
	}
}

func (f bloom) mayContain(h uint64) bool {
	if len(f.bits) == 0 {
		return false
	}
	base := f.block(h)
	x := uint32(h)
	for i := uint8(0); i < f.k; i++ {
		bit := x >> 23
		if f.bits[base+int(bit>>3)]&(1<<(bit&7)) == 0 {
			return false
		}
		x *= 0x9e3779b9
	}
	return true
}

func (f bloom) block(h uint64) int {
	n := uint64(len(f.bits) / bloomBlockBytes)
	return int(((h>>32)*n)>>32) * bloomBlockBytes
}

// section describes the sorted blocks of one key space of one run.
type section struct {
	keyLen    int
	count     int64   // entries
	offs      []int64 // block i is [offs[i], offs[i+1]); len(offs) = blocks+1
	firstKeys []byte  // blocks × keyLen
	lastKey   []byte
	bloom     bloom
}

func (s *section) blocks() int {
	if len(s.offs) == 0 {
		return 0
	}
	return len(s.offs) - 1
}

func (s *section) firstKey(i int) []byte { return s.firstKeys[i*s.keyLen : (i+1)*s.keyLen] }

// admits reports whether the section may hold a key starting with prefix, hash being
// keyHash(prefix[:IDLen]): inside the section's key range and passing its bloom filter.
func (s *section) admits(prefix []byte, hash uint64) bool {
	if s.count == 0 || s.blocks() == 0 {
		return false
	}
	n := len(prefix)
	if bytes.Compare(prefix, s.firstKeys[:n]) < 0 || bytes.Compare(prefix, s.lastKey[:n]) > 0 {
		return false
	}
	return s.bloom.mayContain(hash)
}

// blockGE returns the first block whose first key, cut to len(prefix), is >= prefix
// (s.blocks() if none).
func (s *section) blockGE(prefix []byte) int {
	lo, hi := 0, s.blocks()
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if bytes.Compare(s.firstKey(m)[:len(prefix)], prefix) < 0 {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}

// blockWriter encodes one block.
type blockWriter struct {
	keyLen, limit int
	buf           []byte
	restarts      []uint32
	last          [maxKeyLen]byte
	n             int
}

func (b *blockWriter) reset() {
	b.buf = b.buf[:0]
	b.restarts = b.restarts[:0]
	b.n = 0
}

func commonPrefix(a, b []byte) int {
	n := min(len(a), len(b))
	i := 0
	for ; i+8 <= n; i += 8 {
		if x := binary.BigEndian.Uint64(a[i:]) ^ binary.BigEndian.Uint64(b[i:]); x != 0 {
			return i + bits.LeadingZeros64(x)/8
		}
	}
	for ; i < n; i++ {
		if a[i] != b[i] {
			return i
		}
	}
	return n
}

func (b *blockWriter) shared(key []byte) int {
	if b.n%restartInterval == 0 {
		return 0
	}
	return commonPrefix(b.last[:b.keyLen], key)
}

// fits reports whether an entry of key and a value of vlen bytes fits in the block.
func (b *blockWriter) fits(key []byte, vlen int) bool { return b.fitsShared(b.shared(key), vlen) }

// fitsShared is fits for a key sharing sh bytes with the last one (b.shared(key)).
func (b *blockWriter) fitsShared(sh, vlen int) bool {
	restarts := len(b.restarts)
	if b.n%restartInterval == 0 {
		restarts++
	}
	size := len(b.buf) + 1 + b.keyLen - sh + vlen + 4*restarts + blockTrailerLen
	return size <= b.limit
}

func (b *blockWriter) add(key, val []byte) { b.addShared(key, val, b.shared(key)) }

// addShared is add for a key sharing sh bytes with the last one (b.shared(key)).
func (b *blockWriter) addShared(key, val []byte, sh int) {
	if b.n%restartInterval == 0 {
		b.restarts = append(b.restarts, uint32(len(b.buf)))
	}
	b.buf = append(b.buf, byte(sh))
	b.buf = append(b.buf, key[sh:]...)
	b.buf = append(b.buf, val...)
	copy(b.last[:], key)
	b.n++
}

// finish appends the restart array, its length and the CRC32C, and returns the block.
func (b *blockWriter) finish() []byte {
	for _, r := range b.restarts {
		b.buf = binary.LittleEndian.AppendUint32(b.buf, r)
	}
	b.buf = binary.LittleEndian.AppendUint32(b.buf, uint32(len(b.restarts)))
	return binary.LittleEndian.AppendUint32(b.buf, crc32.Checksum(b.buf, castagnoli))
}

// blockIter decodes one block. Every access is bounds-checked: a block that passes its CRC
// but is malformed still yields ErrCorrupt, never a panic.
type blockIter struct {
	data     []byte // the entries
	restarts []byte // restart offsets, 4 bytes each
	keyLen   int
	hasVal   bool
	off      int  // next entry
	started  bool // an entry was decoded since the last (re)positioning
	key      [maxKeyLen]byte
	frame    uint32
	row      int64
}

func parseBlock(b []byte, keyLen int, hasVal bool) (blockIter, error) {
	if len(b) < blockTrailerLen+4 {
		return blockIter{}, corruptf("block of %d bytes", len(b))
	}
	body := b[:len(b)-4]
	if got, want := crc32.Checksum(body, castagnoli), binary.LittleEndian.Uint32(b[len(b)-4:]); got != want {
		return blockIter{}, corruptf("block checksum mismatch")
	}
	nr := uint64(binary.LittleEndian.Uint32(body[len(body)-4:]))
	body = body[:len(body)-4]
	if nr == 0 || nr*4 > uint64(len(body)) {
		return blockIter{}, corruptf("block restart count %d", nr)
	}
	split := len(body) - int(nr)*4
	it := blockIter{data: body[:split], restarts: body[split:], keyLen: keyLen, hasVal: hasVal}
	if len(it.data) == 0 || binary.LittleEndian.Uint32(it.restarts) != 0 {
		return blockIter{}, corruptf("block without entries")
	}
	return it, nil
}

// next decodes the next entry; false at the end of the block.
func (it *blockIter) next() (bool, error) {
	if it.off >= len(it.data) {
		return false, nil
	}
	d := it.data[it.off:]
	sh := int(d[0])
	if sh > it.keyLen || (!it.started && sh != 0) {
		return false, corruptf("entry at %d shares %d bytes", it.off, sh)
	}
	n := 1 + it.keyLen - sh
	if n > len(d) {
		return false, corruptf("entry at %d truncated", it.off)
	}
	copy(it.key[sh:it.keyLen], d[1:n])
	if it.hasVal {
		f, m := binary.Uvarint(d[n:])
		if m <= 0 || f > math.MaxUint32 {
			return false, corruptf("entry at %d: bad frame", it.off)
		}
		n += m
		r, m := binary.Uvarint(d[n:])
		if m <= 0 || r > math.MaxInt64 {
			return false, corruptf("entry at %d: bad row", it.off)
		}
		n += m
		it.frame, it.row = uint32(f), int64(r)
	}
	it.off += n
	it.started = true
	return true, nil
}

func (it *blockIter) curKey() []byte { return it.key[:it.keyLen] }

func (it *blockIter) restartKey(i int) ([]byte, error) {
	o := int(binary.LittleEndian.Uint32(it.restarts[4*i:]))
	if o < 0 || o+1+it.keyLen > len(it.data) || it.data[o] != 0 {
		return nil, corruptf("restart %d at %d", i, o)
	}
	return it.data[o+1 : o+1+it.keyLen], nil
}

// seekGE positions the iterator on the first entry whose key, cut to len(prefix), is >=
// prefix. It reports false if there is none in the block.
func (it *blockIter) seekGE(prefix []byte) (bool, error) {
	// The last restart whose key is < prefix: every entry before it is smaller too.
	lo, hi := 0, len(it.restarts)/4
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		k, err := it.restartKey(m)
		if err != nil {
			return false, err
		}
		if bytes.Compare(k[:len(prefix)], prefix) < 0 {
			lo = m + 1
		} else {
			hi = m
		}
	}
	start := 0
	if lo > 0 {
		if _, err := it.restartKey(lo - 1); err != nil {
			return false, err
		}
		start = int(binary.LittleEndian.Uint32(it.restarts[4*(lo-1):]))
	}
	it.off, it.started = start, false
	for {
		ok, err := it.next()
		if !ok || err != nil {
			return false, err
		}
		if bytes.Compare(it.curKey()[:len(prefix)], prefix) >= 0 {
			return true, nil
		}
	}
}
