package restore

import (
	"bytes"
	"testing"

	"backupstore/csvscan"
)

// rowsOf parses header+body as one record set: its rows' ids (blank lines as
// "") and whether it parsed.
func rowsOf(header, body []byte) ([]string, bool) {
	var ids []string
	sc := csvscan.New(nil, csvscan.Limits{})
	emit := func(r *csvscan.Row) error {
		ids = append(ids, r.ID.String())
		return nil
	}
	if sc.Feed(header, emit) != nil || sc.Feed(body, emit) != nil || sc.Close(emit) != nil {
		return nil, false
	}
	return ids, true
}

// FuzzSenderKeepsRowsApart: chunks that each parse on their own (the last row
// with or without a line ending), sent one after the other through sender with
// a boundary between them as a whole read does, re-parse to the same rows in
// the same order, and a chunk that ends with LF is passed on unchanged.
func FuzzSenderKeepsRowsApart(f *testing.F) {
	f.Add([]byte("Id,Name\r\n"), []byte("001000000000001,a\r\n001000000000002,b"), []byte("001000000000003,c\r\n"), []byte("\r\n001000000000004,\"d\r\"\r"))
	f.Add([]byte("Id\n"), []byte("001000000000001"), []byte("\n"), []byte("001000000000002\n"))
	f.Add([]byte("Id\r\n"), []byte(""), []byte("001000000000001\r"), []byte("001000000000002"))
	f.Fuzz(func(t *testing.T, header, a, b, c []byte) {
		if !bytes.HasSuffix(header, []byte("\n")) {
			return // a header row read from the catalog is whole
		}
		if ids, ok := rowsOf(header, nil); !ok || len(ids) != 0 {
			return // and it is one row: "Id\n\n" is a header and a blank row
		}
		var want []string
		for _, ch := range [][]byte{a, b, c} {
			ids, ok := rowsOf(header, ch)
			if !ok {
				return
			}
			want = append(want, ids...)
		}
		var got bytes.Buffer
		sum := &Summary{}
		out := &sender{send: func(p []byte) error { got.Write(p); return nil }, size: 5, sum: sum, eol: csvscan.LineEnding(header)}
		if err := out.write(header); err != nil {
			t.Fatal(err)
		}
		for _, ch := range [][]byte{a, b, c} {
			out.boundary()
			if err := out.write(ch); err != nil {
				t.Fatal(err)
			}
		}
		if err := out.flush(); err != nil {
			t.Fatal(err)
		}
		if sum.Bytes != int64(got.Len()) {
			t.Fatalf("summary counts %d bytes, %d sent", sum.Bytes, got.Len())
		}
		ids, ok := rowsOf(nil, got.Bytes()) // its first row is the header
		if !ok {
			t.Fatalf("output %q does not parse", got.Bytes())
		}
		if !equal(ids, want) {
			t.Fatalf("rows %q, want %q (output %q)", ids, want, got.Bytes())
		}
		if bytes.HasSuffix(header, []byte("\n")) && bytes.HasSuffix(a, []byte("\n")) && bytes.HasSuffix(b, []byte("\n")) &&
			!bytes.Equal(got.Bytes(), bytes.Join([][]byte{header, a, b, c}, nil)) {
			t.Fatalf("chunks that end with LF were changed: %q", got.Bytes())
		}
	})
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
