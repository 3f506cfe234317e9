package server_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"

	pb "backupstore/proto/backupstore/v1"
)

// dailyBackup makes one committed backup of the same small export at t:
// Account records that change a little every day and an attachment that
// never changes (deduplicated after the first backup).
func (e *env) dailyBackup(t *testing.T, sid string, at time.Time, day int, attachment []byte) (*pb.Backup, []byte) {
	t.Helper()
	e.setClock(at)
	ctx := as(tokenA)
	b := e.newBackup(t, sid)
	csv := accountCSV(0, 50+day, "\n")
	if _, err := e.sendRecords(ctx, &pb.RecordsHeader{BackupId: b.Id, Sobject: "Account"}, csv, 1000); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(attachment)
	size := int64(len(attachment))
	if _, err := e.sendFile(ctx, &pb.FileHeader{BackupId: b.Id, ParentId: sfid18("001", 1), Path: "logo.png", UploadId: uuid.NewString(),
		DeclaredSize: &size, DeclaredSha256: hex.EncodeToString(sum[:])}, attachment, 1<<20); err != nil {
		t.Fatal(err)
	}
	cr, err := e.backups.CommitBackup(ctx, &pb.CommitBackupRequest{BackupId: b.Id})
	if err != nil {
		t.Fatal(err)
	}
	return cr.Backup, csv
}

