package main

import (
	"bytes"
	"errors"
	"io/fs"
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

	pb "backupstore/proto/backupstore/v1"
)

// restoreFixture is a canned backup of makeExport served by fakeRestore.
func restoreFixture(t *testing.T, bigSize int) (*testExport, *fakeRestore, string) {
	t.Helper()
	ex := makeExport(t, bigSize)
	f := newCannedRestore(t, ex)
	return ex, f, startRestoreFake(t, f)
}

// accountRows returns the canned Account.csv's header row followed by the
// data rows at the given indexes.
func (f *fakeRestore) accountRows(idx ...int) []byte {
	rs := f.sets[0]
	out := slices.Clone(rs.header)
	for _, i := range idx {
		out = append(out, rs.rows[i].raw...)
	}
	return out
}

func TestRestoreRecords(t *testing.T) {
	ex, f, addr := restoreFixture(t, 1000)
	want := ex.content["Account.csv"]

	// Whole, to stdout: byte for byte the original file.
	r := runCLI(t, "", "--server", addr, "restore", "records", "--backup", fakeBackupID, "--sobject", "Account")
	if r.code != 0 || r.stdout != string(want) || r.stderr != "" {
		t.Fatalf("records to stdout differ from Account.csv (%d vs %d bytes): %v", len(r.stdout), len(want), r.code)
	}
	if reads := f.recordReads(); len(reads) != 1 || len(reads[0].GetIds()) != 0 {
		t.Errorf("requests %v", reads)
	}

	// To a file, with the summary as JSON on stdout.
	out := filepath.Join(t.TempDir(), "Contact.csv")
	r = runCLI(t, "", "--server", addr, "restore", "records", "--backup", fakeBackupID, "--sobject", "Contact", "-O", out, "-o", "json")
	if r.code != 0 {
		t.Fatalf("%v", r)
	}
	got, err := os.ReadFile(out)
	if err != nil || !bytes.Equal(got, ex.content["Contact.csv"]) {
		t.Fatalf("-O file differs from Contact.csv: %v", err)
	}
	var sum pb.ReadRecordsSummary
	if err := protojson.Unmarshal([]byte(r.stdout), &sum); err != nil || sum.GetRecords() != 40 || sum.GetBytes() != int64(len(got)) {
		t.Errorf("summary %v, %v\n%s", &sum, err, r.stdout)
	}
	assertOnlyFiles(t, filepath.Dir(out), "Contact.csv")

	// Unknown sObject: exit 3.
	r = runCLI(t, "", "--server", addr, "restore", "records", "--backup", fakeBackupID, "--sobject", "Lead")
	if r.code != exitNotFound || r.stdout != "" {
		t.Errorf("unknown sObject: %v", r)
	}
}

func TestRestoreRecordsIDs(t *testing.T) {
	_, f, addr := restoreFixture(t, 1000)
	missing := accountID(500)
	id15 := accountID(1)[:15]
	// Asked out of order, one in 15-character form, one twice, one missing:
	// rows come in backup order, header first.
	r := runCLI(t, "", "--server", addr, "restore", "records", "--backup", fakeBackupID, "--sobject", "Account",
		"--ids", accountID(7)+","+id15+", "+missing+","+accountID(7))
	if r.code != 0 {
		t.Fatalf("%v", r)
	}
	if want := f.accountRows(1, 7); r.stdout != string(want) {
		t.Errorf("stdout =\n%s\nwant\n%s", r.stdout, want)
	}
	if !strings.Contains(r.stderr, "1 of 3 requested ids are not in the backup") || !strings.Contains(r.stderr, missing) {
		t.Errorf("stderr lacks the missing id: %s", r.stderr)
	}
	reads := f.recordReads()
	if got := reads[len(reads)-1].GetIds(); !slices.Equal(got, []string{accountID(7), id15, missing}) {
		t.Errorf("ids sent %v", got)
	}

	// --ids-file from stdin, a one-column CSV with its header.
	r = runCLI(t, "Id\r\n"+accountID(2)+"\r\n"+accountID(0)+"\r\n", "--server", addr, "restore", "records",
		"--backup", fakeBackupID, "--sobject", "Account", "--ids-file", "-")
	if r.code != 0 || r.stdout != string(f.accountRows(0, 2)) || r.stderr != "" {
		t.Errorf("--ids-file: %v", r)
	}
	file := filepath.Join(t.TempDir(), "ids.txt")
	writeFile(t, file, []byte(accountID(3)+" "+accountID(4)+"\n"))
	r = runCLI(t, "", "--server", addr, "restore", "records", "--backup", fakeBackupID, "--sobject", "Account", "--ids-file", file)
	if r.code != 0 || r.stdout != string(f.accountRows(3, 4)) {
		t.Errorf("--ids-file FILE: %v", r)
	}
}

