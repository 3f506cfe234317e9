package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"backupstore/internal/testenv"
	pb "backupstore/proto/backupstore/v1"
)

// TestMain lets the test binary act as backupd in a child process, so a test
// can SIGKILL a real server process.
func TestMain(m *testing.M) {
	if os.Getenv("BACKUPD_TEST_CHILD") == "1" {
		if err := run(context.Background(), strings.Fields(os.Getenv("BACKUPD_TEST_ARGS")), os.Stderr, nil); err != nil {
			fmt.Fprintln(os.Stderr, "backupd:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func startChild(t *testing.T, addr string, args ...string) *exec.Cmd {
	t.Helper()
	return startChildEnv(t, addr, nil, args...)
}

// startChildEnv starts backupd (this test binary) as a child process with extra environment.
func startChildEnv(t *testing.T, addr string, env []string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(append(os.Environ(), env...), "BACKUPD_TEST_CHILD=1", "BACKUPD_TEST_ARGS="+strings.Join(append([]string{"--listen", addr, "--allow-endpoints", "127.0.0.1/32"}, args...), " "))
	var logs bytes.Buffer
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err == nil {
			c.Close()
			return cmd
		}
		if time.Now().After(deadline) {
			t.Fatalf("backupd child did not start: %s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestKillMidUploadAndResumeAfterRestart(t *testing.T) {
	gw := testenv.VersityGW(t)
	bucket := gw.NewBucket(t)
	dir := t.TempDir()
	addr := freeAddr(t)
	args := []string{"--data-dir", dir, "--part-size", "5MiB", "--log-level", "warn"}
	child := startChild(t, addr, args...)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx := context.Background()
	sc, bc := pb.NewStorageServiceClient(conn), pb.NewBackupServiceClient(conn)
	reg, err := sc.RegisterStorage(ctx, &pb.RegisterStorageRequest{Name: "s", Region: "us-east-1", Bucket: bucket,
		AccessKeyId: gw.RootKey, SecretAccessKey: gw.RootSecret, Endpoint: gw.Endpoint, PathStyle: true})
	if err != nil {
		t.Fatal(err)
	}
	cb, err := bc.CreateBackup(ctx, &pb.CreateBackupRequest{OrgId: "00D000000000001", StorageId: reg.Storage.Id})
	if err != nil {
		t.Fatal(err)
	}
	backup := cb.Backup.Id
	body := make([]byte, 31<<20+4321)
	rand.NewChaCha8([32]byte{7, 8}).Read(body)
	sum := sha256.Sum256(body)
	size := int64(len(body))
	uid := uuid.NewString()
	hdr := func(off int64) *pb.FileHeader {
		return &pb.FileHeader{BackupId: backup, ParentId: "001000000000001", Path: "files/big.bin", UploadId: uid,
			WriteOffset: off, DeclaredSize: &size, DeclaredSha256: hex.EncodeToString(sum[:])}
	}
	st, err := bc.UploadFile(ctx)
	if err != nil {
		t.Fatal(err)
	}
	st.Send(&pb.UploadFileRequest{Message: &pb.UploadFileRequest_Header{Header: hdr(0)}})
	for off := 0; off < 22<<20; off += 1 << 20 {
		st.Send(&pb.UploadFileRequest{Message: &pb.UploadFileRequest_Data{Data: body[off : off+1<<20]}})
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		q, err := bc.QueryUploadStatus(ctx, &pb.QueryUploadStatusRequest{BackupId: backup, UploadId: uid})
		if err == nil && q.Upload.CommittedSize >= 15<<20 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("upload made no progress: %v %v", q, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Kill the server mid-upload, the hard way.
	child.Process.Signal(syscall.SIGKILL)
	child.Wait()
	startChild(t, addr, args...)

	q, err := bc.QueryUploadStatus(ctx, &pb.QueryUploadStatusRequest{BackupId: backup, UploadId: uid})
	if err != nil {
		t.Fatalf("after restart: %v", err)
	}
	committed := q.Upload.CommittedSize
	if q.Upload.State != pb.UploadState_UPLOAD_STATE_PENDING || committed < 15<<20 || committed%(5<<20) != 0 {
		t.Fatalf("after restart: %v", q.Upload)
	}
	st, err = bc.UploadFile(ctx)
	if err != nil {
		t.Fatal(err)
	}
	st.Send(&pb.UploadFileRequest{Message: &pb.UploadFileRequest_Header{Header: hdr(committed)}})
	for off := committed; off < size; off += 1 << 20 {
		st.Send(&pb.UploadFileRequest{Message: &pb.UploadFileRequest_Data{Data: body[off:min(off+1<<20, size)]}})
	}
	st.Send(&pb.UploadFileRequest{Message: &pb.UploadFileRequest_Finish{Finish: &pb.FinishWrite{}}})
	res, err := st.CloseAndRecv()
	if err != nil {
		t.Fatalf("resume: %v", err)
	}
	out, err := gw.RootClient().GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(res.Result.DataKey)})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(out.Body)
	out.Body.Close()
	if !bytes.Equal(got, body) || res.Result.Sha256 != hex.EncodeToString(sum[:]) {
		t.Fatalf("resumed object differs (%d vs %d bytes)", len(got), len(body))
	}
	if _, err := bc.CommitBackup(ctx, &pb.CommitBackupRequest{BackupId: backup}); err != nil {
		t.Fatalf("commit: %v", err)
	}
}
