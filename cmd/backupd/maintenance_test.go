package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"backupstore/internal/testenv"
	pb "backupstore/proto/backupstore/v1"
)

type clients struct {
	conn     *grpc.ClientConn
	storage  pb.StorageServiceClient
	backups  pb.BackupServiceClient
	restore  pb.RestoreServiceClient
	maintain pb.MaintenanceServiceClient
}

func dial(t *testing.T, addr string) *clients {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &clients{conn: conn, storage: pb.NewStorageServiceClient(conn), backups: pb.NewBackupServiceClient(conn),
		restore: pb.NewRestoreServiceClient(conn), maintain: pb.NewMaintenanceServiceClient(conn)}
}

const testOrg = "00D000000000001"

// makeBackups commits n backups of one org, each with its own Account
// records and the same attachment (deduplicated after the first).
func makeBackups(t *testing.T, c *clients, storageID string, n int) ([]string, [][]byte, []byte) {
	t.Helper()
	ctx := context.Background()
	attachment := bytes.Repeat([]byte("shared body "), 3000)
	sum := sha256.Sum256(attachment)
	size := int64(len(attachment))
	var ids []string
	var csvs [][]byte
	for i := 0; i < n; i++ {
		cb, err := c.backups.CreateBackup(ctx, &pb.CreateBackupRequest{OrgId: testOrg, StorageId: storageID})
		if err != nil {
			t.Fatal(err)
		}
		id := cb.Backup.Id
		csv := []byte("Id,Name\n")
		for r := 0; r <= i+2; r++ {
			csv = append(csv, fmt.Sprintf("001%012d,\"Backup %d, row %d\"\n", r+1, i, r)...)
		}
		rs, _ := c.backups.UploadRecords(ctx)
		rs.Send(&pb.UploadRecordsRequest{Message: &pb.UploadRecordsRequest_Header{Header: &pb.RecordsHeader{BackupId: id, Sobject: "Account", UploadId: uuid.NewString()}}})
		rs.Send(&pb.UploadRecordsRequest{Message: &pb.UploadRecordsRequest_Data{Data: csv}})
		rs.Send(&pb.UploadRecordsRequest{Message: &pb.UploadRecordsRequest_Finish{Finish: &pb.FinishWrite{}}})
		if _, err := rs.CloseAndRecv(); err != nil {
			t.Fatal(err)
		}
		fs, _ := c.backups.UploadFile(ctx)
		fs.Send(&pb.UploadFileRequest{Message: &pb.UploadFileRequest_Header{Header: &pb.FileHeader{BackupId: id, ParentId: "001000000000001",
			Path: "logo.png", UploadId: uuid.NewString(), DeclaredSize: &size, DeclaredSha256: hex.EncodeToString(sum[:])}}})
		fs.Send(&pb.UploadFileRequest{Message: &pb.UploadFileRequest_Data{Data: attachment}})
		fs.Send(&pb.UploadFileRequest{Message: &pb.UploadFileRequest_Finish{Finish: &pb.FinishWrite{}}})
		if _, err := fs.CloseAndRecv(); err != nil {
			t.Fatal(err)
		}
		if _, err := c.backups.CommitBackup(ctx, &pb.CommitBackupRequest{BackupId: id}); err != nil {
			t.Fatal(err)
		}
		ids, csvs = append(ids, id), append(csvs, csv)
	}
	return ids, csvs, attachment
}

// checkKept asserts the kept backup restores byte for byte and the expired
// ones are gone from the catalog and the bucket.
func checkKept(t *testing.T, c *clients, gw *testenv.GW, bucket, kept string, csv, attachment []byte, expired []string) {
	t.Helper()
	ctx := context.Background()
	rr, err := c.restore.ReadRecords(ctx, &pb.ReadRecordsRequest{BackupId: kept, Sobject: "Account"})
	if err != nil {
		t.Fatal(err)
	}
	var got []byte
	for {
		m, err := rr.Recv()
		if err == io.EOF {
			t.Fatal("no summary")
		}
		if err != nil {
			t.Fatalf("restore kept backup: %v", err)
		}
		if m.GetSummary() != nil {
			break
		}
		got = append(got, m.GetData()...)
	}
	if !bytes.Equal(got, csv) {
		t.Fatal("kept backup's records differ")
	}
	rf, err := c.restore.ReadFile(ctx, &pb.ReadFileRequest{BackupId: kept, Selector: &pb.ReadFileRequest_ParentId{ParentId: "001000000000001"}})
	if err != nil {
		t.Fatal(err)
	}
	got = nil
	for {
		m, err := rf.Recv()
		if err != nil {
			t.Fatalf("restore kept attachment: %v", err)
		}
		if m.GetSummary() != nil {
			break
		}
		got = append(got, m.GetData()...)
	}
	if !bytes.Equal(got, attachment) {
		t.Fatal("kept backup's attachment differs")
	}
	out, err := gw.RootClient().ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(bucket)})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range out.Contents {
		for _, id := range expired {
			if strings.Contains(*o.Key, id) {
				t.Errorf("object of expired backup %s left: %s", id, *o.Key)
			}
		}
	}
	for _, id := range expired {
		if _, err := c.backups.GetBackup(ctx, &pb.GetBackupRequest{Id: id}); status.Code(err) != codes.NotFound {
			t.Errorf("expired backup %s: %v", id, err)
		}
	}
}