// assertOnlyFiles fails unless dir holds exactly names (no temporary or
// partial files).
func assertOnlyFiles(t *testing.T, dir string, names ...string) {
	t.Helper()
	var got []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			got = append(got, filepath.ToSlash(rel))
		}
		return nil
	})
	slices.Sort(got)
	slices.Sort(names)
	if !slices.Equal(got, names) {
		t.Errorf("%s holds %q, want %q", dir, got, names)
	}
}

func TestRestoreRecordsCutShort(t *testing.T) {
	_, f, addr := restoreFixture(t, 1000)
	f.cutRecords = func(sobject string, sent int64) bool { return sent >= 3000 }

	r := runCLI(t, "", "--server", addr, "restore", "records", "--backup", fakeBackupID, "--sobject", "Account")
	if r.code != exitRetryable || !strings.Contains(r.stderr, "without its summary message") || !strings.Contains(r.stderr, "incomplete") {
		t.Errorf("want exit 5 and a cut-short message: %v", r)
	}
	if len(r.stdout) != 3000 {
		t.Errorf("stdout holds %d bytes, want the 3000 sent", len(r.stdout))
	}

	// With -O nothing is left behind: no FILE, no temporary file.
	dir := t.TempDir()
	out := filepath.Join(dir, "Account.csv")
	r = runCLI(t, "", "--server", addr, "restore", "records", "--backup", fakeBackupID, "--sobject", "Account", "-O", out)
	if r.code != exitRetryable {
		t.Errorf("want exit 5: %v", r)
	}
	assertOnlyFiles(t, dir)

	// An existing FILE is not replaced by a partial stream.
	writeFile(t, out, []byte("old"))
	r = runCLI(t, "", "--server", addr, "restore", "records", "--backup", fakeBackupID, "--sobject", "Account", "-O", out)
	if b, _ := os.ReadFile(out); r.code != exitRetryable || string(b) != "old" {
		t.Errorf("FILE was replaced: %q, %v", b, r)
	}
	assertOnlyFiles(t, dir, "Account.csv")
}

func TestRestoreFile(t *testing.T) {
	ex, f, addr := restoreFixture(t, 5000)
	big := f.files[1]
	body := ex.content["files/"+ex.big]
	if big.info.GetPath() != ex.big {
		t.Fatalf("fixture: file 2 is %s", big.info.GetPath())
	}

	r := runCLI(t, "", "--server", addr, "restore", "file", "--backup", fakeBackupID, "--file-id", big.info.GetFileId())
	if r.code != 0 || r.stdout != string(body) || !strings.Contains(r.stderr, ex.big) {
		t.Fatalf("whole read: exit %d, %d bytes, stderr %s", r.code, len(r.stdout), r.stderr)
	}

	// A ranged read.
	r = runCLI(t, "", "--server", addr, "restore", "file", "--backup", fakeBackupID, "--file-id", big.info.GetFileId(),
		"--offset", "1500", "--limit", "2100")
	if r.code != 0 || r.stdout != string(body[1500:3600]) {
		t.Fatalf("ranged read: %d bytes, %v", len(r.stdout), r.code)
	}
	reads := f.fileReads()
	if last := reads[len(reads)-1]; last.GetReadOffset() != 1500 || last.GetReadLimit() != 2100 || last.GetFileId() != big.info.GetFileId() {
		t.Errorf("request %v", last)
	}
	// To the end from an offset, into a file.
	out := filepath.Join(t.TempDir(), "tail.bin")
	r = runCLI(t, "", "--server", addr, "restore", "file", "--backup", fakeBackupID, "--file-id", big.info.GetFileId(),
		"--offset", "4000", "-O", out)
	if got, _ := os.ReadFile(out); r.code != 0 || !bytes.Equal(got, body[4000:]) || r.stdout != "" {
		t.Fatalf("-O ranged: %d bytes, %v", len(got), r)
	}
	// Past the end: exit 4.
	r = runCLI(t, "", "--server", addr, "restore", "file", "--backup", fakeBackupID, "--file-id", big.info.GetFileId(), "--offset", "5001")
	if r.code != exitBadRequest {
		t.Errorf("offset past the end: %v", r)
	}

	// Every file of a parent, into a directory at their stored paths.
	dir := t.TempDir()
	parent := f.files[0].info.GetParentId() // notes.txt's parent, accountID(0)
	r = runCLI(t, "", "--server", addr, "restore", "file", "--backup", fakeBackupID, "--parent", parent[:15], "-O", dir, "-o", "json")
	if r.code != 0 {
		t.Fatalf("%v", r)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "notes.txt")); string(got) != string(ex.content["files/notes.txt"]) {
		t.Errorf("notes.txt = %q", got)
	}
	var sum pb.ReadFileSummary
	if err := protojson.Unmarshal([]byte(r.stdout), &sum); err != nil || sum.GetFiles() != 1 {
		t.Errorf("summary %v %v", &sum, err)
	}
	assertOnlyFiles(t, dir, "notes.txt")

	// A body that does not match its SHA-256 fails (exit 1) and leaves no file.
	f.files[2].info.Sha256 = strings.Repeat("0", 64)
	out = filepath.Join(t.TempDir(), "logo.png")
	r = runCLI(t, "", "--server", addr, "restore", "file", "--backup", fakeBackupID, "--file-id", f.files[2].info.GetFileId(), "-O", out)
	if r.code != exitError || !strings.Contains(r.stderr, "DataLoss") {
		t.Errorf("SHA-256 mismatch: %v", r)
	}
	assertOnlyFiles(t, filepath.Dir(out))
}

