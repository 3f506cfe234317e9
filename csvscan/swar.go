package csvscan

import (
	"encoding/binary"
	"math/bits"
)

// Word-at-a-time (SWAR) search: the scanner's fields are short (tens of bytes), where
// bytes.IndexByte's call and setup cost more than looking at 8 bytes per step inline.
const (
	lsb  = 0x0101010101010101
	msb  = 0x8080808080808080
	low7 = 0x7f7f7f7f7f7f7f7f
)

// nonzero returns a word whose byte i has its high bit set iff byte i of t is not zero (exact: no
// borrow crosses bytes).
func nonzero(t uint64) uint64 { return ((t & low7) + low7) | t }

// indexSep returns the index of the first ',', '"' or LF in r at or after i, or len(r), and the
// OR of the bytes it read (and perhaps a few more of r).
func indexSep(r []byte, i int) (int, uint64) {
	var na uint64
	for ; i+8 <= len(r); i += 8 {
		w := binary.LittleEndian.Uint64(r[i:])
		na |= w
		if m := msb &^ (nonzero(w^(lsb*',')) & nonzero(w^(lsb*'"')) & nonzero(w^(lsb*'\n'))); m != 0 {
			return i + bits.TrailingZeros64(m)>>3, na
		}
	}
	for ; i < len(r); i++ {
		c := r[i]
		na |= uint64(c)
		if c == ',' || c == '"' || c == '\n' {
			return i, na
		}
	}
	return len(r), na
}

// indexQuote returns the index of the first '"' in r at or after i, or len(r), and the OR of the
// bytes it read (and perhaps a few more of r).
func indexQuote(r []byte, i int) (int, uint64) {
	var na uint64
	for ; i+8 <= len(r); i += 8 {
		w := binary.LittleEndian.Uint64(r[i:])
		na |= w
		if m := msb &^ nonzero(w^(lsb*'"')); m != 0 {
			return i + bits.TrailingZeros64(m)>>3, na
		}
	}
	for ; i < len(r); i++ {
		c := r[i]
		na |= uint64(c)
		if c == '"' {
			return i, na
		}
	}
	return len(r), na
}
