package server

import (
	"context"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"backupstore/metadata"
	pb "backupstore/proto/backupstore/v1"
	"backupstore/registry"
	"backupstore/secrets"
)

// RegisterStorage implements pb.StorageServiceServer.
func (s *Server) RegisterStorage(ctx context.Context, req *pb.RegisterStorageRequest) (*pb.RegisterStorageResponse, error) {
	st, rep, err := s.reg.Register(ctx, TenantFrom(ctx), registry.RegisterInput{
		Name: req.GetName(), Region: req.GetRegion(), Bucket: req.GetBucket(), AccessKeyID: req.GetAccessKeyId(),
		SecretAccessKey: secrets.Secret(req.GetSecretAccessKey()), Endpoint: req.GetEndpoint(), PathStyle: req.GetPathStyle(),
		Prefix: req.GetPrefix(), KMSKeyID: req.GetKmsKeyId(), MakeDefault: req.GetMakeDefault(),
	})
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	return &pb.RegisterStorageResponse{Storage: storageToProto(st), Report: reportToProto(rep)}, nil
}

// GetStorage implements pb.StorageServiceServer.
func (s *Server) GetStorage(ctx context.Context, req *pb.GetStorageRequest) (*pb.GetStorageResponse, error) {
	st, err := s.reg.Get(ctx, TenantFrom(ctx), req.GetId())
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	return &pb.GetStorageResponse{Storage: storageToProto(st)}, nil
}

// ListStorages implements pb.StorageServiceServer.
func (s *Server) ListStorages(ctx context.Context, req *pb.ListStoragesRequest) (*pb.ListStoragesResponse, error) {
	list, next, err := s.reg.List(ctx, TenantFrom(ctx), int(req.GetPageSize()), req.GetPageToken())
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	resp := &pb.ListStoragesResponse{NextPageToken: next}
	for _, st := range list {
		resp.Storages = append(resp.Storages, storageToProto(st))
	}
	return resp, nil
}

// ValidateStorage implements pb.StorageServiceServer.
func (s *Server) ValidateStorage(ctx context.Context, req *pb.ValidateStorageRequest) (*pb.ValidateStorageResponse, error) {
	st, rep, err := s.reg.Validate(ctx, TenantFrom(ctx), req.GetId())
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	return &pb.ValidateStorageResponse{Storage: storageToProto(st), Report: reportToProto(rep)}, nil
}

// UpdateStorageCredentials implements pb.StorageServiceServer.
func (s *Server) UpdateStorageCredentials(ctx context.Context, req *pb.UpdateStorageCredentialsRequest) (*pb.UpdateStorageCredentialsResponse, error) {
	st, rep, err := s.reg.RotateCredentials(ctx, TenantFrom(ctx), req.GetId(), req.GetAccessKeyId(), secrets.Secret(req.GetSecretAccessKey()))
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	return &pb.UpdateStorageCredentialsResponse{Storage: storageToProto(st), Report: reportToProto(rep)}, nil
}

// SetDefaultStorage implements pb.StorageServiceServer.
func (s *Server) SetDefaultStorage(ctx context.Context, req *pb.SetDefaultStorageRequest) (*pb.SetDefaultStorageResponse, error) {
	st, err := s.reg.SetDefault(ctx, TenantFrom(ctx), req.GetId())
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	return &pb.SetDefaultStorageResponse{Storage: storageToProto(st)}, nil
}

// DeleteStorage implements pb.StorageServiceServer.
func (s *Server) DeleteStorage(ctx context.Context, req *pb.DeleteStorageRequest) (*pb.DeleteStorageResponse, error) {
	if err := s.reg.Delete(ctx, TenantFrom(ctx), req.GetId()); err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	return &pb.DeleteStorageResponse{}, nil
}

// GetIamPolicy implements pb.StorageServiceServer.
func (s *Server) GetIamPolicy(ctx context.Context, req *pb.GetIamPolicyRequest) (*pb.GetIamPolicyResponse, error) {
	p, err := s.reg.PolicyFor(ctx, TenantFrom(ctx), req.GetStorageId(), registry.PolicyRequest{
		Bucket: req.GetBucket(), Prefix: req.GetPrefix(), KMSKeyARN: req.GetKmsKeyArn(),
	})
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	return &pb.GetIamPolicyResponse{PolicyJson: p.JSON, Advice: p.Advice, LifecycleJson: p.LifecycleJSON}, nil
}

// storageToProto never copies the secret: the proto has no field for it.
func storageToProto(st *metadata.Storage) *pb.Storage {
	if st == nil {
		return nil
	}
	status := pb.StorageStatus_STORAGE_STATUS_UNSPECIFIED
	switch st.Status {
	case registry.StatusAvailable:
		status = pb.StorageStatus_STORAGE_STATUS_AVAILABLE
	case registry.StatusUnavailable:
		status = pb.StorageStatus_STORAGE_STATUS_UNAVAILABLE
	}
	return &pb.Storage{
		Id: st.ID, Name: st.Name, Region: st.Region, Bucket: st.Bucket, AccessKeyId: st.AccessKeyID,
		Endpoint: st.Endpoint, PathStyle: st.PathStyle, Prefix: st.Prefix, KmsKeyId: st.KMSKeyID,
		IsDefault: st.IsDefault, Status: status, StatusMessage: st.StatusMessage,
		ValidateTime: ts(st.ValidatedAt), ConsecutiveFailures: int32(st.ConsecutiveFailures),
		Capabilities: &pb.StorageCapabilities{AbortMultipartUpload: !st.AbortDenied},
		LastReport:   reportToProto(registry.ReportOf(st)),
		CreateTime:   ts(st.CreatedAt), UpdateTime: ts(st.UpdatedAt),
	}
}

var outcomes = map[registry.Outcome]pb.ProbeOutcome{
	registry.OK:      pb.ProbeOutcome_PROBE_OUTCOME_OK,
	registry.Warning: pb.ProbeOutcome_PROBE_OUTCOME_WARNING,
	registry.Failed:  pb.ProbeOutcome_PROBE_OUTCOME_FAILED,
	registry.Skipped: pb.ProbeOutcome_PROBE_OUTCOME_SKIPPED,
}

func reportToProto(rep *registry.Report) *pb.ValidationReport {
	if rep == nil {
		return nil
	}
	out := &pb.ValidationReport{Ok: rep.OK, ValidateTime: ts(rep.At)}
	for _, p := range rep.Probes {
		out.Probes = append(out.Probes, &pb.ProbeResult{Api: p.API, Outcome: outcomes[p.Outcome], ErrorCode: p.Code, Hint: p.Hint})
	}
	return out
}

func ts(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}
