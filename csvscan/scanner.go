package csvscan

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"strings"
	"unicode/utf8"

	"backupstore/sfid"
)

// Default limits.
const (
	DefaultMaxFieldBytes = 4 << 20
	DefaultMaxRowBytes   = 8 << 20
)

// Limits bound what one row may hold. Zero (or negative) fields take the defaults. The scanner's
// memory is bounded by MaxRowBytes (plus the header): a row is rejected as soon as MaxRowBytes of
// it have been seen without its end.
type Limits struct {
	MaxFieldBytes int // longest field in bytes, quotes included; default DefaultMaxFieldBytes
	MaxRowBytes   int // longest row in bytes, terminator included; default DefaultMaxRowBytes
}

// Row is one data row, passed to the emit callback. Raw and Refs are reused for the next row:
// they are valid only during the callback, and a callback that keeps them must copy them.
//
// A blank line (nothing but its terminator: LF, CRLF, or a lone CR ending the input) is a Row
// too, with Blank set, so that the header and every Row's Raw still reproduce the input byte for
// byte; it carries no record: its ID and Refs are zero, and callers must not index or count it.
// It does take a row number, as the empty row a spreadsheet shows for it.
type Row struct {
	Raw    []byte    // the row's exact input bytes, terminator (CRLF, LF or none at the end) included
	Number int64     // 1-based row number, the header being row 1
	Blank  bool      // a blank line: no record (ID and Refs are zero)
	ID     sfid.ID   // the Id column, normalised
	Refs   []sfid.ID // per reference column (in New's order): the normalised id, or the zero ID when empty
}

// Scanner scans one CSV record set. It is not safe for concurrent use.
type Scanner struct {
	maxField, maxRow int
	refNames         []string

	header  []byte   // raw header row, terminator included
	columns []string // header names, unquoted
	// slot maps a column index to its place in spans: 0 for Id, 1+i for refNames[i], -1 for a
	// column the scanner does not extract. It is as long as the last extracted column needs.
	slot    []int
	spans   []span // per slot, the field found in the current row
	idc     int    // index of the Id column
	refSlot []int  // per reference column, its slot
	all     []span // every field of the header row

	carry []byte // the start of a row that spans Feed calls
	odd   bool   // whether carry holds an odd number of quotes (its end is inside a quoted field)

	rows   int64 // rows seen, header included
	row    Row
	err    error // sticky
	closed bool
}

// span is a field's content within a row: r[start:end], quotes stripped. esc reports that the
// content still holds doubled quotes.
type span struct {
	start, end int
	esc        bool
}

// New returns a Scanner that extracts, besides Id, the reference columns refColumns (for example
// "AccountId"); each must be in the header, or the scan fails with MISSING_COLUMN when the header
// arrives.
func New(refColumns []string, lim Limits) *Scanner {
	s := &Scanner{
		maxField: lim.MaxFieldBytes,
		maxRow:   lim.MaxRowBytes,
		refNames: append([]string(nil), refColumns...),
	}
	if s.maxField <= 0 {
		s.maxField = DefaultMaxFieldBytes
	}
	if s.maxRow <= 0 {
		s.maxRow = DefaultMaxRowBytes
	}
	s.spans = make([]span, 1+len(refColumns))
	s.row.Refs = make([]sfid.ID, len(refColumns))
	return s
}

// Header returns the raw header row, terminator included, once it has been scanned (nil before).
// The caller must not modify it.
func (s *Scanner) Header() []byte { return s.header }

// Columns returns the header's column names, once the header has been scanned (nil before). The
// caller must not modify it.
func (s *Scanner) Columns() []string { return s.columns }

// Held returns the bytes of buffer capacity the scanner holds: the carry buffer of a row that
// spans Feed calls (at most MaxRowBytes) and its copy of the header row.
func (s *Scanner) Held() int { return cap(s.carry) + cap(s.header) }

// Rows returns the number of rows scanned so far, the header included.
func (s *Scanner) Rows() int64 { return s.rows }

var errClosed = errors.New("csvscan: Feed after Close")

