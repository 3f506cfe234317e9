package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/uuid"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"backupstore/csvscan"
	pb "backupstore/proto/backupstore/v1"
	"backupstore/recindex"
	"backupstore/storage"
)

// e2eBackup dials a realServer and opens a backup of testOrg: the backup and restore clients
// and the backup id.
func e2eBackup(t *testing.T, addr string) (pb.BackupServiceClient, pb.RestoreServiceClient, string) {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	bc := pb.NewBackupServiceClient(conn)
	b, err := bc.CreateBackup(t.Context(), &pb.CreateBackupRequest{OrgId: testOrg})
	if err != nil {
		t.Fatal(err)
	}
	return bc, pb.NewRestoreServiceClient(conn), b.GetBackup().GetId()
}

// putChunk uploads one record-set chunk in messages of 7 bytes (rows cut
// anywhere).
func putChunk(bc pb.BackupServiceClient, backup, sobject string, seq int32, data string) (*pb.UploadRecordsResponse, error) {
	st, err := bc.UploadRecords(context.Background())
	if err != nil {
		return nil, err
	}
	msgs := []*pb.UploadRecordsRequest{{Message: &pb.UploadRecordsRequest_Header{Header: &pb.RecordsHeader{
		BackupId: backup, Sobject: sobject, Sequence: seq, UploadId: uuid.NewString()}}}}
	for p := []byte(data); len(p) > 0; {
		n := min(len(p), 7)
		if len(data) > 1<<20 {
			n = min(len(p), 256<<10)
		}
		msgs = append(msgs, &pb.UploadRecordsRequest{Message: &pb.UploadRecordsRequest_Data{Data: p[:n]}})
		p = p[n:]
	}
	msgs = append(msgs, &pb.UploadRecordsRequest{Message: &pb.UploadRecordsRequest_Finish{Finish: &pb.FinishWrite{}}})
	for _, m := range msgs {
		if err := st.Send(m); err != nil {
			break // CloseAndRecv has the status
		}
	}
	return st.CloseAndRecv()
}

// readSet reads a record set (whole, or the given ids) through ReadRecords.
func readSet(rc pb.RestoreServiceClient, backup, sobject string, ids ...string) (string, *pb.ReadRecordsSummary, error) {
	st, err := rc.ReadRecords(context.Background(), &pb.ReadRecordsRequest{BackupId: backup, Sobject: sobject, Ids: ids})
	if err != nil {
		return "", nil, err
	}
	var out bytes.Buffer
	for {
		m, err := st.Recv()
		if errors.Is(err, io.EOF) {
			return out.String(), nil, errors.New("stream ended without a summary")
		}
		if err != nil {
			return out.String(), nil, err
		}
		if s := m.GetSummary(); s != nil {
			return out.String(), s, nil
		}
		out.Write(m.GetData())
	}
}

// recordIDs re-parses restored CSV: its records' ids, in order.
func recordIDs(t *testing.T, csv string) []string {
	t.Helper()
	var ids []string
	sc := csvscan.New(nil, csvscan.Limits{})
	emit := func(r *csvscan.Row) error {
		if !r.Blank {
			ids = append(ids, r.ID.String()[:15])
		}
		return nil
	}
	if err := sc.Feed([]byte(csv), emit); err != nil {
		t.Fatalf("restored CSV does not parse: %v\n%q", err, csv)
	}
	if err := sc.Close(emit); err != nil {
		t.Fatalf("restored CSV does not parse: %v\n%q", err, csv)
	}
	return ids
}

func acc(n int) string { return fmt.Sprintf("001%012d", n) }

