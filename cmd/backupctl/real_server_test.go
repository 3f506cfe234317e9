package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"

	"backupstore/ingest"
	"backupstore/internal/app"
	pb "backupstore/proto/backupstore/v1"
	"backupstore/registry"
	"backupstore/secrets"
	"backupstore/storage"
)

// realServer runs the real server stack in-process (embedded SQLite catalog,
// local-directory default storage) on a loopback port.
func realServer(t *testing.T) (addr string, st storage.Store) {
	t.Helper()
	key := make([]byte, secrets.KeySize)
	rand.Read(key)
	ring, _ := secrets.NewKeyring(key)
	local, err := storage.NewLocal(storage.LocalConfig{Root: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	a, err := app.New(context.Background(), app.Config{
		Catalog: app.CatalogConfig{Driver: "sqlite", DSN: filepath.Join(t.TempDir(), "catalog.db")},
		Keyring: ring, ServiceStore: local, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Auth:     app.AuthConfig{Mode: "none", DevTenant: "dev"},
		Memory:   app.MemoryConfig{Total: 256 << 20},
		Registry: registry.Config{AllowEndpoints: "127.0.0.1/32"},
		Ingest:   ingest.Config{PartSize: 5 << 20, SpoolDir: t.TempDir()},
	})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go a.Serve(lis)
	t.Cleanup(func() { a.Close() })
	return lis.Addr().String(), local
}

func TestBackupRunAgainstRealServer(t *testing.T) {
	addr, local := realServer(t)
	ex := makeExport(t, 12<<20+5) // the big body goes multipart (5 MiB parts)
	run1 := runCLI(t, "", "--server", addr, "-o", "json", "backup", "run", "--org", "00D000000000001", "--chunk-size", "8KiB", ex.dir)
	if run1.code != 0 {
		t.Fatalf("backup run: %v", run1)
	}
	var resp struct {
		Backup struct {
			ID               string `json:"id"`
			Status           string `json:"status"`
			RecordCount      string `json:"recordCount"`
			RecordChunkCount string `json:"recordChunkCount"`
			FileCount        string `json:"fileCount"`
		} `json:"backup"`
		OrphanFiles []struct {
			Path string `json:"path"`
		} `json:"orphanFiles"`
	}
	if err := json.Unmarshal([]byte(run1.stdout), &resp); err != nil {
		t.Fatalf("output is not the CommitBackupResponse JSON: %v\n%s", err, run1.stdout)
	}
	b := resp.Backup
	if b.Status != "BACKUP_STATUS_COMMITTED" || b.RecordCount != "100" || b.FileCount != "4" {
		t.Fatalf("backup %+v", b)
	}
	if n := b.RecordChunkCount; n == "2" || n == "" {
		t.Fatalf("--chunk-size 8KiB should split Account.csv into several chunks, got %s", n)
	}
	if len(resp.OrphanFiles) != 1 || resp.OrphanFiles[0].Path != ex.orphan {
		t.Fatalf("orphans %+v", resp.OrphanFiles)
	}
	// The big body is stored byte for byte.
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	bc := pb.NewBackupServiceClient(conn)
	ups, err := bc.ListUploads(context.Background(), &pb.ListUploadsRequest{BackupId: b.ID, PageSize: 1000})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, u := range ups.Uploads {
		if u.Path == ex.big {
			rc, err := local.Get(context.Background(), u.Result.DataKey, 0, -1)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(rc)
			rc.Close()
			if string(got) != string(ex.content["files/"+ex.big]) {
				t.Fatal("big body differs")
			}
			found = true
		}
	}
	if !found {
		t.Fatalf("no upload for %s", ex.big)
	}

	// Unchanged directory: already committed, nothing sent.
	run2 := runCLI(t, "", "--server", addr, "backup", "run", "--org", "00D000000000001", "--chunk-size", "8KiB", ex.dir)
	if run2.code != 0 || !strings.Contains(run2.stdout+run2.stderr, "already committed") {
		t.Fatalf("second run: %v", run2)
	}

	// A changed export makes a new backup whose file bodies are all deduplicated.
	p := filepath.Join(ex.dir, "Contact.csv")
	os.WriteFile(p, append(ex.content["Contact.csv"], []byte("003000000000999,,Late,added\r\n")...), 0o644)
	os.Chtimes(p, time.Now().Add(time.Minute), time.Now().Add(time.Minute))
	run3 := runCLI(t, "", "--server", addr, "-o", "json", "backup", "run", "--org", "00D000000000001", ex.dir)
	if run3.code != 0 {
		t.Fatalf("third run: %v", run3)
	}
	var resp3 struct {
		Backup struct {
			ID string `json:"id"`
		} `json:"backup"`
	}
	json.Unmarshal([]byte(run3.stdout), &resp3)
	if resp3.Backup.ID == b.ID || resp3.Backup.ID == "" {
		t.Fatalf("changed export reused backup %s", b.ID)
	}
	ups, err = bc.ListUploads(context.Background(), &pb.ListUploadsRequest{BackupId: resp3.Backup.ID, PageSize: 1000})
	if err != nil {
		t.Fatal(err)
	}
	files := 0
	for _, u := range ups.Uploads {
		if u.Kind == pb.UploadKind_UPLOAD_KIND_FILE {
			files++
			if !u.Result.GetDeduplicated() || u.Result.GetBytesStored() != 0 {
				t.Errorf("file %s was sent again: %v", u.Path, u.Result)
			}
		}
	}
	if files != 4 {
		t.Fatalf("%d file uploads, want 4", files)
	}
}

// TestRestoreRunAgainstRealServer backs makeExport up with `backup run` and
// writes it back with `restore run`: every record set and file body comes
// back byte for byte; references.csv and files.csv hold the same rows, in
// the spelling the backup stores (see originalIndexRows).
func TestRestoreRunAgainstRealServer(t *testing.T) {
	addr, _ := realServer(t)
	ex := makeExport(t, 6<<20+5) // multipart on the way in, several messages on the way out
	run := runCLI(t, "", "--server", addr, "backup", "run", "--org", testOrg, "--chunk-size", "8KiB", ex.dir)
	if run.code != 0 {
		t.Fatalf("backup run: %v", run)
	}
	id := strings.TrimSpace(run.stdout)

	out := filepath.Join(t.TempDir(), "restored")
	r := runCLI(t, "", "--server", addr, "restore", "run", "--concurrency", "3", id, out)
	if r.code != 0 {
		t.Fatalf("restore run: %v", r)
	}
	refs, files := originalIndexRows(t, ex)
	checkRestoredExport(t, ex, out, refs, files)

	// Resuming a partially written body continues at its size.
	big := filepath.Join(out, "files", filepath.FromSlash(ex.big))
	body := ex.content["files/"+ex.big]
	os.Remove(big)
	writeFile(t, big+partialSuffix, body[:3<<20+17])
	r = runCLI(t, "", "--server", addr, "restore", "run", "--resume", id, out)
	if r.code != 0 || !strings.Contains(r.stderr, "resumed at 3.0 MiB") {
		t.Fatalf("restore run --resume: %v", r)
	}
	checkRestoredExport(t, ex, out, refs, files)

	// The other commands against the same backup.
	r = runCLI(t, "", "--server", addr, "restore", "records", "--backup", id, "--sobject", "Contact",
		"--ids", contactID(3)+","+contactID(1)[:15]+","+contactID(777))
	lines := strings.SplitAfter(string(ex.content["Contact.csv"]), "\r\n")
	// Each Contact row spans two CRLF-terminated lines (an embedded CRLF).
	want := lines[0] + lines[1+2*1] + lines[2+2*1] + lines[1+2*3] + lines[2+2*3]
	if r.code != 0 || r.stdout != want || !strings.Contains(r.stderr, "1 of 3 requested ids are not in the backup") {
		t.Errorf("records by id: %v\nwant stdout %q", r, want)
	}
	r = runCLI(t, "", "--server", addr, "restore", "contents", id, "-o", "json")
	var contents pb.ListBackupContentsResponse
	if err := protojson.Unmarshal([]byte(r.stdout), &contents); err != nil || len(contents.GetFiles()) != 4 || len(contents.GetRecordSets()) != 2 {
		t.Fatalf("contents: %v\n%v", err, r)
	}
	var bigID string
	for _, f := range contents.GetFiles() {
		if f.GetPath() == ex.big {
			bigID = f.GetFileId()
		}
	}
	r = runCLI(t, "", "--server", addr, "restore", "file", "--backup", id, "--file-id", bigID, "--offset", "5000000", "--limit", "3000000")
	if r.code != 0 || r.stdout != string(body[5000000:]) {
		t.Errorf("ranged file read: %d bytes, exit %d, %s", len(r.stdout), r.code, r.stderr)
	}
	r = runCLI(t, "", "--server", addr, "restore", "find", "--org", testOrg, "-o", "json")
	if r.code != 0 || !strings.Contains(r.stdout, id) {
		t.Errorf("find: %v", r)
	}
	r = runCLI(t, "", "--server", addr, "restore", "plan", "--backup", id, "--root", "Account="+accountID(0), "--depth", "1")
	if r.code != 0 || !strings.Contains(r.stdout, "INSERT") || !strings.Contains(r.stdout, "Contact") {
		t.Errorf("plan: %v", r)
	}
}

// originalIndexRows returns the rows restore run writes to references.csv
// and files.csv, header first, derived from makeExport's own files the way
// backup run and the service store them: references in the record sets'
// spelling (references.csv may name sObjects and fields in any case), parent
// ids in 18-character form; names and content types exactly as given.
func originalIndexRows(t *testing.T, ex *testExport) (refs, files []string) {
	t.Helper()
	refs = []string{"sobject,field,target"}
	canon := map[string]string{"account": "Account", "contact": "Contact", "parentid": "ParentId", "accountid": "AccountId"}
	for _, line := range strings.Split(strings.TrimSpace(string(ex.content["references.csv"])), "\n")[1:] {
		var row []string
		for _, v := range strings.Split(line, ",") {
			row = append(row, canon[strings.ToLower(v)])
		}
		refs = append(refs, strings.Join(row, ","))
	}
	files = []string{"path,parent_id,name,content_type"}
	for _, line := range strings.Split(strings.TrimSpace(string(ex.content["files.csv"])), "\n")[1:] {
		v := strings.Split(line, ",") // empty name and content_type come back empty
		v[1] = sfidNorm(t, v[1])
		files = append(files, strings.Join(v, ","))
	}
	return refs, files
}
