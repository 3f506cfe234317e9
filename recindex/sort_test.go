package recindex

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestRadixSort checks sortRecs and sortRefs against slices.SortFunc with cmpRec and cmpRef
// on keys that agree on long prefixes, differ anywhere, or repeat (references).
func TestRadixSort(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 21))
	pools := map[string]func() string{
		"random":     func() string { return randID(r) },
		"sequential": func() string { return sfID("003", 1<<30+r.Uint64N(300_000)) },
		"few":        func() string { return sfID("001", r.Uint64N(40)) },
		// Bytes outside [0-9A-Za-z] cannot reach a run, but the sort must not care.
		"bytes": func() string {
			var b [IDLen]byte
			for i := range b {
				b[i] = byte(r.Uint32N(4)) * 85
			}
			return string(b[:])
		},
	}
	for name, id := range pools {
		for _, n := range []int{0, 1, 2, 23, 24, 25, 100, 1000, 20_000} {
			t.Run(fmt.Sprint(name, "/", n), func(t *testing.T) {
				seen := map[string]bool{}
				var recs []recEntry
				for len(recs) < n {
					s := id()
					for seen[s] { // record ids of a run are distinct; "few" has only 40
						s = randID(r)
					}
					seen[s] = true
					e := recEntry{frame: r.Uint32(), row: r.Int64()}
					e.hi, e.mid, e.lo = packID(s)
					recs = append(recs, e)
				}
				want := slices.Clone(recs)
				slices.SortFunc(want, cmpRec)
				sortRecs(recs)
				if !slices.Equal(recs, want) {
					t.Errorf("sortRecs of %d entries differs from slices.SortFunc", n)
				}

				refs := make([]refEntry, n)
				for i := range refs {
					e := refEntry{field: uint16(r.IntN(3))}
					if r.IntN(4) == 0 {
						e.field = uint16(r.IntN(1024))
					}
					e.ph, e.pm, e.pl = packID(id())
					e.ch, e.cm, e.cl = packID(id())
					refs[i] = e
					if i > 0 && r.IntN(5) == 0 {
						refs[i] = refs[r.IntN(i)] // repeated pairs
					}
				}
				wantRefs := slices.Clone(refs)
				slices.SortFunc(wantRefs, cmpRef)
				sortRefs(refs)
				if !slices.Equal(refs, wantRefs) {
					t.Errorf("sortRefs of %d entries differs from slices.SortFunc", n)
				}
			})
		}
	}
}

// TestAgree: recsAgree and refsAgree find the first byte where any key differs from the
// first one, at every position, and the whole key length when all keys are equal.
func TestAgree(t *testing.T) {
	base := []byte("001000000000ABCxyz")
	id := func(p int) (hi, mid uint64, lo uint16) {
		b := slices.Clone(base)
		if p >= 0 {
			b[p]++
		}
		return packID(b)
	}
	for p := -1; p < IDLen; p++ {
		a := make([]recEntry, 3)
		for i := range a {
			a[i].hi, a[i].mid, a[i].lo = id(-1)
		}
		a[2].hi, a[2].mid, a[2].lo = id(p)
		if got, want := recsAgree(a), max(p, 0); p >= 0 && got != want || p < 0 && got != recKeyBytes {
			t.Errorf("records differing at byte %d: recsAgree = %d", p, got)
		}
	}
	for p := -1; p < refKeyBytes; p++ {
		a := make([]refEntry, 3)
		for i := range a {
			a[i].field = 0x0102
			a[i].ph, a[i].pm, a[i].pl = id(-1)
			a[i].ch, a[i].cm, a[i].cl = id(-1)
		}
		switch e := &a[1]; {
		case p < 0:
		case p < 2:
			e.field ^= 1 << (8 * (1 - p))
		case p < 2+IDLen:
			e.ph, e.pm, e.pl = id(p - 2)
		default:
			e.ch, e.cm, e.cl = id(p - 2 - IDLen)
		}
		want := p
		if p < 0 {
			want = refKeyBytes
		}
		if got := refsAgree(a); got != want {
			t.Errorf("references differing at byte %d: refsAgree = %d", p, got)
		}
	}
}
