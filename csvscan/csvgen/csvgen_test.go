package csvgen

import (
	"bytes"
	"encoding/csv"
	"io"
	"testing"

	"backupstore/sfid"
)

func TestID(t *testing.T) {
	seen := map[string]bool{}
	for _, n := range []int64{0, 1, 61, 62, 1 << 20, 13537086546263551} {
		id := ID("001", n)
		if norm, err := sfid.Normalize(id); err != nil || norm != id {
			t.Fatalf("ID(001, %d) = %q: Normalize = %q, %v", n, id, norm, err)
		}
		if seen[id] {
			t.Fatalf("ID(001, %d) = %q repeats", n, id)
		}
		seen[id] = true
	}
	if ID("001", 0) != "001000000000000AAA" {
		t.Errorf("ID(001, 0) = %q", ID("001", 0))
	}
}

func TestGenerate(t *testing.T) {
	var a, b bytes.Buffer
	if err := Generate(&a, 2000, 7); err != nil {
		t.Fatal(err)
	}
	if err := Generate(&b, 2000, 7); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatal("Generate is not deterministic")
	}
	per := float64(a.Len()) / 2000
	if per < 250 || per > 350 {
		t.Errorf("%.0f bytes per row, want about 300", per)
	}
	r := csv.NewReader(&a)
	r.FieldsPerRecord = len(columns)
	hdr, err := r.Read()
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for n := 0; ; n++ {
		rec, err := r.Read()
		if err == io.EOF {
			if n != 2000 {
				t.Fatalf("%d rows, want 2000", n)
			}
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		for i, c := range hdr {
			if c == "Id" || c == "ParentId" || c == "OwnerId" {
				if rec[i] == "" && c != "ParentId" {
					t.Fatalf("row %d: empty %s", n, c)
				}
				if rec[i] != "" && !sfid.Valid(rec[i]) {
					t.Fatalf("row %d: %s %q invalid", n, c, rec[i])
				}
			}
		}
		if ids[rec[0]] {
			t.Fatalf("row %d: duplicate id %s", n, rec[0])
		}
		ids[rec[0]] = true
		if rec[5] != "" && !ids[rec[5]] {
			t.Fatalf("row %d: ParentId %s is not an earlier row", n, rec[5])
		}
	}
}
