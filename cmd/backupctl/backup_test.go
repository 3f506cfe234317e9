package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"backupstore/client"
	"backupstore/csvscan"
	"backupstore/csvscan/csvgen"
	pb "backupstore/proto/backupstore/v1"
)

const testOrg = "00D000000000001"

// fastRetry makes uploads retry quickly, attempts times in all.
func fastRetry(t *testing.T, attempts int) {
	t.Helper()
	old := uploadRetry
	uploadRetry = client.RetryPolicy{Attempts: attempts, Base: time.Millisecond, Max: 5 * time.Millisecond}
	t.Cleanup(func() { uploadRetry = old })
}

func writeFile(t *testing.T, name string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 7))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// accountID is the i-th id of csvgen.Generate(w, n, 1).
func accountID(i int) string { return csvgen.ID(csvgen.AccountPrefix, 1_000_000+int64(i)) }

func contactID(i int) string { return csvgen.ID("003", int64(i)) }

// testExport is a generated export directory and what it holds.
type testExport struct {
	dir     string
	content map[string][]byte // path relative to dir → bytes
	parents map[string]string // files.csv path → parent id
	orphan  string            // the files.csv path of the file without a parent
	big     string            // the files.csv path of the large file
}

// makeExport writes an export: Account.csv (csvgen: quoted fields with
// embedded newlines), Contact.csv (CRLF, embedded CRLF and doubled quotes),
// references.csv, files.csv and files/ with a subdirectory, one body of
// bigSize bytes and one file whose parent is in no record set.
func makeExport(t *testing.T, bigSize int) *testExport {
	t.Helper()
	ex := &testExport{dir: t.TempDir(), content: map[string][]byte{}, parents: map[string]string{},
		orphan: "orphan.txt", big: "sub/deep/big.bin"}
	var acc bytes.Buffer
	if err := csvgen.Generate(&acc, 60, 1); err != nil {
		t.Fatal(err)
	}
	ex.content["Account.csv"] = acc.Bytes()
	var con bytes.Buffer
	con.WriteString("Id,AccountId,LastName,Description\r\n")
	for i := range 40 {
		fmt.Fprintf(&con, "%s,%s,\"O'Brien, %d\",\"line one\r\nline \"\"two\"\"\"\r\n", contactID(i), accountID(i%60), i)
	}
	ex.content["Contact.csv"] = con.Bytes()
	ex.content["references.csv"] = []byte("sobject,field,target\nContact,AccountId,Account\naccount,parentid,ACCOUNT\n")

	bodies := []struct {
		path, parent, name, ctype string
		body                      []byte
	}{
		{"notes.txt", accountID(0), "Notes", "text/plain", []byte("hello, backup\n")},
		{ex.big, accountID(1), "big.bin", "application/octet-stream", randomBytes(bigSize, 1)},
		{"sub/logo.png", contactID(0), "", "", randomBytes(3000, 2)},
		{ex.orphan, contactID(999), "orphan", "text/plain", []byte("nobody's child\n")},
	}
	var fcsv bytes.Buffer
	fcsv.WriteString("path,parent_id,name,content_type\n")
	for _, b := range bodies {
		fmt.Fprintf(&fcsv, "%s,%s,%s,%s\n", b.path, b.parent, b.name, b.ctype)
		ex.content["files/"+b.path] = b.body
		ex.parents[b.path] = b.parent
	}
	ex.content["files.csv"] = fcsv.Bytes()
	for name, data := range ex.content {
		writeFile(t, filepath.Join(ex.dir, name), data)
	}
	return ex
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"1": 1, "1048576": 1 << 20, "64KiB": 64 << 10, "512MiB": 512 << 20, "1GiB": 1 << 30, "2M": 2 << 20, "10B": 10} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0", "-5", "1.5GiB", "GiB", "12XB"} {
		if _, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q): no error", in)
		}
	}
}

// createBackup opens a backup through the CLI and returns its id.
func createBackup(t *testing.T, addr string) string {
	t.Helper()
	r := runCLI(t, "", "--server", addr, "backup", "create", "--org", testOrg, "-o", "json")
	if r.code != 0 {
		t.Fatalf("create: %v", r)
	}
	var resp pb.CreateBackupResponse
	if err := protojson.Unmarshal([]byte(r.stdout), &resp); err != nil {
		t.Fatal(err)
	}
	return resp.GetBackup().GetId()
}

