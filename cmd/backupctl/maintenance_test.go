package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "backupstore/proto/backupstore/v1"
)

func TestParseRetentionDuration(t *testing.T) {
	const day = 24 * time.Hour
	tests := []struct {
		in   string
		want time.Duration
		bad  bool
	}{
		{in: "30d", want: 720 * time.Hour},
		{in: "12w", want: 12 * 7 * day},
		{in: "1y", want: 8760 * time.Hour},
		{in: "1y6w", want: 365*day + 42*day},
		{in: "2d12h", want: 60 * time.Hour},
		{in: "1.5d", want: 36 * time.Hour},
		{in: "36h", want: 36 * time.Hour},
		{in: "90m", want: 90 * time.Minute},
		{in: "1h30m15s", want: time.Hour + 30*time.Minute + 15*time.Second},
		{in: "0", want: 0},
		{in: "0d", want: 0},
		{in: "", bad: true},
		{in: "30", bad: true},
		{in: "d", bad: true},
		{in: "30days", bad: true},
		{in: "1mo", bad: true},
		{in: "-1d", bad: true},
		{in: "1..5d", bad: true},
		{in: "300y", bad: true}, // beyond a time.Duration
		{in: "99999999999999999999d", bad: true},
		{in: "1 d", bad: true},
	}
	for _, tt := range tests {
		got, err := parseRetentionDuration(tt.in)
		switch {
		case tt.bad && err == nil:
			t.Errorf("%q: got %v, want an error", tt.in, got)
		case !tt.bad && err != nil:
			t.Errorf("%q: %v", tt.in, err)
		case !tt.bad && got != tt.want:
			t.Errorf("%q = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestRetention(t *testing.T) {
	f := newFakeMaintenance()
	addr := startMaintenanceFake(t, f)
	cli := func(args ...string) result {
		t.Helper()
		return runCLI(t, "", append([]string{"--server", addr, "retention"}, args...)...)
	}

	// No policy yet: get says everything is kept, exit 3.
	r := cli("get")
	if r.code != exitNotFound || r.stdout != "" ||
		r.stderr != "backupctl: NotFound: no retention policy applies: every backup is kept [NO_RETENTION_POLICY]\n" {
		t.Errorf("get without a policy: %v", r)
	}
	r = cli("get", "-o", "json")
	var jerr map[string]map[string]any
	if r.code != exitNotFound || json.Unmarshal([]byte(r.stderr), &jerr) != nil || jerr["error"]["code"] != "NotFound" {
		t.Errorf("get -o json without a policy: stderr must be one JSON object: %v", r)
	}

	r = cli("set", "--keep-last", "5", "--keep-daily", "7", "--keep-weekly", "4", "--keep-monthly", "12", "--keep-yearly", "3", "--keep-within", "30d")
	if r.code != 0 {
		t.Fatalf("set: %v", r)
	}
	for _, s := range []string{"Org:", "(tenant default)", "Keep last:", "Keep monthly:", "12", "Keep within:", "30d (720h0m0s)", "2026-03-01T12:00:00Z"} {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("set: stdout lacks %q:\n%s", s, r.stdout)
		}
	}
	_, reqs, _ := f.snapshot()
	want := &pb.SetRetentionPolicyRequest{Policy: &pb.RetentionPolicy{
		KeepLast: 5, KeepDaily: 7, KeepWeekly: 4, KeepMonthly: 12, KeepYearly: 3,
		KeepWithin: durationpb.New(720 * time.Hour),
	}}
	assertProtoEqual(t, want, reqs[len(reqs)-1])

	r = cli("set", "--org", testOrg, "--keep-within=1y", "-o", "json")
	var set pb.SetRetentionPolicyResponse
	if err := protojson.Unmarshal([]byte(r.stdout), &set); r.code != 0 || err != nil {
		t.Fatalf("set --org -o json: %v", r)
	}
	if set.GetPolicy().GetOrgId() != testOrg || set.GetPolicy().GetKeepWithin().AsDuration() != 8760*time.Hour || set.GetPolicy().GetKeepLast() != 0 {
		t.Errorf("set --org: %v", &set)
	}
	if !strings.Contains(r.stdout, `"keepWithin": "31536000s"`) {
		t.Errorf("keepWithin not in the protojson form:\n%s", r.stdout)
	}

	r = cli("get", "--org", testOrg)
	if r.code != 0 || !strings.Contains(r.stdout, testOrg) || !strings.Contains(r.stdout, "365d (8760h0m0s)") || r.stderr != "" {
		t.Errorf("get --org: %v", r)
	}
	r = cli("get", "--org", "00D000000000002")
	if r.code != 0 || !strings.Contains(r.stdout, "(tenant default)") || !strings.Contains(r.stderr, "org 00D000000000002 has no policy of its own") {
		t.Errorf("get --org falling back to the tenant's: %v", r)
	}
	r = cli("get", "-o", "json")
	var got pb.GetRetentionPolicyResponse
	if err := protojson.Unmarshal([]byte(r.stdout), &got); r.code != 0 || err != nil || got.GetPolicy().GetKeepDaily() != 7 {
		t.Errorf("get -o json: %v", r)
	}

	r = cli("delete", "--org", testOrg)
	if r.code != 0 || !strings.Contains(r.stdout, "Deleted the retention policy of org "+testOrg) {
		t.Errorf("delete --org: %v", r)
	}
	r = cli("delete", "--org", testOrg)
	if r.code != exitNotFound {
		t.Errorf("delete again: %v", r)
	}
	r = cli("delete", "-o", "json")
	if r.code != 0 || strings.TrimSpace(r.stdout) != "{}" {
		t.Errorf("delete -o json: %v", r)
	}

	calls, _, _ := f.snapshot()
	before := len(calls)
	for _, args := range [][]string{
		{"set"},
		{"set", "--org", testOrg},
		{"set", "--keep-last", "0", "--keep-within", "0"},
		{"set", "--keep-last", "-1"},
		{"set", "--keep-last", "many"},
		{"set", "--keep-last", "3000000000"},
		{"set", "--keep-within", "30"},
		{"set", "--keep-within", "1mo"},
		{"set", "--keep-within", "-30d"},
		{"set", "--keep-last", "1", "extra"},
		{"get", "extra"},
		{"delete", "extra"},
		{"nope"},
		{},
	} {
		r := cli(args...)
		if r.code != exitUsage || r.stdout != "" || !strings.Contains(r.stderr, "-h' for usage") {
			t.Errorf("%v: want exit 2 with the hint: %v", args, r)
		}
	}
	if calls, _, _ := f.snapshot(); len(calls) != before {
		t.Errorf("usage errors sent %v", calls[before:])
	}
}

func sampleCleanup() *pb.RunCleanupResponse {
	return &pb.RunCleanupResponse{
		RunId:          "run-1",
		BackupsExpired: 1,
		ObjectsDeleted: 2,
		BytesFreed:     5 << 20,
		GarbageDeleted: 1,
		UploadsAborted: 2,
		Skipped:        1,
		Items: []*pb.CleanupItem{
			{Action: "expire", BackupId: "bk-old", Bytes: 4 << 20, Reason: "not kept by the retention policy"},
			{Action: "delete", BackupId: "bk-old", Key: "t/bk-old/records/Account/0.csv.zst", Bytes: 1 << 20, Reason: "only this backup references it"},
			{Action: "garbage", Key: "t/bk-gone/x", Bytes: 100, Reason: "no catalog row and older than the grace period"},
			{Action: "abort", BackupId: "bk-open", UploadId: "up-1", Bytes: 0, Reason: "pending and idle since 2026-02-01T00:00:00Z"},
			{Action: "abort", BackupId: "bk-open", UploadId: "up-2", S3UploadId: "s3-xyz", Reason: "AbortMultipartUpload denied"},
			{Action: "skip", Key: "t/new", Bytes: 7, Reason: "no catalog row, but younger than the grace period"},
		},
	}
}

func TestCleanup(t *testing.T) {
	f := newFakeMaintenance()
	f.cleanup = sampleCleanup()
	addr := startMaintenanceFake(t, f)

	r := runCLI(t, "", "--server", addr, "cleanup")
	if r.code != 0 {
		t.Fatalf("%v", r)
	}
	lines := strings.Split(r.stdout, "\n")
	if !strings.HasPrefix(lines[0], "ACTION ") || !strings.Contains(lines[0], "KEY/UPLOAD") || !strings.Contains(lines[0], "REASON") {
		t.Errorf("header: %q", lines[0])
	}
	for _, s := range []string{
		"expire", "bk-old", "4.0 MiB", "not kept by the retention policy",
		"t/bk-old/records/Account/0.csv.zst", "garbage", "up-1", "up-2 (S3 upload s3-xyz)", "skip",
		"Run:", "run-1", "Dry run:", "Backups expired:", "Bytes freed:", "5242880 (5.0 MiB)", "Uploads aborted:", "Skipped:",
	} {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("stdout lacks %q:\n%s", s, r.stdout)
		}
	}
	if strings.Contains(r.stderr, "Dry run") {
		t.Errorf("not a dry run: %v", r)
	}

	// --dry-run after the verb, global flags after it too.
	r = runCLI(t, "", "cleanup", "--dry-run", "--server", addr)
	if r.code != 0 || !strings.Contains(r.stderr, "Dry run: nothing was changed") || !strings.Contains(r.stdout, "Dry run:          yes") {
		t.Errorf("cleanup --dry-run: %v", r)
	}
	_, reqs, _ := f.snapshot()
	assertProtoEqual(t, &pb.RunCleanupRequest{DryRun: true}, reqs[len(reqs)-1])

	r = runCLI(t, "", "-o", "json", "cleanup", "--server", addr, "--dry-run")
	var got pb.RunCleanupResponse
	if err := protojson.Unmarshal([]byte(r.stdout), &got); r.code != 0 || err != nil {
		t.Fatalf("cleanup -o json: %v", r)
	}
	want := sampleCleanup()
	want.DryRun = true
	assertProtoEqual(t, want, &got)
	if r.stderr != "" {
		t.Errorf("-o json: stderr = %q", r.stderr)
	}

	// Nothing to do.
	f.mu.Lock()
	f.cleanup = &pb.RunCleanupResponse{RunId: "run-2"}
	f.mu.Unlock()
	r = runCLI(t, "", "--server", addr, "cleanup")
	if r.code != 0 || !strings.Contains(r.stderr, "Nothing to clean up.") || !strings.HasPrefix(r.stdout, "Run:") {
		t.Errorf("empty cleanup: %v", r)
	}

	// Another replica holds the lock: exit 5 and a clear message.
	f.mu.Lock()
	f.busy = true
	f.mu.Unlock()
	r = runCLI(t, "", "--server", addr, "cleanup")
	if r.code != exitRetryable || r.stdout != "" ||
		!strings.HasPrefix(r.stderr, "backupctl: Aborted: maintenance is running on another replica") ||
		!strings.Contains(r.stderr, "[MAINTENANCE_RUNNING]") ||
		!strings.Contains(r.stderr, "Another replica is running maintenance") || !strings.Contains(r.stderr, "nothing was done") {
		t.Errorf("cleanup while busy: %v", r)
	}
	r = runCLI(t, "", "--server", addr, "cleanup", "-o", "json")
	var jerr jsonError
	if r.code != exitRetryable || r.stdout != "" || json.Unmarshal([]byte(r.stderr), &jerr) != nil ||
		jerr.Error.Code != "Aborted" || jerr.Error.Reason != "MAINTENANCE_RUNNING" {
		t.Errorf("cleanup -o json while busy: stderr must be one JSON object: %v", r)
	}

	for _, args := range [][]string{{"cleanup", "now"}, {"cleanup", "--dry-run=maybe"}, {"cleanup", "--bogus"}, {"help", "cleanup", "x"}} {
		if r := runCLI(t, "", append(args, "--server", addr)...); r.code != exitUsage || !strings.Contains(r.stderr, "Run 'backupctl cleanup -h' for usage.") {
			t.Errorf("%v: want exit 2 with the hint: %v", args, r)
		}
	}
}

func TestVerify(t *testing.T) {
	f := newFakeMaintenance()
	committed := &pb.Backup{Id: "bk-clean", OrgId: testOrg, Status: pb.BackupStatus_BACKUP_STATUS_COMMITTED}
	dangling := []*pb.DanglingReference{
		{Sobject: "Contact", Field: "AccountId", Target: "Account", Count: 3},
		{Sobject: "Case", Field: "ContactId", Target: "Contact", Count: 2},
	}
	f.verify["bk-clean"] = &pb.VerifyBackupResponse{Backup: committed, ObjectsChecked: 12, ObjectsRead: 3, BytesRead: 4096}
	f.verify["bk-dangling"] = &pb.VerifyBackupResponse{Backup: &pb.Backup{Id: "bk-dangling", Status: pb.BackupStatus_BACKUP_STATUS_COMMITTED},
		ObjectsChecked: 5, Dangling: dangling}
	f.verify["bk-bad"] = &pb.VerifyBackupResponse{
		Backup:         &pb.Backup{Id: "bk-bad", OrgId: testOrg, Status: pb.BackupStatus_BACKUP_STATUS_COMMITTED, Damaged: true},
		ObjectsChecked: 12, ObjectsRead: 12, BytesRead: 1 << 20,
		Problems: []*pb.ObjectProblem{
			{Key: "t/bk-bad/records/Account/0.csv.zst", Problem: "missing", Detail: "HeadObject: NotFound"},
			{Key: "t/files/ab/abcdef", Problem: "checksum", Detail: "SHA-256 differs"},
		},
		Dangling: dangling[:1],
	}
	addr := startMaintenanceFake(t, f)

	r := runCLI(t, "", "--server", addr, "verify", "bk-clean", "--read-percent", "25")
	if r.code != 0 {
		t.Fatalf("clean verify: want exit 0: %v", r)
	}
	for _, s := range []string{"Backup:", "bk-clean", "COMMITTED", "Objects checked:", "12", "Objects read:", "Bytes read:", "4096 (4.0 KiB)", "Problems:", "Verification: OK"} {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("clean verify: stdout lacks %q:\n%s", s, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "KEY") || strings.Contains(r.stdout, "SOBJECT") {
		t.Errorf("clean verify printed empty tables:\n%s", r.stdout)
	}
	_, reqs, _ := f.snapshot()
	assertProtoEqual(t, &pb.VerifyBackupRequest{BackupId: "bk-clean", ReadPercent: 25}, reqs[len(reqs)-1])

	// Dangling references alone are reported, not an error.
	r = runCLI(t, "", "--server", addr, "verify", "bk-dangling")
	if r.code != 0 || !strings.Contains(r.stdout, "Dangling references (target record not in the backup; not an error):") ||
		!strings.Contains(r.stdout, "SOBJECT") || !strings.Contains(r.stdout, "AccountId") || !strings.Contains(r.stdout, "5 (2 fields)") ||
		!strings.Contains(r.stdout, "Verification: OK") {
		t.Errorf("verify with dangling references: %v", r)
	}

	// Object problems: the report, then exit 4.
	r = runCLI(t, "", "--server", addr, "verify", "bk-bad")
	if r.code != exitBadRequest {
		t.Fatalf("verify with problems: want exit 4: %v", r)
	}
	for _, s := range []string{"COMMITTED (damaged)", "Object problems:", "KEY", "PROBLEM", "DETAIL", "missing", "HeadObject: NotFound",
		"checksum", "t/files/ab/abcdef", "Dangling references", "Contact", "Verification: FAILED (2 objects"} {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("verify with problems: stdout lacks %q:\n%s", s, r.stdout)
		}
	}
	if !strings.HasPrefix(r.stderr, "backupctl: FailedPrecondition: backup bk-bad failed verification: 2 objects are missing or corrupt") ||
		!strings.Contains(r.stderr, "[BACKUP_DAMAGED]") {
		t.Errorf("verify with problems: stderr = %q", r.stderr)
	}

	r = runCLI(t, "", "--server", addr, "verify", "bk-bad", "-o", "json")
	var got pb.VerifyBackupResponse
	if err := protojson.Unmarshal([]byte(r.stdout), &got); r.code != exitBadRequest || err != nil {
		t.Fatalf("verify -o json with problems: %v", r)
	}
	assertProtoEqual(t, f.verify["bk-bad"], &got)
	var jerr jsonError
	if json.Unmarshal([]byte(r.stderr), &jerr) != nil || jerr.Error.Reason != "BACKUP_DAMAGED" {
		t.Errorf("verify -o json: stderr = %q", r.stderr)
	}
	r = runCLI(t, "", "--server", addr, "verify", "bk-clean", "-o", "json")
	if r.code != 0 || r.stderr != "" || !strings.Contains(r.stdout, `"objectsChecked": "12"`) {
		t.Errorf("clean verify -o json: %v", r)
	}

	if r := runCLI(t, "", "--server", addr, "verify", "nope"); r.code != exitNotFound {
		t.Errorf("verify unknown: %v", r)
	}
	f.mu.Lock()
	f.busy = true
	f.mu.Unlock()
	r = runCLI(t, "", "--server", addr, "verify", "bk-clean")
	if r.code != exitRetryable || r.stdout != "" || !strings.Contains(r.stderr, "Another replica is running maintenance") {
		t.Errorf("verify while busy: %v", r)
	}

	calls, _, _ := f.snapshot()
	for _, args := range [][]string{
		{"verify"}, {"verify", "a", "b"}, {"verify", ""}, {"verify", "bk-clean", "--read-percent", "101"},
		{"verify", "bk-clean", "--read-percent", "-1"}, {"verify", "bk-clean", "--read-percent", "half"},
	} {
		r := runCLI(t, "", append(args, "--server", addr)...)
		if r.code != exitUsage || r.stdout != "" || !strings.Contains(r.stderr, "Run 'backupctl verify -h' for usage.") {
			t.Errorf("%v: want exit 2 with the hint: %v", args, r)
		}
	}
	if after, _, _ := f.snapshot(); len(after) != len(calls) {
		t.Errorf("usage errors sent %v", after[len(calls):])
	}
}

func TestBackupDelete(t *testing.T) {
	f := newFakeMaintenance()
	f.deleted = &pb.DeleteBackupResponse{
		Backup:         &pb.Backup{Id: "bk-1", OrgId: testOrg, Status: pb.BackupStatus_BACKUP_STATUS_DELETING},
		ObjectsDeleted: 7,
		BytesFreed:     3 << 20,
	}
	addr := startMaintenanceFake(t, f)

	r := runCLI(t, "", "--server", addr, "backup", "delete", "bk-1")
	if r.code != 0 {
		t.Fatalf("%v", r)
	}
	for _, s := range []string{"bk-1", "DELETING", "Objects deleted: 7", "Bytes freed: 3145728 (3.0 MiB)"} {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("stdout lacks %q:\n%s", s, r.stdout)
		}
	}
	_, reqs, _ := f.snapshot()
	assertProtoEqual(t, &pb.DeleteBackupRequest{BackupId: "bk-1"}, reqs[0])

	r = runCLI(t, "", "--server", addr, "backup", "delete", "bk-1", "-o", "json")
	var got pb.DeleteBackupResponse
	if err := protojson.Unmarshal([]byte(r.stdout), &got); r.code != 0 || err != nil {
		t.Fatalf("-o json: %v", r)
	}
	assertProtoEqual(t, f.deleted, &got)

	r = runCLI(t, "", "--server", addr, "backup", "delete", "bk-open")
	if r.code != exitBadRequest || !strings.Contains(r.stderr, "[BACKUP_OPEN]") || strings.Contains(r.stderr, "Another replica") {
		t.Errorf("delete an open backup: %v", r)
	}
	if r := runCLI(t, "", "--server", addr, "backup", "delete", "nope"); r.code != exitNotFound {
		t.Errorf("delete unknown: %v", r)
	}
	f.mu.Lock()
	f.busy = true
	f.mu.Unlock()
	r = runCLI(t, "", "--server", addr, "backup", "delete", "bk-1")
	if r.code != exitRetryable || !strings.Contains(r.stderr, "Another replica is running maintenance") {
		t.Errorf("delete while busy: %v", r)
	}
	for _, args := range [][]string{{"backup", "delete"}, {"backup", "delete", "a", "b"}} {
		if r := runCLI(t, "", append(args, "--server", addr)...); r.code != exitUsage {
			t.Errorf("%v: want exit 2: %v", args, r)
		}
	}
}

