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