// Feed scans p, which continues the input, calling emit for each data row it completes (emit may
// be nil). The header row is not emitted; see Header. Feed returns the first *RowError, or the
// first error emit returns, unchanged; once it has failed, Feed and Close keep returning that
// error. p is not retained after Feed returns.
func (s *Scanner) Feed(p []byte, emit func(r *Row) error) error {
	if s.err != nil {
		return s.err
	}
	if s.closed {
		s.err = errClosed
		return s.err
	}
	if len(s.carry) > 0 {
		// The row in carry continues in p: find its end by quote parity, without walking it
		// again (a row fed one byte at a time must not cost quadratic time).
		room := s.maxRow - len(s.carry)
		w := p[:min(len(p), room)]
		end, odd := rowEnd(w, s.odd)
		if end < 0 {
			if len(p) > room {
				s.appendCarry(w)
				return s.fail(s.tooLarge(s.carry))
			}
			s.appendCarry(p)
			s.odd = odd
			return nil
		}
		s.appendCarry(p[:end])
		p = p[end:]
		err := s.whole(s.carry, walkMore, emit)
		s.carry = s.carry[:0]
		if err != nil {
			return s.fail(err)
		}
	}
	for len(p) > 0 {
		w := p[:min(len(p), s.maxRow)]
		end, n, na, ok := -1, 0, uint64(0), false
		if s.header != nil {
			end, n, na, ok = s.walkFast(w)
		}
		if !ok {
			var f *fault
			if end, n, na, f = s.walk(w, walkMore, s.header == nil); f != nil {
				return s.fail(s.rowError(f))
			}
		}
		if end < 0 {
			if len(p) > s.maxRow {
				return s.fail(s.tooLarge(w))
			}
			s.appendCarry(p)
			s.odd = bytes.Count(p, quoteSep)&1 == 1
			return nil
		}
		if err := s.finish(p[:end], n, na, emit); err != nil {
			return s.fail(err)
		}
		p = p[end:]
	}
	return nil
}

// Close ends the input: it scans a last row that lacks a terminator, and fails if the input ended
// inside a quoted field (UNCLOSED_QUOTE) or held no header at all (NO_HEADER). Calling Close again
// returns the same result.
func (s *Scanner) Close(emit func(r *Row) error) error {
	if s.err != nil || s.closed {
		return s.err
	}
	s.closed = true
	if len(s.carry) > 0 {
		err := s.whole(s.carry, walkEOF, emit)
		s.carry = s.carry[:0]
		if err != nil {
			return s.fail(err)
		}
	}
	if s.header == nil {
		return s.fail(&RowError{Reason: NoHeader, Detail: "the input is empty; a record set starts with a header row of field names"})
	}
	return nil
}

// appendCarry appends b to the carry buffer, growing it no further than MaxRowBytes (callers
// never append beyond that), so that the buffer is what bounds the scanner's memory.
func (s *Scanner) appendCarry(b []byte) {
	if n := len(s.carry) + len(b); n > cap(s.carry) {
		c := make([]byte, len(s.carry), min(max(n, 2*cap(s.carry), 512), s.maxRow))
		copy(c, s.carry)
		s.carry = c
	}
	s.carry = append(s.carry, b...)
}

func (s *Scanner) fail(err error) error {
	s.err = err
	return err
}

// rowEnd returns the index just past the LF that ends the row continuing at b[0], given whether
// the row so far holds an odd number of quotes, or -1 and the parity at the end of b. In a well
// formed row an LF ends the row exactly when the quotes before it pair up, which is where walk
// ends it; in a malformed one walk fails at the first misplaced quote, which comes before any LF
// where the two could disagree. Inside quotes it looks only for the next quote, so that a long
// field of many lines costs one search, not one per line.
func rowEnd(b []byte, odd bool) (int, bool) {
	i := 0
	for {
		if odd {
			j := bytes.IndexByte(b[i:], '"')
			if j < 0 {
				return -1, true
			}
			i += j + 1
			odd = false
		}
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return -1, bytes.Count(b[i:], quoteSep)&1 == 1
		}
		if bytes.Count(b[i:i+j], quoteSep)&1 == 0 {
			return i + j + 1, false
		}
		i += j + 1 // this LF is inside a quoted field
		odd = true
	}
}

var quoteSep = []byte{'"'}

