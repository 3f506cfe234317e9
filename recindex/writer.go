package recindex

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/bits"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"unsafe"
)

// Defaults and limits of Options.
const (
	DefaultRunBytes        = 4 << 20
	DefaultBlockSize       = 16 << 10
	DefaultBloomBitsPerKey = 10

	MinRunBytes = 4 << 10
	MaxRunBytes = 1 << 30
)

// Options configures a Writer. Zero values take the defaults.
type Options struct {
	// RunBytes is the memory for entries (and the duplicate-detection hash table) of the run
	// being built; when it is full the run is sorted and written out. Default 4 MiB: about
	// 105k records, or 52k rows with one reference each. Fewer, larger runs make lookups
	// cheaper: each run costs a lookup a bloom probe and, at 1%, a needless block read.
	RunBytes int
	// BlockSize is the largest block, the unit a lookup reads. Default 16 KiB.
	BlockSize int
	// BloomBitsPerKey sizes each run's bloom filters. Default 10 (≈1% false positives, each
	// costing a lookup one needless block read per run).
	BloomBitsPerKey int
	// RefFields are the declared reference field names, in the order AddRef's field numbers
	// use. At most 1024, each 1–255 bytes, no duplicates.
	RefFields []string
}

func (o Options) withDefaults() Options {
	if o.RunBytes == 0 {
		o.RunBytes = DefaultRunBytes
	}
	if o.BlockSize == 0 {
		o.BlockSize = DefaultBlockSize
	}
	if o.BloomBitsPerKey == 0 {
		o.BloomBitsPerKey = DefaultBloomBitsPerKey
	}
	o.RefFields = slices.Clone(o.RefFields)
	return o
}

func (o Options) validate() error {
	if o.RunBytes < MinRunBytes || o.RunBytes > MaxRunBytes {
		return fmt.Errorf("recindex: RunBytes %d not in [%d, %d]", o.RunBytes, MinRunBytes, MaxRunBytes)
	}
	if o.BlockSize < minBlockSize || o.BlockSize > maxBlockSize {
		return fmt.Errorf("recindex: BlockSize %d not in [%d, %d]", o.BlockSize, minBlockSize, maxBlockSize)
	}
	if o.BloomBitsPerKey < 1 || o.BloomBitsPerKey > 32 {
		return fmt.Errorf("recindex: BloomBitsPerKey %d not in [1, 32]", o.BloomBitsPerKey)
	}
	if len(o.RefFields) > maxRefFields {
		return fmt.Errorf("recindex: %d reference fields, at most %d", len(o.RefFields), maxRefFields)
	}
	for i, f := range o.RefFields {
		if f == "" || len(f) > maxFieldNameLen {
			return fmt.Errorf("recindex: reference field %d: name must be 1-%d bytes", i, maxFieldNameLen)
		}
		if slices.Contains(o.RefFields[:i], f) {
			return fmt.Errorf("recindex: reference field %q declared twice", f)
		}
	}
	return nil
}

// Spool is where a Writer builds the index object: it appends with Write and reads back what
// it wrote with ReadAt (ReadAt must see every byte an earlier Write accepted). A temp
// *os.File fits. After Finish, bytes [0, size) of the spool are the object.
type Spool interface {
	io.Writer
	io.ReaderAt
}

var _ Spool = (*os.File)(nil)

// Stats counts what a Writer holds so far.
type Stats struct {
	Records int64
	Refs    int64 // after dropping repeated (parent, child) pairs within a run
	Runs    int
	Size    int64 // bytes written to the spool
}

// Ids are held in memory as integers — bytes 0-7 and 8-15 big-endian, and 16-17 — so that
// sorting and hashing compare words, not bytes (ids of one chunk share long prefixes).

type recEntry struct {
	hi, mid uint64
	lo      uint16
	frame   uint32
	row     int64
}

type refEntry struct {
	ph, pm, ch, cm uint64 // parent, child
	pl, cl         uint16
	field          uint16
}

func be64[T ~string | ~[]byte](s T) uint64 {
	_ = s[7]
	return uint64(s[0])<<56 | uint64(s[1])<<48 | uint64(s[2])<<40 | uint64(s[3])<<32 |
		uint64(s[4])<<24 | uint64(s[5])<<16 | uint64(s[6])<<8 | uint64(s[7])
}