func sampleRuns(n int) []*pb.MaintenanceRun {
	var out []*pb.MaintenanceRun
	for i := range n {
		start := t0.AsTime().Add(-time.Duration(i) * time.Hour)
		r := &pb.MaintenanceRun{
			RunId:     fmt.Sprintf("run-%02d", i),
			Kind:      []string{"cleanup", "verify", "delete"}[i%3],
			Replica:   "backupd-1:4242",
			StartTime: timestamppb.New(start),
			EndTime:   timestamppb.New(start.Add(90 * time.Second)),
			DryRun:    i%2 == 1,
			Outcome:   "ok",
			Message:   "expired 1 backups",
		}
		if i == 0 {
			r.EndTime, r.Outcome, r.Message = nil, "running", ""
		}
		out = append(out, r)
	}
	return out
}

func TestMaintenanceRuns(t *testing.T) {
	f := newFakeMaintenance()
	f.runs = sampleRuns(7)
	addr := startMaintenanceFake(t, f)

	r := runCLI(t, "", "--server", addr, "maintenance", "runs")
	if r.code != 0 {
		t.Fatalf("%v", r)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 8 || !strings.HasPrefix(lines[0], "RUN ID ") || !strings.Contains(lines[0], "OUTCOME") {
		t.Fatalf("want a header and 7 rows:\n%s", r.stdout)
	}
	for _, s := range []string{"run-00", "running", "run-06", "backupd-1:4242", "1m30s", "expired 1 backups", "2026-03-01T12:00:00Z"} {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("stdout lacks %q:\n%s", s, r.stdout)
		}
	}
	calls, _, _ := f.snapshot()
	if len(calls) != 3 {
		t.Errorf("calls = %v, want 3 pages", calls)
	}

	r = runCLI(t, "", "--server", addr, "maintenance", "runs", "--page-size", "2", "-o", "json")
	var got pb.ListMaintenanceRunsResponse
	if err := protojson.Unmarshal([]byte(r.stdout), &got); r.code != 0 || err != nil {
		t.Fatalf("-o json: %v", r)
	}
	assertProtoEqual(t, &pb.ListMaintenanceRunsResponse{Runs: f.runs}, &got)
	_, reqs, _ := f.snapshot()
	var tokens []string
	for _, req := range reqs[3:] {
		lr := req.(*pb.ListMaintenanceRunsRequest)
		if lr.GetPageSize() != 2 {
			t.Errorf("page_size = %d, want 2", lr.GetPageSize())
		}
		tokens = append(tokens, lr.GetPageToken())
	}
	if strings.Join(tokens, ",") != ",2,4,6" {
		t.Errorf("page tokens = %q", tokens)
	}

	r = runCLI(t, "", "--server", addr, "maintenance", "runs", "--all=false", "--page-token", "3")
	if r.code != 0 || !strings.Contains(r.stdout, "run-03") || strings.Contains(r.stdout, "run-06") || strings.Contains(r.stdout, "run-02") ||
		!strings.Contains(r.stderr, "More runs: add --page-token 6") {
		t.Errorf("one page: %v", r)
	}
	r = runCLI(t, "", "--server", addr, "maintenance", "runs", "--all=false", "-o", "json")
	if err := protojson.Unmarshal([]byte(r.stdout), &got); r.code != 0 || err != nil || len(got.GetRuns()) != 3 || got.GetNextPageToken() != "3" {
		t.Errorf("one page -o json: %v", r)
	}

	f.mu.Lock()
	f.runs = nil
	f.mu.Unlock()
	r = runCLI(t, "", "--server", addr, "maintenance", "runs")
	if r.code != 0 || r.stdout != "" || !strings.Contains(r.stderr, "No maintenance runs.") {
		t.Errorf("no runs: %v", r)
	}

	for _, args := range [][]string{
		{"maintenance"}, {"maintenance", "nope"}, {"maintenance", "runs", "x"},
		{"maintenance", "runs", "--page-size", "1001"}, {"maintenance", "runs", "--page-size", "-1"},
	} {
		if r := runCLI(t, "", append(args, "--server", addr)...); r.code != exitUsage || !strings.Contains(r.stderr, "-h' for usage") {
			t.Errorf("%v: want exit 2: %v", args, r)
		}
	}
}

