package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "backupstore/proto/backupstore/v1"
)

// TestMain keeps the developer's environment out of the tests.
func TestMain(m *testing.M) {
	for _, k := range []string{"BACKUPCTL_SERVER", "BACKUPCTL_TOKEN", envSecret} {
		os.Unsetenv(k)
	}
	os.Exit(m.Run())
}

// fakeStorage is an in-test StorageService: it records what the CLI sent and
// answers from canned data. It tests the CLI, not the service.
type fakeStorage struct {
	pb.UnimplementedStorageServiceServer

	mu       sync.Mutex
	calls    []string      // method names, in order
	md       []metadata.MD // incoming metadata per call
	requests []proto.Message

	storages  []*pb.Storage // sorted by name; ListStorages pages through them
	report    *pb.ValidationReport
	policy    *pb.GetIamPolicyResponse
	err       error // when set, every call fails with it
	block     bool  // when set, every call waits for its context to end
	loopToken bool  // when set, ListStorages always answers next_page_token "again"
}

func (f *fakeStorage) record(ctx context.Context, method string, req proto.Message) error {
	md, _ := metadata.FromIncomingContext(ctx)
	f.mu.Lock()
	f.calls = append(f.calls, method)
	f.md = append(f.md, md)
	f.requests = append(f.requests, proto.Clone(req))
	block, err := f.block, f.err
	f.mu.Unlock()
	if block {
		<-ctx.Done()
		return status.FromContextError(ctx.Err()).Err()
	}
	return err
}

func (f *fakeStorage) snapshot() (calls []string, md []metadata.MD, reqs []proto.Message) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls), slices.Clone(f.md), slices.Clone(f.requests)
}

func (f *fakeStorage) find(id string) (*pb.Storage, error) {
	for _, s := range f.storages {
		if s.GetId() == id {
			return s, nil
		}
	}
	return nil, status.Errorf(codes.NotFound, "storage %s not found", id)
}

func (f *fakeStorage) RegisterStorage(ctx context.Context, req *pb.RegisterStorageRequest) (*pb.RegisterStorageResponse, error) {
	if err := f.record(ctx, "RegisterStorage", req); err != nil {
		return nil, err
	}
	return &pb.RegisterStorageResponse{
		Storage: &pb.Storage{
			Id: "st-new", Name: req.GetName(), Region: req.GetRegion(), Bucket: req.GetBucket(),
			AccessKeyId: req.GetAccessKeyId(), Endpoint: req.GetEndpoint(), PathStyle: req.GetPathStyle(),
			Prefix: req.GetPrefix(), KmsKeyId: req.GetKmsKeyId(), IsDefault: req.GetMakeDefault(),
			Status: pb.StorageStatus_STORAGE_STATUS_AVAILABLE, LastReport: f.report,
		},
		Report: f.report,
	}, nil
}

func (f *fakeStorage) GetStorage(ctx context.Context, req *pb.GetStorageRequest) (*pb.GetStorageResponse, error) {
	if err := f.record(ctx, "GetStorage", req); err != nil {
		return nil, err
	}
	s, err := f.find(req.GetId())
	if err != nil {
		return nil, err
	}
	return &pb.GetStorageResponse{Storage: s}, nil
}

func (f *fakeStorage) ListStorages(ctx context.Context, req *pb.ListStoragesRequest) (*pb.ListStoragesResponse, error) {
	if err := f.record(ctx, "ListStorages", req); err != nil {
		return nil, err
	}
	size := int(req.GetPageSize())
	if size == 0 {
		size = 50
	}
	start := 0
	if tok := req.GetPageToken(); tok != "" {
		n, err := strconv.Atoi(tok)
		if err != nil && !f.loopToken {
			return nil, status.Error(codes.InvalidArgument, "bad page token")
		}
		start = n
	}
	end := min(start+size, len(f.storages))
	resp := &pb.ListStoragesResponse{Storages: f.storages[start:end]}
	if end < len(f.storages) {
		resp.NextPageToken = strconv.Itoa(end)
	}
	if f.loopToken {
		resp.NextPageToken = "again"
	}
	return resp, nil
}

func (f *fakeStorage) ValidateStorage(ctx context.Context, req *pb.ValidateStorageRequest) (*pb.ValidateStorageResponse, error) {
	if err := f.record(ctx, "ValidateStorage", req); err != nil {
		return nil, err
	}
	s, err := f.find(req.GetId())
	if err != nil {
		return nil, err
	}
	return &pb.ValidateStorageResponse{Storage: s, Report: f.report}, nil
}

func (f *fakeStorage) UpdateStorageCredentials(ctx context.Context, req *pb.UpdateStorageCredentialsRequest) (*pb.UpdateStorageCredentialsResponse, error) {
	if err := f.record(ctx, "UpdateStorageCredentials", req); err != nil {
		return nil, err
	}
	s, err := f.find(req.GetId())
	if err != nil {
		return nil, err
	}
	s = proto.CloneOf(s)
	s.AccessKeyId = req.GetAccessKeyId()
	return &pb.UpdateStorageCredentialsResponse{Storage: s, Report: f.report}, nil
}

