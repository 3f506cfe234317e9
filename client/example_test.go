package client_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"

	"backupstore/client"
	pb "backupstore/proto/backupstore/v1"
)

// exampleExport writes a small export directory: two record sets, a
// reference to index and one file.
func exampleExport() string {
	dir, err := os.MkdirTemp("", "export-")
	if err != nil {
		log.Fatal(err)
	}
	for name, data := range map[string]string{
		"Account.csv":    "Id,Name,ParentId\n001000000000001,\"Acme, Inc.\",\n001000000000002,Acme EU,001000000000001\n",
		"Contact.csv":    "Id,AccountId,LastName\n003000000000001,001000000000002,Smith\n",
		"references.csv": "sobject,field,target\nContact,AccountId,Account\n",
		"files.csv":      "path,parent_id,name,content_type\nnote.txt,001000000000001AAA,Note,text/plain\n",
		"files/note.txt": "hello\n",
	} {
		p := filepath.Join(dir, filepath.FromSlash(name))
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			log.Fatal(err)
		}
	}
	return dir
}

// exampleServer runs the service in-process, for the examples to talk to.
func exampleServer() (addr string, stop func()) {
	dir, err := os.MkdirTemp("", "backupd-")
	if err != nil {
		log.Fatal(err)
	}
	addr, stopServer, err := startServer(dir, nil)
	if err != nil {
		log.Fatal(err)
	}
	return addr, func() { stopServer(); os.RemoveAll(dir) }
}

// exampleBackup serves, dials and backs up exampleExport, for the examples
// that read a backup.
func exampleBackup() (c *client.Client, backupID string, done func()) {
	addr, stop := exampleServer()
	c, err := client.Dial(addr)
	if err != nil {
		log.Fatal(err)
	}
	src := exampleExport()
	defer os.RemoveAll(src)
	res, err := c.BackupDir(context.Background(), "00D000000000001", src, client.BackupDirOptions{})
	if err != nil {
		log.Fatal(err)
	}
	return c, res.Commit.GetBackup().GetId(), func() { c.Close(); stop() }
}

// A worker backs up an export directory in one call and a restore job
// writes it back. Running BackupDir again after an interruption resumes
// the same backup; after it committed, it reports AlreadyCommitted.
func Example() {
	addr, stop := exampleServer()
	defer stop()
	ctx := context.Background()

	c, err := client.Dial(addr) // add client.WithToken, client.WithTLS in production
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	src := exampleExport()
	defer os.RemoveAll(src)
	res, err := c.BackupDir(ctx, "00D000000000001", src, client.BackupDirOptions{})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("backed up %d records in %d chunks and %d files\n", res.Records, res.Chunks, res.Files)

	again, err := c.BackupDir(ctx, "00D000000000001", src, client.BackupDirOptions{})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("second run already committed:", again.AlreadyCommitted)

	out := filepath.Join(os.TempDir(), "restored-"+res.Commit.GetBackup().GetId())
	defer os.RemoveAll(out)
	rr, err := c.RestoreDir(ctx, res.Commit.GetBackup().GetId(), out, client.RestoreDirOptions{})
	if err != nil {
		log.Fatal(err)
	}
	note, _ := os.ReadFile(filepath.Join(out, "files", "note.txt"))
	fmt.Printf("restored %d record sets and %d files; note.txt: %q\n", rr.RecordSets, rr.Files, note)
	// Output:
	// backed up 3 records in 2 chunks and 1 files
	// second run already committed: true
	// restored 2 record sets and 1 files; note.txt: "hello\n"
}

// ReadRecords streams a record set back as CSV, whole or by record id (one
// ranged read through the record index).
func ExampleClient_ReadRecords() {
	c, backupID, done := exampleBackup()
	defer done()
	ctx := context.Background()

	var csv strings.Builder
	for data, err := range c.ReadRecords(ctx, backupID, "Account", []string{"001000000000002"}) {
		if err != nil {
			log.Fatal(err)
		}
		csv.Write(data)
	}
	fmt.Print(csv.String())
	// Output:
	// Id,Name,ParentId
	// 001000000000002,Acme EU,001000000000001
}

// A worker that manages its own backup uploads record chunks and files one
// by one, then commits. Each upload retries what the API allows and
// resumes where the service stands.
func ExampleClient_UploadFile() {
	ctx := context.Background()
	cert, err := tls.LoadX509KeyPair("worker.pem", "worker-key.pem")
	if err != nil {
		log.Fatal(err)
	}
	c, err := client.Dial("backupd.internal:443", client.WithTLS(&tls.Config{Certificates: []tls.Certificate{cert}}))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	created, err := c.Backup().CreateBackup(ctx, &pb.CreateBackupRequest{OrgId: "00D000000000001", IdempotencyKey: "nightly-2026-12-04"})
	if err != nil {
		log.Fatal(err)
	}
	id := created.GetBackup().GetId()

	chunk, err := os.Open("Account.csv")
	if err != nil {
		log.Fatal(err)
	}
	defer chunk.Close()
	if _, err := c.UploadRecords(ctx, id, "Account", chunk, client.RecordsOptions{}); err != nil {
		log.Fatal(err)
	}

	body, err := os.Open("contract.pdf")
	if err != nil {
		log.Fatal(err)
	}
	defer body.Close()
	sum, size, err := client.HashSHA256(ctx, body) // declared, it spares a body the service has
	if err != nil {
		log.Fatal(err)
	}
	res, err := c.UploadFile(ctx, id, client.File{ParentID: "001000000000001AAA", Path: "contract.pdf", SHA256: sum}, body, size)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("deduplicated:", res.Result.GetDeduplicated())

	if _, err := c.Backup().CommitBackup(ctx, &pb.CommitBackupRequest{BackupId: id}); err != nil {
		log.Fatal(err)
	}
}

// The List iterators follow every page.
func ExampleClient_Backups() {
	c, err := client.Dial("127.0.0.1:50051", client.WithToken(os.Getenv("BACKUPSTORE_TOKEN")))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	for b, err := range c.Backups(context.Background(), &pb.ListBackupsRequest{OrgId: "00D000000000001"}) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(b.GetId(), b.GetStatus())
	}
}