func TestMaintenanceHelp(t *testing.T) {
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"-h"}, []string{"retention", "cleanup", "verify", "maintenance", "backupctl [global flags] cleanup|verify [flags] [args]"}},
		{[]string{"retention", "-h"}, []string{"set", "get", "delete"}},
		{[]string{"retention", "set", "-h"}, []string{"Usage: backupctl retention set [--org ORG]", "--keep-within duration", "30d = 720h", "--keep-yearly N"}},
		{[]string{"help", "retention", "get"}, []string{"Usage: backupctl retention get [--org ORG]", "exit code is 3"}},
		{[]string{"cleanup", "-h"}, []string{"Usage: backupctl cleanup [--dry-run]", "--dry-run", "MAINTENANCE_RUNNING", "exit code is 5", "KEY/UPLOAD"}},
		{[]string{"help", "cleanup"}, []string{"Usage: backupctl cleanup [--dry-run]"}},
		{[]string{"verify", "--help"}, []string{"Usage: backupctl verify BACKUP_ID [--read-percent N]", "--read-percent percent", "BACKUP_DAMAGED", "0 when no object problem"}},
		{[]string{"maintenance", "runs", "-h"}, []string{"Usage: backupctl maintenance runs", "--page-size"}},
		{[]string{"backup", "-h"}, []string{"delete", "abort"}},
		{[]string{"help", "backup", "delete"}, []string{"Usage: backupctl backup delete ID", "DELETING", "BACKUP_OPEN"}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			r := runCLI(t, "", tt.args...)
			if r.code != 0 || r.stdout != "" {
				t.Fatalf("want exit 0 and usage on stderr: %v", r)
			}
			for _, s := range tt.want {
				if !strings.Contains(r.stderr, s) {
					t.Errorf("usage lacks %q:\n%s", s, r.stderr)
				}
			}
		})
	}
}