func (f *fakeStorage) SetDefaultStorage(ctx context.Context, req *pb.SetDefaultStorageRequest) (*pb.SetDefaultStorageResponse, error) {
	if err := f.record(ctx, "SetDefaultStorage", req); err != nil {
		return nil, err
	}
	s, err := f.find(req.GetId())
	if err != nil {
		return nil, err
	}
	s = proto.CloneOf(s)
	s.IsDefault = true
	return &pb.SetDefaultStorageResponse{Storage: s}, nil
}

func (f *fakeStorage) DeleteStorage(ctx context.Context, req *pb.DeleteStorageRequest) (*pb.DeleteStorageResponse, error) {
	if err := f.record(ctx, "DeleteStorage", req); err != nil {
		return nil, err
	}
	if _, err := f.find(req.GetId()); err != nil {
		return nil, err
	}
	return &pb.DeleteStorageResponse{}, nil
}

func (f *fakeStorage) GetIamPolicy(ctx context.Context, req *pb.GetIamPolicyRequest) (*pb.GetIamPolicyResponse, error) {
	if err := f.record(ctx, "GetIamPolicy", req); err != nil {
		return nil, err
	}
	return f.policy, nil
}

// startFake serves f on a loopback port and returns its address.
func startFake(t *testing.T, f *fakeStorage) string {
	return serveFake(t, func(srv *grpc.Server) { pb.RegisterStorageServiceServer(srv, f) })
}

// serveFake serves what register registers on a loopback port (a server made with opts) and returns
// its address; the server stops when the test ends.
func serveFake(t *testing.T, register func(*grpc.Server), opts ...grpc.ServerOption) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(opts...)
	register(srv)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

// result is one CLI invocation's outcome.
type result struct {
	code           int
	stdout, stderr string
}

// runCLI runs backupctl in-process with args and stdin.
func runCLI(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var out, errOut bytes.Buffer
	code := run(ctx, args, strings.NewReader(stdin), &out, &errOut)
	return result{code: code, stdout: out.String(), stderr: errOut.String()}
}

func (r result) String() string {
	return "exit " + strconv.Itoa(r.code) + "\n--- stdout:\n" + r.stdout + "--- stderr:\n" + r.stderr
}

var (
	t0 = timestamppb.New(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))

	okReport = &pb.ValidationReport{
		Ok:           true,
		ValidateTime: t0,
		Probes: []*pb.ProbeResult{
			{Api: "GetBucketLocation", Outcome: pb.ProbeOutcome_PROBE_OUTCOME_OK},
			{Api: "PutObject", Outcome: pb.ProbeOutcome_PROBE_OUTCOME_OK},
			{Api: "AbortMultipartUpload", Outcome: pb.ProbeOutcome_PROBE_OUTCOME_WARNING, ErrorCode: "AccessDenied", Hint: "add s3:AbortMultipartUpload or a lifecycle rule"},
		},
	}
	failedReport = &pb.ValidationReport{
		Ok:           false,
		ValidateTime: t0,
		Probes: []*pb.ProbeResult{
			{Api: "GetBucketLocation", Outcome: pb.ProbeOutcome_PROBE_OUTCOME_OK},
			{Api: "PutObject", Outcome: pb.ProbeOutcome_PROBE_OUTCOME_FAILED, ErrorCode: "AccessDenied", Hint: "grant s3:PutObject on arn:aws:s3:::acme-backups/*"},
			{Api: "GetObject", Outcome: pb.ProbeOutcome_PROBE_OUTCOME_SKIPPED},
		},
	}
)

// sampleStorages returns n storages named st-0..; the second is the default.
func sampleStorages(n int) []*pb.Storage {
	var out []*pb.Storage
	for i := range n {
		s := &pb.Storage{
			Id:          "id-" + strconv.Itoa(i),
			Name:        "storage-" + strconv.Itoa(i),
			Region:      "eu-west-1",
			Bucket:      "bucket-" + strconv.Itoa(i),
			AccessKeyId: "AKIAEXAMPLE" + strconv.Itoa(i),
			Status:      pb.StorageStatus_STORAGE_STATUS_AVAILABLE,
			IsDefault:   i == 1,
			CreateTime:  t0,
			UpdateTime:  t0,
		}
		if i%2 == 0 {
			s.ValidateTime = t0
			s.LastReport = okReport
			s.Capabilities = &pb.StorageCapabilities{AbortMultipartUpload: true}
		} else {
			s.Status = pb.StorageStatus_STORAGE_STATUS_UNAVAILABLE
			s.StatusMessage = "PutObject: AccessDenied"
			s.ConsecutiveFailures = 3
		}
		out = append(out, s)
	}
	return out
}
