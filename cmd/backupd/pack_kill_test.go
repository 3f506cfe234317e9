package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"backupstore/internal/testenv"
	pb "backupstore/proto/backupstore/v1"
)

// TestPackKilledBeforeCommit kills a real backupd (BACKUPD_TEST_CRASH_AT) when a pack of small
// files is in the bucket and its transaction has not run: the upload is not answered OK, the
// restarted server takes the resend of the same upload id into a new pack, the file reads back,
// and garbage collection deletes the orphan pack once it is past --gc-grace.
func TestPackKilledBeforeCommit(t *testing.T) {
	gw := testenv.VersityGW(t)
	bucket := gw.NewBucket(t)
	dir := t.TempDir()
	addr := freeAddr(t)
	args := []string{"--data-dir", dir, "--log-level", "warn", "--cleanup-interval", "0", "--gc-grace", "1s"}
	child := startChildEnv(t, addr, []string{"BACKUPD_TEST_CRASH_AT=before-pack-commit"}, args...)
	c := dial(t, addr)
	sid := register(t, c, gw, bucket)
	ctx := context.Background()
	b, err := c.backups.CreateBackup(ctx, &pb.CreateBackupRequest{OrgId: "00D000000000001", StorageId: sid})
	if err != nil {
		t.Fatal(err)
	}
	body := bytes.Repeat([]byte("small attachment "), 100)
	sum := sha256.Sum256(body)
	size := int64(len(body))
	uid := uuid.NewString()
	send := func() (*pb.UploadFileResponse, error) {
		st, err := c.backups.UploadFile(ctx)
		if err != nil {
			return nil, err
		}
		st.Send(&pb.UploadFileRequest{Message: &pb.UploadFileRequest_Header{Header: &pb.FileHeader{BackupId: b.Backup.Id,
			ParentId: "001000000000001AAA", Path: "files/a.txt", UploadId: uid, DeclaredSize: &size,
			DeclaredSha256: hex.EncodeToString(sum[:])}}})
		st.Send(&pb.UploadFileRequest{Message: &pb.UploadFileRequest_Data{Data: body}})
		st.Send(&pb.UploadFileRequest{Message: &pb.UploadFileRequest_Finish{Finish: &pb.FinishWrite{}}})
		return st.CloseAndRecv()
	}
	if _, err := send(); status.Code(err) != codes.Unavailable {
		t.Fatalf("upload should have died with backupd before its pack committed: %v", err)
	}
	child.Wait()
	packs := func() []string { return packKeys(t, gw, bucket) }
	orphans := packs()
	if len(orphans) != 1 {
		t.Fatalf("packs in the bucket after the kill: %v, want the one orphan", orphans)
	}
	startChild(t, addr, args...)
	r, err := send()
	if err != nil {
		t.Fatalf("resend after the restart: %v", err)
	}
	if r.Result.DataKey == orphans[0] || !strings.Contains(r.Result.DataKey, "/packs/") {
		t.Fatalf("resend stored at %s; want a new pack, not the orphan %s", r.Result.DataKey, orphans[0])
	}
	if _, err := c.backups.CommitBackup(ctx, &pb.CommitBackupRequest{BackupId: b.Backup.Id}); err != nil {
		t.Fatal(err)
	}
	got := readFile(t, c, b.Backup.Id, r.Result.FileId)
	if !bytes.Equal(got, body) {
		t.Fatal("the resent file reads back different")
	}
	// Garbage collection owns the orphan once it is older than --gc-grace.
	deadline := time.Now().Add(15 * time.Second)
	for slices.Contains(packs(), orphans[0]) {
		if time.Now().After(deadline) {
			t.Fatalf("the orphan pack %s survived cleanup past its grace period", orphans[0])
		}
		if _, err := c.maintain.RunCleanup(ctx, &pb.RunCleanupRequest{}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if left := packs(); len(left) != 1 || left[0] != r.Result.DataKey {
		t.Fatalf("packs after cleanup: %v, want only %s", left, r.Result.DataKey)
	}
}

// packKeys lists the pack objects in bucket, straight from the gateway.
func packKeys(t *testing.T, gw *testenv.GW, bucket string) []string {
	t.Helper()
	out, err := gw.RootClient().ListObjectsV2(context.Background(), &s3.ListObjectsV2Input{Bucket: aws.String(bucket)})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, o := range out.Contents {
		if strings.Contains(*o.Key, "/packs/") {
			keys = append(keys, *o.Key)
		}
	}
	return keys
}