func TestBackupUploadRecords(t *testing.T) {
	f := newFakeBackup()
	addr := startBackupFake(t, f)
	id := createBackup(t, addr)

	var csvData bytes.Buffer
	if err := csvgen.Generate(&csvData, 8000, 1); err != nil {
		t.Fatal(err)
	}
	if csvData.Len() <= 2<<20 {
		t.Fatalf("generated only %d bytes", csvData.Len())
	}
	file := filepath.Join(t.TempDir(), "Account.csv")
	writeFile(t, file, csvData.Bytes())

	const uploadID = "0b5e3c1a-7d0e-4a51-9a1f-2f3c4d5e6f70"
	r := runCLI(t, "", "--server", addr, "backup", "upload-records", "--backup", id, "--sobject", "Account",
		"--sequence", "0", "--ref", "ParentId=Account", "--ref", "OwnerId=User", "--upload-id", uploadID, file, "-o", "json")
	if r.code != 0 {
		t.Fatalf("%v", r)
	}
	var resp pb.UploadRecordsResponse
	if err := protojson.Unmarshal([]byte(r.stdout), &resp); err != nil {
		t.Fatalf("stdout is not an UploadRecordsResponse: %v\n%v", err, r)
	}
	if resp.GetResult().GetRecords() != 8000 || resp.GetResult().GetUploadId() != uploadID {
		t.Errorf("result = %v", resp.GetResult())
	}
	up := f.uploadsOf(id)[uploadID]
	if up == nil || !bytes.Equal(up.data, csvData.Bytes()) {
		t.Fatalf("the fake did not receive the file's exact bytes")
	}
	wantRefs := []*pb.ReferenceField{{Field: "ParentId", Target: "Account"}, {Field: "OwnerId", Target: "User"}}
	assertProtoEqual(t, &pb.RecordsHeader{BackupId: id, Sobject: "Account", UploadId: uploadID, References: wantRefs}, up.rec)
	f.mu.Lock()
	sizes := f.msgs[uploadID]
	f.mu.Unlock()
	n := csvData.Len()
	if want := []int{1 << 20, 1 << 20, n - 2<<20}; !slices.Equal(sizes, want) {
		t.Errorf("data messages = %v, want %v", sizes, want)
	}

	// From stdin, with a random upload id, as a table.
	small := []byte("Id,Name\n" + contactID(0) + ",\"Acme,\nInc\"\n")
	r = runCLI(t, string(small), "--server", addr, "backup", "upload-records", "--backup", id, "--sobject", "Contact", "--sequence", "0", "-")
	if r.code != 0 {
		t.Fatalf("%v", r)
	}
	for _, s := range []string{"Upload ID:", "Records:", "1", "Data key:"} {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("stdout lacks %q:\n%s", s, r.stdout)
		}
	}
	found := false
	for _, up := range f.uploadsOf(id) {
		if up.rec.GetSobject() == "Contact" {
			found = bytes.Equal(up.data, small)
		}
	}
	if !found {
		t.Errorf("stdin chunk not received byte for byte")
	}
}

func TestBackupUploadRecordsErrors(t *testing.T) {
	f := newFakeBackup()
	addr := startBackupFake(t, f)
	file := filepath.Join(t.TempDir(), "a.csv")
	writeFile(t, file, []byte("Id\n"+accountID(0)+"\n"))
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"no file", []string{"--backup", "b", "--sobject", "Account"}, "missing FILE"},
		{"no sobject", []string{"--backup", "b", file}, "missing --sobject"},
		{"bad sobject", []string{"--backup", "b", "--sobject", "Account-1", file}, "not an sObject API name"},
		{"bad ref", []string{"--backup", "b", "--sobject", "Account", "--ref", "ParentId", file}, "want KEY=VALUE"},
		{"bad ref target", []string{"--backup", "b", "--sobject", "Account", "--ref", "ParentId=a b", file}, "not an sObject API name"},
		{"bad upload id", []string{"--backup", "b", "--sobject", "Account", "--upload-id", "x", file}, "want a UUID"},
		{"missing file", []string{"--backup", "b", "--sobject", "Account", file + ".nope"}, "no such file"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := runCLI(t, "", append([]string{"--server", addr, "backup", "upload-records"}, tt.args...)...)
			if r.code != exitUsage || !strings.Contains(r.stderr, tt.want) {
				t.Errorf("want exit 2 and %q: %v", tt.want, r)
			}
		})
	}
	if calls := f.snapshotCalls(); len(calls) != 0 {
		t.Errorf("calls = %v, want none", calls)
	}

	// A service error keeps its code: NotFound is exit 3.
	r := runCLI(t, "", "--server", addr, "backup", "upload-records", "--backup", "nope", "--sobject", "Account", file)
	if r.code != exitNotFound || !strings.Contains(r.stderr, "NotFound") {
		t.Errorf("unknown backup: %v", r)
	}
}