// TestRecordSetRowsAgainstRealServer checks, through the gRPC server, that
// record sets come back row for row: chunks whose last row has no line ending
// are not glued to the next chunk's first row (issue 9 item 4), a file cut
// at row boundaries comes back byte for byte, blank lines are kept byte for
// byte and hold no record (item 12), and a header column holding a line
// break is refused naming the column (item 10).
func TestRecordSetRowsAgainstRealServer(t *testing.T) {
	addr, _ := realServer(t)
	bc, rc, id := e2eBackup(t, addr)
	ctx := context.Background()
	type chunk struct {
		data    string
		records int64
	}
	sets := []struct {
		sobject string
		chunks  []chunk
		whole   string   // what a whole read gives
		ids     []string // what the whole read parses to
	}{{
		// A worker's own chunking: each chunk's last row without a line ending.
		sobject: "Account",
		chunks: []chunk{
			{"Id,Name\r\n" + acc(1) + ",a\r\n" + acc(2) + ",b", 2},
			{"Id,Name\r\n" + acc(3) + ",c\r\n" + acc(4) + ",\"d\r\n\"\r", 2},
			{"Id,Name\r\n" + acc(5) + ",e", 1},
		},
		whole: "Id,Name\r\n" + acc(1) + ",a\r\n" + acc(2) + ",b\r\n" + acc(3) + ",c\r\n" + acc(4) + ",\"d\r\n\"\r\n" + acc(5) + ",e",
		ids:   []string{acc(1), acc(2), acc(3), acc(4), acc(5)},
	}, {
		// A hand-edited Data Loader export cut at row boundaries by backup run:
		// blank lines between rows and after the last one, the last chunk
		// ending without a line ending after them: byte for byte.
		sobject: "Contact",
		chunks: []chunk{
			{"Id,LastName\r\n" + acc(11) + ",Smith\r\n\r\n", 1},
			{"Id,LastName\r\n" + acc(12) + ",Jones\r\n" + acc(13) + ",Brown\r\n\r\n", 2},
			{"Id,LastName\r\n\r\n", 0},
			{"Id,LastName\r\n" + acc(14) + ",Lee", 1},
		},
		whole: "Id,LastName\r\n" + acc(11) + ",Smith\r\n\r\n" + acc(12) + ",Jones\r\n" + acc(13) + ",Brown\r\n\r\n\r\n" + acc(14) + ",Lee",
		ids:   []string{acc(11), acc(12), acc(13), acc(14)},
	}}
	for _, set := range sets {
		for i, c := range set.chunks {
			res, err := putChunk(bc, id, set.sobject, int32(i), c.data)
			if err != nil {
				t.Fatalf("%s chunk %d: %v", set.sobject, i, err)
			}
			if got := res.GetResult().GetRecords(); got != c.records {
				t.Errorf("%s chunk %d: %d records, want %d (blank lines hold none)", set.sobject, i, got, c.records)
			}
		}
	}
	// A header row whose quoted column name holds a line break is refused.
	_, err := putChunk(bc, id, "Lead", 0, "Id,\"Na\nme\"\n"+acc(21)+",x\n")
	if st := status.Convert(err); st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), "line break") {
		t.Fatalf("header with a line break: %v", err)
	} else if v := badRequestFields(st); len(v) != 1 || v[0] != "row 1, column Na\nme" {
		t.Fatalf("header with a line break: field violations %q, want the column named", v)
	}
	if _, err := bc.CommitBackup(ctx, &pb.CommitBackupRequest{BackupId: id}); err != nil {
		t.Fatal(err)
	}

	for _, set := range sets {
		got, sum, err := readSet(rc, id, set.sobject)
		if err != nil {
			t.Fatalf("%s: %v", set.sobject, err)
		}
		if got != set.whole {
			t.Errorf("%s whole read:\n got %q\nwant %q", set.sobject, got, set.whole)
		}
		if ids := recordIDs(t, got); strings.Join(ids, " ") != strings.Join(set.ids, " ") || sum.GetRecords() != int64(len(set.ids)) {
			t.Errorf("%s: re-parsed ids %v (summary %d records), want %v", set.sobject, ids, sum.GetRecords(), set.ids)
		}
	}

	// By id: rows that end chunks without a line ending, rows around blank
	// lines; the rows come back apart, every one ending with the header's
	// line ending (a by-id read is a CSV of its own), blank lines not at all.
	for _, tc := range []struct {
		sobject string
		ids     []string
		want    string
	}{
		{"Account", []string{acc(2), acc(4), acc(5), acc(3)},
			"Id,Name\r\n" + acc(2) + ",b\r\n" + acc(3) + ",c\r\n" + acc(4) + ",\"d\r\n\"\r\n" + acc(5) + ",e\r\n"},
		{"Contact", []string{acc(14), acc(11), acc(13)},
			"Id,LastName\r\n" + acc(11) + ",Smith\r\n" + acc(13) + ",Brown\r\n" + acc(14) + ",Lee\r\n"},
	} {
		got, sum, err := readSet(rc, id, tc.sobject, tc.ids...)
		if err != nil || got != tc.want || len(sum.GetMissingIds()) != 0 || sum.GetRecords() != int64(len(tc.ids)) {
			t.Errorf("%s by id %v: %v, summary %v\n got %q\nwant %q", tc.sobject, tc.ids, err, sum, got, tc.want)
		}
	}
	g, err := bc.GetBackup(ctx, &pb.GetBackupRequest{Id: id})
	if err != nil || g.GetBackup().GetDamaged() {
		t.Fatalf("backup flagged damaged: %v %v", g, err)
	}
}