// packID splits an 18-byte id into its integer form.
func packID[T ~string | ~[]byte](id T) (hi, mid uint64, lo uint16) {
	_ = id[IDLen-1]
	return be64(id[0:8]), be64(id[8:16]), uint16(id[16])<<8 | uint16(id[17])
}

// putID writes the integer form of an id back as its 18 bytes.
func putID(b []byte, hi, mid uint64, lo uint16) {
	binary.BigEndian.PutUint64(b[0:], hi)
	binary.BigEndian.PutUint64(b[8:], mid)
	binary.BigEndian.PutUint16(b[16:], lo)
}

func (e *recEntry) sameID(o *recEntry) bool { return e.hi == o.hi && e.mid == o.mid && e.lo == o.lo }

func cmpRec(a, b recEntry) int {
	if a.hi != b.hi {
		return cmp.Compare(a.hi, b.hi)
	}
	if a.mid != b.mid {
		return cmp.Compare(a.mid, b.mid)
	}
	return cmp.Compare(a.lo, b.lo)
}

func cmpRef(a, b refEntry) int {
	switch {
	case a.field != b.field:
		return cmp.Compare(a.field, b.field)
	case a.ph != b.ph:
		return cmp.Compare(a.ph, b.ph)
	case a.pm != b.pm:
		return cmp.Compare(a.pm, b.pm)
	case a.pl != b.pl:
		return cmp.Compare(a.pl, b.pl)
	case a.ch != b.ch:
		return cmp.Compare(a.ch, b.ch)
	case a.cm != b.cm:
		return cmp.Compare(a.cm, b.cm)
	}
	return cmp.Compare(a.cl, b.cl)
}

func (e *refEntry) sameParent(o *refEntry) bool { return e.ph == o.ph && e.pm == o.pm && e.pl == o.pl }

const (
	recEntrySize = int(unsafe.Sizeof(recEntry{}))
	refEntrySize = int(unsafe.Sizeof(refEntry{}))
	recCost      = recEntrySize + 2*4 // an entry and its two hash-table slots
)

// Writer builds an index object in bounded memory (see the package comment). It is not safe
// for concurrent use.
type Writer struct {
	sp   Spool
	opt  Options
	seed uint64 // of the hash table's hash, random so that crafted ids cannot collide
	off  int64  // bytes written, wbuf included
	wbuf []byte // spool writes are gathered into large ones
	err  error  // sticky: a spool failure or a duplicate found at Finish ends the writer
	done bool

	recs []recEntry
	// table is open addressing over recs (0 = empty, else index+1; 2*cap(recs) slots), kept
	// only while indexed. A run whose ids arrive in strictly increasing order (an export in
	// id order) needs neither the table nor a sort: a new id above the last one cannot be a
	// repeat. The first id out of order builds the table over the run so far. Its memory is
	// counted in RunBytes whether it is built or not, so runs end where they always did.
	table   []uint32
	indexed bool
	refs    []refEntry
	// recCap and refCap are the run buffers' capacities as the budget sees them (RunBytes):
	// they grow by doubling and decide where runs end. The arrays under recs and refs may be
	// larger: a writer starts on the arrays an earlier one finished with (runArrays), so a
	// stream's index does not regrow, copy and drop its buffers once more per chunk.
	recCap, refCap int

	frames   []FrameInfo
	runs     []run
	records  int64
	written  int64 // reference entries written in finished runs
	maxFrame int64
	bw       blockWriter
	val      []byte
}

// NewWriter returns a Writer that builds the index object in sp.
func NewWriter(sp Spool, opt Options) (*Writer, error) {
	if sp == nil {
		return nil, errors.New("recindex: nil spool")
	}
	opt = opt.withDefaults()
	if err := opt.validate(); err != nil {
		return nil, err
	}
	return &Writer{
		sp:       sp,
		opt:      opt,
		seed:     rand.Uint64(),
		maxFrame: -1,
		bw:       blockWriter{limit: opt.BlockSize},
		val:      make([]byte, 0, maxValueLen),
	}, nil
}

func (w *Writer) usable() error {
	if w.err != nil {
		return w.err
	}
	if w.done {
		return ErrFinished
	}
	return nil
}

