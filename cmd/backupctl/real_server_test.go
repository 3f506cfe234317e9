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

	"backupstore/budget"
	"backupstore/ingest"
	"backupstore/metadata"
	pb "backupstore/proto/backupstore/v1"
	"backupstore/registry"
	"backupstore/restore"
	"backupstore/secrets"
	"backupstore/server"
	"backupstore/storage"
)

// realServer runs the real server stack in-process (embedded SQLite catalog,
// local-directory default storage) on a loopback port.
func realServer(t *testing.T) (addr string, st storage.Store) {
	t.Helper()
	ctx := context.Background()
	cat, err := metadata.Open(ctx, "sqlite", filepath.Join(t.TempDir(), "catalog.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cat.Close() })
	key := make([]byte, 32)
	rand.Read(key)
	ring, _ := secrets.NewKeyring(key)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg, err := registry.New(registry.Config{Catalog: cat, Keyring: ring, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	local, err := storage.NewLocal(storage.LocalConfig{Root: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	ing, err := ingest.New(ingest.Config{Catalog: cat, Registry: reg, ServiceStore: local, Budget: budget.New(256 << 20),
		Logger: log, PartSize: 5 << 20, SpoolDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	rst, err := restore.New(restore.Config{Catalog: cat, Registry: reg, ServiceStore: local, Budget: budget.New(64 << 20), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Config{Auth: server.NoAuth{TenantID: "dev"}, Registry: reg, Ingest: ing, Restore: rst, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	gs := srv.GRPCServer()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go gs.Serve(lis)
	t.Cleanup(gs.Stop)
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