// RowSkipper finds where the first row of a CSV stream ends, quote-aware, however the stream is
// cut: a line break inside a quoted field (a header column named "Na\nme") does not end the row.
// It is how a reader of stored record-set bytes skips a chunk's header row. The zero value is
// ready to use; it is not safe for concurrent use.
type RowSkipper struct {
	odd  bool // the row so far holds an odd number of quotes
	done bool
}

// Skip consumes p, which continues the stream, and returns what follows the first row's line
// feed in it: nil while the row has not ended, then the rest of the piece that ends it, then
// every later p unchanged. Like Scanner, it takes the first LF outside quotes as the row's end;
// input that Scanner would reject may be cut anywhere, but Skip never fails or panics.
func (k *RowSkipper) Skip(p []byte) []byte {
	if k.done {
		return p
	}
	end, odd := rowEnd(p, k.odd)
	if end < 0 {
		k.odd = odd
		return nil
	}
	k.done = true
	return p[end:]
}

// Done reports whether the first row has ended.
func (k *RowSkipper) Done() bool { return k.done }

// whole walks r, which holds exactly one row (the last one, perhaps unterminated, if mode is
// walkEOF), and finishes it.
func (s *Scanner) whole(r []byte, mode int, emit func(*Row) error) error {
	end, n, na, f := s.walk(r, mode, s.header == nil)
	if f != nil {
		return s.rowError(f)
	}
	if end != len(r) {
		// Unreachable: rowEnd and walk agree on every row walk accepts (see rowEnd), and the
		// fuzz tests hold them to it. Fail the scan rather than the process if they ever differ.
		return fmt.Errorf("csvscan: internal error: row %d: walk ends the row at byte %d of %d", s.rows+1, end, len(r))
	}
	return s.finish(r, n, na, emit)
}

// finish checks what walk does not (width, UTF-8, ids) in row r of n fields, whose bytes OR-ed
// together (roughly: walk may include a few bytes past r) are na, and emits it, or takes it as
// the header if none has been seen.
func (s *Scanner) finish(r []byte, n int, na uint64, emit func(*Row) error) error {
	if s.header == nil {
		if err := s.parseHeader(r); err != nil {
			return err
		}
		s.rows++
		return nil
	}
	if n == 1 && isBlank(r) {
		return s.blank(r, emit)
	}
	if n != len(s.columns) {
		return &RowError{Row: s.rows + 1, Reason: WrongWidth,
			Detail: fmt.Sprintf("the row has %d fields, the header %d", n, len(s.columns))}
	}
	if na&0x8080808080808080 != 0 && !validUTF8(r) {
		return s.utf8Error(r)
	}
	if sp := s.spans[0]; !sfid.ParseBytesTo(&s.row.ID, r[sp.start:sp.end]) {
		return s.idError(r, sp, s.columns[s.idc], BadID)
	}
	for i := range s.row.Refs {
		sp := s.spans[s.refSlot[i]]
		if sp.start == sp.end {
			s.row.Refs[i] = sfid.ID{}
		} else if !sfid.ParseBytesTo(&s.row.Refs[i], r[sp.start:sp.end]) {
			return s.idError(r, sp, s.refNames[i], BadReference)
		}
	}
	s.rows++
	if emit == nil {
		return nil
	}
	s.row.Raw = r
	s.row.Number = s.rows
	err := emit(&s.row)
	s.row.Raw = nil
	return err
}

// isBlank reports whether row r is a blank line: its terminator alone.
func isBlank(r []byte) bool {
	switch len(r) {
	case 1:
		return r[0] == '\n' || r[0] == '\r' // a lone CR only ever ends the input
	case 2:
		return r[0] == '\r' && r[1] == '\n'
	}
	return false
}

// blank emits blank line r: a row number, no record.
func (s *Scanner) blank(r []byte, emit func(*Row) error) error {
	s.rows++
	if emit == nil {
		return nil
	}
	s.row.Raw, s.row.Number, s.row.Blank, s.row.ID = r, s.rows, true, sfid.ID{}
	clear(s.row.Refs)
	err := emit(&s.row)
	s.row.Raw, s.row.Blank = nil, false
	return err
}

// fault is a structural error found by walk, before it knows the column name.
type fault struct {
	reason string
	col    int // 0-based column index
	detail string
}

func (s *Scanner) rowError(f *fault) *RowError {
	e := &RowError{Row: s.rows + 1, Reason: f.reason, Detail: f.detail}
	if f.col < len(s.columns) {
		e.Column = s.columns[f.col]
	}
	return e
}

