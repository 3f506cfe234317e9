package sfid

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// ID is the normalised 18-character form of a Salesforce id. It is comparable and fixed-size, so
// it serves as a map key or a sort key without allocating. The zero ID means "no id".
type ID [18]byte

// String returns the 18-character id, or "" for the zero ID.
func (id ID) String() string {
	if id.IsZero() {
		return ""
	}
	return string(id[:])
}

// IsZero reports whether id is the zero ID (no id).
func (id ID) IsZero() bool { return id == ID{} }

// ErrInvalid is the sentinel every parse failure wraps; test with errors.Is.
var ErrInvalid = errors.New("invalid Salesforce id")

// Reasons an id is rejected, for Error.Reason. They are phrased as what the caller must fix.
const (
	ReasonSyntax   = "must be 15 or 18 characters of A-Z, a-z, 0-9"
	ReasonChecksum = "checksum suffix does not match the first 15 characters"
)

// maxInput bounds how much of a rejected input an Error keeps: a 4 MiB CSV field in the Id
// column must not become a 4 MiB error message.
const maxInput = 64

// Error describes a rejected id. It wraps ErrInvalid.
type Error struct {
	Input  string // the rejected input, cut to at most 64 bytes (followed by "..." if cut)
	Reason string // ReasonSyntax or ReasonChecksum
}

func (e *Error) Error() string {
	if e.Reason == ReasonChecksum && len(e.Input) == 18 {
		want, _ := parse(e.Input[:15])
		return fmt.Sprintf("%q is not a Salesforce id: checksum suffix %q does not match the first 15 characters (expected %q)",
			e.Input, e.Input[15:], want[15:])
	}
	return fmt.Sprintf("%q is not a Salesforce id: %s", e.Input, e.Reason)
}

// Unwrap returns ErrInvalid.
func (e *Error) Unwrap() error { return ErrInvalid }

func newError[T ~string | ~[]byte](in T, reason string) *Error {
	s := string(in[:min(len(in), maxInput)])
	if len(in) > maxInput {
		s += "..."
	}
	return &Error{Input: s, Reason: reason}
}

// Normalize returns the 18-character form of a 15- or 18-character id. A 15-character id is
// taken as case-sensitive and gets its checksum suffix appended; an 18-character id must carry
// the suffix its first 15 characters call for (in either case) and is returned with the suffix
// upper-cased. Normalize does not allocate when id is already in normal form.
func Normalize(id string) (string, error) {
	n, err := Parse(id)
	if err != nil {
		return "", err
	}
	if len(id) == 18 && id[15:] == string(n[15:]) {
		return id, nil
	}
	return string(n[:]), nil
}

// Valid reports whether Normalize would accept id.
func Valid(id string) bool {
	_, code := parse(id)
	return code == ok
}

// Parse is Normalize returning an ID.
func Parse(id string) (ID, error) {
	n, code := parse(id)
	if code != ok {
		return ID{}, newError(id, reasons[code])
	}
	return n, nil
}

// ParseBytes is Parse for a byte slice; it does not allocate unless it fails.
func ParseBytes(id []byte) (ID, error) {
	n, code := parse(id)
	if code != ok {
		return ID{}, newError(id, reasons[code])
	}
	return n, nil
}

// ParseBytesTo is ParseBytes writing the result to *dst, which is left alone on failure.
// It never allocates: on failure it returns false, and ParseBytes tells why.
func ParseBytesTo(dst *ID, id []byte) bool { return parseTo(dst, id) == ok }

const (
	ok = iota
	badSyntax
	badChecksum
)

var reasons = [...]string{badSyntax: ReasonSyntax, badChecksum: ReasonChecksum}

const suffixAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"

// SWAR constants: parse classifies 8 characters at a time.
const (
	lsb  = 0x0101010101010101
	msb  = 0x8080808080808080
	low7 = 0x7f7f7f7f7f7f7f7f
)

// classify returns for the 8 characters in w a mask of those that are not [A-Za-z0-9] and a mask
// of those that are [A-Z] (0x80 per byte).
func classify(w uint64) (bad, upper uint64) {
	x := w & low7
	upper = (x + lsb*(0x80-'A')) &^ (x + lsb*(0x80-'Z'-1))
	lower := (x + lsb*(0x80-'a')) &^ (x + lsb*(0x80-'z'-1))
	digit := (x + lsb*(0x80-'0')) &^ (x + lsb*(0x80-'9'-1))
	upper &= msb
	return (w | ^(upper | lower | digit)) & msb, upper
}

// movemask gathers the high bit of each byte of m into the low 8 bits.
func movemask(m uint64) uint64 { return ((m >> 7) * 0x0102040810204080) >> 56 }

// load64 reads s[i:i+8] as a little-endian word (the compiler makes it one load).
func load64[T ~string | ~[]byte](s T, i int) uint64 {
	_ = s[i+7]
	return uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
		uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56
}

// parse is the one implementation behind Parse, ParseBytes, Normalize and Valid.
func parse[T ~string | ~[]byte](s T) (id ID, code int) {
	code = parseTo(&id, s)
	return id, code
}

// parseTo normalises s into *id, which it leaves alone unless it returns ok. Writing in place
// spares the callers in the CSV hot path a copy of the result.
func parseTo[T ~string | ~[]byte](id *ID, s T) int {
	if len(s) != 15 && len(s) != 18 {
		return badSyntax
	}
	w0 := load64(s, 0)
	w1 := load64(s, 7) // characters 7 to 14
	bad0, up0 := classify(w0)
	bad1, up1 := classify(w1)
	if bad0|bad1 != 0 {
		return badSyntax
	}
	bits := movemask(up0) | movemask(up1)<<7
	suffix := [3]byte{suffixAlphabet[bits&31], suffixAlphabet[bits>>5&31], suffixAlphabet[bits>>10&31]}
	if len(s) == 18 {
		code := ok
		for g := range 3 {
			c := s[15+g]
			if 'a' <= c && c <= 'z' {
				c -= 'a' - 'A'
			}
			switch {
			case c == suffix[g]:
			case 'A' <= c && c <= 'Z' || '0' <= c && c <= '9':
				code = badChecksum
			default:
				return badSyntax
			}
		}
		if code != ok {
			return code
		}
	}
	binary.LittleEndian.PutUint64(id[0:], w0)
	binary.LittleEndian.PutUint64(id[7:], w1)
	id[15], id[16], id[17] = suffix[0], suffix[1], suffix[2]
	return ok
}
