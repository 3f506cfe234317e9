package csvscan

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"backupstore/sfid"
)

// scan feeds in to a new scanner in pieces of the given sizes (the rest in one piece), and
// records what it emits.
func scan(t testing.TB, in []byte, refs []string, lim Limits, sizes []int) result {
	t.Helper()
	s := New(refs, lim)
	var res result
	emit := func(r *Row) error {
		e := emitted{raw: string(r.Raw), number: r.Number, blank: r.Blank, id: r.ID.String()}
		if r.Blank && r.ID != (sfid.ID{}) {
			t.Fatalf("blank row %d has id %s", r.Number, r.ID)
		}
		for _, ref := range r.Refs {
			e.refs = append(e.refs, ref.String())
		}
		res.rows = append(res.rows, e)
		return nil
	}
	var err error
	p := in
	for _, n := range sizes {
		if err != nil || len(p) == 0 {
			break
		}
		n = min(n, len(p))
		err = s.Feed(p[:n], emit)
		p = p[n:]
	}
	if err == nil && len(p) > 0 {
		err = s.Feed(p, emit)
	}
	if err == nil {
		err = s.Close(emit)
	}
	if err != nil {
		var re *RowError
		if !errors.As(err, &re) {
			t.Fatalf("error %v is not a *RowError", err)
		}
		res.err = re
		if s.Feed([]byte("x"), nil) != err || s.Close(nil) != err {
			t.Fatalf("error %v is not sticky", err)
		}
	}
	res.header = s.Header()
	return res
}

// diff compares results, ignoring error details.
func diff(want, got result) string {
	strip := func(r result) result {
		if r.err != nil {
			e := *r.err
			e.Detail = ""
			r.err = &e
		}
		return r
	}
	return cmp.Diff(strip(want), strip(got), cmp.AllowUnexported(result{}, emitted{}))
}

func concat(res result) []byte {
	out := append([]byte(nil), res.header...)
	for _, r := range res.rows {
		out = append(out, r.raw...)
	}
	return out
}

const (
	id1  = "001000000000001AAA"
	id2  = "001000000000002AAA"
	idP  = "0015000000XyZabAAF"
	id15 = "0015000000XyZab"
)