// Modes of walk.
const (
	walkMore   = iota // r may end mid-row: a row without its end in r is no error (end -1)
	walkEOF           // r ends the input: the row ends at the end of r at the latest
	walkPrefix        // r is the first MaxRowBytes of a row with no end in them: report what is wrong in them
)

// walk checks the structure of the row that starts at r[0], field by field, and returns the index
// just past its terminator (-1 if r does not hold all of the row), its number of fields, the OR of
// the bytes it looked at (for a quick all-ASCII test), and the first fault. It records the fields
// the scanner extracts into s.spans, or, with all, every field into s.all.
//
// A fault is reported only where every longer input would have it too, so that how the input is
// cut into chunks never changes the outcome: a field cut by the end of r is not checked unless mode
// is walkPrefix (r then always has exactly MaxRowBytes bytes).
func (s *Scanner) walk(r []byte, mode int, all bool) (end, nfields int, na uint64, f *fault) {
	i := 0
	if all {
		s.all = s.all[:0]
		if s.header == nil && bytes.HasPrefix(r, bom) {
			i = len(bom)
		}
	}
	col := 0
	for {
		fs := i
		if i < len(r) && r[i] == '"' {
			j := i + 1
			esc := false
			k := 0
			var c byte // the byte after the quote at k
			for {
				var x uint64
				k, x = indexQuote(r, j)
				na |= x
				if k+1 >= len(r) {
					break
				}
				if c = r[k+1]; c != '"' {
					break
				}
				esc = true
				j = k + 2
			}
			if k+1 >= len(r) {
				// No closing quote in r (k == len(r)), or r ends with this quote and, unless the
				// input ends here, it could be the first of a doubled quote.
				if k == len(r)-1 && mode == walkEOF {
					if len(r)-fs > s.maxField {
						return -1, col + 1, na, s.fieldTooLarge(col, len(r)-fs, false)
					}
					s.record(all, col, fs+1, k, esc)
					return len(r), col + 1, na, nil
				}
				if mode != walkMore && len(r)-fs > s.maxField {
					return -1, col + 1, na, s.fieldTooLarge(col, len(r)-fs, true)
				}
				if mode == walkEOF {
					return -1, col + 1, na, &fault{UnclosedQuote, col, "the input ends inside a quoted field that starts in this row"}
				}
				return -1, col + 1, na, nil
			}
			i = k + 1
			if i-fs > s.maxField {
				return -1, col + 1, na, s.fieldTooLarge(col, i-fs, false)
			}
			switch c {
			case ',':
				s.record(all, col, fs+1, k, esc)
				col++
				i++
				continue
			case '\n':
				s.record(all, col, fs+1, k, esc)
				return i + 1, col + 1, na, nil
			case '\r':
				if i+1 < len(r) {
					if r[i+1] == '\n' {
						s.record(all, col, fs+1, k, esc)
						return i + 2, col + 1, na, nil
					}
				} else if mode == walkEOF {
					s.record(all, col, fs+1, k, esc)
					return i + 1, col + 1, na, nil
				} else {
					return -1, col + 1, na, nil
				}
			}
			return -1, col + 1, na, &fault{BadQuote, col, "text after the closing quote of a quoted field (a quote inside a quoted field must be doubled)"}
		}
		k, x := indexSep(r, i)
		na |= x
		if k == len(r) {
			switch mode {
			case walkEOF:
				fe := k
				if fe > fs && r[fe-1] == '\r' {
					fe--
				}
				if fe-fs > s.maxField {
					return -1, col + 1, na, s.fieldTooLarge(col, fe-fs, false)
				}
				s.record(all, col, fs, fe, false)
				return k, col + 1, na, nil
			case walkPrefix:
				if k-fs > s.maxField {
					return -1, col + 1, na, s.fieldTooLarge(col, k-fs, true)
				}
			}
			return -1, col + 1, na, nil
		}
		c := r[k]
		fe := k
		if c == '"' {
			return -1, col + 1, na, &fault{BadQuote, col, "a quote inside an unquoted field (quote the whole field and double the quote)"}
		}
		if c == '\n' && fe > fs && r[fe-1] == '\r' {
			fe--
		}
		if fe-fs > s.maxField {
			return -1, col + 1, na, s.fieldTooLarge(col, fe-fs, false)
		}
		s.record(all, col, fs, fe, false)
		if c == '\n' {
			return k + 1, col + 1, na, nil
		}
		col++
		i = k + 1
	}
}