// AddRecord adds record id, stored in frame, at row number row of the chunk. A repeat of an
// id still in memory (the current run) is refused at once with a *DuplicateError — it is not
// added, and the writer stays usable; a repeat of an id already written out is reported by
// Finish.
func (w *Writer) AddRecord(id string, frame uint32, row int64) error {
	if !ValidID(id) {
		if err := w.usable(); err != nil {
			return err
		}
		return fmt.Errorf("recindex: row %d: %w: %s", row, ErrInvalidID, quoteID(id))
	}
	hi, mid, lo := packID(id)
	return w.addRecord(hi, mid, lo, frame, row)
}

// AddRecordID is AddRecord for an id held in an array (as sfid.ID holds it): it does not
// allocate.
func (w *Writer) AddRecordID(id [IDLen]byte, frame uint32, row int64) error {
	if !validID(id[:]) {
		if err := w.usable(); err != nil {
			return err
		}
		return fmt.Errorf("recindex: row %d: %w: %s", row, ErrInvalidID, quoteID(string(id[:])))
	}
	hi, mid, lo := packID(id[:])
	return w.addRecord(hi, mid, lo, frame, row)
}

func (w *Writer) addRecord(hi, mid uint64, lo uint16, frame uint32, row int64) error {
	if err := w.usable(); err != nil {
		return err
	}
	e := recEntry{hi: hi, mid: mid, lo: lo, frame: frame, row: row}
	if row < 0 {
		return fmt.Errorf("recindex: record %s: negative row %d", e.id(), row)
	}
	if err := w.roomForRec(); err != nil {
		return err
	}
	inOrder := false
	if n := len(w.recs); !w.indexed {
		c := -1
		if n > 0 {
			c = cmpRec(w.recs[n-1], e)
		}
		if c == 0 {
			return &DuplicateError{ID: e.id(), FirstRow: w.recs[n-1].row, Row: row}
		}
		inOrder = c < 0
	}
	if inOrder {
		w.recs = append(w.recs, e) // above every id of the run
	} else {
		if !w.indexed {
			w.buildTable()
		}
		slot, dup := w.probe(&e)
		if dup >= 0 {
			return &DuplicateError{ID: e.id(), FirstRow: w.recs[dup].row, Row: row}
		}
		w.table[slot] = uint32(len(w.recs)) + 1
		w.recs = append(w.recs, e)
	}
	w.records++
	w.maxFrame = max(w.maxFrame, int64(frame))
	return nil
}

// id returns the entry's id as a string.
func (e *recEntry) id() string {
	var b [IDLen]byte
	putID(b[:], e.hi, e.mid, e.lo)
	return string(b[:])
}

// AddRef adds the reference child → parent through RefFields[field]. Repeated pairs are
// allowed; they are stored once per run (and Reader.Children dedupes across runs).
func (w *Writer) AddRef(field int, parent, child string) error {
	if err := w.checkRef(field, ValidID(parent), ValidID(child)); err != nil {
		return refError(err, parent, child)
	}
	e := refEntry{field: uint16(field)}
	e.ph, e.pm, e.pl = packID(parent)
	e.ch, e.cm, e.cl = packID(child)
	return w.addRef(&e)
}

// AddRefID is AddRef for ids held in arrays: it does not allocate.
func (w *Writer) AddRefID(field int, parent, child [IDLen]byte) error {
	if err := w.checkRef(field, validID(parent[:]), validID(child[:])); err != nil {
		return refError(err, string(parent[:]), string(child[:]))
	}
	e := refEntry{field: uint16(field)}
	e.ph, e.pm, e.pl = packID(parent[:])
	e.ch, e.cm, e.cl = packID(child[:])
	return w.addRef(&e)
}

// errBadParent and errBadChild are what checkRef reports for refError to name the id.
var errBadParent, errBadChild = errors.New("parent"), errors.New("child")

func (w *Writer) checkRef(field int, parentOK, childOK bool) error {
	if err := w.usable(); err != nil {
		return err
	}
	if field < 0 || field >= len(w.opt.RefFields) {
		return fmt.Errorf("recindex: %w: number %d of %d", ErrUnknownField, field, len(w.opt.RefFields))
	}
	if !parentOK {
		return fmt.Errorf("recindex: %s %w", w.opt.RefFields[field], errBadParent)
	}
	if !childOK {
		return fmt.Errorf("recindex: %s %w", w.opt.RefFields[field], errBadChild)
	}
	return nil
}

