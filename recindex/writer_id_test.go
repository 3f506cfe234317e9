package recindex

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

func idArray(s string) (a [IDLen]byte) {
	copy(a[:], s)
	return a
}

// TestInOrderRun: a run whose ids arrive in increasing order is kept without the hash table
// until an id comes out of order; repeats are refused at once either way, and the index
// answers every id.
func TestInOrderRun(t *testing.T) {
	ids := slices.Sorted(slices.Values(uniqueIDs(rand.New(rand.NewPCG(5, 5)), 300)))
	w, err := NewWriter(&memSpool{}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]int64{}
	add := func(i int, row int64) error {
		err := w.AddRecordID(idArray(ids[i]), 0, row)
		if err == nil {
			rows[ids[i]] = row
		}
		return err
	}
	for i := range 100 {
		if err := add(i, int64(i)); err != nil {
			t.Fatal(err)
		}
	}
	if w.indexed {
		t.Fatal("hash table built for ids in order")
	}
	for _, tc := range []struct {
		i        int
		row      int64
		firstRow int64 // -1: no duplicate
		indexed  bool  // after the add
	}{
		{99, 1000, 99, false}, // the last id again
		{150, 1001, -1, false},
		{10, 1002, 10, true}, // out of order: the table is built, and finds it
		{120, 1003, -1, true},
		{150, 1004, 1001, true},
		{299, 1005, -1, true},
	} {
		err := add(tc.i, tc.row)
		var de *DuplicateError
		switch {
		case tc.firstRow < 0 && err != nil:
			t.Fatalf("id %d: %v", tc.i, err)
		case tc.firstRow >= 0 && (!errors.As(err, &de) || *de != DuplicateError{ID: ids[tc.i], FirstRow: tc.firstRow, Row: tc.row}):
			t.Fatalf("id %d: err %v, want a duplicate of row %d", tc.i, err, tc.firstRow)
		}
		if w.indexed != tc.indexed {
			t.Fatalf("after id %d: indexed %v, want %v", tc.i, w.indexed, tc.indexed)
		}
	}
	sp := w.sp.(*memSpool)
	size, err := w.Finish()
	if err != nil {
		t.Fatal(err)
	}
	rd, err := Open(bytes.NewReader(sp.b), size)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	if err := rd.ForEachRecord(func(id string, _ uint32) error { got = append(got, id); return nil }); err != nil {
		t.Fatal(err)
	}
	if want := slices.Sorted(func(yield func(string) bool) {
		for id := range rows {
			if !yield(id) {
				return
			}
		}
	}); !slices.Equal(got, want) {
		t.Fatalf("index holds %d ids, want %d", len(got), len(want))
	}
	for id, row := range rows {
		if _, got, ok, err := rd.LookupRow(id); err != nil || !ok || got != row {
			t.Fatalf("LookupRow(%s) = %d, %v, %v; want row %d", id, got, ok, err, row)
		}
	}
}

// TestIDArraysSameIndex: AddRecordID and AddRefID build the same bytes as AddRecord and
// AddRef, reject what they reject with the same errors, and do not allocate.
func TestIDArraysSameIndex(t *testing.T) {
	d := makeData(rand.New(rand.NewPCG(6, 6)), 30_000)
	opt := Options{RunBytes: 128 << 10}
	want := &memSpool{}
	wantSize, _ := d.write(t, want, opt)

	opt.RefFields = d.fields
	sp := &memSpool{}
	w, err := NewWriter(sp, opt)
	if err != nil {
		t.Fatal(err)
	}
	ri := 0
	for row, id := range d.ids {
		if err := w.AddRecordID(idArray(id), frameOf(row), int64(row)); err != nil {
			t.Fatal(err)
		}
		for ri < len(d.refs) && d.refs[ri].child == id {
			rf := d.refs[ri]
			if err := w.AddRefID(rf.field, idArray(rf.parent), idArray(rf.child)); err != nil {
				t.Fatal(err)
			}
			ri++
		}
		if (row+1)%rowsPerFrame == 0 || row == len(d.ids)-1 {
			w.AddFrame(d.frames[row/rowsPerFrame])
		}
	}
	size, err := w.Finish()
	if err != nil {
		t.Fatal(err)
	}
	if size != wantSize || !bytes.Equal(sp.b[:size], want.b[:wantSize]) {
		t.Fatalf("index through the array API (%d bytes) differs from the string API's (%d bytes)", size, wantSize)
	}

	w, _ = NewWriter(&memSpool{}, Options{RefFields: []string{"AccountId"}})
	good, bad := idArray(sfID("001", 1)), idArray("001000000000001-AA")
	for _, tc := range []struct {
		name      string
		got, want error
	}{
		{"record", w.AddRecordID(bad, 0, 1), w.AddRecord(string(bad[:]), 0, 1)},
		{"parent", w.AddRefID(0, bad, good), w.AddRef(0, string(bad[:]), string(good[:]))},
		{"child", w.AddRefID(0, good, bad), w.AddRef(0, string(good[:]), string(bad[:]))},
		{"field", w.AddRefID(1, good, good), w.AddRef(1, string(good[:]), string(good[:]))},
	} {
		if tc.got == nil || tc.got.Error() != tc.want.Error() {
			t.Errorf("%s: %v, want %v", tc.name, tc.got, tc.want)
		}
	}
	if err := w.AddRefID(0, bad, good); !errors.Is(err, ErrInvalidID) || !strings.Contains(err.Error(), "AccountId parent") {
		t.Errorf("bad parent: %v", err)
	}

	w, _ = NewWriter(&memSpool{}, Options{RefFields: []string{"AccountId"}})
	r := rand.New(rand.NewPCG(7, 7))
	var n uint64
	allocs := testing.AllocsPerRun(20_000, func() {
		n++
		id := idArray(sfID("003", n))
		if err := w.AddRecordID(id, 0, int64(n)); err != nil {
			t.Fatal(err)
		}
		if err := w.AddRefID(0, idArray(randID(r)), id); err != nil {
			t.Fatal(err)
		}
	})
	// sfID and randID allocate three strings a call; the writer only when a buffer grows or a
	// run is written.
	if allocs > 3.05 {
		t.Errorf("%.2f allocations per record and reference, want the test's own 3", allocs)
	}
}
