package main

import (
	"bytes"
	"math/rand/v2"
	"slices"
	"testing"
)

// The torture run's oracle: what a whole and a by-id restore of generated chunks must return.
func TestTortureModelExpectations(t *testing.T) {
	m := &model{keepLast: map[string]int32{}}
	rng := rand.New(rand.NewPCG(1, 2))
	set := &mSet{sobject: "Account", header: []byte("Id,Name,Amount\r\n")}
	var noEOL bool
	for seq := range 40 {
		ch := m.genChunk(rng, set, seq, 1+rng.IntN(5), nil, "\r\n", seq < 39)
		set.chunks = append(set.chunks, ch)
		if !bytes.HasSuffix(ch.body, []byte("\r\n")) {
			noEOL = true
			if seq == 39 {
				t.Fatalf("the set's last chunk ends without a line ending")
			}
		}
		// The chunk sent is the header and the rows, the last one perhaps without its line ending.
		joined := append(bytes.Clone(set.header), bytes.Join(ch.rows, nil)...)
		if !bytes.Equal(ch.body, joined) && !bytes.Equal(ch.body, joined[:len(joined)-2]) {
			t.Fatalf("chunk %d body %q is not the header and its rows %q", seq, ch.body, ch.rows)
		}
	}
	if !noEOL {
		t.Fatalf("40 chunks and none without a final line ending: item 4 is never exercised")
	}
	whole := set.wholeRecords()
	if !bytes.HasPrefix(whole, set.header) || bytes.Count(whole, set.header) != 1 {
		t.Fatalf("whole restore must hold the header once")
	}
	for _, ch := range set.chunks {
		for _, r := range ch.rows {
			if !bytes.HasSuffix(r, []byte("\r\n")) {
				t.Fatalf("expected row %q without its line ending: rows would glue", r)
			}
		}
	}
	a, b := set.chunks[3].ids[0], set.chunks[1].ids[0]
	got, missing := set.byID([]string{a, "001000000000zzzAAA", b, a})
	want := append(append(bytes.Clone(set.header), set.chunks[1].rows[0]...), set.chunks[3].rows[0]...)
	if !bytes.Equal(got, want) {
		t.Fatalf("byID: got %q, want %q (backup order, each row once)", got, want)
	}
	if !slices.Equal(missing, []string{"001000000000zzzAAA"}) {
		t.Fatalf("byID missing = %v", missing)
	}
}
