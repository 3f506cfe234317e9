package pack

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"testing"
)

var testKey = bytes.Repeat([]byte{7}, 32)

const (
	testKeyID  = "mk-0123456789ab"
	testTenant = "tenant-a"
	testOrg    = "00D000000000001AAA"
	testPackID = "pck-00000000-0000-4000-8000-000000000001"
)

// build makes a pack of bodies and returns it with its index offset.
func build(t testing.TB, bodies ...[]byte) ([]byte, int64) {
	t.Helper()
	w, err := NewWriter(nil, testPackID)
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for i, b := range bodies {
		off, err := w.Add(b, sha256.Sum256(b))
		if err != nil {
			t.Fatal(err)
		}
		if want := HeaderSize + total; off != want {
			t.Fatalf("body %d at %d, want %d", i, off, want)
		}
		total += int64(len(b))
	}
	p, io, err := w.Finish(testKey, testKeyID, testTenant, testOrg)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(p)) != FinishedSize(len(bodies), total) {
		t.Fatalf("pack is %d bytes, FinishedSize says %d", len(p), FinishedSize(len(bodies), total))
	}
	return p, io
}

func testBodies() [][]byte {
	return [][]byte{[]byte("hello"), {}, bytes.Repeat([]byte("x"), 8192), []byte("last body")}
}

func TestRoundTrip(t *testing.T) {
	bodies := testBodies()
	p, io := build(t, bodies...)
	x, err := Parse(p, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if x.PackID != testPackID || x.Trailer.KeyID != testKeyID || x.Trailer.IndexOffset != io || len(x.Entries) != len(bodies) {
		t.Fatalf("parsed %s key %s index at %d with %d entries", x.PackID, x.Trailer.KeyID, x.Trailer.IndexOffset, len(x.Entries))
	}
	for i, e := range x.Entries {
		if got := p[e.Offset:e.End()]; !bytes.Equal(got, bodies[i]) || e.SHA256 != sha256.Sum256(bodies[i]) {
			t.Fatalf("entry %d: body %q sha %x", i, got, e.SHA256)
		}
	}
	if err := x.Verify(testKey, testTenant, testOrg); err != nil {
		t.Fatal(err)
	}
	if bad, err := x.CheckBodies(p); err != nil || len(bad) != 0 {
		t.Fatalf("CheckBodies = %v, %v", bad, err)
	}
	// The ranged form (header + tail) agrees with the whole form.
	y, err := ParseIndex(p[:HeaderSize], p[io:], int64(len(p)), Limits{})
	if err != nil || y.Verify(testKey, testTenant, testOrg) != nil || len(y.Entries) != len(bodies) {
		t.Fatalf("ParseIndex of the ranged parts: %v", err)
	}
	// An empty pack is valid.
	empty, _ := build(t)
	if x, err := Parse(empty, Limits{}); err != nil || len(x.Entries) != 0 || x.Verify(testKey, testTenant, testOrg) != nil {
		t.Fatalf("empty pack: %v", err)
	}
}

// TestEveryFlippedByteFails flips each bit position's byte in header, index
// and trailer: each either fails parsing (ErrCorrupt) or fails the MAC.
// A flipped body byte leaves the index valid and is caught by CheckBodies.
func TestEveryFlippedByteFails(t *testing.T) {
	p, io := build(t, testBodies()...)
	for i := range p {
		q := bytes.Clone(p)
		q[i] ^= 0x01
		x, err := Parse(q, Limits{})
		inBody := i >= HeaderSize && int64(i) < io
		if inBody {
			if err != nil {
				t.Fatalf("byte %d (a body): Parse: %v", i, err)
			}
			if err := x.Verify(testKey, testTenant, testOrg); err != nil {
				t.Fatalf("byte %d (a body): Verify: %v", i, err)
			}
			if bad, err := x.CheckBodies(q); err != nil || len(bad) != 1 {
				t.Fatalf("byte %d (a body): CheckBodies = %v, %v; want one bad entry", i, bad, err)
			}
			continue
		}
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("byte %d: %v is not ErrCorrupt", i, err)
			}
			continue
		}
		if err := x.Verify(testKey, testTenant, testOrg); !errors.Is(err, ErrMAC) {
			t.Fatalf("byte %d flipped: Parse and Verify passed (%v)", i, err)
		}
	}
}

func TestMACBindsTenantOrgAndKey(t *testing.T) {
	p, _ := build(t, testBodies()...)
	x, err := Parse(p, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		key         []byte
		tenant, org string
	}{
		{testKey, "tenant-b", testOrg},
		{testKey, testTenant, "00D000000000002AAA"},
		{testKey, testTenant + testOrg[:1], testOrg[1:]}, // length prefixes keep the split
		{bytes.Repeat([]byte{8}, 32), testTenant, testOrg},
	} {
		if err := x.Verify(c.key, c.tenant, c.org); !errors.Is(err, ErrMAC) {
			t.Errorf("Verify as tenant %q org %q: %v, want ErrMAC", c.tenant, c.org, err)
		}
	}
}