func refError(err error, parent, child string) error {
	switch {
	case errors.Is(err, errBadParent):
		return fmt.Errorf("%v: %w: %s", err, ErrInvalidID, quoteID(parent))
	case errors.Is(err, errBadChild):
		return fmt.Errorf("%v: %w: %s", err, ErrInvalidID, quoteID(child))
	}
	return err
}

func (w *Writer) addRef(e *refEntry) error {
	if err := w.roomForRef(); err != nil {
		return err
	}
	w.refs = append(w.refs, *e)
	return nil
}

// AddFrame appends the description of the chunk's next frame; frames are numbered from 0 in
// the order added. Calls after Finish are ignored.
func (w *Writer) AddFrame(f FrameInfo) {
	if !w.done {
		w.frames = append(w.frames, f)
	}
}

// Stats reports the writer's counts so far.
func (w *Writer) Stats() Stats {
	return Stats{Records: w.records, Refs: w.written + int64(len(w.refs)), Runs: len(w.runs), Size: w.off}
}

// Finish writes the last run, checks for ids repeated across runs (a *DuplicateError, naming
// both rows), and writes the footer. On success bytes [0, size) of the spool are the index
// object. The writer cannot be used afterwards.
func (w *Writer) Finish() (size int64, err error) {
	if err := w.usable(); err != nil {
		return 0, err
	}
	w.done = true
	if err := w.finish(); err != nil {
		w.err = err
		return 0, err
	}
	return w.off, nil
}

func (w *Writer) finish() error {
	if err := w.flushRun(); err != nil {
		return err
	}
	w.dropRecs()
	w.dropRefs()
	w.table, w.indexed = nil, false
	if len(w.frames) > 0 && w.maxFrame >= int64(len(w.frames)) {
		return fmt.Errorf("recindex: a record is in frame %d but only %d frames were added", w.maxFrame, len(w.frames))
	}
	if err := w.flushWrites(); err != nil {
		return err
	}
	if err := w.checkDuplicates(); err != nil {
		return err
	}
	if err := w.writeFooter(); err != nil {
		return err
	}
	err := w.flushWrites()
	w.wbuf = nil
	return err
}

// memUsed is the memory held by the current run's entries and hash table (counted whether
// the table is built or not).
func (w *Writer) memUsed() int {
	return w.recCap*recEntrySize + 2*w.recCap*4 + w.refCap*refEntrySize
}

func (w *Writer) roomForRec() error {
	if len(w.recs) < w.recCap || w.growRecs() {
		return nil
	}
	if err := w.flushRun(); err != nil {
		return err
	}
	if len(w.recs) < w.recCap || w.growRecs() {
		return nil
	}
	w.dropRefs() // the (empty) reference buffer holds the whole budget: release it
	if w.growRecs() {
		return nil
	}
	return fmt.Errorf("recindex: RunBytes %d leaves no room for a record", w.opt.RunBytes)
}

func (w *Writer) roomForRef() error {
	if len(w.refs) < w.refCap || w.growRefs() {
		return nil
	}
	if err := w.flushRun(); err != nil {
		return err
	}
	if len(w.refs) < w.refCap || w.growRefs() {
		return nil
	}
	w.dropRecs()
	w.table, w.indexed = nil, false
	if w.growRefs() {
		return nil
	}
	return fmt.Errorf("recindex: RunBytes %d leaves no room for a reference", w.opt.RunBytes)
}

// grant returns by how many entries of cost bytes a run buffer of capacity c may grow: it
// doubles, but takes at most half of the free budget when the other buffer may still need
// room, and does not bother with fewer than 8 entries or an eighth of c (the run is flushed
// instead: each growth copies the buffer, and halving steps towards the last free bytes
// copied a whole run's worth about ten times for a few per cent more room).
func (w *Writer) grant(c, cost int, share bool) int {
	free := w.opt.RunBytes - w.memUsed()
	if share {
		free /= 2
	}
	least := 8
	if c >= 1<<14 {
		least = c / 8
	}
	if add := min(max(c, 256), free/cost); add >= least {
		return add
	}
	return 0
}

// growRecs grows the record buffer (and its hash table) as far as the budget allows.
func (w *Writer) growRecs() bool {
	add := w.grant(w.recCap, recCost, len(w.opt.RefFields) > 0)
	if add == 0 {
		return false
	}
	w.resizeRecs(w.recCap + add)
	return true
}