func TestRestoreFileCutShort(t *testing.T) {
	_, f, addr := restoreFixture(t, 5000)
	f.failFile = func(req *pb.ReadFileRequest, fl *fakeFile, sent int64) error {
		if sent >= 2000 {
			return errCut
		}
		return nil
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "big.bin")
	r := runCLI(t, "", "--server", addr, "restore", "file", "--backup", fakeBackupID, "--file-id", f.files[1].info.GetFileId(), "-O", out)
	if r.code != exitRetryable || !strings.Contains(r.stderr, "without its summary message") {
		t.Errorf("want exit 5: %v", r)
	}
	assertOnlyFiles(t, dir)
}

func TestRestoreContentsAndFind(t *testing.T) {
	_, f, addr := restoreFixture(t, 1000)
	r := runCLI(t, "", "--server", addr, "restore", "contents", fakeBackupID)
	if r.code != 0 {
		t.Fatalf("%v", r)
	}
	for _, s := range []string{"Record sets: 2", "Files: 4", "ParentId=Account", "AccountId=Account", "sub/deep/big.bin",
		"orphan.txt", "fl-004", "COMMITTED"} {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("contents lack %q:\n%s", s, r.stdout)
		}
	}
	r = runCLI(t, "", "--server", addr, "restore", "contents", fakeBackupID, "-o", "json")
	var resp pb.ListBackupContentsResponse
	if err := protojson.Unmarshal([]byte(r.stdout), &resp); err != nil {
		t.Fatalf("%v\n%v", err, r)
	}
	if len(resp.GetFiles()) != 4 || len(resp.GetRecordSets()) != 2 || resp.GetNextPageToken() != "" {
		t.Errorf("contents json: %d files, %d record sets (pages of %d)", len(resp.GetFiles()), len(resp.GetRecordSets()), f.pageSize)
	}

	r = runCLI(t, "", "--server", addr, "restore", "find", "--org", testOrg, "--at", "2026-03-02T00:00:00Z")
	if r.code != 0 || !strings.Contains(r.stdout, fakeBackupID) {
		t.Errorf("find: %v", r)
	}
	r = runCLI(t, "", "--server", addr, "restore", "find", "--org", testOrg, "--at", "2020-01-01T00:00:00Z")
	if r.code != exitNotFound {
		t.Errorf("find before the first backup: %v", r)
	}
}