func TestBackupUploadFile(t *testing.T) {
	body := randomBytes(3<<20+12345, 9)
	file := filepath.Join(t.TempDir(), "report.pdf")
	writeFile(t, file, body)
	parent := accountID(3)

	t.Run("hash, then deduplicated", func(t *testing.T) {
		f := newFakeBackup()
		addr := startBackupFake(t, f)
		id := createBackup(t, addr)
		args := []string{"--server", addr, "backup", "upload-file", "--backup", id, "--parent", parent, "--hash", file}
		r := runCLI(t, "", append(args, "-o", "json")...)
		if r.code != 0 {
			t.Fatalf("%v", r)
		}
		var resp pb.UploadFileResponse
		if err := protojson.Unmarshal([]byte(r.stdout), &resp); err != nil {
			t.Fatal(err)
		}
		if resp.GetResult().GetDeduplicated() || resp.GetResult().GetBytesIn() != int64(len(body)) {
			t.Errorf("first upload: %v", resp.GetResult())
		}
		hdr := f.snapshotHeaders()[0].(*pb.FileHeader)
		if hdr.GetPath() != filepath.ToSlash(file) || hdr.GetName() != "report.pdf" || hdr.GetContentType() != "application/pdf" ||
			hdr.GetDeclaredSize() != int64(len(body)) || hdr.GetDeclaredSha256() != resp.GetResult().GetSha256() {
			t.Errorf("header = %v", hdr)
		}

		// The same body again, as another file: the service answers after the
		// header, while the client still sends (its Send sees EOF).
		r = runCLI(t, "", append(args, "--path", "copy.pdf")...)
		if r.code != 0 {
			t.Fatalf("%v", r)
		}
		if !strings.Contains(r.stdout, "Deduplicated:  yes") {
			t.Errorf("not deduplicated:\n%s", r.stdout)
		}
		for _, up := range f.uploadsOf(id) {
			if up.file.GetPath() == "copy.pdf" && (up.u.GetState() != pb.UploadState_UPLOAD_STATE_COMMITTED || !up.u.GetResult().GetDeduplicated()) {
				t.Errorf("copy: %v", up.u)
			}
		}
	})

	t.Run("retry resumes at committed size", func(t *testing.T) {
		fastRetry(t, 3)
		f := newFakeBackup()
		f.setFail(func(up *fakeUpload, received int64) error {
			if up.stream == 1 && received >= 1<<20 {
				return status.Error(codes.Unavailable, "S3 went away")
			}
			return nil
		})
		addr := startBackupFake(t, f)
		id := createBackup(t, addr)
		r := runCLI(t, "", "--server", addr, "backup", "upload-file", "--backup", id, "--parent", parent, "--sha256", sha256Hex(body), file)
		if r.code != 0 {
			t.Fatalf("%v", r)
		}
		hs := f.snapshotHeaders()
		if len(hs) != 2 || hs[1].(*pb.FileHeader).GetWriteOffset() != 1<<20 {
			t.Fatalf("headers = %v, want a second one at offset 1 MiB", hs)
		}
		for _, up := range f.uploadsOf(id) {
			if !bytes.Equal(up.data, body) {
				t.Errorf("the fake holds other bytes than the file")
			}
		}
		if !strings.Contains(r.stderr, "resumed at byte 1048576") {
			t.Errorf("stderr: %s", r.stderr)
		}
	})

	t.Run("existing upload id resumes", func(t *testing.T) {
		fastRetry(t, 1)
		f := newFakeBackup()
		var down atomic.Bool
		down.Store(true)
		f.setFail(func(up *fakeUpload, received int64) error {
			if down.Load() && received >= 2<<20 {
				return status.Error(codes.Unavailable, "S3 went away")
			}
			return nil
		})
		addr := startBackupFake(t, f)
		id := createBackup(t, addr)
		const uploadID = "9f1c2d3e-4b5a-4c6d-8e7f-001122334455"
		args := []string{"--server", addr, "backup", "upload-file", "--backup", id, "--parent", parent, "--hash", "--upload-id", uploadID, file}
		r := runCLI(t, "", args...)
		if r.code != exitRetryable {
			t.Fatalf("want exit 5: %v", r)
		}
		if u := f.uploadsOf(id)[uploadID].u; u.GetState() != pb.UploadState_UPLOAD_STATE_PENDING || u.GetCommittedSize() != 2<<20 {
			t.Fatalf("after the failure: %v", u)
		}
		down.Store(false)
		r = runCLI(t, "", args...)
		if r.code != 0 {
			t.Fatalf("%v", r)
		}
		hs := f.snapshotHeaders()
		if last := hs[len(hs)-1].(*pb.FileHeader); last.GetWriteOffset() != 2<<20 {
			t.Errorf("resumed at %d, want %d", last.GetWriteOffset(), 2<<20)
		}
		if up := f.uploadsOf(id)[uploadID]; !bytes.Equal(up.data, body) || up.u.GetState() != pb.UploadState_UPLOAD_STATE_COMMITTED {
			t.Errorf("not committed byte for byte: %v", up.u)
		}
		// Once more: it has committed; nothing is sent.
		before := len(f.snapshotHeaders())
		r = runCLI(t, "", args...)
		if r.code != 0 || !strings.Contains(r.stderr, "already committed") || len(f.snapshotHeaders()) != before {
			t.Errorf("third time: %v", r)
		}
	})

	t.Run("usage", func(t *testing.T) {
		f := newFakeBackup()
		addr := startBackupFake(t, f)
		for _, args := range [][]string{
			{"--backup", "b", "--parent", parent},
			{"--backup", "b", file},
			{"--backup", "b", "--parent", parent, "--hash", "--sha256", sha256Hex(body), file},
			{"--backup", "b", "--parent", parent, "--sha256", "abc", file},
			{"--backup", "b", "--parent", parent, filepath.Dir(file)},
		} {
			r := runCLI(t, "", append([]string{"--server", addr, "backup", "upload-file"}, args...)...)
			if r.code != exitUsage {
				t.Errorf("%v: want exit 2: %v", args, r)
			}
		}
		if calls := f.snapshotCalls(); len(calls) != 0 {
			t.Errorf("calls = %v", calls)
		}
	})
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// recordChunks returns a backup's committed chunks of one sObject, in
// sequence order.
func recordChunks(f *fakeBackup, backupID, sobject string) [][]byte {
	var ups []*fakeUpload
	for _, up := range f.uploadsOf(backupID) {
		if up.rec.GetSobject() == sobject && up.u.GetState() == pb.UploadState_UPLOAD_STATE_COMMITTED {
			ups = append(ups, up)
		}
	}
	slices.SortFunc(ups, func(a, b *fakeUpload) int { return int(a.rec.GetSequence() - b.rec.GetSequence()) })
	var out [][]byte
	for i, up := range ups {
		if int(up.rec.GetSequence()) != i {
			return nil
		}
		out = append(out, up.data)
	}
	return out
}

// checkChunks checks that chunks restore original: each starts with the
// header row, and header + the chunks' rows is the file byte for byte.
func checkChunks(t *testing.T, name string, original []byte, chunks [][]byte, chunkSize int) {
	t.Helper()
	if len(chunks) == 0 {
		t.Fatalf("%s: no chunks", name)
	}
	nl := bytes.IndexByte(original, '\n')
	header := original[:nl+1]
	restored := slices.Clone(header)
	for i, ch := range chunks {
		if !bytes.HasPrefix(ch, header) {
			t.Errorf("%s chunk %d does not start with the header row", name, i)
			continue
		}
		if len(ch) > chunkSize && len(ch) > len(header) {
			// Allowed only for a single row larger than the chunk size.
			rows := 0
			_ = scanRows(ch, func([]byte) { rows++ })
			if rows > 1 {
				t.Errorf("%s chunk %d: %d bytes, %d rows > --chunk-size %d", name, i, len(ch), rows, chunkSize)
			}
		}
		restored = append(restored, ch[len(header):]...)
	}
	if !bytes.Equal(restored, original) {
		t.Errorf("%s: chunks do not restore the file byte for byte", name)
	}
}

func TestBackupRunChunking(t *testing.T) {
	ex := makeExport(t, 1000)
	f := newFakeBackup()
	addr := startBackupFake(t, f)
	const chunkSize = 700
	r := runCLI(t, "", "--server", addr, "backup", "run", "--org", testOrg, "--chunk-size", "700", "--concurrency", "3", ex.dir)
	if r.code != 0 {
		t.Fatalf("%v", r)
	}
	id := strings.TrimSpace(r.stdout)
	for _, name := range []string{"Account", "Contact"} {
		chunks := recordChunks(f, id, name)
		if len(chunks) < 5 {
			t.Errorf("%s: %d chunks, want many with --chunk-size %d", name, len(chunks), chunkSize)
		}
		checkChunks(t, name, ex.content[name+".csv"], chunks, chunkSize)
	}
}

// scanRows calls row for each data row of a CSV chunk.
func scanRows(chunk []byte, row func([]byte)) error {
	sc := csvscan.New(nil, csvscan.Limits{})
	emit := func(r *csvscan.Row) error { row(r.Raw); return nil }
	if err := sc.Feed(chunk, emit); err != nil {
		return err
	}
	return sc.Close(emit)
}

func TestBackupRun(t *testing.T) {
	ex := makeExport(t, 200<<10)
	f := newFakeBackup()
	addr := startBackupFake(t, f)
	r := runCLI(t, "", "--server", addr, "backup", "run", "--org", testOrg, "--label", "env=test", "--chunk-size", "4KiB", ex.dir, "-o", "json")
	if r.code != 0 {
		t.Fatalf("%v", r)
	}
	var resp pb.CommitBackupResponse
	if err := protojson.Unmarshal([]byte(r.stdout), &resp); err != nil {
		t.Fatalf("stdout is not a CommitBackupResponse: %v\n%v", err, r)
	}
	b := resp.GetBackup()
	if b.GetStatus() != pb.BackupStatus_BACKUP_STATUS_COMMITTED || b.GetLabels()["env"] != "test" || b.GetFileCount() != 4 || b.GetRecordCount() != 100 {
		t.Errorf("backup = %v", b)
	}
	if len(resp.GetOrphanFiles()) != 1 || resp.GetOrphanFiles()[0].GetPath() != ex.orphan {
		t.Errorf("orphans = %v", resp.GetOrphanFiles())
	}
	for _, s := range []string{"warning: 1 files have no parent record", ex.orphan, "records:      100 in", "files:        4 (4 sent, 0 deduplicated)", "bytes stored:", "file sub/deep/big.bin: 200.0 KiB, sent"} {
		if !strings.Contains(r.stderr, s) {
			t.Errorf("stderr lacks %q:\n%s", s, r.stderr)
		}
	}

	ups := f.uploadsOf(b.GetId())
	byPath := map[string]*fakeUpload{}
	refs := map[string][]*pb.ReferenceField{}
	for _, up := range ups {
		if up.u.GetState() != pb.UploadState_UPLOAD_STATE_COMMITTED {
			t.Errorf("upload %v not committed", up.u)
		}
		if up.file != nil {
			byPath[up.file.GetPath()] = up
		} else {
			refs[up.rec.GetSobject()] = up.rec.GetReferences()
		}
	}
	assertProtoEqual(t, &pb.RecordsHeader{References: []*pb.ReferenceField{{Field: "AccountId", Target: "Account"}}},
		&pb.RecordsHeader{References: refs["Contact"]})
	assertProtoEqual(t, &pb.RecordsHeader{References: []*pb.ReferenceField{{Field: "ParentId", Target: "Account"}}},
		&pb.RecordsHeader{References: refs["Account"]})
	for _, name := range []string{"Account", "Contact"} {
		checkChunks(t, name, ex.content[name+".csv"], recordChunks(f, b.GetId(), name), 4<<10)
	}
	for p, parent := range ex.parents {
		up := byPath[p]
		if up == nil {
			t.Errorf("file %s not uploaded", p)
			continue
		}
		body := ex.content["files/"+p]
		if !bytes.Equal(up.data, body) {
			t.Errorf("file %s: other bytes", p)
		}
		h := up.file
		if h.GetParentId() != parent || h.GetDeclaredSize() != int64(len(body)) || h.GetDeclaredSha256() != sha256Hex(body) ||
			h.GetUploadId() != client.FileUploadID(b.GetId(), p) {
			t.Errorf("file %s: header %v", p, h)
		}
	}
	if h := byPath["sub/logo.png"].file; h.GetName() != "" || h.GetContentType() != "" {
		t.Errorf("empty files.csv values must be sent as given (so restore writes them back): %v", h)
	}
	if h := byPath["notes.txt"].file; h.GetName() != "Notes" || h.GetContentType() != "text/plain" {
		t.Errorf("files.csv values: %v", h)
	}

	// The same directory again: already committed, nothing sent.
	before := len(f.snapshotHeaders())
	for _, output := range []string{"table", "json"} {
		r = runCLI(t, "", "--server", addr, "backup", "run", "--org", testOrg, "--label", "env=test", "--chunk-size", "4KiB", ex.dir, "-o", output)
		if r.code != 0 || !strings.Contains(r.stderr, "already committed: "+b.GetId()) {
			t.Errorf("second run: %v", r)
		}
		if output == "table" && r.stdout != b.GetId()+"\n" {
			t.Errorf("stdout = %q, want the id", r.stdout)
		}
	}
	if after := len(f.snapshotHeaders()); after != before {
		t.Errorf("the second run sent %d uploads", after-before)
	}

	// A changed directory is a new backup; unchanged bodies are deduplicated.
	future := time.Now().Add(time.Hour)
	if err := os.Chtimes(filepath.Join(ex.dir, "Contact.csv"), future, future); err != nil {
		t.Fatal(err)
	}
	r = runCLI(t, "", "--server", addr, "backup", "run", "--org", testOrg, "--chunk-size", "4KiB", ex.dir)
	if r.code != 0 {
		t.Fatalf("%v", r)
	}
	if id := strings.TrimSpace(r.stdout); id == b.GetId() || !strings.Contains(r.stderr, "files:        4 (0 sent, 4 deduplicated)") {
		t.Errorf("third run: %v", r)
	}
}

func TestBackupRunResume(t *testing.T) {
	fastRetry(t, 2)
	ex := makeExport(t, 3<<20)
	f := newFakeBackup()
	addr := startBackupFake(t, f)
	args := []string{"--server", addr, "backup", "run", "--org", testOrg, "--chunk-size", "2KiB", "--concurrency", "1", ex.dir}

	// Run 1: Contact's chunks but the first (its ~2.8 KiB make two chunks of
	// 2 KiB) fail every time.
	var phase atomic.Int32
	phase.Store(1)
	f.setFail(func(up *fakeUpload, received int64) error {
		switch {
		case phase.Load() == 1 && up.rec.GetSobject() == "Contact" && up.rec.GetSequence() >= 1:
			return status.Error(codes.Unavailable, "catalog unreachable")
		case phase.Load() == 2 && up.file.GetPath() == ex.big && received >= 1<<20:
			return status.Error(codes.Unavailable, "S3 went away")
		}
		return nil
	})

	r := runCLI(t, "", args...)
	if r.code != exitRetryable || !strings.Contains(r.stderr, "stays open") || !strings.Contains(r.stderr, "Contact.csv chunk") {
		t.Fatalf("run 1: want exit 5: %v", r)
	}
	h1 := f.snapshotHeaders()
	id := "bk-001"
	committed1 := committedIDs(f, id)
	if len(committed1) == 0 {
		t.Fatal("run 1 committed nothing")
	}

	// Run 2: the record chunk goes through; the big file fails after 1 MiB,
	// twice, and stays pending at 2 MiB.
	phase.Store(2)
	r = runCLI(t, "", args...)
	if r.code != exitRetryable || !strings.Contains(r.stderr, "Resuming backup "+id) {
		t.Fatalf("run 2: want exit 5: %v", r)
	}
	h2 := f.snapshotHeaders()[len(h1):]
	assertNoneOf(t, "run 2", h2, committed1)
	bigID := client.FileUploadID(id, ex.big)
	big := f.uploadsOf(id)[bigID]
	if big == nil || big.u.GetState() != pb.UploadState_UPLOAD_STATE_PENDING || big.u.GetCommittedSize() != 2<<20 {
		t.Fatalf("big file after run 2: %v", big)
	}
	committed2 := committedIDs(f, id)

	// Run 3: healed. Only the big file is sent, from its committed size.
	phase.Store(3)
	r = runCLI(t, "", args...)
	if r.code != 0 {
		t.Fatalf("run 3: %v", r)
	}
	h3 := f.snapshotHeaders()[len(h1)+len(h2):]
	assertNoneOf(t, "run 3", h3, committed2)
	var sent3 []string
	for _, h := range h3 {
		fh, ok := h.(*pb.FileHeader)
		if !ok {
			t.Errorf("run 3 sent record chunk %v", h)
			continue
		}
		sent3 = append(sent3, fh.GetPath())
		if fh.GetUploadId() == bigID && fh.GetWriteOffset() != 2<<20 {
			t.Errorf("run 3 sent the big file from %d, want %d", fh.GetWriteOffset(), 2<<20)
		}
	}
	// Run 2 stopped at the big file: the files after it in files.csv are new.
	if want := []string{ex.big, "sub/logo.png", ex.orphan}; !slices.Equal(sent3, want) {
		t.Errorf("run 3 sent %q, want %q", sent3, want)
	}
	if !strings.Contains(r.stderr, "resumed at 2.0 MiB") || !strings.Contains(r.stderr, "resumed:") {
		t.Errorf("stderr:\n%s", r.stderr)
	}
	if !bytes.Equal(f.uploadsOf(id)[bigID].data, ex.content["files/"+ex.big]) {
		t.Errorf("big file: other bytes")
	}
	for _, name := range []string{"Account", "Contact"} {
		checkChunks(t, name, ex.content[name+".csv"], recordChunks(f, id, name), 2<<10)
	}
	r = runCLI(t, "", "--server", addr, "backup", "get", id)
	if r.code != 0 || !strings.Contains(r.stdout, "COMMITTED") {
		t.Errorf("backup after run 3: %v", r)
	}
}

func committedIDs(f *fakeBackup, backupID string) map[string]bool {
	out := map[string]bool{}
	for id, up := range f.uploadsOf(backupID) {
		if up.u.GetState() == pb.UploadState_UPLOAD_STATE_COMMITTED {
			out[id] = true
		}
	}
	return out
}

// assertNoneOf fails if a header reopens an upload that had committed.
func assertNoneOf(t *testing.T, what string, headers []proto.Message, committed map[string]bool) {
	t.Helper()
	for _, h := range headers {
		var id string
		switch h := h.(type) {
		case *pb.RecordsHeader:
			id = h.GetUploadId()
		case *pb.FileHeader:
			id = h.GetUploadId()
		}
		if committed[id] {
			t.Errorf("%s resent committed upload %s", what, id)
		}
	}
}

func TestBackupRunInterrupt(t *testing.T) {
	ex := makeExport(t, 3<<20)
	f := newFakeBackup()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	f.setFail(func(up *fakeUpload, received int64) error {
		if up.file.GetPath() == ex.big && received >= 1<<20 {
			cancel() // Ctrl-C while the big file streams
			time.Sleep(200 * time.Millisecond)
		}
		return nil
	})
	addr := startBackupFake(t, f)
	args := []string{"--server", addr, "backup", "run", "--org", testOrg, "--concurrency", "2", ex.dir}
	var out, errOut bytes.Buffer
	code := run(ctx, args, strings.NewReader(""), &out, &errOut)
	if code == 0 || !strings.Contains(errOut.String(), "Interrupted: backup bk-001 stays open") {
		t.Fatalf("exit %d\n%s", code, errOut.String())
	}
	f.setFail(nil)
	r := runCLI(t, "", args...)
	if r.code != 0 || strings.TrimSpace(r.stdout) != "bk-001" {
		t.Fatalf("resume: %v", r)
	}
	if !bytes.Equal(f.uploadsOf("bk-001")[client.FileUploadID("bk-001", ex.big)].data, ex.content["files/"+ex.big]) {
		t.Errorf("big file: other bytes")
	}
}

func TestBackupRunBadLayout(t *testing.T) {
	good := func(t *testing.T) *testExport { return makeExport(t, 100) }
	tests := []struct {
		name   string
		change func(t *testing.T, ex *testExport)
		want   string
	}{
		{"csv name not an sObject", func(t *testing.T, ex *testExport) {
			writeFile(t, filepath.Join(ex.dir, "Bad-Name.csv"), []byte("Id\n"))
		}, `Bad-Name.csv: "Bad-Name" is not an sObject API name`},
		{"csv name too long", func(t *testing.T, ex *testExport) {
			writeFile(t, filepath.Join(ex.dir, "A"+strings.Repeat("b", 80)+".csv"), []byte("Id\n"))
		}, `is not an sObject API name`},
		{"unexpected file", func(t *testing.T, ex *testExport) {
			writeFile(t, filepath.Join(ex.dir, "README.txt"), []byte("hi"))
		}, "README.txt: unexpected file"},
		{"same sObject twice", func(t *testing.T, ex *testExport) {
			writeFile(t, filepath.Join(ex.dir, "account.csv"), []byte("Id\n"))
		}, "the same sObject"},
		{"files.csv missing", func(t *testing.T, ex *testExport) {
			os.Remove(filepath.Join(ex.dir, "files.csv"))
		}, "files/ exists but files.csv is missing"},
		{"body not listed", func(t *testing.T, ex *testExport) {
			writeFile(t, filepath.Join(ex.dir, "files", "sub", "extra.bin"), []byte("x"))
		}, "files/sub/extra.bin is not listed in files.csv"},
		{"listed body missing", func(t *testing.T, ex *testExport) {
			os.Remove(filepath.Join(ex.dir, "files", "notes.txt"))
		}, "files.csv line 2: files/notes.txt does not exist"},
		{"files.csv header", func(t *testing.T, ex *testExport) {
			writeFile(t, filepath.Join(ex.dir, "files.csv"), []byte("file,parent\n"))
		}, `files.csv: the header row lacks column "path"`},
		{"bad parent id", func(t *testing.T, ex *testExport) {
			appendFile(t, filepath.Join(ex.dir, "files.csv"), "notes.txt,xyz,,\n")
		}, `parent_id "xyz" is not a 15- or 18-character Salesforce id`},
		{"path escapes files/", func(t *testing.T, ex *testExport) {
			appendFile(t, filepath.Join(ex.dir, "files.csv"), "../Account.csv,"+accountID(0)+",,\n")
		}, `want a clean relative path under files/`},
		{"reference to unknown sObject", func(t *testing.T, ex *testExport) {
			appendFile(t, filepath.Join(ex.dir, "references.csv"), "Case,AccountId,Account\n")
		}, `references.csv line 4: sobject "Case" is not in the export (no Case.csv)`},
		{"reference to unknown column", func(t *testing.T, ex *testExport) {
			appendFile(t, filepath.Join(ex.dir, "references.csv"), "Contact,ReportsToId,Contact\n")
		}, `Contact.csv has no column "ReportsToId"`},
		{"reference to unknown target", func(t *testing.T, ex *testExport) {
			appendFile(t, filepath.Join(ex.dir, "references.csv"), "Account,OwnerId,User\n")
		}, `target "User" is not in the export`},
		{"malformed record set", func(t *testing.T, ex *testExport) {
			appendFile(t, filepath.Join(ex.dir, "Contact.csv"), contactID(77)+",,bad\"quote,x\r\n")
		}, `Contact.csv: row 42, column "LastName": BAD_QUOTE`},
		{"empty record set", func(t *testing.T, ex *testExport) {
			writeFile(t, filepath.Join(ex.dir, "Lead.csv"), nil)
		}, "Lead.csv: empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ex := good(t)
			tt.change(t, ex)
			f := newFakeBackup()
			addr := startBackupFake(t, f)
			r := runCLI(t, "", "--server", addr, "backup", "run", "--org", testOrg, ex.dir)
			if r.code != exitUsage || !strings.Contains(r.stderr, tt.want) {
				t.Errorf("want exit 2 and %q: %v", tt.want, r)
			}
			if calls := f.snapshotCalls(); len(calls) != 0 {
				t.Errorf("calls = %v, want none", calls)
			}
		})
	}

	t.Run("empty and missing", func(t *testing.T) {
		f := newFakeBackup()
		addr := startBackupFake(t, f)
		for dir, want := range map[string]string{
			t.TempDir():                        "nothing to back up",
			filepath.Join(t.TempDir(), "nope"): "no such file or directory",
		} {
			r := runCLI(t, "", "--server", addr, "backup", "run", "--org", testOrg, dir)
			if r.code != exitUsage || !strings.Contains(r.stderr, want) {
				t.Errorf("%s: want exit 2 and %q: %v", dir, want, r)
			}
		}
		for _, args := range [][]string{
			{"backup", "run", t.TempDir()},
			{"backup", "run", "--org", testOrg},
			{"backup", "run", "--org", testOrg, "--chunk-size", "2GiB", t.TempDir()},
			{"backup", "run", "--org", testOrg, "--concurrency", "0", t.TempDir()},
		} {
			if r := runCLI(t, "", append([]string{"--server", addr}, args...)...); r.code != exitUsage {
				t.Errorf("%v: want exit 2: %v", args, r)
			}
		}
	})
}

