package pack

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// Layout constants of version 1.
const (
	HeaderSize  = 64
	EntrySize   = 56
	TrailerSize = 88
	Version     = 1

	magic    = "BSPACK01"
	endMagic = "BSPKEND1"
	idLen    = 48 // header bytes holding the pack id
	keyIDLen = 16 // trailer bytes holding the key id
	macInput = "backupstore pack index v1\x00"
)

// Hard limits of the format; Limits may only lower them.
const (
	MaxEntries = 1 << 20
	MaxBody    = 16 << 20
)

var (
	// ErrCorrupt means the bytes are not a well-formed pack (or not the pack
	// the caller expected): wrong magic, a length out of bounds, a CRC that
	// does not match, a truncated or extended object.
	ErrCorrupt = errors.New("pack: corrupt")
	// ErrMAC means the index failed authentication: forged, altered, or
	// presented as another tenant's or org's pack.
	ErrMAC = errors.New("pack: index authentication failed")
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, args...))
}

// Entry is one body of a pack.
type Entry struct {
	SHA256 [32]byte
	Offset int64 // absolute, from the start of the pack
	Length int64
}

// End is the offset just past the body.
func (e Entry) End() int64 { return e.Offset + e.Length }

// Limits bound what a reader accepts before it allocates. The zero value
// means the format's maxima.
type Limits struct {
	MaxEntries int   // ≤ MaxEntries
	MaxBody    int64 // ≤ MaxBody
}

func (l Limits) norm() Limits {
	if l.MaxEntries <= 0 || l.MaxEntries > MaxEntries {
		l.MaxEntries = MaxEntries
	}
	if l.MaxBody <= 0 || l.MaxBody > MaxBody {
		l.MaxBody = MaxBody
	}
	return l
}

