package pack

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzParse feeds arbitrary objects to the reader: it must never panic or
// allocate beyond its limits, must answer ErrCorrupt for what it refuses,
// and what it accepts must be self-consistent (dense entries inside the
// object, trailer size = object size).
func FuzzParse(f *testing.F) {
	p, _ := build(f, testBodies()...)
	f.Add(p)
	empty, _ := build(f)
	f.Add(empty)
	one, _ := build(f, []byte("a"))
	f.Add(one)
	f.Add(p[:len(p)-1])
	f.Add(bytes.Repeat([]byte{0}, HeaderSize+TrailerSize))
	f.Fuzz(func(t *testing.T, b []byte) {
		lim := Limits{MaxEntries: 1 << 12, MaxBody: 1 << 20}
		x, err := Parse(b, lim)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v is not ErrCorrupt", err)
			}
			return
		}
		if x.Trailer.PackSize != int64(len(b)) || len(x.Entries) > lim.MaxEntries {
			t.Fatalf("accepted a pack of %d bytes saying %d, %d entries", len(b), x.Trailer.PackSize, len(x.Entries))
		}
		next := int64(HeaderSize)
		for _, e := range x.Entries {
			if e.Offset != next || e.Length > lim.MaxBody {
				t.Fatalf("accepted entry %+v, want offset %d", e, next)
			}
			next = e.End()
		}
		if next != x.Trailer.IndexOffset {
			t.Fatalf("bodies end at %d, index at %d", next, x.Trailer.IndexOffset)
		}
		if _, err := x.CheckBodies(b); err != nil {
			t.Fatal(err)
		}
		// The MAC covers header, index and trailer (bodies are covered by the
		// index's SHA-256s): an input passing it whose non-body bytes differ
		// from every seed's would be a forgery.
		if x.Verify(testKey, testTenant, testOrg) == nil {
			io := x.Trailer.IndexOffset
			for _, s := range [][]byte{p, empty, one} {
				if len(s) == len(b) && bytes.Equal(s[:HeaderSize], b[:HeaderSize]) && bytes.Equal(s[io:], b[io:]) {
					return
				}
			}
			t.Fatal("an index other than the seeds' passed the MAC")
		}
	})
}