func TestRestorePlan(t *testing.T) {
	_, f, addr := restoreFixture(t, 10)
	f.plan = &pb.PlanRestoreResponse{
		Steps: []*pb.RestoreStep{
			{Order: 1, Kind: pb.StepKind_STEP_KIND_INSERT, Sobject: "Account", Ids: []string{accountID(0)}, OmitFields: []string{"ParentId"}, Role: "parent"},
			{Order: 2, Kind: pb.StepKind_STEP_KIND_INSERT, Sobject: "Account", Ids: []string{accountID(1), accountID(2)}, OmitFields: []string{"ParentId"}, Role: "root"},
			{Order: 3, Kind: pb.StepKind_STEP_KIND_INSERT, Sobject: "Contact", Ids: []string{contactID(1)}, Role: "child"},
			{Order: 4, Kind: pb.StepKind_STEP_KIND_UPDATE, Sobject: "Account", Ids: []string{accountID(1)}, UpdateFields: []string{"ParentId"}, Role: "root"},
			{Order: 5, Kind: pb.StepKind_STEP_KIND_FILES, FileIds: []string{"fl-001", "fl-002"}},
		},
		RecordCount: 4, FileCount: 2, MissingIds: []string{accountID(99)},
	}
	r := runCLI(t, "", "--server", addr, "restore", "plan", "--backup", fakeBackupID,
		"--root", "Account="+accountID(1)+","+accountID(2), "--root", "Contact="+contactID(1), "--root", "Account="+accountID(99), "--depth", "2")
	if r.code != 0 {
		t.Fatalf("%v", r)
	}
	assertRows(t, r.stdout, [][]string{
		{"ORDER", "KIND", "SOBJECT", "ROLE", "RECORDS", "FIELDS", "FILES"},
		{"1", "INSERT", "Account", "parent", "1", "omit:ParentId", "-"},
		{"2", "INSERT", "Account", "root", "2", "omit:ParentId", "-"},
		{"3", "INSERT", "Contact", "child", "1", "-", "-"},
		{"4", "UPDATE", "Account", "root", "1", "set:ParentId", "-"},
		{"5", "FILES", "-", "-", "-", "-", "2"},
	})
	if !strings.Contains(r.stdout, "5 steps: 4 records, 2 files.") || !strings.Contains(r.stderr, accountID(99)) {
		t.Errorf("totals or missing ids:\n%v", r)
	}
	f.mu.Lock()
	req := f.requests[len(f.requests)-1].(*pb.PlanRestoreRequest)
	f.mu.Unlock()
	assertProtoEqual(t, &pb.PlanRestoreRequest{BackupId: fakeBackupID, Depth: 2, Roots: []*pb.RootRecords{
		{Sobject: "Account", Ids: []string{accountID(1), accountID(2), accountID(99)}},
		{Sobject: "Contact", Ids: []string{contactID(1)}},
	}}, req)

	r = runCLI(t, "", "--server", addr, "restore", "plan", "--backup", fakeBackupID, "--root", "Account="+accountID(1), "-o", "json")
	var resp pb.PlanRestoreResponse
	if err := protojson.Unmarshal([]byte(r.stdout), &resp); err != nil || len(resp.GetSteps()) != 5 || resp.GetSteps()[4].GetFileIds()[1] != "fl-002" {
		t.Errorf("plan json: %v\n%v", err, r)
	}
}

// checkRestoredExport compares a restored directory with the export: every
// record set and body byte for byte, references.csv and files.csv as sets
// of rows (want: header first), and nothing else.
func checkRestoredExport(t *testing.T, ex *testExport, dir string, wantRefs, wantFiles []string) {
	t.Helper()
	var names []string
	for name := range ex.content {
		names = append(names, name)
		got, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(name)))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		switch name {
		case "references.csv":
			checkRows(t, name, got, wantRefs)
		case "files.csv":
			checkRows(t, name, got, wantFiles)
		default:
			if !bytes.Equal(got, ex.content[name]) {
				t.Errorf("%s differs from the export (%d vs %d bytes)", name, len(got), len(ex.content[name]))
			}
		}
	}
	assertOnlyFiles(t, dir, names...)
}

// checkRows compares CSV lines: the header first, then the rows in any order.
func checkRows(t *testing.T, name string, got []byte, want []string) {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(string(got), "\n"), "\n")
	if len(lines) == 0 || lines[0] != want[0] {
		t.Errorf("%s header %q, want %q", name, lines[0], want[0])
		return
	}
	g, w := slices.Sorted(slices.Values(lines[1:])), slices.Sorted(slices.Values(want[1:]))
	if !slices.Equal(g, w) {
		t.Errorf("%s rows\n%q\nwant\n%q", name, g, w)
	}
}