// validID reports whether s fits a NUL-padded ASCII field of n bytes.
func validID(s string, n int) bool {
	if s == "" || len(s) > n {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= 0x20 || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

// parseID reads a NUL-padded ASCII field: printable bytes, then only NULs.
func parseID(b []byte) (string, bool) {
	n := bytes.IndexByte(b, 0)
	if n < 0 {
		n = len(b)
	}
	for _, c := range b[n:] {
		if c != 0 {
			return "", false
		}
	}
	s := string(b[:n])
	return s, validID(s, len(b))
}

// mac computes the index HMAC: FORMAT.md §2.3.
func mac(key []byte, tenant, org string, header, index, trailer48 []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(macInput))
	var n [binary.MaxVarintLen64]byte
	m.Write(n[:binary.PutUvarint(n[:], uint64(len(tenant)))])
	m.Write([]byte(tenant))
	m.Write(n[:binary.PutUvarint(n[:], uint64(len(org)))])
	m.Write([]byte(org))
	m.Write(header[:HeaderSize])
	m.Write(index)
	m.Write(trailer48[:48])
	return m.Sum(nil)
}

// Writer builds one pack in a caller-supplied buffer. It is not safe for
// concurrent use.
type Writer struct {
	buf     []byte
	entries []Entry
}

// NewWriter starts a pack with id packID (≤ 48 printable ASCII bytes) in
// buf[:0]; buf grows by append if it is too small, so give it the capacity
// the pack will need (bodies + HeaderSize + entries×EntrySize + TrailerSize).
func NewWriter(buf []byte, packID string) (*Writer, error) {
	if !validID(packID, idLen) {
		return nil, fmt.Errorf("pack: invalid pack id %q", packID)
	}
	h := buf[:0]
	h = append(h, magic...)
	h = binary.LittleEndian.AppendUint16(h, Version)
	h = binary.LittleEndian.AppendUint16(h, 0)
	h = binary.LittleEndian.AppendUint32(h, 0)
	h = append(h, packID...)
	h = append(h, make([]byte, idLen-len(packID))...)
	return &Writer{buf: h}, nil
}

// Add appends body, whose SHA-256 the caller computed (it is checked again by
// every whole read), and returns its offset in the pack.
func (w *Writer) Add(body []byte, sum [32]byte) (int64, error) {
	if len(body) > MaxBody {
		return 0, fmt.Errorf("pack: body of %d bytes exceeds %d", len(body), MaxBody)
	}
	if len(w.entries) >= MaxEntries {
		return 0, fmt.Errorf("pack: more than %d bodies", MaxEntries)
	}
	off := int64(len(w.buf))
	w.buf = append(w.buf, body...)
	w.entries = append(w.entries, Entry{SHA256: sum, Offset: off, Length: int64(len(body))})
	return off, nil
}

// Size is the header plus the bodies added so far.
func (w *Writer) Size() int { return len(w.buf) }

// Count is the number of bodies added.
func (w *Writer) Count() int { return len(w.entries) }

// Entries are the bodies added so far; the slice is the writer's own.
func (w *Writer) Entries() []Entry { return w.entries }

// FinishedSize is what Finish will return the length of, with n bodies of
// total bodyBytes.
func FinishedSize(n int, bodyBytes int64) int64 {
	return HeaderSize + bodyBytes + int64(n)*EntrySize + TrailerSize
}

// Finish appends the index and the trailer, authenticated with macKey under
// keyID for tenant and org, and returns the whole pack (sharing the buffer)
// and its index offset. The writer must not be used afterwards.
func (w *Writer) Finish(macKey []byte, keyID, tenant, org string) (pack []byte, indexOffset int64, err error) {
	if !validID(keyID, keyIDLen) {
		return nil, 0, fmt.Errorf("pack: invalid key id %q", keyID)
	}
	if len(macKey) == 0 {
		return nil, 0, errors.New("pack: no MAC key")
	}
	b := w.buf
	indexOffset = int64(len(b))
	for _, e := range w.entries {
		b = append(b, e.SHA256[:]...)
		b = binary.LittleEndian.AppendUint64(b, uint64(e.Offset))
		b = binary.LittleEndian.AppendUint64(b, uint64(e.Length))
		b = binary.LittleEndian.AppendUint32(b, 0)
		b = binary.LittleEndian.AppendUint32(b, 0)
	}
	index := b[indexOffset:]
	t := len(b)
	b = binary.LittleEndian.AppendUint64(b, uint64(indexOffset))
	b = binary.LittleEndian.AppendUint32(b, uint32(len(w.entries)))
	b = binary.LittleEndian.AppendUint32(b, EntrySize)
	b = binary.LittleEndian.AppendUint64(b, uint64(t+TrailerSize))
	b = binary.LittleEndian.AppendUint32(b, crc32.Checksum(index, castagnoli))
	b = binary.LittleEndian.AppendUint32(b, 0)
	b = append(b, keyID...)
	b = append(b, make([]byte, keyIDLen-len(keyID))...)
	b = append(b, mac(macKey, tenant, org, b[:HeaderSize], b[indexOffset:t], b[t:t+48])...)
	b = append(b, endMagic...)
	w.buf, w.entries = nil, nil
	return b, indexOffset, nil
}

// Trailer is the parsed, bounds-checked trailer of a pack.
type Trailer struct {
	IndexOffset int64
	Count       int
	PackSize    int64
	CRC         uint32
	KeyID       string
	MAC         [32]byte
	raw         [TrailerSize]byte
}

// TailOffset is where the index starts: a reader that has the trailer GETs
// [TailOffset, PackSize) for ParseIndex.
func (t *Trailer) TailOffset() int64 { return t.IndexOffset }

// ParseTrailer checks the last TrailerSize bytes of an object of packSize
// bytes (HEAD, or a Content-Range total): magic, sizes, and that the index
// fits exactly between the header and the trailer.
func ParseTrailer(b []byte, packSize int64, lim Limits) (*Trailer, error) {
	lim = lim.norm()
	if len(b) != TrailerSize {
		return nil, corrupt("trailer is %d bytes, want %d", len(b), TrailerSize)
	}
	if packSize < HeaderSize+TrailerSize {
		return nil, corrupt("object of %d bytes is too small for a pack", packSize)
	}
	if string(b[80:88]) != endMagic {
		return nil, corrupt("no end magic")
	}
	t := &Trailer{}
	copy(t.raw[:], b)
	le := binary.LittleEndian
	io, count, es, size := le.Uint64(b[0:]), le.Uint32(b[8:]), le.Uint32(b[12:]), le.Uint64(b[16:])
	if es != EntrySize {
		return nil, corrupt("entry size %d, want %d", es, EntrySize)
	}
	if size != uint64(packSize) {
		return nil, corrupt("trailer says %d bytes, object has %d (truncated or extended)", size, packSize)
	}
	if int64(count) > int64(lim.MaxEntries) {
		return nil, corrupt("%d entries exceed the limit %d", count, lim.MaxEntries)
	}
	if io < HeaderSize || io > uint64(packSize) {
		return nil, corrupt("index offset %d out of range", io)
	}
	if io+uint64(count)*EntrySize+TrailerSize != uint64(packSize) {
		return nil, corrupt("index offset %d + %d entries + trailer != pack size %d", io, count, packSize)
	}
	if le.Uint32(b[28:]) != 0 {
		return nil, corrupt("reserved trailer bytes set")
	}
	kid, ok := parseID(b[32:48])
	if !ok {
		return nil, corrupt("invalid key id")
	}
	t.IndexOffset, t.Count, t.PackSize = int64(io), int(count), packSize
	t.CRC, t.KeyID = le.Uint32(b[24:]), kid
	copy(t.MAC[:], b[48:80])
	return t, nil
}

// Index is a parsed, structurally checked pack index. Its MAC is not checked
// until Verify.
type Index struct {
	PackID  string
	Trailer *Trailer
	Entries []Entry
	header  [HeaderSize]byte
	raw     []byte // the index bytes, for the MAC
}

// ParseHeader checks a pack's first HeaderSize bytes and returns its id.
func ParseHeader(h []byte) (string, error) {
	if len(h) < HeaderSize {
		return "", corrupt("header is %d bytes, want %d", len(h), HeaderSize)
	}
	if string(h[0:8]) != magic {
		return "", corrupt("no magic")
	}
	le := binary.LittleEndian
	if v := le.Uint16(h[8:]); v != Version {
		return "", corrupt("version %d, want %d", v, Version)
	}
	if le.Uint16(h[10:]) != 0 || le.Uint32(h[12:]) != 0 {
		return "", corrupt("reserved header bytes set")
	}
	id, ok := parseID(h[16:HeaderSize])
	if !ok {
		return "", corrupt("invalid pack id")
	}
	return id, nil
}

// ParseIndex checks a pack from its header (the first HeaderSize bytes) and
// its tail (bytes [index offset, packSize): index and trailer) against an
// object of packSize bytes: sizes, limits, CRC, and that the entries are
// dense from HeaderSize to the index. The MAC is checked by Verify.
func ParseIndex(header, tail []byte, packSize int64, lim Limits) (*Index, error) {
	lim = lim.norm()
	id, err := ParseHeader(header)
	if err != nil {
		return nil, err
	}
	if len(tail) < TrailerSize {
		return nil, corrupt("tail of %d bytes has no trailer", len(tail))
	}
	t, err := ParseTrailer(tail[len(tail)-TrailerSize:], packSize, lim)
	if err != nil {
		return nil, err
	}
	if int64(len(tail)) != packSize-t.IndexOffset {
		return nil, corrupt("tail is %d bytes, the trailer says %d", len(tail), packSize-t.IndexOffset)
	}
	raw := tail[:len(tail)-TrailerSize] // == Count × EntrySize, by ParseTrailer
	if crc32.Checksum(raw, castagnoli) != t.CRC {
		return nil, corrupt("index CRC mismatch")
	}
	x := &Index{PackID: id, Trailer: t, Entries: make([]Entry, t.Count), raw: raw}
	copy(x.header[:], header)
	le := binary.LittleEndian
	next := int64(HeaderSize)
	for i := range x.Entries {
		e := raw[i*EntrySize : (i+1)*EntrySize]
		off, n := le.Uint64(e[32:]), le.Uint64(e[40:])
		if le.Uint32(e[48:]) != 0 || le.Uint32(e[52:]) != 0 {
			return nil, corrupt("entry %d: reserved bytes set", i)
		}
		if off != uint64(next) {
			return nil, corrupt("entry %d at %d, want %d (bodies are dense)", i, off, next)
		}
		if n > uint64(lim.MaxBody) {
			return nil, corrupt("entry %d: body of %d bytes exceeds %d", i, n, lim.MaxBody)
		}
		if n > uint64(t.IndexOffset-next) {
			return nil, corrupt("entry %d ends past the index", i)
		}
		copy(x.Entries[i].SHA256[:], e[:32])
		x.Entries[i].Offset, x.Entries[i].Length = next, int64(n)
		next += int64(n)
	}
	if next != t.IndexOffset {
		return nil, corrupt("bodies end at %d, index starts at %d", next, t.IndexOffset)
	}
	return x, nil
}

// Parse checks a whole pack held in memory (ParseIndex on its header and tail).
func Parse(b []byte, lim Limits) (*Index, error) {
	if len(b) < HeaderSize+TrailerSize {
		return nil, corrupt("object of %d bytes is too small for a pack", len(b))
	}
	t, err := ParseTrailer(b[len(b)-TrailerSize:], int64(len(b)), lim)
	if err != nil {
		return nil, err
	}
	return ParseIndex(b[:HeaderSize], b[t.IndexOffset:], int64(len(b)), lim)
}

// Verify checks the index MAC under macKey (derived for the trailer's KeyID)
// for tenant and org; ErrMAC if it does not match.
func (x *Index) Verify(macKey []byte, tenant, org string) error {
	want := mac(macKey, tenant, org, x.header[:], x.raw, x.Trailer.raw[:48])
	if !hmac.Equal(want, x.Trailer.MAC[:]) {
		return fmt.Errorf("%w (pack %s, key %s)", ErrMAC, x.PackID, x.Trailer.KeyID)
	}
	return nil
}

// CheckBodies checks every body of a whole pack b (the one x was parsed
// from) against its entry's SHA-256 and returns the indexes of the entries
// that do not match.
func (x *Index) CheckBodies(b []byte) (bad []int, err error) {
	if int64(len(b)) != x.Trailer.PackSize {
		return nil, corrupt("pack is %d bytes, the index says %d", len(b), x.Trailer.PackSize)
	}
	for i, e := range x.Entries {
		if sha256.Sum256(b[e.Offset:e.End()]) != e.SHA256 {
			bad = append(bad, i)
		}
	}
	return bad, nil
}