func TestScanErrors(t *testing.T) {
	tests := []struct {
		name   string
		in     string
		refs   []string
		lim    Limits
		row    int64
		column string
		reason string
		detail string // a substring of Detail
	}{
		{name: "empty", in: "", reason: NoHeader},
		{name: "no Id column", in: "Name,AccountId\nx,y\n", row: 1, reason: NoIDColumn},
		{name: "duplicate column", in: "Id,Name,name\n", row: 1, column: "name", reason: DuplicateColumn, detail: `column 3 repeats column "Name"`},
		{name: "empty column name", in: "Id,,Name\n", row: 1, reason: BadHeader, detail: "column 2 has no name"},
		{name: "header not UTF-8", in: "Id,N\xffme\n", row: 1, reason: BadHeader, detail: "not valid UTF-8"},
		{name: "blank header", in: "\n" + id1 + "\n", row: 1, reason: BadHeader},
		{name: "missing reference column", in: "Id,Name\n", refs: []string{"AccountId"}, row: 1, column: "AccountId", reason: MissingColumn},
		{name: "quote in header", in: "Id,Na\"me\n", row: 1, reason: BadQuote},
		{name: "unclosed quote", in: "Id,Name\n" + id1 + ",\"abc\n\n", row: 2, column: "Name", reason: UnclosedQuote},
		{name: "unclosed quote in header", in: "Id,\"Name\n", row: 1, reason: UnclosedQuote},
		{name: "quote in unquoted field", in: "Id,Name\n" + id1 + ",ab\"c\"\n", row: 2, column: "Name", reason: BadQuote, detail: "unquoted field"},
		{name: "text after closing quote", in: "Id,Name\n" + id1 + ",\"ab\"c\n", row: 2, column: "Name", reason: BadQuote, detail: "after the closing quote"},
		{name: "space after closing quote", in: "Id,Name,X\n" + id1 + ",\"ab\" ,x\n", row: 2, column: "Name", reason: BadQuote},
		{name: "CR after closing quote", in: "Id,Name\n" + id1 + ",\"ab\"\rx\n", row: 2, column: "Name", reason: BadQuote},
		{name: "too few fields", in: "Id,Name,Phone\n" + id1 + ",a,b\n" + id2 + ",a\n", row: 3, reason: WrongWidth, detail: "the row has 2 fields, the header 3"},
		{name: "too many fields", in: "Id,Name\n" + id1 + ",a,b\n", row: 2, reason: WrongWidth, detail: "the row has 3 fields, the header 2"},
		{name: "whitespace line", in: "Id,Name\n" + id1 + ",a\n \n" + id2 + ",b\n", row: 3, reason: WrongWidth},
		{name: "quoted empty line", in: "Id,Name\n" + id1 + ",a\n\"\"\n" + id2 + ",b\n", row: 3, reason: WrongWidth},
		{name: "row after blank line", in: "Id,Name\n" + id1 + ",a\r\n\r\n" + id2 + "\r\n", row: 4, reason: WrongWidth},
		{name: "invalid UTF-8", in: "Id,Name,City\n" + id1 + ",ok,Z\xfcrich\n", row: 2, column: "City", reason: InvalidUTF8, detail: "byte 1 of the field"},
		{name: "UTF-8 cut short", in: "Id,Name\n" + id1 + ",\"caf\xc3\"\n", row: 2, column: "Name", reason: InvalidUTF8},
		{name: "empty Id", in: "Id,Name\n,a\n", row: 2, column: "Id", reason: BadID, detail: "the Id is empty"},
		{name: "bad Id", in: "Name,Id\na,xyz\n", row: 2, column: "Id", reason: BadID, detail: `"xyz" is not a Salesforce id: must be 15 or 18 characters of A-Z, a-z, 0-9`},
		{name: "Id checksum", in: "Id\n001000000000001AAB\n", row: 2, column: "Id", reason: BadID, detail: `checksum suffix "AAB"`},
		{name: "quoted bad Id", in: "Id\n\"0010000000\"\"0001\"\n", row: 2, column: "Id", reason: BadID, detail: `"0010000000\"0001"`},
		{name: "bad reference", in: "Id,AccountId\n" + id1 + ",nope\n", refs: []string{"AccountId"}, row: 2, column: "AccountId", reason: BadReference, detail: `"nope" is not a Salesforce id`},
		{name: "bad reference, lower-case name", in: "ID,ACCOUNTID\n" + id1 + ",nope\n", refs: []string{"AccountId"}, row: 2, column: "AccountId", reason: BadReference},
		{name: "field too large", in: "Id,Name\n" + id1 + ",\"" + strings.Repeat("x", 20) + "\"\n", lim: Limits{MaxFieldBytes: 21}, row: 2, column: "Name", reason: FieldTooLarge, detail: "22 bytes long; the limit is 21"},
		{name: "unquoted field too large", in: "Id,Name\n" + id1 + "," + strings.Repeat("x", 22) + "\r\n", lim: Limits{MaxFieldBytes: 21}, row: 2, column: "Name", reason: FieldTooLarge},
		{name: "last field too large at EOF", in: "Id,Name\n" + id1 + "," + strings.Repeat("x", 22), lim: Limits{MaxFieldBytes: 21}, row: 2, column: "Name", reason: FieldTooLarge},
		{name: "row too large", in: "Id,Name\n" + id1 + "," + strings.Repeat("x", 40) + "\n", lim: Limits{MaxRowBytes: 50}, row: 2, reason: RowTooLarge, detail: "limit of 50 bytes"},
		{name: "row too large, unterminated quote", in: "Id,Name\n" + id1 + ",\"" + strings.Repeat("x\n", 40), lim: Limits{MaxRowBytes: 50}, row: 2, reason: RowTooLarge},
		{name: "row too large: bad quote first", in: "Id,Name\n" + id1 + ",a\"" + strings.Repeat("x", 40) + "\n", lim: Limits{MaxRowBytes: 50}, row: 2, column: "Name", reason: BadQuote},
		{name: "row too large: field too large first", in: "Id,Name\n" + id1 + ",\"" + strings.Repeat("x", 40), lim: Limits{MaxRowBytes: 50, MaxFieldBytes: 25}, row: 2, column: "Name", reason: FieldTooLarge, detail: "at least 31 bytes"},
		{name: "header too large", in: "Id," + strings.Repeat("x", 60) + "\n", lim: Limits{MaxRowBytes: 50}, row: 1, reason: RowTooLarge},
		{name: "row just over the limit", in: "Id\n" + id1 + "\r\n", lim: Limits{MaxRowBytes: 19}, row: 2, reason: RowTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := []byte(tt.in)
			want := scan(t, in, tt.refs, tt.lim, nil)
			if want.err == nil {
				t.Fatalf("no error; want %s", tt.reason)
			}
			e := want.err
			if e.Row != tt.row || e.Column != tt.column || e.Reason != tt.reason || !strings.Contains(e.Detail, tt.detail) {
				t.Errorf("got %+v\nwant row %d, column %q, reason %s, detail containing %q", *e, tt.row, tt.column, tt.reason, tt.detail)
			}
			if msg := e.Error(); !strings.Contains(msg, tt.reason) || (e.Row > 0 && !strings.HasPrefix(msg, fmt.Sprintf("row %d", e.Row))) {
				t.Errorf("Error() = %q", msg)
			}
			for _, n := range []int{1, 2, 3, 7} {
				if d := diff(want, scan(t, in, tt.refs, tt.lim, repeat(n, len(in)))); d != "" {
					t.Errorf("fed %d bytes at a time: (-whole +chunked)\n%s", n, d)
				}
			}
			if tt.lim == (Limits{}) {
				if d := diff(refScan(in, tt.refs), want); d != "" {
					t.Errorf("(-reference +scanner)\n%s", d)
				}
			}
		})
	}
}