func TestRetentionDedupAndDeletion(t *testing.T) {
	forEachCatalog(t, func(t *testing.T, e *env) {
		ctx := as(tokenA)
		sid, bucket := e.registerRoot(t, "prod")
		attachment := bytes.Repeat([]byte("PNG"), 5000)
		start := time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC)
		var backups []*pb.Backup
		var csvs [][]byte
		for day := 0; day < 5; day++ {
			b, csv := e.dailyBackup(t, sid, start.AddDate(0, 0, day), day, attachment)
			backups, csvs = append(backups, b), append(csvs, csv)
		}
		e.setClock(start.AddDate(0, 0, 5))

		// No policy: everything is kept.
		_, err := e.maint.GetRetentionPolicy(ctx, &pb.GetRetentionPolicyRequest{})
		wantCode(t, err, codes.NotFound, "NO_RETENTION_POLICY")
		rep, err := e.maint.RunCleanup(ctx, &pb.RunCleanupRequest{})
		if err != nil || rep.BackupsExpired != 0 || rep.ObjectsDeleted != 0 {
			t.Fatalf("cleanup without a policy: %v %v", rep, err)
		}
		// An empty or bad policy is refused.
		_, err = e.maint.SetRetentionPolicy(ctx, &pb.SetRetentionPolicyRequest{Policy: &pb.RetentionPolicy{}})
		wantCode(t, err, codes.InvalidArgument, "INVALID_ARGUMENT")
		_, err = e.maint.SetRetentionPolicy(ctx, &pb.SetRetentionPolicyRequest{Policy: &pb.RetentionPolicy{KeepLast: -1}})
		wantCode(t, err, codes.InvalidArgument, "INVALID_ARGUMENT")

		// Keep the last two (org policy) — the tenant policy says keep one day, the org's wins.
		if _, err := e.maint.SetRetentionPolicy(ctx, &pb.SetRetentionPolicyRequest{Policy: &pb.RetentionPolicy{KeepDaily: 1}}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.maint.SetRetentionPolicy(ctx, &pb.SetRetentionPolicyRequest{Policy: &pb.RetentionPolicy{OrgId: org, KeepLast: 2, KeepWithin: durationpb.New(time.Hour)}}); err != nil {
			t.Fatal(err)
		}
		keysBefore := e.keys(t, bucket)
		dry, err := e.maint.RunCleanup(ctx, &pb.RunCleanupRequest{DryRun: true})
		if err != nil || dry.BackupsExpired != 3 || dry.ObjectsDeleted == 0 {
			t.Fatalf("dry run: %v %v", dry, err)
		}
		if after := e.keys(t, bucket); len(after) != len(keysBefore) {
			t.Fatal("dry run deleted objects")
		}
		rep, err = e.maint.RunCleanup(ctx, &pb.RunCleanupRequest{})
		if err != nil || rep.BackupsExpired != 3 {
			t.Fatalf("cleanup: %v %v", rep, err)
		}
		// Each expired backup had its own record data, index and manifest; the shared body stays.
		if rep.ObjectsDeleted != 9 {
			t.Fatalf("objects deleted %d, want 9 (3 backups × data, index, manifest)", rep.ObjectsDeleted)
		}
		for _, b := range backups[:3] {
			_, err := e.backups.GetBackup(ctx, &pb.GetBackupRequest{Id: b.Id})
			wantCode(t, err, codes.NotFound, "BACKUP_NOT_FOUND")
		}
		for i, b := range backups[3:] {
			got, _, err := e.readRecords(t, ctx, &pb.ReadRecordsRequest{BackupId: b.Id, Sobject: "Account"})
			if err != nil || !bytes.Equal(got, csvs[3+i]) {
				t.Fatalf("kept backup %s: %v", b.Id, err)
			}
			body, _, err := e.readFile(t, ctx, &pb.ReadFileRequest{BackupId: b.Id, Selector: &pb.ReadFileRequest_ParentId{ParentId: sfid18("001", 1)}})
			if err != nil || !bytes.Equal(body, attachment) {
				t.Fatalf("kept backup's shared attachment: %v", err)
			}
		}
		// A second cleanup finds nothing to do.
		rep, err = e.maint.RunCleanup(ctx, &pb.RunCleanupRequest{})
		if err != nil || rep.BackupsExpired != 0 || rep.ObjectsDeleted != 0 || rep.GarbageDeleted != 0 {
			t.Fatalf("second cleanup: %v %v", rep, err)
		}
		// Deleting the rest leaves nothing of the tenant in the bucket.
		for _, b := range backups[3:] {
			d, err := e.maint.DeleteBackup(ctx, &pb.DeleteBackupRequest{BackupId: b.Id})
			if err != nil {
				t.Fatalf("delete %s: %v", b.Id, err)
			}
			if d.ObjectsDeleted == 0 {
				t.Fatalf("delete %s removed nothing", b.Id)
			}
		}
		for _, k := range e.keys(t, bucket) {
			if strings.HasPrefix(k, "acme/") {
				t.Fatalf("left behind: %s", k)
			}
		}
		_, err = e.maint.DeleteBackup(ctx, &pb.DeleteBackupRequest{BackupId: backups[4].Id})
		wantCode(t, err, codes.NotFound, "BACKUP_NOT_FOUND")
		open := e.newBackup(t, sid)
		_, err = e.maint.DeleteBackup(ctx, &pb.DeleteBackupRequest{BackupId: open.Id})
		wantCode(t, err, codes.FailedPrecondition, "BACKUP_OPEN")
		runs, err := e.maint.ListMaintenanceRuns(ctx, &pb.ListMaintenanceRunsRequest{})
		if err != nil || len(runs.Runs) < 5 || runs.Runs[0].Replica != "test" || runs.Runs[0].Outcome != "ok" {
			t.Fatalf("runs: %v %v", runs, err)
		}
	})
}