func TestRestoreRun(t *testing.T) {
	ex, f, addr := restoreFixture(t, 200<<10)
	dir := filepath.Join(t.TempDir(), "restored")
	r := runCLI(t, "", "--server", addr, "restore", "run", "--concurrency", "3", fakeBackupID, dir)
	if r.code != 0 {
		t.Fatalf("%v", r)
	}
	if r.stdout != dir+"\n" {
		t.Errorf("stdout %q", r.stdout)
	}
	refs, files := f.expectedIndexRows()
	checkRestoredExport(t, ex, dir, refs, files)
	// files.csv carries what backup run stored: for sub/logo.png the base
	// name and the type guessed from the extension.
	if !slices.Contains(files, "sub/logo.png,"+contactID(0)+",logo.png,image/png") {
		t.Errorf("files.csv rows %q", files)
	}
	for _, s := range []string{"records Account.csv: 60 records", "file files/sub/deep/big.bin: 200.0 KiB", "record sets: 2 (100 records)", "files:       4"} {
		if !strings.Contains(r.stderr, s) {
			t.Errorf("stderr lacks %q:\n%s", s, r.stderr)
		}
	}

	// The same directory again: refused unless --resume; --resume reads the
	// record sets again and keeps files already in place.
	r = runCLI(t, "", "--server", addr, "restore", "run", fakeBackupID, dir)
	if r.code != exitUsage || !strings.Contains(r.stderr, "--resume") {
		t.Errorf("non-empty OUT_DIR: %v", r)
	}
	before := len(f.fileReads())
	r = runCLI(t, "", "--server", addr, "restore", "run", "--resume", fakeBackupID, dir, "-o", "json")
	if r.code != 0 || len(f.fileReads()) != before || !strings.Contains(r.stderr, "4 already in place") {
		t.Errorf("--resume over a complete restore: %d reads: %v", len(f.fileReads())-before, r)
	}
	var resp pb.ListBackupContentsResponse
	if err := protojson.Unmarshal([]byte(r.stdout), &resp); err != nil || len(resp.GetFiles()) != 4 {
		t.Errorf("-o json: %v\n%s", err, r.stdout)
	}
	checkRestoredExport(t, ex, dir, refs, files)

	// Unknown backup: exit 3 and nothing created.
	dir2 := filepath.Join(t.TempDir(), "none")
	r = runCLI(t, "", "--server", addr, "restore", "run", "bk-nope", dir2)
	if _, err := os.Stat(dir2); r.code != exitNotFound || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("unknown backup: %v", r)
	}
}

func TestRestoreRunResumesPartialFile(t *testing.T) {
	ex, f, addr := restoreFixture(t, 300<<10)
	body := ex.content["files/"+ex.big]
	dir := t.TempDir()
	const have = 123457
	writeFile(t, filepath.Join(dir, "files", filepath.FromSlash(ex.big)+".partial"), body[:have])
	writeFile(t, filepath.Join(dir, "files", "notes.txt"), ex.content["files/notes.txt"]) // complete: kept
	writeFile(t, filepath.Join(dir, "files", "sub", "logo.png"), make([]byte, 3000))      // right size, wrong body: read again
	writeFile(t, filepath.Join(dir, "Account.csv.partial"), []byte("garbage"))

	r := runCLI(t, "", "--server", addr, "restore", "run", "--resume", fakeBackupID, dir)
	if r.code != 0 {
		t.Fatalf("%v", r)
	}
	refs, files := f.expectedIndexRows()
	checkRestoredExport(t, ex, dir, refs, files)
	offsets := map[string]int64{}
	for _, req := range f.fileReads() {
		offsets[req.GetFileId()] = req.GetReadOffset()
	}
	if got, ok := offsets[f.files[1].info.GetFileId()]; !ok || got != have {
		t.Errorf("big.bin read at %d (read: %v), want %d", got, ok, have)
	}
	if _, ok := offsets[f.files[0].info.GetFileId()]; ok {
		t.Errorf("notes.txt, already in place, was read again")
	}
	if got, ok := offsets[f.files[2].info.GetFileId()]; !ok || got != 0 {
		t.Errorf("logo.png read at %d (%v), want 0", got, ok)
	}
	if !strings.Contains(r.stderr, "resumed at 120.6 KiB") {
		t.Errorf("stderr: %s", r.stderr)
	}
}