// resizeRecs sets the record buffer's capacity to c (resized).
func (w *Writer) resizeRecs(c int) {
	w.recs = resized(&recArrays, w.recs, w.recCap, c)
	w.recCap = c
	w.table = nil
	if w.indexed {
		w.buildTable()
	}
}

// buildTable (re)builds the hash table over the run's entries, allocating it if its size
// does not match the record buffer.
func (w *Writer) buildTable() {
	if len(w.table) != 2*w.recCap {
		w.table = make([]uint32, 2*w.recCap)
	} else {
		clear(w.table)
	}
	for i := range w.recs {
		slot, _ := w.probe(&w.recs[i])
		w.table[slot] = uint32(i) + 1
	}
	w.indexed = true
}

func (w *Writer) growRefs() bool {
	add := w.grant(w.refCap, refEntrySize, true)
	if add == 0 {
		return false
	}
	w.resizeRefs(w.refCap + add)
	return true
}

// resizeRefs is resizeRecs for the reference buffer.
func (w *Writer) resizeRefs(c int) {
	w.refs = resized(&refArrays, w.refs, w.refCap, c)
	w.refCap = c
}

// dropRecs and dropRefs release a run buffer (empty or written), its array to the pool.
func (w *Writer) dropRecs() {
	putRun(&recArrays, w.recs)
	w.recs, w.recCap = nil, 0
}

func (w *Writer) dropRefs() {
	putRun(&refArrays, w.refs)
	w.refs, w.refCap = nil, 0
}

// resized is run buffer a, of capacity (as the budget sees it) from, with capacity to: the same
// array when growing within it; else a pooled array large enough when growing, or a new one of
// exactly to (shrinking frees the rest: the larger array goes to the pool for a later writer).
func resized[T any](p *sync.Pool, a []T, from, to int) []T {
	if to >= from && to <= cap(a) {
		return a
	}
	var n []T
	if to > from {
		n = getRun[T](p, to)
	}
	if n == nil {
		n = make([]T, 0, to)
	}
	n = append(n, a...)
	if to < from {
		putRun(p, a)
	}
	return n
}

// recArrays and refArrays keep the run buffers' arrays of finished writers for the next ones.
var recArrays, refArrays sync.Pool

// getRun returns an empty pooled array of at least n entries, or nil: a smaller one is
// dropped (the pool's arrays are the largest ones writers ended with).
func getRun[T any](p *sync.Pool, n int) []T {
	if a, ok := p.Get().(*[]T); ok && cap(*a) >= n {
		return (*a)[:0]
	}
	return nil
}

func putRun[T any](p *sync.Pool, a []T) {
	if cap(a) >= 256 {
		a = a[:0]
		p.Put(&a)
	}
}

// probe finds e's id in the hash table: the index of its entry, or -1 and the empty slot
// where it goes. The table is at most half full. The hash is seeded per writer so that
// crafted ids cannot make probe sequences long.
func (w *Writer) probe(e *recEntry) (slot, found int) {
	h := (e.hi ^ w.seed) * 0x9e3779b97f4a7c15
	h = (bits.RotateLeft64(h, 31) ^ e.mid) * 0xc2b2ae3d27d4eb4f
	h = (bits.RotateLeft64(h, 31) ^ uint64(e.lo)) * 0x165667b19e3779f9
	hi, _ := bits.Mul64(h, uint64(len(w.table)))
	i := int(hi)
	for {
		s := w.table[i]
		if s == 0 {
			return i, -1
		}
		if w.recs[s-1].sameID(e) {
			return i, int(s - 1)
		}
		if i++; i == len(w.table) {
			i = 0
		}
	}
}