func TestGarbageCollectionAndStaleUploads(t *testing.T) {
	e := newEnv(t, "sqlite")
	ctx := as(tokenA)
	sid, bucket := e.registerRoot(t, "prod")
	b, _ := e.dailyBackup(t, sid, time.Now(), 0, []byte("body"))
	put := func(key string) {
		if _, err := e.gw.RootClient().PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: strings.NewReader("stray")}); err != nil {
			t.Fatal(err)
		}
	}
	// Ages are set, not waited for: the test's grace period is 2 s, and a loaded machine can
	// take longer than that between a put and the cleanup.
	old := "acme/" + b.OrgId + "/files/obj-crashed-before-commit"
	put(old)
	e.gw.SetModTime(t, bucket, old, e.now().Add(-time.Hour))
	young := "acme/" + b.OrgId + "/files/obj-just-written"
	put(young)
	e.gw.SetModTime(t, bucket, young, e.now().Add(time.Hour))
	other := "globex/" + b.OrgId + "/files/not-ours"
	put(other)
	// An upload in progress: a big file half sent, multipart upload open.
	b2 := e.newBackup(t, sid)
	st, _ := e.backups.UploadFile(ctx)
	uid := uuid.NewString()
	st.Send(&pb.UploadFileRequest{Message: &pb.UploadFileRequest_Header{Header: &pb.FileHeader{BackupId: b2.Id, ParentId: sfid18("001", 1), Path: "big", UploadId: uid}}})
	big := bytes.Repeat([]byte{7}, 12<<20)
	for i := 0; i < 7; i++ {
		st.Send(&pb.UploadFileRequest{Message: &pb.UploadFileRequest_Data{Data: big[i<<20 : (i+1)<<20]}})
	}
	deadline := time.Now().Add(2 * time.Minute) // a bound for a hung server, not an ordering
	for {
		q, err := e.backups.QueryUploadStatus(ctx, &pb.QueryUploadStatusRequest{BackupId: b2.Id, UploadId: uid})
		if err == nil && q.Upload.CommittedSize > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("upload made no progress")
		}
		time.Sleep(20 * time.Millisecond)
	}
	dry, err := e.maint.RunCleanup(ctx, &pb.RunCleanupRequest{DryRun: true})
	if err != nil || dry.GarbageDeleted != 1 {
		t.Fatalf("dry run: %v %v", dry, err)
	}
	rep, err := e.maint.RunCleanup(ctx, &pb.RunCleanupRequest{})
	if err != nil || rep.GarbageDeleted != 1 || rep.UploadsAborted != 0 {
		t.Fatalf("cleanup: %v %v", rep, err)
	}
	keys := strings.Join(e.keys(t, bucket), "\n")
	if strings.Contains(keys, old) || !strings.Contains(keys, young) || !strings.Contains(keys, other) {
		t.Fatalf("garbage collection: keys now\n%s", keys)
	}
	// The upload in progress was not touched: it finishes.
	for i := 7; i < 12; i++ {
		st.Send(&pb.UploadFileRequest{Message: &pb.UploadFileRequest_Data{Data: big[i<<20 : (i+1)<<20]}})
	}
	st.Send(&pb.UploadFileRequest{Message: &pb.UploadFileRequest_Finish{Finish: &pb.FinishWrite{}}})
	if _, err := st.CloseAndRecv(); err != nil {
		t.Fatalf("upload in progress broken by cleanup: %v", err)
	}
	// A pending upload idle past its TTL (7 days by default) is aborted.
	st2, _ := e.backups.UploadFile(ctx)
	uid2 := uuid.NewString()
	st2.Send(&pb.UploadFileRequest{Message: &pb.UploadFileRequest_Header{Header: &pb.FileHeader{BackupId: b2.Id, ParentId: sfid18("001", 1), Path: "stale", UploadId: uid2}}})
	for i := 0; i < 6; i++ {
		st2.Send(&pb.UploadFileRequest{Message: &pb.UploadFileRequest_Data{Data: big[i<<20 : (i+1)<<20]}})
	}
	for {
		q, err := e.backups.QueryUploadStatus(ctx, &pb.QueryUploadStatusRequest{BackupId: b2.Id, UploadId: uid2})
		if err == nil && q.Upload.CommittedSize > 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Wait for the server to finish with the stream before moving the clock: a write it made
	// afterwards would stamp the upload 8 days later and keep it from looking stale.
	_, _ = st2.CloseAndRecv()
	e.setClock(time.Now().Add(8 * 24 * time.Hour))
	rep, err = e.maint.RunCleanup(ctx, &pb.RunCleanupRequest{})
	if err != nil || rep.UploadsAborted != 1 {
		t.Fatalf("stale upload: %v %v", rep, err)
	}
	q, _ := e.backups.QueryUploadStatus(ctx, &pb.QueryUploadStatusRequest{BackupId: b2.Id, UploadId: uid2})
	if q.GetUpload().GetState() != pb.UploadState_UPLOAD_STATE_FAILED {
		t.Fatalf("stale upload state %v", q.GetUpload().GetState())
	}
}