func TestTruncationAndAppendFail(t *testing.T) {
	p, _ := build(t, testBodies()...)
	for _, n := range []int{0, 1, HeaderSize, HeaderSize + TrailerSize - 1, len(p) / 2, len(p) - 1} {
		if _, err := Parse(p[:n], Limits{}); !errors.Is(err, ErrCorrupt) {
			t.Errorf("truncated to %d: %v", n, err)
		}
	}
	for _, extra := range [][]byte{{0}, p[len(p)-TrailerSize:], bytes.Repeat([]byte{0}, EntrySize)} {
		q := append(bytes.Clone(p), extra...)
		if _, err := Parse(q, Limits{}); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%d bytes appended: %v", len(extra), err)
		}
	}
	// A tail that is not exactly [index offset, size) is refused.
	x, _ := Parse(p, Limits{})
	io := x.Trailer.IndexOffset
	if _, err := ParseIndex(p[:HeaderSize], p[io+1:], int64(len(p)), Limits{}); !errors.Is(err, ErrCorrupt) {
		t.Errorf("short tail: %v", err)
	}
	if _, err := ParseIndex(p[:HeaderSize], p[io-1:], int64(len(p)), Limits{}); !errors.Is(err, ErrCorrupt) {
		t.Errorf("long tail: %v", err)
	}
}

func TestLimits(t *testing.T) {
	p, _ := build(t, testBodies()...)
	if _, err := Parse(p, Limits{MaxEntries: 3}); !errors.Is(err, ErrCorrupt) {
		t.Errorf("4 entries with MaxEntries 3: %v", err)
	}
	if _, err := Parse(p, Limits{MaxBody: 8191}); !errors.Is(err, ErrCorrupt) {
		t.Errorf("an 8 KiB body with MaxBody 8191: %v", err)
	}
	if _, err := Parse(p, Limits{MaxEntries: 4, MaxBody: 8192}); err != nil {
		t.Errorf("at the limits: %v", err)
	}
	// A trailer claiming 2^20+1 entries is refused before any allocation.
	tr := bytes.Clone(p[len(p)-TrailerSize:])
	tr[8], tr[9], tr[10], tr[11] = 0x01, 0x00, 0x10, 0x00
	if _, err := ParseTrailer(tr, int64(len(p)), Limits{}); !errors.Is(err, ErrCorrupt) {
		t.Errorf("huge count: %v", err)
	}
}

func TestWriterRejects(t *testing.T) {
	for _, id := range []string{"", "pck-\x00", "pck with space", string(bytes.Repeat([]byte("a"), 49))} {
		if _, err := NewWriter(nil, id); err == nil {
			t.Errorf("NewWriter(%q) accepted", id)
		}
	}
	w, _ := NewWriter(nil, testPackID)
	if _, _, err := w.Finish(testKey, "", testTenant, testOrg); err == nil {
		t.Error("Finish without key id accepted")
	}
	if _, _, err := w.Finish(nil, testKeyID, testTenant, testOrg); err == nil {
		t.Error("Finish without key accepted")
	}
	if _, err := w.Add(make([]byte, MaxBody+1), [32]byte{}); err == nil {
		t.Error("a body over MaxBody accepted")
	}
}

func TestWriterUsesTheBuffer(t *testing.T) {
	buf := make([]byte, 0, 1<<16)
	w, _ := NewWriter(buf, testPackID)
	body := []byte("body")
	w.Add(body, sha256.Sum256(body))
	p, _, err := w.Finish(testKey, testKeyID, testTenant, testOrg)
	if err != nil {
		t.Fatal(err)
	}
	if &p[0] != &buf[:1][0] {
		t.Fatal("Finish did not build the pack in the caller's buffer")
	}
}

func ExampleWriter() {
	w, _ := NewWriter(make([]byte, 0, 4096), "pck-example")
	for _, b := range []string{"one", "two"} {
		off, _ := w.Add([]byte(b), sha256.Sum256([]byte(b)))
		fmt.Println(b, "at", off)
	}
	p, io, _ := w.Finish(testKey, testKeyID, testTenant, testOrg)
	x, _ := Parse(p, Limits{})
	fmt.Println(len(p), io, len(x.Entries), x.Verify(testKey, testTenant, testOrg))
	// Output:
	// one at 64
	// two at 67
	// 270 70 2 <nil>
}