func badRequestFields(st *status.Status) []string {
	var out []string
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				out = append(out, v.GetField())
			}
		}
	}
	return out
}

// TestReadByIDIndexContradictsFrame: when a chunk's record index sends an id
// to a frame that does not hold it (bucket content contradicting itself), a
// by-id read answers DataLoss naming the objects, never drops the record
// silently (issue 9 item 12).
func TestReadByIDIndexContradictsFrame(t *testing.T) {
	addr, local := realServer(t)
	bc, rc, id := e2eBackup(t, addr)
	ctx := context.Background()
	var data strings.Builder
	data.WriteString("Id,Description\n")
	for i := range 12000 { // ~2.5 MB: three 1 MiB frames
		fmt.Fprintf(&data, "%s,%s %d\n", acc(i), strings.Repeat("lorem ipsum dolor sit amet ", 7), i*7919%100003)
	}
	res, err := putChunk(bc, id, "Account", 0, data.String())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bc.CommitBackup(ctx, &pb.CommitBackupRequest{BackupId: id}); err != nil {
		t.Fatal(err)
	}
	idxKey, dataKey := res.GetResult().GetIndexKey(), res.GetResult().GetDataKey()
	victim := acc(5) // in frame 0
	forgeIndex(t, local, idxKey, victim)

	got, _, err := readSet(rc, id, "Account", acc(6), victim)
	st := status.Convert(err)
	if st.Code() != codes.DataLoss || !strings.Contains(st.Message(), dataKey) || !strings.Contains(st.Message(), idxKey) ||
		!strings.Contains(st.Message(), victim) {
		t.Fatalf("by-id read through a lying index: %v (got %d bytes); want DataLoss naming %s, %s and %s", err, len(got), victim, idxKey, dataKey)
	}
	// An id the index places right is still read.
	if got, sum, err := readSet(rc, id, "Account", acc(11000)); err != nil || !strings.Contains(got, acc(11000)+",") || sum.GetRecords() != 1 {
		t.Fatalf("intact id: %v %v", err, sum)
	}
}

// forgeIndex rewrites the index object at key so that it places victim in
// frame 1 instead of frame 0, at the same size (as the catalog records it).
func forgeIndex(t *testing.T, st storage.Store, key, victim string) {
	t.Helper()
	ctx := context.Background()
	rd, err := st.Get(ctx, key, 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	orig, _ := io.ReadAll(rd)
	rd.Close()
	r, err := recindex.Open(bytes.NewReader(orig), int64(len(orig)))
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Frames()) < 2 {
		t.Fatalf("the chunk has %d frames; the test needs two", len(r.Frames()))
	}
	spool, err := os.Create(filepath.Join(t.TempDir(), "forged.idx"))
	if err != nil {
		t.Fatal(err)
	}
	defer spool.Close()
	w, err := recindex.NewWriter(spool, recindex.Options{})
	if err != nil {
		t.Fatal(err)
	}
	victim18 := ""
	err = r.ForEachRecord(func(rid string, frame uint32) error {
		_, row, _, err := r.LookupRow(rid)
		if err != nil {
			return err
		}
		if strings.HasPrefix(rid, victim) {
			if frame != 0 {
				t.Fatalf("%s is in frame %d, not 0", victim, frame)
			}
			victim18, frame = rid, 1
		}
		return w.AddRecord(rid, frame, row)
	})
	if err != nil || victim18 == "" {
		t.Fatalf("reading the index: %v (victim found: %q)", err, victim18)
	}
	for _, f := range r.Frames() {
		w.AddFrame(f)
	}
	size, err := w.Finish()
	if err != nil {
		t.Fatal(err)
	}
	if size != int64(len(orig)) {
		t.Fatalf("forged index has %d bytes, the original %d", size, len(orig))
	}
	forged := make([]byte, size)
	if _, err := spool.ReadAt(forged, 0); err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(forged, orig) {
		t.Fatal("the forged index equals the original")
	}
	if _, err := st.Put(ctx, key, bytes.NewReader(forged)); err != nil {
		t.Fatal(err)
	}
}

