package csvscan

import "encoding/binary"

// validUTF8 reports whether b is valid UTF-8, as utf8.Valid does, but faster on text that mixes
// ASCII with multi-byte characters (accented names, CJK): words of 8 ASCII bytes are skipped,
// and a word holding other bytes goes through a branch-free shift-based DFA (after Per Vognsen)
// instead of utf8.Valid's per-character branches, which mispredict on such text.
func validUTF8(b []byte) bool {
	var st uint64 // DFA state: the low 6 bits are the current state's offset
	i := 0
	for ; i+8 <= len(b); i += 8 {
		w := binary.LittleEndian.Uint64(b[i:])
		if w&0x8080808080808080 == 0 && st&63 == sAccept {
			continue
		}
		t := &dfa
		st = t[byte(w)] >> (st & 63)
		st = t[byte(w>>8)] >> (st & 63)
		st = t[byte(w>>16)] >> (st & 63)
		st = t[byte(w>>24)] >> (st & 63)
		st = t[byte(w>>32)] >> (st & 63)
		st = t[byte(w>>40)] >> (st & 63)
		st = t[byte(w>>48)] >> (st & 63)
		st = t[byte(w>>56)] >> (st & 63)
		if st&63 == sError {
			return false
		}
	}
	for ; i < len(b); i++ {
		st = dfa[b[i]] >> (st & 63)
	}
	return st&63 == sAccept
}

// DFA states, as bit offsets into a transition word.
const (
	sAccept = 6 * iota // between characters
	sError             // absorbing
	sCont1             // one continuation byte (80-BF) to go
	sCont2             // two to go
	sCont3             // three to go
	sE0                // after E0: A0-BF, then one more (no overlong forms)
	sED                // after ED: 80-9F, then one more (no surrogates)
	sF0                // after F0: 90-BF, then two more (no overlong forms)
	sF4                // after F4: 80-8F, then two more (nothing above U+10FFFF)
)

// dfa[c] holds, at each state's offset, the offset of the state that byte c leads to.
var dfa = func() (t [256]uint64) {
	for c := range 256 {
		set := func(from, to int) { t[c] |= uint64(to) << from }
		switch {
		case c < 0x80:
			set(sAccept, sAccept)
		case 0xC2 <= c && c <= 0xDF:
			set(sAccept, sCont1)
		case c == 0xE0:
			set(sAccept, sE0)
		case c == 0xED:
			set(sAccept, sED)
		case 0xE1 <= c && c <= 0xEF:
			set(sAccept, sCont2)
		case c == 0xF0:
			set(sAccept, sF0)
		case 0xF1 <= c && c <= 0xF3:
			set(sAccept, sCont3)
		case c == 0xF4:
			set(sAccept, sF4)
		default:
			set(sAccept, sError)
		}
		set(sError, sError)
		cont := 0x80 <= c && c <= 0xBF
		next := func(from int, ok bool, to int) {
			if ok {
				set(from, to)
			} else {
				set(from, sError)
			}
		}
		next(sCont1, cont, sAccept)
		next(sCont2, cont, sCont1)
		next(sCont3, cont, sCont2)
		next(sE0, 0xA0 <= c && c <= 0xBF, sCont1)
		next(sED, 0x80 <= c && c <= 0x9F, sCont1)
		next(sF0, 0x90 <= c && c <= 0xBF, sCont2)
		next(sF4, 0x80 <= c && c <= 0x8F, sCont2)
	}
	return t
}()