// flushRun sorts the entries in memory and writes them out as a run.
func (w *Writer) flushRun() error {
	if len(w.recs) == 0 && len(w.refs) == 0 {
		return nil
	}
	r := run{sections: make([]section, 1+len(w.opt.RefFields))}

	if w.indexed {
		sortRecs(w.recs)
	} // else the ids came in strictly increasing order
	s := &r.sections[0]
	w.startSection(s, IDLen)
	s.bloom = newBloom(len(w.recs), w.opt.BloomBitsPerKey)
	var key [IDLen]byte
	for i := range w.recs {
		e := &w.recs[i]
		putID(key[:], e.hi, e.mid, e.lo)
		v := binary.AppendUvarint(w.val[:0], uint64(e.frame))
		v = binary.AppendUvarint(v, uint64(e.row))
		if err := w.addEntry(s, key[:], v); err != nil {
			return err
		}
		s.bloom.add(keyHash(key[:]))
	}
	if err := w.endSection(s); err != nil {
		return err
	}

	sortRefs(w.refs)
	refs := w.refs
	for f := range w.opt.RefFields {
		n := 0
		for n < len(refs) && int(refs[n].field) == f {
			n++
		}
		if err := w.writeRefSection(&r.sections[1+f], refs[:n]); err != nil {
			return err
		}
		refs = refs[n:]
	}

	w.runs = append(w.runs, r)
	w.rebalance()
	return nil
}

// writeRefSection writes sorted reference entries of one field, dropping repeats.
func (w *Writer) writeRefSection(s *section, refs []refEntry) error {
	w.startSection(s, refKeyLen)
	parents := 0
	for i := range refs {
		if i == 0 || !refs[i].sameParent(&refs[i-1]) {
			parents++
		}
	}
	s.bloom = newBloom(parents, w.opt.BloomBitsPerKey)
	var key [refKeyLen]byte
	for i := range refs {
		e := &refs[i]
		newParent := i == 0 || !e.sameParent(&refs[i-1])
		if !newParent && e.ch == refs[i-1].ch && e.cm == refs[i-1].cm && e.cl == refs[i-1].cl {
			continue // the same pair again
		}
		putID(key[:], e.ph, e.pm, e.pl)
		putID(key[IDLen:], e.ch, e.cm, e.cl)
		if err := w.addEntry(s, key[:], nil); err != nil {
			return err
		}
		if newParent {
			s.bloom.add(keyHash(key[:IDLen]))
		}
	}
	w.written += s.count
	return w.endSection(s)
}

// rebalance empties the run buffers and shrinks one that was mostly idle, so that the budget
// goes to the kind of entry the data actually has.
func (w *Writer) rebalance() {
	nr, nf := len(w.recs), len(w.refs)
	w.recs, w.refs = w.recs[:0], w.refs[:0]
	w.indexed = false // the table, if any, is cleared when next needed
	shrunk := func(used, c int) int {
		if c > used+used/4+16 {
			return used + used/8 + 16
		}
		return c
	}
	if c := shrunk(nr, w.recCap); c != w.recCap {
		w.resizeRecs(c)
	}
	if c := shrunk(nf, w.refCap); c != w.refCap {
		w.resizeRefs(c)
	}
}

func (w *Writer) startSection(s *section, keyLen int) {
	s.keyLen = keyLen
	s.offs = append(s.offs[:0], w.off)
	w.bw.keyLen = keyLen
	w.bw.reset()
}

func (w *Writer) addEntry(s *section, key, val []byte) error {
	sh := w.bw.shared(key)
	if w.bw.n > 0 && !w.bw.fitsShared(sh, len(val)) {
		if err := w.flushBlock(s); err != nil {
			return err
		}
		sh = 0 // a block starts with a restart
	}
	if w.bw.n == 0 {
		s.firstKeys = append(s.firstKeys, key...)
	}
	w.bw.addShared(key, val, sh)
	s.count++
	return nil
}

func (w *Writer) flushBlock(s *section) error {
	if err := w.write(w.bw.finish()); err != nil {
		return err
	}
	s.offs = append(s.offs, w.off)
	w.bw.reset()
	return nil
}

func (w *Writer) endSection(s *section) error {
	if w.bw.n > 0 {
		if err := w.flushBlock(s); err != nil {
			return err
		}
	}
	if s.count == 0 {
		s.offs = nil
		return nil
	}
	s.lastKey = slices.Clone(w.bw.last[:s.keyLen])
	return nil
}

const writeBuffer = 128 << 10

