package csvscan

import (
	"bytes"
	"slices"
	"strings"
	"unicode/utf8"

	"backupstore/sfid"
)

// This file holds a reference model of the scanner: a plain byte-at-a-time state machine over
// the whole input, written for clarity, not speed. Tests hold the scanner to it.

type refRow struct {
	raw    []byte
	fields []string // unquoted
	spans  [][2]int // raw content span of each field within raw
}

type result struct {
	header []byte
	rows   []emitted
	err    *RowError // nil, or the first error
}

type emitted struct {
	raw    string
	number int64
	blank  bool
	id     string
	refs   []string
}

// refSplit splits in into rows and fields, or reports the first structural error (with its
// 0-based row index and column index).
func refSplit(in []byte) (rows []refRow, errRow, errCol int, reason string) {
	i := 0
	for i < len(in) {
		start := i
		var r refRow
		if len(rows) == 0 && bytes.HasPrefix(in, bom) {
			i += len(bom)
		}
		for {
			// field at i
			var b strings.Builder
			if i < len(in) && in[i] == '"' {
				cs := i + 1
				i++
				for {
					if i >= len(in) {
						return rows, len(rows), len(r.fields), UnclosedQuote
					}
					if in[i] == '"' {
						if i+1 < len(in) && in[i+1] == '"' {
							b.WriteByte('"')
							i += 2
							continue
						}
						break
					}
					b.WriteByte(in[i])
					i++
				}
				ce := i
				i++ // closing quote
				r.fields = append(r.fields, b.String())
				r.spans = append(r.spans, [2]int{cs - start, ce - start})
				switch {
				case i == len(in):
					goto rowEnd
				case in[i] == ',':
					i++
					continue
				case in[i] == '\n':
					i++
					goto rowEnd
				case in[i] == '\r' && i+1 < len(in) && in[i+1] == '\n':
					i += 2
					goto rowEnd
				case in[i] == '\r' && i+1 == len(in):
					i++
					goto rowEnd
				}
				return rows, len(rows), len(r.fields) - 1, BadQuote
			}
			cs := i
			for i < len(in) && in[i] != ',' && in[i] != '\n' {
				if in[i] == '"' {
					return rows, len(rows), len(r.fields), BadQuote
				}
				i++
			}
			ce := i
			if (i == len(in) || in[i] == '\n') && ce > cs && in[ce-1] == '\r' {
				ce--
			}
			r.fields = append(r.fields, string(in[cs:ce]))
			r.spans = append(r.spans, [2]int{cs - start, ce - start})
			if i == len(in) {
				goto rowEnd
			}
			if in[i] == '\n' {
				i++
				goto rowEnd
			}
			i++ // comma
		}
	rowEnd:
		r.raw = in[start:i]
		rows = append(rows, r)
	}
	return rows, -1, -1, ""
}

// refScan is the reference model of New(refs, Limits{}) fed in.
func refScan(in []byte, refs []string) result {
	var res result
	rows, errRow, errCol, reason := refSplit(in)
	fail := func(row int, col string, reason string) result {
		res.err = &RowError{Row: int64(row), Column: col, Reason: reason}
		return res
	}
	var cols []string
	if len(rows) == 0 && errRow < 0 {
		return fail(0, "", NoHeader)
	}
	if len(rows) == 0 {
		return fail(1, "", reason)
	}
	h := rows[0]
	for i, c := range h.fields {
		switch {
		case c == "":
			return fail(1, "", BadHeader)
		case !utf8.ValidString(c):
			return fail(1, "", BadHeader)
		}
		for _, d := range h.fields[:i] {
			if strings.EqualFold(c, d) {
				return fail(1, c, DuplicateColumn)
			}
		}
	}
	cols = h.fields
	find := func(name string) int {
		return slices.IndexFunc(cols, func(c string) bool { return strings.EqualFold(c, name) })
	}
	idc := find("Id")
	if idc < 0 {
		return fail(1, "", NoIDColumn)
	}
	refc := make([]int, len(refs))
	for i, name := range refs {
		if refc[i] = find(name); refc[i] < 0 {
			return fail(1, name, MissingColumn)
		}
	}
	res.header = h.raw
	for n, r := range rows[1:] {
		num := n + 2
		if len(r.fields) == 1 && r.fields[0] == "" && (string(r.raw) == "\n" || string(r.raw) == "\r\n" || string(r.raw) == "\r") {
			res.rows = append(res.rows, emitted{raw: string(r.raw), number: int64(num), blank: true, refs: blankRefs(len(refs))})
			continue
		}
		if len(r.fields) != len(cols) {
			return fail(num, "", WrongWidth)
		}
		if !utf8.Valid(r.raw) {
			off := 0
			for off < len(r.raw) {
				c, size := utf8.DecodeRune(r.raw[off:])
				if c == utf8.RuneError && size == 1 {
					break
				}
				off += size
			}
			col := ""
			for i, sp := range r.spans {
				if off >= sp[0] && off < sp[1] {
					col = cols[i]
				}
			}
			return fail(num, col, InvalidUTF8)
		}
		e := emitted{raw: string(r.raw), number: int64(num)}
		id, err := sfid.Normalize(r.fields[idc])
		if err != nil {
			return fail(num, cols[idc], BadID)
		}
		e.id = id
		for i, c := range refc {
			v := r.fields[c]
			if v != "" {
				if v, err = sfid.Normalize(v); err != nil {
					return fail(num, refs[i], BadReference)
				}
			}
			e.refs = append(e.refs, v)
		}
		res.rows = append(res.rows, e)
	}
	if errRow >= 0 {
		col := ""
		if errCol < len(cols) {
			col = cols[errCol]
		}
		return fail(errRow+1, col, reason)
	}
	return res
}

// blankRefs is what scan records as the references of a blank row: n empty ones.
func blankRefs(n int) []string {
	if n == 0 {
		return nil
	}
	return make([]string, n)
}