func repeat(n, total int) []int {
	s := make([]int, 0, total/n+1)
	for range total/n + 1 {
		s = append(s, n)
	}
	return s
}

func TestRowErrorMessage(t *testing.T) {
	e := &RowError{Row: 7, Column: "AccountId", Reason: BadReference, Detail: `"xyz" is not a Salesforce id: must be 15 or 18 characters of A-Z, a-z, 0-9`}
	want := `row 7, column "AccountId": BAD_REFERENCE: "xyz" is not a Salesforce id: must be 15 or 18 characters of A-Z, a-z, 0-9`
	if e.Error() != want {
		t.Errorf("got  %s\nwant %s", e.Error(), want)
	}
	if got := (&RowError{Row: 3, Reason: WrongWidth, Detail: "d"}).Error(); got != "row 3: WRONG_WIDTH: d" {
		t.Error(got)
	}
	if got := (&RowError{Reason: NoHeader, Detail: "d"}).Error(); got != "NO_HEADER: d" {
		t.Error(got)
	}
}

func TestScan(t *testing.T) {
	in := "\xef\xbb\xbf\"Id\",Name,\"Parent\"\"Id\",ParentId\r\n" +
		id15 + ",\"Smith, \"\"Jr\"\"\",x," + id1 + "\r\n" +
		"\"" + id1 + "\",\"two\r\nlines\n\",," + "\n" +
		id2 + ",Zürich,," + id15 + "\r\n" +
		strings.ToLower(id1[:15]) + ",日本,,"
	lower := sfidNorm(strings.ToLower(id1[:15]))
	want := result{
		header: []byte(in[:strings.Index(in, "\r\n")+2]),
		rows: []emitted{
			{raw: id15 + ",\"Smith, \"\"Jr\"\"\",x," + id1 + "\r\n", number: 2, id: idP, refs: []string{id1, idP}},
			{raw: "\"" + id1 + "\",\"two\r\nlines\n\",,\n", number: 3, id: id1, refs: []string{"", id1}},
			{raw: id2 + ",Zürich,," + id15 + "\r\n", number: 4, id: id2, refs: []string{idP, id2}},
			{raw: strings.ToLower(id1[:15]) + ",日本,,", number: 5, id: lower, refs: []string{"", lower}},
		},
	}
	// Names match case-insensitively; a reference column may be Id itself.
	refs := []string{"parentid", "ID"}
	got := scan(t, []byte(in), refs, Limits{}, nil)
	if d := diff(want, got); d != "" {
		t.Fatalf("(-want +got)\n%s", d)
	}
	if !bytes.Equal(concat(got), []byte(in)) {
		t.Errorf("header + rows do not reproduce the input")
	}
	s := New(nil, Limits{})
	if err := s.Feed([]byte(in), nil); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{"Id", "Name", "Parent\"Id", "ParentId"}, s.Columns()); d != "" {
		t.Errorf("Columns (-want +got)\n%s", d)
	}
	if s.Rows() != 4 {
		t.Errorf("Rows() = %d before Close, want 4", s.Rows())
	}
	if err := s.Close(nil); err != nil || s.Rows() != 5 {
		t.Errorf("Close: %v, Rows() = %d, want 5", err, s.Rows())
	}
}

