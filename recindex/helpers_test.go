package recindex

import (
	"io"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
)

// memSpool is an in-memory Spool.
type memSpool struct{ b []byte }

func (m *memSpool) Write(p []byte) (int, error) { m.b = append(m.b, p...); return len(p), nil }

func (m *memSpool) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off >= int64(len(m.b)) {
		return 0, io.EOF
	}
	n := copy(p, m.b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// countingReaderAt records the ReadAt calls made through it.
type countingReaderAt struct {
	r     io.ReaderAt
	mu    sync.Mutex
	calls []readCall
}

type readCall struct{ off, n int64 }

func (c *countingReaderAt) ReadAt(p []byte, off int64) (int, error) {
	c.mu.Lock()
	c.calls = append(c.calls, readCall{off, int64(len(p))})
	c.mu.Unlock()
	return c.r.ReadAt(p, off)
}

func (c *countingReaderAt) take() []readCall {
	c.mu.Lock()
	defer c.mu.Unlock()
	calls := c.calls
	c.calls = nil
	return calls
}

const alnum = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

func randID(r *rand.Rand) string {
	var b [IDLen]byte
	for i := range b {
		b[i] = alnum[r.IntN(len(alnum))]
	}
	return string(b[:])
}

// to18 appends Salesforce's case-encoding suffix to a 15-character id.
func to18(id15 string) string {
	const suffix = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
	b := []byte(id15)
	for i := 0; i < 3; i++ {
		f := 0
		for j := 0; j < 5; j++ {
			if c := id15[i*5+j]; c >= 'A' && c <= 'Z' {
				f |= 1 << j
			}
		}
		b = append(b, suffix[f])
	}
	return string(b)
}

// sfID returns a realistic 18-character id: key prefix, pod "5g", reserved "0", then n in
// base 62 over nine characters, then the case suffix.
func sfID(keyPrefix string, n uint64) string {
	var num [9]byte
	for i := len(num) - 1; i >= 0; i-- {
		num[i] = alnum[n%62]
		n /= 62
	}
	return to18(keyPrefix + "5g0" + string(num[:]))
}

// uniqueIDs returns n distinct ids: half random, half realistic (sequential with gaps).
func uniqueIDs(r *rand.Rand, n int) []string {
	seen := make(map[string]bool, n)
	ids := make([]string, 0, n)
	next := r.Uint64N(1 << 40)
	for len(ids) < n {
		var id string
		if len(ids)%2 == 0 {
			id = randID(r)
		} else {
			next += 1 + r.Uint64N(5)
			id = sfID("003", next)
		}
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	return ids
}

type testRef struct {
	field         int
	parent, child string
}

type testData struct {
	fields []string
	ids    []string // row i has ids[i]
	frames []FrameInfo
	refs   []testRef // in the order added
}

const rowsPerFrame = 1000

func frameOf(row int) uint32 { return uint32(row / rowsPerFrame) }

// makeData returns n records in frames of 1000 rows, each referencing a parent through
// "AccountId" (from a pool of n/10, most rows) and "OwnerId" (from 20 users, all rows), with
// some pairs repeated.
func makeData(r *rand.Rand, n int) testData {
	d := testData{fields: []string{"AccountId", "OwnerId"}, ids: uniqueIDs(r, n)}
	accounts := make([]string, max(n/10, 1))
	for i := range accounts {
		accounts[i] = sfID("001", r.Uint64N(1<<40))
	}
	owners := make([]string, 20)
	for i := range owners {
		owners[i] = sfID("005", uint64(i))
	}
	for _, id := range d.ids {
		if r.IntN(10) != 0 {
			d.refs = append(d.refs, testRef{0, accounts[r.IntN(len(accounts))], id})
		}
		d.refs = append(d.refs, testRef{1, owners[r.IntN(len(owners))], id})
		if r.IntN(50) == 0 {
			d.refs = append(d.refs, d.refs[len(d.refs)-1])
		}
	}
	for f := 0; f*rowsPerFrame < n; f++ {
		rows := min(rowsPerFrame, n-f*rowsPerFrame)
		d.frames = append(d.frames, FrameInfo{
			StoredOffset: int64(f) * 90_000, StoredLen: 90_000,
			InputOffset: int64(f) * 305_000, InputLen: int64(rows) * 305,
			Rows: int64(rows), FirstRow: int64(f * rowsPerFrame),
		})
	}
	return d
}

// write adds d row by row (a record, then its references) the way the ingest pipeline does.
func (d testData) write(t testing.TB, sp Spool, opt Options) (int64, *Writer) {
	t.Helper()
	opt.RefFields = d.fields
	w, err := NewWriter(sp, opt)
	if err != nil {
		t.Fatal(err)
	}
	ri := 0
	for row, id := range d.ids {
		if err := w.AddRecord(id, frameOf(row), int64(row)); err != nil {
			t.Fatalf("AddRecord row %d: %v", row, err)
		}
		for ri < len(d.refs) && d.refs[ri].child == id {
			rf := d.refs[ri]
			if err := w.AddRef(rf.field, rf.parent, rf.child); err != nil {
				t.Fatalf("AddRef: %v", err)
			}
			ri++
		}
		if (row+1)%rowsPerFrame == 0 || row == len(d.ids)-1 {
			w.AddFrame(d.frames[row/rowsPerFrame])
		}
	}
	size, err := w.Finish()
	if err != nil {
		t.Fatalf("Finish: %v", err)
	}
	return size, w
}

// children is the expected Children answer: field → parent → sorted distinct children.
func (d testData) children() []map[string][]string {
	m := make([]map[string][]string, len(d.fields))
	for i := range m {
		m[i] = map[string][]string{}
	}
	for _, rf := range d.refs {
		m[rf.field][rf.parent] = append(m[rf.field][rf.parent], rf.child)
	}
	for _, byParent := range m {
		for p, c := range byParent {
			slices.Sort(c)
			byParent[p] = slices.Compact(c)
		}
	}
	return m
}