func register(t *testing.T, c *clients, gw *testenv.GW, bucket string) string {
	t.Helper()
	reg, err := c.storage.RegisterStorage(context.Background(), &pb.RegisterStorageRequest{Name: "s", Region: "us-east-1", Bucket: bucket,
		AccessKeyId: gw.RootKey, SecretAccessKey: gw.RootSecret, Endpoint: gw.Endpoint, PathStyle: true})
	if err != nil {
		t.Fatal(err)
	}
	return reg.Storage.Id
}

// TestCleanupKilledAtEveryStepFinishesOnRerun kills backupd (SIGKILL-like
// exit via a fault-injection hook: a real server cannot be made to die at an
// exact step otherwise) during the deletion of expired backups, restarts it
// and runs cleanup again.
func TestCleanupKilledAtEveryStepFinishesOnRerun(t *testing.T) {
	gw := testenv.VersityGW(t)
	for _, point := range []string{"after-mark", "after-objects", "after-purge"} {
		t.Run(point, func(t *testing.T) {
			bucket := gw.NewBucket(t)
			dir := t.TempDir()
			addr := freeAddr(t)
			args := []string{"--data-dir", dir, "--log-level", "warn", "--cleanup-interval", "0"}
			child := startChildEnv(t, addr, []string{"BACKUPD_TEST_CRASH_AT=" + point}, args...)
			c := dial(t, addr)
			sid := register(t, c, gw, bucket)
			ids, csvs, attachment := makeBackups(t, c, sid, 3)
			ctx := context.Background()
			if _, err := c.maintain.SetRetentionPolicy(ctx, &pb.SetRetentionPolicyRequest{Policy: &pb.RetentionPolicy{KeepLast: 1}}); err != nil {
				t.Fatal(err)
			}
			if _, err := c.maintain.RunCleanup(ctx, &pb.RunCleanupRequest{}); status.Code(err) != codes.Unavailable {
				t.Fatalf("cleanup should have died at %s: %v", point, err)
			}
			child.Wait()
			startChild(t, addr, args...)
			rep, err := c.maintain.RunCleanup(ctx, &pb.RunCleanupRequest{})
			if err != nil {
				t.Fatalf("rerun: %v", err)
			}
			if rep.BackupsExpired+int64(len(rep.Items)) == 0 {
				t.Fatalf("rerun did nothing: %v", rep)
			}
			checkKept(t, c, gw, bucket, ids[2], csvs[2], attachment, ids[:2])
			runs, err := c.maintain.ListMaintenanceRuns(ctx, &pb.ListMaintenanceRunsRequest{})
			if err != nil || len(runs.Runs) < 2 || runs.Runs[0].Outcome != "ok" || runs.Runs[1].Outcome != "running" {
				t.Fatalf("runs: %v %v (the killed run stays 'running')", runs, err)
			}
		})
	}
}

func TestTwoReplicasCleanupAtOnce(t *testing.T) {
	gw := testenv.VersityGW(t)
	bucket := gw.NewBucket(t)
	dsn := testenv.MySQLDSN(t)
	key := filepath.Join(t.TempDir(), "master.key")
	os.WriteFile(key, []byte("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n"), 0o600)
	var addrs []string
	var cs []*clients
	for i := 0; i < 2; i++ {
		addr := freeAddr(t)
		startChild(t, addr, "--data-dir", t.TempDir(), "--mysql-dsn", dsn, "--master-key-file", key, "--log-level", "warn", "--cleanup-interval", "0")
		addrs = append(addrs, addr)
		cs = append(cs, dial(t, addr))
	}
	sid := register(t, cs[0], gw, bucket)
	ids, csvs, attachment := makeBackups(t, cs[1], sid, 4) // written through the other replica
	ctx := context.Background()
	if _, err := cs[0].maintain.SetRetentionPolicy(ctx, &pb.SetRetentionPolicyRequest{Policy: &pb.RetentionPolicy{KeepLast: 1}}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	reps := make([]*pb.RunCleanupResponse, 2)
	errs := make([]error, 2)
	start := make(chan struct{})
	for i := range cs {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			<-start
			reps[i], errs[i] = cs[i].maintain.RunCleanup(ctx, &pb.RunCleanupRequest{})
		}(i)
	}
	close(start)
	wg.Wait()
	var expired, deleted int64
	for i := range cs {
		switch {
		case errs[i] == nil:
			expired += reps[i].BackupsExpired
			deleted += reps[i].ObjectsDeleted
		case status.Code(errs[i]) == codes.Aborted:
			// the other replica held the maintenance lock
		default:
			t.Fatalf("replica %d: %v", i, errs[i])
		}
	}
	if expired != 3 || deleted != 9 {
		t.Fatalf("across both replicas: %d backups expired, %d objects deleted; want 3 and 9 (each once)", expired, deleted)
	}
	checkKept(t, cs[0], gw, bucket, ids[3], csvs[3], attachment, ids[:3])
}