func sfidNorm(s string) string {
	n, err := sfid.Normalize(s)
	if err != nil {
		panic(err)
	}
	return n
}

func TestLineEndings(t *testing.T) {
	for _, in := range []string{
		"Id\n" + id1 + "\n",
		"Id\r\n" + id1 + "\r\n",
		"Id\r\n" + id1,
		"Id\n" + id1 + "\r",
		"Id\n\"" + id1 + "\"\r",
		"Id\n\"" + id1 + "\"",
		"Id",
		"Id\r",
		"\"Id\"",
	} {
		res := scan(t, []byte(in), nil, Limits{}, nil)
		if res.err != nil {
			t.Errorf("%q: %v", in, res.err)
			continue
		}
		if !bytes.Equal(concat(res), []byte(in)) {
			t.Errorf("%q: not reproduced: %q", in, concat(res))
		}
		if strings.Contains(in, id1) && (len(res.rows) != 1 || res.rows[0].id != id1) {
			t.Errorf("%q: rows %+v", in, res.rows)
		}
	}
}

// TestEmitError checks that an error from emit stops the scan and is returned unchanged.
func TestEmitError(t *testing.T) {
	stop := errors.New("stop")
	s := New(nil, Limits{})
	n := 0
	err := s.Feed([]byte("Id\n"+id1+"\n"+id2+"\n"), func(r *Row) error { n++; return stop })
	if err != stop || n != 1 {
		t.Fatalf("Feed = %v after %d rows, want stop after 1", err, n)
	}
	if s.Feed([]byte(id1+"\n"), nil) != stop || s.Close(nil) != stop {
		t.Error("the emit error is not sticky")
	}
	s = New(nil, Limits{})
	if err := s.Close(nil); err == nil {
		t.Fatal("Close of empty input succeeded")
	}
	s = New(nil, Limits{})
	_ = s.Close(nil)
	if err := s.Feed([]byte("Id\n"), nil); err == nil {
		t.Error("Feed after Close succeeded")
	}
}

// TestHugeFieldBoundedMemory feeds a 100 MB field and checks that it is rejected after at most
// MaxRowBytes of buffering.
func TestHugeFieldBoundedMemory(t *testing.T) {
	for _, quoted := range []bool{false, true} {
		s := New(nil, Limits{})
		chunk := bytes.Repeat([]byte("x"), 1<<20)
		if err := s.Feed([]byte("Id,Body\n"+id1+","), nil); err != nil {
			t.Fatal(err)
		}
		if quoted {
			if err := s.Feed([]byte(`"`), nil); err != nil {
				t.Fatal(err)
			}
		}
		var err error
		fed := 0
		for fed < 100<<20 && err == nil {
			err = s.Feed(chunk, nil)
			fed += len(chunk)
			if cap(s.carry) > DefaultMaxRowBytes {
				t.Fatalf("carry grew to %d bytes", cap(s.carry))
			}
		}
		var re *RowError
		if !errors.As(err, &re) || re.Reason != FieldTooLarge || re.Column != "Body" || re.Row != 2 {
			t.Fatalf("quoted %v: got %v", quoted, err)
		}
		if fed > DefaultMaxRowBytes+len(chunk) {
			t.Errorf("quoted %v: rejected after %d bytes", quoted, fed)
		}
	}
}