func appendFile(t *testing.T, name, s string) {
	t.Helper()
	fh, err := os.OpenFile(name, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(fh, s); err != nil {
		t.Fatal(err)
	}
	if err := fh.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestBackupCommands(t *testing.T) {
	f := newFakeBackup()
	addr := startBackupFake(t, f)
	cli := func(args ...string) result {
		t.Helper()
		return runCLI(t, "", append([]string{"--server", addr, "backup"}, args...)...)
	}

	r := cli("create", "--org", testOrg, "--storage", "st-1", "--label", "env=prod", "--label", "team=crm", "--idempotency-key", "k1")
	if r.code != 0 {
		t.Fatalf("%v", r)
	}
	for _, s := range []string{"ID:", "bk-001", "Status:", "OPEN", "env=prod,team=crm", "st-1"} {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("create: stdout lacks %q:\n%s", s, r.stdout)
		}
	}
	r = cli("create", "--org", testOrg, "--idempotency-key", "k1", "-o", "json")
	if r.code != 0 || !strings.Contains(r.stderr, "names existing backup bk-001") || !strings.Contains(r.stdout, `"id": "bk-001"`) {
		t.Errorf("repeated key: %v", r)
	}
	for range 4 {
		cli("create", "--org", "00D000000000002")
	}

	r = cli("list", "-o", "json")
	var list pb.ListBackupsResponse
	if err := protojson.Unmarshal([]byte(r.stdout), &list); r.code != 0 || err != nil || len(list.GetBackups()) != 5 || list.GetBackups()[0].GetId() != "bk-005" {
		t.Errorf("list follows every page, newest first: %v", r)
	}
	r = cli("list", "--org", testOrg)
	if r.code != 0 || !strings.Contains(r.stdout, "bk-001") || strings.Contains(r.stdout, "bk-002") || !strings.HasPrefix(r.stdout, "ID ") {
		t.Errorf("list --org: %v", r)
	}
	r = cli("list", "--status", "committed")
	if r.code != 0 || r.stdout != "" || !strings.Contains(r.stderr, "No backups.") {
		t.Errorf("list --status: %v", r)
	}
	r = cli("list", "--from", "2026-03-01T12:02:00Z", "--to", "2026-03-01T12:04:00Z", "-o", "json")
	if r.code != 0 || strings.Count(r.stdout, `"id"`) != 2 {
		t.Errorf("list --from --to: %v", r)
	}
	r = cli("list", "--page-size", "2", "--all=false")
	if r.code != 0 || !strings.Contains(r.stderr, "More backups: add --page-token 2") {
		t.Errorf("list one page: %v", r)
	}

	// An upload, then commit: the orphan file is listed.
	file := filepath.Join(t.TempDir(), "a.txt")
	writeFile(t, file, []byte("abc"))
	if r := cli("upload-file", "--backup", "bk-001", "--parent", accountID(5), "--path", "x/a.txt", file); r.code != 0 {
		t.Fatalf("%v", r)
	}
	r = cli("uploads", "bk-001")
	if r.code != 0 || !strings.Contains(r.stdout, "FILE") || !strings.Contains(r.stdout, "COMMITTED") || !strings.Contains(r.stdout, "x/a.txt") {
		t.Errorf("uploads: %v", r)
	}
	r = cli("uploads", "bk-001", "--state", "pending")
	if r.code != 0 || !strings.Contains(r.stderr, "No uploads.") {
		t.Errorf("uploads --state: %v", r)
	}
	r = cli("commit", "bk-001", "--require-parents")
	if r.code != exitBadRequest || !strings.Contains(r.stderr, "[ORPHAN_FILES]") {
		t.Errorf("commit --require-parents: %v", r)
	}
	r = cli("commit", "bk-001")
	if r.code != 0 || !strings.Contains(r.stdout, "COMMITTED") || !strings.Contains(r.stdout, "Orphan files") || !strings.Contains(r.stdout, "x/a.txt") {
		t.Errorf("commit: %v", r)
	}
	r = cli("get", "bk-001", "-o", "json")
	var got pb.GetBackupResponse
	if err := protojson.Unmarshal([]byte(r.stdout), &got); r.code != 0 || err != nil || got.GetBackup().GetFileCount() != 1 {
		t.Errorf("get: %v", r)
	}
	r = cli("abort", "bk-002")
	if r.code != 0 || !strings.Contains(r.stdout, "ABORTED") || !strings.Contains(r.stdout, "Objects deleted: 0") {
		t.Errorf("abort: %v", r)
	}
	if r := cli("get", "nope"); r.code != exitNotFound {
		t.Errorf("get unknown: %v", r)
	}

	// A pending upload blocks the commit, and the error names it.
	f.setFail(func(up *fakeUpload, received int64) error {
		return status.Error(codes.Unavailable, "down")
	})
	fastRetry(t, 1)
	if r := cli("upload-file", "--backup", "bk-003", "--parent", accountID(5), file); r.code != exitRetryable {
		t.Fatalf("%v", r)
	}
	r = cli("commit", "bk-003")
	if r.code != exitBadRequest || !strings.Contains(r.stderr, "[UPLOADS_PENDING]") || !strings.Contains(r.stderr, "UPLOAD_PENDING") {
		t.Errorf("commit with a pending upload: %v", r)
	}

	for _, args := range [][]string{
		{"get"}, {"get", "a", "b"}, {"commit"}, {"abort"}, {"uploads"},
		{"list", "--status", "done"}, {"list", "--from", "yesterday"},
		{"list", "--from", "2026-03-02T00:00:00Z", "--to", "2026-03-01T00:00:00Z"},
		{"uploads", "b", "--state", "open"}, {"create"}, {"create", "--org", testOrg, "--label", "novalue"},
		{"create", "--org", testOrg, "--label", "a=1", "--label", "a=2"}, {"nope"},
	} {
		if r := cli(args...); r.code != exitUsage {
			t.Errorf("%v: want exit 2: %v", args, r)
		}
	}

	r = runCLI(t, "", "backup", "-h")
	if r.code != 0 || !strings.Contains(r.stderr, "upload-records") || !strings.Contains(r.stderr, "run ") {
		t.Errorf("backup -h: %v", r)
	}
	r = runCLI(t, "", "backup", "run", "-h")
	if r.code != 0 || !strings.Contains(r.stderr, "--chunk-size") || !strings.Contains(r.stderr, "references.csv") {
		t.Errorf("backup run -h: %v", r)
	}
}

func TestProgressLine(t *testing.T) {
	var buf bytes.Buffer
	p := newProgress(&buf, false, 4<<30, 1<<30, 10, "uploads")
	p.start = time.Now().Add(-10 * time.Second)
	p.add(1 << 30)
	p.completed("file a: 1.0 GiB, sent")
	got := p.line(p.start.Add(10 * time.Second))
	want := "[##########----------]  50%  2.0 GiB / 4.0 GiB  102.4 MiB/s  ETA 20.0s  1/10 uploads"
	if got != want {
		t.Errorf("line =\n%q, want\n%q", got, want)
	}
	if buf.String() != "file a: 1.0 GiB, sent\n" {
		t.Errorf("plain output = %q", buf.String())
	}
}

func TestUploadStallTimesOut(t *testing.T) {
	f := newFakeBackup()
	f.setFail(func(up *fakeUpload, received int64) error {
		time.Sleep(time.Second) // the service hangs without reading
		return nil
	})
	addr := startBackupFake(t, f)
	id := createBackup(t, addr)
	file := filepath.Join(t.TempDir(), "Account.csv")
	writeFile(t, file, []byte("Id\n"+accountID(0)+"\n"))
	r := runCLI(t, "", "--server", addr, "--timeout", "300ms", "backup", "upload-records", "--backup", id, "--sobject", "Account", file)
	if r.code != exitRetryable || !strings.Contains(r.stderr, "DeadlineExceeded: no progress for 300ms") {
		t.Errorf("want exit 5 and a stall message: %v", r)
	}
}

func TestBackupRunAbortedKey(t *testing.T) {
	ex := makeExport(t, 10)
	f := newFakeBackup()
	addr := startBackupFake(t, f)
	for _, args := range [][]string{
		{"create", "--org", testOrg, "--idempotency-key", "nightly-1"},
		{"abort", "bk-001"},
	} {
		if r := runCLI(t, "", append([]string{"--server", addr, "backup"}, args...)...); r.code != 0 {
			t.Fatalf("%v", r)
		}
	}
	r := runCLI(t, "", "--server", addr, "backup", "run", "--org", testOrg, "--idempotency-key", "nightly-1", ex.dir)
	if r.code != exitBadRequest || !strings.Contains(r.stderr, "backup bk-001 of this directory is ABORTED") {
		t.Errorf("want exit 4: %v", r)
	}
	r = runCLI(t, "", "--server", addr, "backup", "run", "--org", testOrg, "--idempotency-key", "nightly-2", ex.dir)
	if r.code != 0 || r.stdout != "bk-002\n" {
		t.Errorf("a new key: %v", r)
	}
}