// TestHintedErrorKeepsStatus checks that advice added to an error changes
// neither its status nor its exit code.
func TestHintedErrorKeepsStatus(t *testing.T) {
	f := newFakeMaintenance()
	f.busy = true
	addr := startMaintenanceFake(t, f)
	r := runCLI(t, "", "--server", addr, "cleanup")
	if r.code != exitRetryable {
		t.Fatalf("%v", r)
	}
	first, _, _ := strings.Cut(r.stderr, "\n")
	if first != "backupctl: Aborted: maintenance is running on another replica (or call); retry later [MAINTENANCE_RUNNING]" {
		t.Errorf("first line = %q", first)
	}
}

// TestMaintenanceCallTimeout checks that cleanup, verify and backup delete
// are bounded by 30m unless --timeout is given, and the other maintenance
// calls by --timeout's default.
func TestMaintenanceCallTimeout(t *testing.T) {
	f := newFakeMaintenance()
	f.cleanup = sampleCleanup()
	f.verify["bk-1"] = &pb.VerifyBackupResponse{}
	f.deleted = &pb.DeleteBackupResponse{Backup: &pb.Backup{Id: "bk-1"}}
	f.policies[""] = &pb.RetentionPolicy{KeepLast: 1}
	addr := startMaintenanceFake(t, f)
	tests := []struct {
		args     []string
		min, max time.Duration
	}{
		{[]string{"cleanup"}, 29 * time.Minute, 30 * time.Minute},
		{[]string{"verify", "bk-1"}, 29 * time.Minute, 30 * time.Minute},
		{[]string{"backup", "delete", "bk-1"}, 29 * time.Minute, 30 * time.Minute},
		{[]string{"cleanup", "--timeout", "2m"}, time.Minute, 2 * time.Minute},
		{[]string{"--timeout", "1m", "verify", "bk-1"}, 50 * time.Second, time.Minute},
		{[]string{"cleanup", "--timeout", "0"}, 0, 0},
		{[]string{"retention", "get"}, 50 * time.Second, time.Minute},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			// No deadline of the test's own: runCLI's would cap the call's.
			var out, errOut strings.Builder
			if code := run(context.Background(), append(tt.args, "--server", addr), strings.NewReader(""), &out, &errOut); code != 0 {
				t.Fatalf("exit %d: %s", code, errOut.String())
			}
			_, _, deadlines := f.snapshot()
			if d := deadlines[len(deadlines)-1]; d < tt.min || d > tt.max {
				t.Errorf("deadline in %v, want %v to %v", d, tt.min, tt.max)
			}
		})
	}
}