// TestAllocs checks that rows cost no allocations: not when they lie within one Feed, nor when
// they span Feeds once the carry buffer has grown.
func TestAllocs(t *testing.T) {
	var b bytes.Buffer
	b.WriteString("Id,Name,ParentId\n")
	for i := range 100 {
		fmt.Fprintf(&b, "%s,\"name %d, é\",%s\n", id1, i, id15)
	}
	in := b.Bytes()
	hdr := bytes.IndexByte(in, '\n') + 1
	s := New([]string{"ParentId"}, Limits{})
	if err := s.Feed(in[:hdr], nil); err != nil {
		t.Fatal(err)
	}
	rows := 0
	emit := func(r *Row) error { rows++; return nil }
	body := in[hdr:]
	if n := testing.AllocsPerRun(10, func() {
		if err := s.Feed(body, emit); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("whole rows: %v allocations per Feed, want 0", n)
	}
	if n := testing.AllocsPerRun(10, func() {
		for p := body; len(p) > 0; p = p[min(7, len(p)):] {
			if err := s.Feed(p[:min(7, len(p))], emit); err != nil {
				t.Fatal(err)
			}
		}
	}); n != 0 {
		t.Errorf("rows across Feeds: %v allocations, want 0", n)
	}
}

// genCSV returns a random CSV record set: a header with an Id column and a ParentId reference
// column among others, rows with quoted and unquoted fields holding commas, quotes, CR, LF and
// multi-byte UTF-8, LF or CRLF endings, and perhaps no final terminator.
func genCSV(r *rand.Rand) []byte {
	var b bytes.Buffer
	ncol := 2 + r.IntN(5)
	idc, pc := r.IntN(ncol), r.IntN(ncol)
	for pc == idc {
		pc = r.IntN(ncol)
	}
	if r.IntN(10) == 0 {
		b.WriteString("\xef\xbb\xbf")
	}
	eol := func() {
		if r.IntN(2) == 0 {
			b.WriteString("\r\n")
		} else {
			b.WriteByte('\n')
		}
	}
	field := func(v string, mustQuote bool) {
		if mustQuote || strings.ContainsAny(v, ",\"\r\n") || r.IntN(3) == 0 {
			b.WriteByte('"')
			b.WriteString(strings.ReplaceAll(v, `"`, `""`))
			b.WriteByte('"')
		} else {
			b.WriteString(v)
		}
	}
	for c := range ncol {
		if c > 0 {
			b.WriteByte(',')
		}
		switch c {
		case idc:
			field("Id", false)
		case pc:
			field("ParentId", false)
		default:
			field(fmt.Sprintf("F%d_é", c), false)
		}
	}
	nrows := r.IntN(30)
	if nrows > 0 || r.IntN(2) == 0 {
		eol()
	}
	pieces := []string{"a", "b c", ",", "\"", "\n", "\r\n", "\r", "é", "日本", "😀", " ", "x,y", "\"\""}
	for n := range nrows {
		for c := range ncol {
			if c > 0 {
				b.WriteByte(',')
			}
			switch c {
			case idc:
				id := fmt.Sprintf("%03d%012d", r.IntN(1000), n)
				if r.IntN(2) == 0 {
					id = sfidNorm(id)
				}
				field(id, false)
			case pc:
				if r.IntN(2) == 0 {
					field(sfidNorm(fmt.Sprintf("a0B%012d", r.IntN(1000))), false)
				} else {
					field("", false)
				}
			default:
				var v strings.Builder
				for range r.IntN(6) {
					v.WriteString(pieces[r.IntN(len(pieces))])
				}
				field(v.String(), false)
			}
		}
		if n < nrows-1 || r.IntN(3) > 0 {
			eol()
			for r.IntN(8) == 0 { // blank lines, as a hand-edited export may hold
				eol()
			}
		}
	}
	return b.Bytes()
}

// mutate damages in at a few random places.
func mutate(r *rand.Rand, in []byte) []byte {
	out := append([]byte(nil), in...)
	for range 1 + r.IntN(3) {
		if len(out) == 0 {
			break
		}
		i := r.IntN(len(out))
		switch r.IntN(5) {
		case 0:
			out = append(out[:i], out[i+1:]...)
		case 1:
			out[i] = "\",\n\r\xff\xc3a"[r.IntN(7)]
		default:
			out = append(out[:i], append([]byte{"\",\n\r\xc3"[r.IntN(5)]}, out[i:]...)...)
		}
	}
	return out
}

func randomSizes(r *rand.Rand, total int) []int {
	var sizes []int
	switch r.IntN(4) {
	case 0:
		return repeat(1, total)
	case 1:
		return nil
	}
	for n := 0; n < total; {
		k := 1 + r.IntN(1+r.IntN(total+1))
		sizes = append(sizes, k)
		n += k
	}
	return sizes
}

// TestProperties checks, on random inputs, that the scanner matches the reference model (rows,
// ids and the first error), whatever the chunking; that valid inputs round-trip byte for byte;
// and that it agrees with encoding/csv on valid inputs.
func TestProperties(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	n := 3000
	if testing.Short() {
		n = 300
	}
	valid := 0
	for i := range n {
		in := genCSV(r)
		if i%2 == 1 {
			in = mutate(r, in)
		}
		refs := []string{"ParentId"}
		want := refScan(in, refs)
		got := scan(t, in, refs, Limits{}, randomSizes(r, len(in)))
		if d := diff(want, got); d != "" {
			t.Fatalf("input %q: (-reference +scanner)\n%s", in, d)
		}
		if got.err != nil {
			continue
		}
		valid++
		if !bytes.Equal(concat(got), in) {
			t.Fatalf("input %q: header + rows give %q", in, concat(got))
		}
		if !bytes.HasPrefix(in, bom) {
			checkEncodingCSV(t, in, got)
		}
	}
	if valid < n/3 {
		t.Errorf("only %d of %d inputs valid; the generator is off", valid, n)
	}
}

// checkEncodingCSV reads valid input in with encoding/csv and compares row count and ids.
func checkEncodingCSV(t *testing.T, in []byte, got result) {
	t.Helper()
	cr := csv.NewReader(bytes.NewReader(in))
	hdr, err := cr.Read()
	if err != nil {
		t.Fatalf("input %q: encoding/csv header: %v", in, err)
	}
	cr.FieldsPerRecord = len(hdr)
	var records []emitted // encoding/csv skips blank lines
	for _, r := range got.rows {
		if !r.blank {
			records = append(records, r)
		}
	}
	got.rows = records
	idc := -1
	for i, c := range hdr {
		if strings.EqualFold(c, "Id") {
			idc = i
		}
	}
	for n := 0; ; n++ {
		rec, err := cr.Read()
		if err == io.EOF {
			if n != len(got.rows) {
				t.Fatalf("input %q: encoding/csv reads %d rows, the scanner %d", in, n, len(got.rows))
			}
			return
		}
		if err != nil {
			t.Fatalf("input %q: encoding/csv: %v", in, err)
		}
		if n >= len(got.rows) || sfidNorm(rec[idc]) != got.rows[n].id {
			t.Fatalf("input %q: row %d: encoding/csv id %q", in, n+2, rec[idc])
		}
	}
}

// TestLimitsChunking checks that with small limits the outcome does not depend on chunking.
func TestLimitsChunking(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 2000 {
		in := genCSV(r)
		if r.IntN(2) == 0 {
			in = mutate(r, in)
		}
		lim := Limits{MaxFieldBytes: 1 + r.IntN(40), MaxRowBytes: 1 + r.IntN(120)}
		refs := []string{"ParentId"}
		want := scan(t, in, refs, lim, nil)
		got := scan(t, in, refs, lim, randomSizes(r, len(in)))
		if d := diff(want, got); d != "" {
			t.Fatalf("input %q, %+v: (-whole +chunked)\n%s", in, lim, d)
		}
	}
}

func FuzzScanner(f *testing.F) {
	r := rand.New(rand.NewPCG(5, 6))
	for range 20 {
		f.Add(genCSV(r), uint64(r.Uint32()))
	}
	f.Add([]byte("Id\n"+id1+"\n"), uint64(1))
	f.Add([]byte("Id,Name\n"+id1+",\"a\"\"b\"\r\n"), uint64(2))
	f.Fuzz(func(t *testing.T, in []byte, seed uint64) {
		r := rand.New(rand.NewPCG(seed, 7))
		refs := []string{"ParentId"}
		if !bytes.Contains(in, []byte("ParentId")) {
			refs = nil
		}
		whole := scan(t, in, refs, Limits{}, nil)
		if d := diff(refScan(in, refs), whole); d != "" {
			t.Fatalf("(-reference +scanner)\n%s", d)
		}
		if d := diff(whole, scan(t, in, refs, Limits{}, randomSizes(r, len(in)))); d != "" {
			t.Fatalf("(-whole +chunked)\n%s", d)
		}
		lim := Limits{MaxFieldBytes: 1 + int(seed%37), MaxRowBytes: 1 + int(seed>>8%101)}
		if d := diff(scan(t, in, refs, lim, nil), scan(t, in, refs, lim, randomSizes(r, len(in)))); d != "" {
			t.Fatalf("%+v: (-whole +chunked)\n%s", lim, d)
		}
		if whole.err == nil {
			if !bytes.Equal(concat(whole), in) {
				t.Fatalf("header + rows give %q", concat(whole))
			}
		}
		// Whatever encoding/csv rejects, the scanner rejects (a BOM is the one thing it
		// accepts that encoding/csv reads as a bare quote).
		if whole.err == nil && !bytes.HasPrefix(in, bom) {
			cr := csv.NewReader(bytes.NewReader(in))
			cr.FieldsPerRecord = 0
			for {
				_, err := cr.Read()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatalf("encoding/csv rejects what the scanner accepts: %v", err)
				}
			}
		}
	})
}

