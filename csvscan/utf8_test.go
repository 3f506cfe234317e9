package csvscan

import (
	"testing"
	"unicode/utf8"
)

func TestValidUTF8(t *testing.T) {
	// Every 1- to 3-byte sequence, alone and embedded at each offset of an ASCII run (so that the
	// word-at-a-time path sees it straddle words).
	check := func(b []byte) {
		if got, want := validUTF8(b), utf8.Valid(b); got != want {
			t.Fatalf("validUTF8(%q) = %v, want %v", b, got, want)
		}
	}
	pad := []byte("0123456789abcdefghij")
	var seqs [][]byte
	for a := range 256 {
		seqs = append(seqs, []byte{byte(a)})
		for b := range 256 {
			seqs = append(seqs, []byte{byte(a), byte(b)})
		}
	}
	for _, lead := range []byte{0xE0, 0xE1, 0xED, 0xEF, 0xF0, 0xF1, 0xF4, 0xF5} {
		for b := range 256 {
			for _, c := range []byte{0x7F, 0x80, 0x9F, 0xA0, 0xBF, 0xC0} {
				seqs = append(seqs, []byte{lead, byte(b), c}, []byte{lead, byte(b), c, 0x80}, []byte{lead, 0x90, byte(b), c})
			}
		}
	}
	for _, s := range seqs {
		check(s)
		for off := range 9 {
			b := append(append(append([]byte(nil), pad[:off]...), s...), pad[:9-off]...)
			check(b)
		}
	}
}

func FuzzValidUTF8(f *testing.F) {
	f.Add([]byte("Zürich \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80 ok"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := validUTF8(b), utf8.Valid(b); got != want {
			t.Fatalf("validUTF8(%q) = %v, want %v", b, got, want)
		}
	})
}