func TestRestoreRunRetriesFromOffset(t *testing.T) {
	fastRetry(t, 3)
	ex, f, addr := restoreFixture(t, 100<<10)
	var failed atomic.Bool
	f.failFile = func(req *pb.ReadFileRequest, fl *fakeFile, sent int64) error {
		if fl.info.GetPath() == ex.big && sent >= 40_000 && !failed.Swap(true) {
			return status.Error(codes.Unavailable, "S3 is having a moment")
		}
		return nil
	}
	dir := t.TempDir()
	r := runCLI(t, "", "--server", addr, "restore", "run", fakeBackupID, dir)
	if r.code != 0 {
		t.Fatalf("%v", r)
	}
	var offsets []int64
	for _, req := range f.fileReads() {
		if req.GetFileId() == f.files[1].info.GetFileId() {
			offsets = append(offsets, req.GetReadOffset())
		}
	}
	if !slices.Equal(offsets, []int64{0, 40_000}) {
		t.Errorf("big.bin reads at %v, want [0 40000]", offsets)
	}
	refs, files := f.expectedIndexRows()
	checkRestoredExport(t, ex, dir, refs, files)
}

func TestRestoreRunCutShort(t *testing.T) {
	fastRetry(t, 2)
	ex, f, addr := restoreFixture(t, 100<<10)
	dir := t.TempDir()

	// A record set cut short: no Contact.csv, nor its partial, nor the
	// index files.
	f.cutRecords = func(sobject string, sent int64) bool { return sobject == "Contact" && sent >= 2000 }
	r := runCLI(t, "", "--server", addr, "restore", "run", "--concurrency", "1", fakeBackupID, dir)
	if r.code != exitRetryable || !strings.Contains(r.stderr, "without its summary message") || !strings.Contains(r.stderr, "--resume") {
		t.Fatalf("want exit 5: %v", r)
	}
	for _, name := range []string{"Contact.csv", "Contact.csv.partial", "files.csv", "references.csv"} {
		if _, err := os.Stat(filepath.Join(dir, name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s exists after a cut-short stream", name)
		}
	}

	// A file cut short: no big.bin; its partial is kept for --resume.
	f.mu.Lock()
	f.cutRecords = nil
	f.failFile = func(req *pb.ReadFileRequest, fl *fakeFile, sent int64) error {
		if fl.info.GetPath() == ex.big && req.GetReadOffset()+sent >= 50_000 {
			return errCut
		}
		return nil
	}
	f.mu.Unlock()
	r = runCLI(t, "", "--server", addr, "restore", "run", "--resume", "--concurrency", "1", fakeBackupID, dir)
	if r.code != exitRetryable || !strings.Contains(r.stderr, "without its summary message") {
		t.Fatalf("want exit 5: %v", r)
	}
	for _, name := range []string{"files/" + ex.big, "files.csv", "references.csv"} {
		if _, err := os.Stat(filepath.Join(dir, name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s exists after a cut-short stream", name)
		}
	}
	part, err := os.ReadFile(filepath.Join(dir, "files", filepath.FromSlash(ex.big)+".partial"))
	if err != nil || len(part) != 50_000 || !bytes.Equal(part, ex.content["files/"+ex.big][:50_000]) {
		t.Errorf("partial: %d bytes, %v", len(part), err)
	}

	// Once the service behaves, --resume finishes it from the partial.
	f.mu.Lock()
	f.failFile = nil
	f.requests = nil
	f.mu.Unlock()
	r = runCLI(t, "", "--server", addr, "restore", "run", "--resume", fakeBackupID, dir)
	if r.code != 0 {
		t.Fatalf("%v", r)
	}
	for _, req := range f.fileReads() {
		if req.GetFileId() == f.files[1].info.GetFileId() && req.GetReadOffset() != 50_000 {
			t.Errorf("big.bin read at %d, want 50000", req.GetReadOffset())
		}
	}
	refs, files := f.expectedIndexRows()
	checkRestoredExport(t, ex, dir, refs, files)
}

func TestRestoreRunBadFile(t *testing.T) {
	fastRetry(t, 2)
	ex, f, addr := restoreFixture(t, 10<<10)

	// A body that does not match its SHA-256: exit 1, its partial removed.
	f.files[1].body = bytes.Clone(f.files[1].body)
	f.files[1].body[100] ^= 1
	dir := t.TempDir()
	r := runCLI(t, "", "--server", addr, "restore", "run", fakeBackupID, dir)
	if r.code != exitError || !strings.Contains(r.stderr, "SHA-256") {
		t.Errorf("corrupt body: %v", r)
	}
	if _, err := os.Stat(filepath.Join(dir, "files", filepath.FromSlash(ex.big)+".partial")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the corrupt partial was kept")
	}

	// Stored paths that are not clean relative paths: refused, nothing written.
	for _, p := range []string{"../evil.txt", "/etc/passwd", "a/../../b", `c:\x`, "notes.txt"} {
		f.files[3].info.Path = p
		dir := filepath.Join(t.TempDir(), "out")
		r := runCLI(t, "", "--server", addr, "restore", "run", fakeBackupID, dir)
		if r.code != exitBadRequest || !strings.Contains(r.stderr, "cannot be restored as an export directory") {
			t.Errorf("path %q: %v", p, r)
		}
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("path %q: OUT_DIR was created", p)
		}
	}
}

func TestRestoreUsageErrors(t *testing.T) {
	_, f, addr := restoreFixture(t, 10)
	nonEmpty := t.TempDir()
	writeFile(t, filepath.Join(nonEmpty, "x"), nil)
	tests := [][]string{
		{"restore", "contents"},
		{"restore", "contents", "a", "b"},
		{"restore", "find"},
		{"restore", "find", "--org", testOrg, "--at", "yesterday"},
		{"restore", "records", "--backup", "b"},
		{"restore", "records", "--backup", "b", "--sobject", "Bad-Name"},
		{"restore", "records", "--backup", "b", "--sobject", "Account", "--ids", "nope"},
		{"restore", "records", "--backup", "b", "--sobject", "Account", "--ids", ""},
		{"restore", "records", "--backup", "b", "--sobject", "Account", "--ids", accountID(1), "--ids-file", "x"},
		{"restore", "records", "--backup", "b", "--sobject", "Account", "--ids-file", "/nonexistent"},
		{"restore", "file", "--backup", "b"},
		{"restore", "file", "--backup", "b", "--file-id", "f", "--parent", accountID(1)},
		{"restore", "file", "--backup", "b", "--parent", accountID(1), "--offset", "5"},
		{"restore", "file", "--backup", "b", "--file-id", "f", "--limit", "-1"},
		{"restore", "plan", "--backup", "b"},
		{"restore", "plan", "--backup", "b", "--root", "Account"},
		{"restore", "plan", "--backup", "b", "--root", "Account=xyz"},
		{"restore", "plan", "--backup", "b", "--root", "Account=" + accountID(1), "--depth", "6"},
		{"restore", "run", "b"},
		{"restore", "run", "b", t.TempDir(), "extra"},
		{"restore", "run", "b", t.TempDir(), "--concurrency", "0"},
		{"restore", "run", "b", nonEmpty},
	}
	for _, args := range tests {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			r := runCLI(t, "", append(args, "--server", addr)...)
			if r.code != exitUsage || r.stdout != "" || !strings.Contains(r.stderr, "-h' for usage") {
				t.Errorf("want exit 2 with the hint: %v", r)
			}
		})
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.requests) != 0 {
		t.Errorf("usage errors sent %d requests", len(f.requests))
	}
}