// walkFast is walk for the common case, a well-formed data row held whole in r whose fields
// cannot exceed MaxFieldBytes; it returns ok false for anything else, which walk then sorts out.
// It is the hot path: it skips walk's checks of mode and limits, inlines indexQuote, and in
// unquoted fields looks first for any byte below '-' (',', '"' and LF all are; the ids, numbers
// and dates that fill unquoted fields hold none), which takes fewer operations a word than
// testing for the three exactly.
func (s *Scanner) walkFast(r []byte) (end, nfields int, na uint64, ok bool) {
	slot, spans := s.slot, s.spans
	col, i := 0, 0
	for {
		fs := i
		if i < len(r) && r[i] == '"' {
			j := i + 1
			esc := false
			k := 0
			var c byte
			for {
				for k = j; ; k += 8 {
					if k+8 > len(r) {
						for ; k < len(r) && r[k] != '"'; k++ {
							na |= uint64(r[k])
						}
						break
					}
					w := binary.LittleEndian.Uint64(r[k:])
					na |= w
					if m := msb &^ nonzero(w^(lsb*'"')); m != 0 {
						k += bits.TrailingZeros64(m) >> 3
						break
					}
				}
				if k+1 >= len(r) {
					return -1, 0, 0, false
				}
				if c = r[k+1]; c != '"' {
					break
				}
				esc = true
				j = k + 2
			}
			if col < len(slot) {
				if sl := slot[col]; sl >= 0 {
					spans[sl] = span{fs + 1, k, esc}
				}
			}
			col++
			switch c {
			case ',':
				i = k + 2
				continue
			case '\n':
				end = k + 2
			case '\r':
				if k+2 >= len(r) || r[k+2] != '\n' {
					return -1, 0, 0, false
				}
				end = k + 3
			default:
				return -1, 0, 0, false
			}
			break
		}
		k := i
		for {
			if k+8 > len(r) {
				for ; k < len(r); k++ {
					c := r[k]
					na |= uint64(c)
					if c == ',' || c == '"' || c == '\n' {
						break
					}
				}
				break
			}
			w := binary.LittleEndian.Uint64(r[k:])
			na |= w
			if m := msb &^ (((w & low7) + lsb*(0x80-'-')) | w); m != 0 {
				k += bits.TrailingZeros64(m) >> 3
				if c := r[k]; c == ',' || c == '"' || c == '\n' {
					break
				}
				k++
				continue
			}
			k += 8
		}
		if k == len(r) {
			return -1, 0, 0, false
		}
		c := r[k]
		if c == '"' {
			return -1, 0, 0, false
		}
		fe := k
		if c == '\n' && fe > fs && r[fe-1] == '\r' {
			fe--
		}
		if col < len(slot) {
			if sl := slot[col]; sl >= 0 {
				spans[sl] = span{fs, fe, false}
			}
		}
		col++
		if c == ',' {
			i = k + 1
			continue
		}
		end = k + 1
		break
	}
	if end > s.maxField {
		return -1, 0, 0, false // a field may be too long: let walk tell
	}
	return end, col, na, true
}

// record notes field col, r[start:end] (esc: with doubled quotes), if the scanner extracts it.
func (s *Scanner) record(all bool, col, start, end int, esc bool) {
	if all {
		s.all = append(s.all, span{start, end, esc})
	} else if col < len(s.slot) && s.slot[col] >= 0 {
		s.spans[s.slot[col]] = span{start, end, esc}
	}
}

func (s *Scanner) fieldTooLarge(col, n int, atLeast bool) *fault {
	more := ""
	if atLeast {
		more = " at least"
	}
	return &fault{FieldTooLarge, col, fmt.Sprintf("the field is%s %d bytes long; the limit is %d", more, n, s.maxField)}
}

