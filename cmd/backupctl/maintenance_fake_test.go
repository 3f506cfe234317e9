package main

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pb "backupstore/proto/backupstore/v1"
)

// fakeMaintenance is an in-test MaintenanceService: it keeps retention
// policies the way the service documents them (an org's overrides the
// tenant's, a policy that keeps nothing is refused), pages through canned
// runs, and answers cleanup, verify and delete from canned responses. It
// tests the CLI, not the service.
type fakeMaintenance struct {
	pb.UnimplementedMaintenanceServiceServer

	// pageSize caps ListMaintenanceRuns pages, to exercise paging.
	pageSize int

	mu        sync.Mutex
	calls     []string
	requests  []proto.Message
	deadlines []time.Duration // time left before each call's deadline; 0 for none

	policies map[string]*pb.RetentionPolicy // org id ("" for the tenant) → policy
	runs     []*pb.MaintenanceRun           // newest first
	cleanup  *pb.RunCleanupResponse
	verify   map[string]*pb.VerifyBackupResponse // backup id → answer
	deleted  *pb.DeleteBackupResponse
	// busy makes cleanup, verify and delete answer Aborted, as when another
	// replica holds the maintenance lock.
	busy bool
}

func newFakeMaintenance() *fakeMaintenance {
	return &fakeMaintenance{pageSize: 3, policies: map[string]*pb.RetentionPolicy{}, verify: map[string]*pb.VerifyBackupResponse{}}
}

func startMaintenanceFake(t *testing.T, f *fakeMaintenance) string {
	return serveFake(t, func(srv *grpc.Server) { pb.RegisterMaintenanceServiceServer(srv, f) })
}

func (f *fakeMaintenance) record(ctx context.Context, method string, req proto.Message) {
	var left time.Duration
	if d, ok := ctx.Deadline(); ok {
		left = time.Until(d)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, method)
	f.requests = append(f.requests, proto.Clone(req))
	f.deadlines = append(f.deadlines, left)
}

func (f *fakeMaintenance) snapshot() (calls []string, reqs []proto.Message, deadlines []time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls), slices.Clone(f.requests), slices.Clone(f.deadlines)
}

// lockErr is what the service answers while another replica runs
// maintenance.
func (f *fakeMaintenance) lockErr() error {
	f.mu.Lock()
	busy := f.busy
	f.mu.Unlock()
	if !busy {
		return nil
	}
	st, _ := status.New(codes.Aborted, "maintenance is running on another replica (or call); retry later").
		WithDetails(&errdetails.ErrorInfo{Reason: "MAINTENANCE_RUNNING", Domain: "backupstore.v1"})
	return st.Err()
}

func (f *fakeMaintenance) SetRetentionPolicy(ctx context.Context, req *pb.SetRetentionPolicyRequest) (*pb.SetRetentionPolicyResponse, error) {
	f.record(ctx, "SetRetentionPolicy", req)
	p := proto.CloneOf(req.GetPolicy())
	if p.GetKeepLast() == 0 && p.GetKeepDaily() == 0 && p.GetKeepWeekly() == 0 && p.GetKeepMonthly() == 0 &&
		p.GetKeepYearly() == 0 && p.GetKeepWithin().AsDuration() == 0 {
		return nil, status.Error(codes.InvalidArgument, "the policy keeps nothing")
	}
	p.UpdateTime = t0
	f.mu.Lock()
	f.policies[p.GetOrgId()] = p
	f.mu.Unlock()
	return &pb.SetRetentionPolicyResponse{Policy: p}, nil
}

func (f *fakeMaintenance) GetRetentionPolicy(ctx context.Context, req *pb.GetRetentionPolicyRequest) (*pb.GetRetentionPolicyResponse, error) {
	f.record(ctx, "GetRetentionPolicy", req)
	f.mu.Lock()
	defer f.mu.Unlock()
	if p, ok := f.policies[req.GetOrgId()]; ok {
		return &pb.GetRetentionPolicyResponse{Policy: p}, nil
	}
	if p, ok := f.policies[""]; ok {
		return &pb.GetRetentionPolicyResponse{Policy: p}, nil
	}
	st, _ := status.New(codes.NotFound, "no retention policy applies: every backup is kept").
		WithDetails(&errdetails.ErrorInfo{Reason: "NO_RETENTION_POLICY", Domain: "backupstore.v1"})
	return nil, st.Err()
}

func (f *fakeMaintenance) DeleteRetentionPolicy(ctx context.Context, req *pb.DeleteRetentionPolicyRequest) (*pb.DeleteRetentionPolicyResponse, error) {
	f.record(ctx, "DeleteRetentionPolicy", req)
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.policies[req.GetOrgId()]; !ok {
		return nil, status.Error(codes.NotFound, "no such retention policy")
	}
	delete(f.policies, req.GetOrgId())
	return &pb.DeleteRetentionPolicyResponse{}, nil
}

func (f *fakeMaintenance) DeleteBackup(ctx context.Context, req *pb.DeleteBackupRequest) (*pb.DeleteBackupResponse, error) {
	f.record(ctx, "DeleteBackup", req)
	if err := f.lockErr(); err != nil {
		return nil, err
	}
	switch req.GetBackupId() {
	case "bk-open":
		st, _ := status.New(codes.FailedPrecondition, "backup bk-open is OPEN: abort it (AbortBackup) instead").
			WithDetails(&errdetails.ErrorInfo{Reason: "BACKUP_OPEN", Domain: "backupstore.v1"})
		return nil, st.Err()
	case f.deleted.GetBackup().GetId():
		return f.deleted, nil
	}
	return nil, status.Errorf(codes.NotFound, "backup %q not found", req.GetBackupId())
}

func (f *fakeMaintenance) RunCleanup(ctx context.Context, req *pb.RunCleanupRequest) (*pb.RunCleanupResponse, error) {
	f.record(ctx, "RunCleanup", req)
	if err := f.lockErr(); err != nil {
		return nil, err
	}
	f.mu.Lock()
	resp := proto.CloneOf(f.cleanup)
	f.mu.Unlock()
	resp.DryRun = req.GetDryRun()
	return resp, nil
}

func (f *fakeMaintenance) VerifyBackup(ctx context.Context, req *pb.VerifyBackupRequest) (*pb.VerifyBackupResponse, error) {
	f.record(ctx, "VerifyBackup", req)
	if err := f.lockErr(); err != nil {
		return nil, err
	}
	resp, ok := f.verify[req.GetBackupId()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "backup %q not found", req.GetBackupId())
	}
	return resp, nil
}

func (f *fakeMaintenance) ListMaintenanceRuns(ctx context.Context, req *pb.ListMaintenanceRunsRequest) (*pb.ListMaintenanceRunsResponse, error) {
	f.record(ctx, "ListMaintenanceRuns", req)
	if req.GetPageSize() < 0 || req.GetPageSize() > 1000 {
		return nil, status.Error(codes.InvalidArgument, "page_size must be between 0 and 1000")
	}
	size := int(req.GetPageSize())
	if size == 0 || size > f.pageSize {
		size = f.pageSize
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	start := 0
	if tok := req.GetPageToken(); tok != "" {
		n, err := strconv.Atoi(tok)
		if err != nil || n < 0 || n > len(f.runs) {
			return nil, status.Error(codes.InvalidArgument, "bad page token")
		}
		start = n
	}
	end := min(start+size, len(f.runs))
	resp := &pb.ListMaintenanceRunsResponse{Runs: f.runs[start:end]}
	if end < len(f.runs) {
		resp.NextPageToken = strconv.Itoa(end)
	}
	return resp, nil
}