// TestRestoreRunDiffsCleanAgainstRealServer: a hand-edited Data Loader export
// (15 columns, a blank CRLF line after the last row) with a files.csv in path
// order is backed up with `backup run` and written back with `restore run`;
// the two directories are identical, files.csv row order included (issue 9
// item 12).
func TestRestoreRunDiffsCleanAgainstRealServer(t *testing.T) {
	addr, _ := realServer(t)
	dir := t.TempDir()
	cols := "Id,Name,Type,ParentId,BillingStreet,BillingCity,BillingState,BillingPostalCode,BillingCountry,Phone,Fax,Website,Industry,AnnualRevenue,NumberOfEmployees"
	var accounts strings.Builder
	accounts.WriteString(`"` + strings.ReplaceAll(strings.ToUpper(cols), ",", `","`) + "\"\r\n")
	for i := range 300 {
		fmt.Fprintf(&accounts, "\"%s\",\"Acme %d\",\"Customer\",\"\",\"1 Main St\r\nSuite %d\",\"Springfield\",\"IL\",\"62701\",\"USA\",\"555-0100\",\"\",\"acme.example\",\"Manufacturing\",\"1000000\",\"%d\"\r\n",
			sfidNorm(t, acc(i)), i, i, i)
	}
	accounts.WriteString("\r\n") // the blank line the hand edit left
	writeFile(t, filepath.Join(dir, "Account.csv"), []byte(accounts.String()))
	var files strings.Builder
	files.WriteString("path,parent_id,name,content_type\n")
	for i := range 8 {
		rel := fmt.Sprintf("att/%c-%d.txt", 'a'+i, i)
		writeFile(t, filepath.Join(dir, "files", filepath.FromSlash(rel)), []byte(fmt.Sprintf("body %d\n", i)))
		fmt.Fprintf(&files, "%s,%s,Note %d,text/plain\n", rel, sfidNorm(t, acc(i)), i)
	}
	writeFile(t, filepath.Join(dir, "files.csv"), []byte(files.String()))

	run := runCLI(t, "", "--server", addr, "backup", "run", "--org", testOrg, "--chunk-size", "16KiB", dir)
	if run.code != 0 {
		t.Fatalf("backup run: %v", run)
	}
	id := strings.TrimSpace(run.stdout)
	out := filepath.Join(t.TempDir(), "restored")
	if r := runCLI(t, "", "--server", addr, "restore", "run", id, out); r.code != 0 {
		t.Fatalf("restore run: %v", r)
	}
	want, got := readTree(t, dir), readTree(t, out)
	for name, w := range want {
		if g, ok := got[name]; !ok {
			t.Errorf("%s: not restored", name)
		} else if g != w {
			t.Errorf("%s differs:\n got %q\nwant %q", name, cut(g), cut(w))
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("%s: restored but not in the export", name)
		}
	}
}

// readTree reads every regular file under dir by its slash-separated path.
func readTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		out[filepath.ToSlash(rel)] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func cut(s string) string {
	if len(s) > 400 {
		return s[:200] + " … " + s[len(s)-200:]
	}
	return s
}