func TestBlankLines(t *testing.T) {
	// A Data Loader export edited by hand: a blank CRLF line after the last row, and one between rows.
	in := "Id,Name\r\n" + id1 + ",a\r\n\r\n" + id2 + ",b\r\n\r\n"
	got := scan(t, []byte(in), nil, Limits{}, nil)
	want := result{header: []byte("Id,Name\r\n"), rows: []emitted{
		{raw: id1 + ",a\r\n", number: 2, id: id1},
		{raw: "\r\n", number: 3, blank: true},
		{raw: id2 + ",b\r\n", number: 4, id: id2},
		{raw: "\r\n", number: 5, blank: true},
	}}
	if d := diff(want, got); d != "" {
		t.Fatalf("(-want +got)\n%s", d)
	}
	// A one-column file, an LF blank line, and a lone CR ending the input.
	got = scan(t, []byte("Id\n\n"+id1+"\n\r"), []string{}, Limits{}, nil)
	want = result{header: []byte("Id\n"), rows: []emitted{
		{raw: "\n", number: 2, blank: true},
		{raw: id1 + "\n", number: 3, id: id1},
		{raw: "\r", number: 4, blank: true},
	}}
	if d := diff(want, got); d != "" {
		t.Fatalf("(-want +got)\n%s", d)
	}
}