// write appends p to the object, through the write buffer.
func (w *Writer) write(p []byte) error {
	if w.err != nil {
		return w.err
	}
	if len(w.wbuf)+len(p) > cap(w.wbuf) {
		if err := w.flushWrites(); err != nil {
			return err
		}
		if w.wbuf == nil {
			w.wbuf = make([]byte, 0, writeBuffer)
		}
	}
	if len(p) > cap(w.wbuf) {
		if err := w.spoolWrite(p); err != nil {
			return err
		}
	} else {
		w.wbuf = append(w.wbuf, p...)
	}
	w.off += int64(len(p))
	return nil
}

func (w *Writer) flushWrites() error {
	if len(w.wbuf) == 0 {
		return nil
	}
	err := w.spoolWrite(w.wbuf)
	w.wbuf = w.wbuf[:0]
	return err
}

func (w *Writer) spoolWrite(p []byte) error {
	n, err := w.sp.Write(p)
	if err == nil && n != len(p) {
		err = io.ErrShortWrite
	}
	if err != nil {
		w.err = fmt.Errorf("recindex: write spool: %w", err)
		return w.err
	}
	return nil
}

// checkDuplicates finds ids present in more than one run. Only the key ranges where two or
// more runs overlap can hold one; each such segment is merged over the runs covering it,
// reading their record blocks back from the spool. An export in id order has (almost) no
// overlaps and costs (almost) nothing; randomly ordered ids cost one sequential read of the
// record blocks.
func (w *Writer) checkDuplicates() error {
	type event struct {
		key   []byte
		start bool
	}
	var secs []*section
	var events []event
	for i := range w.runs {
		if s := &w.runs[i].sections[0]; s.count > 0 {
			secs = append(secs, s)
			events = append(events, event{s.firstKey(0), true}, event{s.lastKey, false})
		}
	}
	// Starts sort before ends at the same key: runs that touch overlap.
	slices.SortFunc(events, func(a, b event) int {
		if c := bytes.Compare(a.key, b.key); c != 0 {
			return c
		}
		if a.start == b.start {
			return 0
		}
		if a.start {
			return -1
		}
		return 1
	})
	depth := 0
	var lo []byte
	for _, ev := range events {
		if ev.start {
			if depth++; depth == 2 {
				lo = ev.key
			}
			continue
		}
		if depth--; depth == 1 {
			hi := ev.key
			var cover []*section
			for _, s := range secs {
				if bytes.Compare(s.firstKey(0), hi) <= 0 && bytes.Compare(s.lastKey, lo) >= 0 {
					cover = append(cover, s)
				}
			}
			// The run buffers are free now: their budget buys read-ahead (at least a block
			// per run, whatever the budget).
			src := blockSource{ra: w.sp, readAhead: min(w.opt.RunBytes/len(cover), 256<<10)}
			if err := mergeCheck(src, cover, lo, hi); err != nil {
				return err
			}
		}
	}
	return nil
}

func mergeCheck(src blockSource, secs []*section, lo, hi []byte) error {
	var prev [IDLen]byte
	var prevRow int64
	have := false
	return mergeSections(src, secs, lo, hi, func(key []byte, _ uint32, row int64) error {
		if have && bytes.Equal(prev[:], key) {
			return &DuplicateError{ID: string(key), FirstRow: min(prevRow, row), Row: max(prevRow, row)}
		}
		copy(prev[:], key)
		prevRow, have = row, true
		return nil
	})
}

func (w *Writer) writeFooter() error {
	f := footer{
		blockSize:  w.opt.BlockSize,
		bitsPerKey: w.opt.BloomBitsPerKey,
		fields:     w.opt.RefFields,
		frames:     w.frames,
		records:    w.records,
		refs:       w.written,
		runs:       w.runs,
	}
	body := f.appendBody(nil)
	crc := crc32.Update(0, castagnoli, body)
	flen := int64(len(body))
	if err := w.write(body); err != nil {
		return err
	}
	for i := range w.runs {
		for j := range w.runs[i].sections {
			b := w.runs[i].sections[j].bloom.bits
			crc = crc32.Update(crc, castagnoli, b)
			flen += int64(len(b))
			if err := w.write(b); err != nil {
				return err
			}
		}
	}
	var tr [trailerLen]byte
	binary.LittleEndian.PutUint32(tr[0:], formatVersion)
	binary.LittleEndian.PutUint64(tr[4:], uint64(flen))
	binary.LittleEndian.PutUint32(tr[12:], crc32.Update(crc, castagnoli, tr[:12]))
	copy(tr[16:], magic)
	return w.write(tr[:])
}