func TestRestoreHelp(t *testing.T) {
	for _, args := range [][]string{{"restore", "-h"}, {"restore", "run", "-h"}, {"help", "restore", "records"}, {"-h"}} {
		r := runCLI(t, "", args...)
		if r.code != 0 || !strings.Contains(r.stderr, "restore") {
			t.Errorf("%v: %v", args, r)
		}
	}
	r := runCLI(t, "", "restore", "run", "-h")
	for _, s := range []string{"--resume", "--concurrency", "files/<path>.partial", "references.csv"} {
		if !strings.Contains(r.stderr, s) {
			t.Errorf("restore run -h lacks %q", s)
		}
	}
}

func TestRestoreStreamStallTimesOut(t *testing.T) {
	_, f, addr := restoreFixture(t, 10)
	f.cutRecords = func(sobject string, sent int64) bool {
		if sent > 0 {
			time.Sleep(time.Second) // the service stops sending mid-stream
		}
		return false
	}
	r := runCLI(t, "", "--server", addr, "--timeout", "300ms", "restore", "records", "--backup", fakeBackupID, "--sobject", "Account")
	if r.code != exitRetryable || !strings.Contains(r.stderr, "DeadlineExceeded: no message for 300ms") {
		t.Errorf("want exit 5 and a stall message: %v", r)
	}
}