func TestRowSkipper(t *testing.T) {
	tests := []struct{ in, rest string }{
		{"Id,Name\n" + id1 + ",a\n", id1 + ",a\n"},
		{"Id,\"Na\nme\"\r\n" + id1 + ",a\n", id1 + ",a\n"},
		{"\"I\"\"d\n\",\"x\"\"\"\"\n\"\nrest", "rest"},
		{"Id,Name", ""},
		{"Id,\"Name\n", ""},
	}
	for _, tt := range tests {
		for step := 1; step <= len(tt.in); step++ {
			var k RowSkipper
			var rest []byte
			for p := []byte(tt.in); len(p) > 0; {
				n := min(step, len(p))
				rest = append(rest, k.Skip(p[:n])...)
				p = p[n:]
			}
			if string(rest) != tt.rest {
				t.Fatalf("%q in pieces of %d: rest %q, want %q", tt.in, step, rest, tt.rest)
			}
		}
	}
}

// FuzzRowSkipper holds RowSkipper, which reads stored (hostile) bytes, to the scanner: on input
// the scanner accepts it skips exactly the header, and on any input, however cut, it gives the
// same answer and never panics.
func FuzzRowSkipper(f *testing.F) {
	r := rand.New(rand.NewPCG(8, 9))
	for range 20 {
		f.Add(genCSV(r), uint64(r.Uint32()))
	}
	f.Add([]byte("Id,\"Na\nme\"\n"+id1+",a\n"), uint64(3))
	f.Fuzz(func(t *testing.T, in []byte, seed uint64) {
		r := rand.New(rand.NewPCG(seed, 10))
		var whole RowSkipper
		want := whole.Skip(in)
		var k RowSkipper
		var got []byte
		p := in
		for _, n := range randomSizes(r, len(in)) {
			n = min(n, len(p))
			got = append(got, k.Skip(p[:n])...)
			p = p[n:]
		}
		got = append(got, k.Skip(p)...)
		if !bytes.Equal(got, want) || k.Done() != whole.Done() {
			t.Fatalf("chunked: rest %q (done %v), whole %q (done %v)", got, k.Done(), want, whole.Done())
		}
		s := New(nil, Limits{})
		if s.Feed(in, nil) == nil && s.Close(nil) == nil && whole.Done() {
			if h := s.Header(); !bytes.Equal(in[len(h):], want) {
				t.Fatalf("scanner header %q, skipper leaves %q", h, want)
			}
		}
	})
}