func TestVerifyFindsMissingCorruptAndDangling(t *testing.T) {
	e := newEnv(t, "mysql")
	ctx := as(tokenA)
	sid, bucket := e.registerRoot(t, "prod")
	b := e.newBackup(t, sid)
	acc, err := e.sendRecords(ctx, &pb.RecordsHeader{BackupId: b.Id, Sobject: "Account"}, accountCSV(0, 20, "\n"), 100)
	if err != nil {
		t.Fatal(err)
	}
	contacts := "Id,AccountId\n" + sfid18("003", 1) + "," + sfid18("001", 5) + "\n" + sfid18("003", 2) + "," + sfid18("001", 777) + "\n"
	if _, err := e.sendRecords(ctx, &pb.RecordsHeader{BackupId: b.Id, Sobject: "Contact", References: []*pb.ReferenceField{{Field: "AccountId", Target: "Account"}}}, []byte(contacts), 100); err != nil {
		t.Fatal(err)
	}
	f1, _ := e.sendFile(ctx, &pb.FileHeader{BackupId: b.Id, ParentId: sfid18("001", 1), Path: "a", UploadId: uuid.NewString()}, []byte("first body"), 100)
	f2, _ := e.sendFile(ctx, &pb.FileHeader{BackupId: b.Id, ParentId: sfid18("001", 2), Path: "b", UploadId: uuid.NewString()}, []byte("second body"), 100)
	if _, err := e.backups.CommitBackup(ctx, &pb.CommitBackupRequest{BackupId: b.Id}); err != nil {
		t.Fatal(err)
	}
	clean, err := e.maint.VerifyBackup(ctx, &pb.VerifyBackupRequest{BackupId: b.Id, ReadPercent: 100})
	if err != nil || len(clean.Problems) != 0 || clean.ObjectsChecked != 7 || clean.ObjectsRead != 7 {
		t.Fatalf("clean verify: %v %v", clean, err)
	}
	if len(clean.Dangling) != 1 || clean.Dangling[0].Count != 1 || clean.Dangling[0].Field != "AccountId" {
		t.Fatalf("dangling: %v", clean.Dangling)
	}
	root := e.gw.RootClient()
	root.DeleteObject(context.Background(), &s3.DeleteObjectInput{Bucket: aws.String(bucket), Key: aws.String(f1.Result.DataKey)})
	root.PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(f2.Result.DataKey), Body: strings.NewReader("SECOND BODY")})
	data := e.get(t, bucket, acc.Result.DataKey)
	data[len(data)-5] ^= 1
	root.PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(acc.Result.DataKey), Body: bytes.NewReader(data)})
	v, err := e.maint.VerifyBackup(ctx, &pb.VerifyBackupRequest{BackupId: b.Id, ReadPercent: 100})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, p := range v.Problems {
		got[p.Key] = p.Problem
	}
	want := map[string]string{f1.Result.DataKey: "missing", f2.Result.DataKey: "checksum", acc.Result.DataKey: "checksum"}
	if len(got) != len(want) {
		t.Fatalf("problems %v, want %v", got, want)
	}
	for k, p := range want {
		if got[k] != p {
			t.Fatalf("problems %v, want %v", got, want)
		}
	}
	if !v.Backup.Damaged {
		t.Fatal("backup not flagged damaged")
	}
	// Without reading back, HEAD still finds the missing object.
	h, err := e.maint.VerifyBackup(ctx, &pb.VerifyBackupRequest{BackupId: b.Id})
	if err != nil || len(h.Problems) != 1 || h.ObjectsRead != 0 {
		t.Fatalf("head-only verify: %v %v", h, err)
	}
}