// tooLarge explains a row of which the first MaxRowBytes, prefix, hold no row end: a misplaced
// quote or a field too long within prefix is reported first, as it would be in a shorter row.
func (s *Scanner) tooLarge(prefix []byte) error {
	if _, _, _, f := s.walk(prefix, walkPrefix, s.header == nil); f != nil {
		return s.rowError(f)
	}
	return &RowError{Row: s.rows + 1, Reason: RowTooLarge,
		Detail: fmt.Sprintf("the row is longer than the limit of %d bytes", s.maxRow)}
}

// utf8Error names the field holding the first invalid UTF-8 in row r.
func (s *Scanner) utf8Error(r []byte) error {
	off := 0
	for off < len(r) {
		c, size := utf8.DecodeRune(r[off:])
		if c == utf8.RuneError && size == 1 {
			break
		}
		off += size
	}
	e := &RowError{Row: s.rows + 1, Reason: InvalidUTF8, Detail: fmt.Sprintf("invalid UTF-8 at byte %d of the row", off)}
	s.walk(r, walkEOF, true)
	for i, sp := range s.all {
		if off >= sp.start && off < sp.end {
			e.Column = s.columns[i]
			e.Detail = fmt.Sprintf("invalid UTF-8 at byte %d of the field", off-sp.start)
			break
		}
	}
	return e
}

func (s *Scanner) idError(r []byte, sp span, column, reason string) error {
	v := r[sp.start:sp.end]
	if sp.esc {
		v = bytes.ReplaceAll(v, []byte(`""`), []byte(`"`))
	}
	e := &RowError{Row: s.rows + 1, Column: column, Reason: reason}
	if len(v) == 0 {
		e.Detail = "the Id is empty; every row needs the record's Salesforce id"
		return e
	}
	_, err := sfid.ParseBytes(v)
	var se *sfid.Error
	if errors.As(err, &se) && se.Reason == sfid.ReasonChecksum {
		e.Detail = err.Error()
	} else {
		e.Detail = quote(v) + " is not a Salesforce id: " + sfid.ReasonSyntax
	}
	return e
}

var bom = []byte("\xef\xbb\xbf")

// parseHeader takes the header row r, whose fields walk left in s.all: it must name every column,
// once, and have an Id column and each reference column.
func (s *Scanner) parseHeader(r []byte) error {
	cols := make([]string, len(s.all))
	for i, sp := range s.all {
		v := r[sp.start:sp.end]
		if sp.esc {
			v = bytes.ReplaceAll(v, []byte(`""`), []byte(`"`))
		}
		switch {
		case len(v) == 0:
			return &RowError{Row: 1, Reason: BadHeader, Detail: fmt.Sprintf("column %d has no name", i+1)}
		case !utf8.Valid(v):
			return &RowError{Row: 1, Reason: BadHeader, Detail: fmt.Sprintf("the name of column %d, %s, is not valid UTF-8", i+1, quote(v))}
		}
		cols[i] = string(v)
		for _, c := range cols[:i] {
			if strings.EqualFold(c, cols[i]) {
				return &RowError{Row: 1, Column: cols[i], Reason: DuplicateColumn,
					Detail: fmt.Sprintf("column %d repeats column %q (names are case-insensitive)", i+1, c)}
			}
		}
	}
	find := func(name string) int {
		for i, c := range cols {
			if strings.EqualFold(c, name) {
				return i
			}
		}
		return -1
	}
	idc := find("Id")
	if idc < 0 {
		return &RowError{Row: 1, Reason: NoIDColumn, Detail: "the header has no Id column"}
	}
	last := idc
	refc := make([]int, len(s.refNames))
	for i, name := range s.refNames {
		refc[i] = find(name)
		if refc[i] < 0 {
			return &RowError{Row: 1, Column: name, Reason: MissingColumn,
				Detail: fmt.Sprintf("the reference column %q is not in the header", name)}
		}
		last = max(last, refc[i])
	}
	s.slot = make([]int, last+1)
	for i := range s.slot {
		s.slot[i] = -1
	}
	s.slot[idc] = 0
	s.idc = idc
	// A reference column named twice, or naming Id itself, shares the first slot that claims it.
	s.refSlot = make([]int, len(refc))
	for i, c := range refc {
		if s.slot[c] < 0 {
			s.slot[c] = 1 + i
		}
		s.refSlot[i] = s.slot[c]
	}
	s.columns = cols
	s.header = make([]byte, len(r)) // exactly: Held counts it
	copy(s.header, r)
	s.all = nil
	return nil
}
