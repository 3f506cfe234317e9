package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"backupstore/internal/testenv"
	"backupstore/pack"
	pb "backupstore/proto/backupstore/v1"
)

// TestRepackKilledAtEveryStep kills a real backupd (BACKUPD_TEST_CRASH_AT) at each step of a
// repack — after the new pack's PUT, after the switch, after the retired packs' objects were
// deleted — restarts it and runs cleanup until nothing is left to do. Every file of the backup
// whose bodies were moved reads back byte-identical and verifies, and the bucket then holds
// exactly one pack, the one the catalog points those files at (an orphan PUT is garbage
// collection's after --gc-grace, retired packs go after --repack-grace).
func TestRepackKilledAtEveryStep(t *testing.T) {
	gw := testenv.VersityGW(t)
	for _, point := range []string{"after-repack-put", "after-repack-switch", "after-retired-objects"} {
		t.Run(point, func(t *testing.T) {
			bucket := gw.NewBucket(t)
			dir := t.TempDir()
			addr := freeAddr(t)
			args := []string{"--data-dir", dir, "--log-level", "warn", "--cleanup-interval", "0", "--gc-grace", "1s", "--repack-grace", "1ms"}
			child := startChildEnv(t, addr, []string{"BACKUPD_TEST_CRASH_AT=" + point}, args...)
			c := dial(t, addr)
			sid := register(t, c, gw, bucket)
			ctx := context.Background()
			b2, files, bodies := sharedPackedFiles(t, c, sid, 30, 5)

			packs := func() []string { return packKeys(t, gw, bucket) }
			before := packs()
			if point == "after-retired-objects" {
				// The repack runs whole; the next cleanup deletes the retired packs and dies.
				if _, err := c.maintain.RunCleanup(ctx, &pb.RunCleanupRequest{}); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := c.maintain.RunCleanup(ctx, &pb.RunCleanupRequest{}); status.Code(err) != codes.Unavailable {
				t.Fatalf("cleanup should have died at %s: %v", point, err)
			}
			child.Wait()
			startChild(t, addr, args...)
			deadline := time.Now().Add(20 * time.Second)
			for {
				if _, err := c.maintain.RunCleanup(ctx, &pb.RunCleanupRequest{}); err != nil {
					t.Fatalf("cleanup after the restart: %v", err)
				}
				left := packs()
				if len(left) == 1 && !slices.Contains(before, left[0]) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("packs after cleanups past every grace: %v (before the repack: %v), want one new pack", left, before)
				}
				time.Sleep(300 * time.Millisecond) // --gc-grace is wall time in the child
			}
			p, err := gw.RootClient().GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(packs()[0])})
			if err != nil {
				t.Fatal(err)
			}
			data, _ := io.ReadAll(p.Body)
			p.Body.Close()
			x, err := pack.Parse(data, pack.Limits{})
			if err != nil || len(x.Entries) != len(bodies) {
				t.Fatalf("the pack left: %v, %d entries; want %d bodies", err, len(x.Entries), len(bodies))
			}
			for i, id := range files {
				if got := readFile(t, c, b2, id); !bytes.Equal(got, bodies[i]) {
					t.Fatalf("file %d reads back %d bytes, want its %d", i, len(got), len(bodies[i]))
				}
			}
			v, err := c.maintain.VerifyBackup(ctx, &pb.VerifyBackupRequest{BackupId: b2, ReadPercent: 100})
			if err != nil || len(v.Problems) > 0 || v.Backup.Damaged {
				t.Fatalf("VerifyBackup: %v, %v", v, err)
			}
		})
	}
}

// sharedPackedFiles stores n small files in one backup (one UploadFiles stream), references
// keep of their bodies from a second backup (dedup: the same blobs), commits both and deletes
// the first, leaving its packs mostly dead. It returns the second backup, its file ids and
// their bodies.
func sharedPackedFiles(t *testing.T, c *clients, sid string, n, keep int) (string, []string, [][]byte) {
	t.Helper()
	ctx := context.Background()
	newBackup := func() string {
		b, err := c.backups.CreateBackup(ctx, &pb.CreateBackupRequest{OrgId: "00D000000000001", StorageId: sid})
		if err != nil {
			t.Fatal(err)
		}
		return b.Backup.Id
	}
	header := func(backup string, i int, body []byte) *pb.FileHeader {
		sum := sha256.Sum256(body)
		size := int64(len(body))
		return &pb.FileHeader{BackupId: backup, ParentId: "001000000000001AAA", Path: fmt.Sprintf("files/%d.bin", i),
			UploadId: uuid.NewString(), DeclaredSize: &size, DeclaredSha256: hex.EncodeToString(sum[:])}
	}
	b1 := newBackup()
	st, err := c.backups.UploadFiles(ctx)
	if err != nil {
		t.Fatal(err)
	}
	all := make([][]byte, n)
	for i := range all {
		all[i] = make([]byte, 900+i*13)
		rand.NewChaCha8([32]byte{byte(i), 7}).Read(all[i])
		h := header(b1, i, all[i])
		if err := st.Send(&pb.UploadFilesRequest{Message: &pb.UploadFilesRequest_Header{Header: h}}); err != nil {
			t.Fatal(err)
		}
		if err := st.Send(&pb.UploadFilesRequest{Message: &pb.UploadFilesRequest_Data{Data: &pb.FileData{UploadId: h.UploadId, Data: all[i]}}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.CloseSend(); err != nil {
		t.Fatal(err)
	}
	for answered := 0; ; answered++ {
		a, err := st.Recv()
		if err == io.EOF {
			if answered != n {
				t.Fatalf("%d of %d files answered", answered, n)
			}
			break
		}
		if err != nil || a.GetError() != nil {
			t.Fatalf("UploadFiles: %v, %v", a, err)
		}
	}
	if _, err := c.backups.CommitBackup(ctx, &pb.CommitBackupRequest{BackupId: b1}); err != nil {
		t.Fatal(err)
	}
	b2 := newBackup()
	var files []string
	var bodies [][]byte
	for i := 0; i < n && len(files) < keep; i += n / keep {
		fs, err := c.backups.UploadFile(ctx)
		if err != nil {
			t.Fatal(err)
		}
		fs.Send(&pb.UploadFileRequest{Message: &pb.UploadFileRequest_Header{Header: header(b2, i, all[i])}})
		fs.Send(&pb.UploadFileRequest{Message: &pb.UploadFileRequest_Finish{Finish: &pb.FinishWrite{}}})
		r, err := fs.CloseAndRecv()
		if err != nil || !r.Result.Deduplicated {
			t.Fatalf("second backup's file %d: %v, %v; want deduplicated", i, r, err)
		}
		files, bodies = append(files, r.Result.FileId), append(bodies, all[i])
	}
	if _, err := c.backups.CommitBackup(ctx, &pb.CommitBackupRequest{BackupId: b2}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.maintain.DeleteBackup(ctx, &pb.DeleteBackupRequest{BackupId: b1}); err != nil {
		t.Fatal(err)
	}
	return b2, files, bodies
}

func readFile(t *testing.T, c *clients, backup, fileID string) []byte {
	t.Helper()
	rf, err := c.restore.ReadFile(context.Background(), &pb.ReadFileRequest{BackupId: backup, Selector: &pb.ReadFileRequest_FileId{FileId: fileID}})
	if err != nil {
		t.Fatal(err)
	}
	var got []byte
	for {
		m, err := rf.Recv()
		if err != nil {
			t.Fatalf("ReadFile %s: %v", fileID, err)
		}
		if m.GetSummary() != nil {
			return got
		}
		got = append(got, m.GetData()...)
	}
}
