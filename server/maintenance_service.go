package server

import (
	"context"

	"google.golang.org/protobuf/types/known/durationpb"

	"backupstore/metadata"
	pb "backupstore/proto/backupstore/v1"
)

func policyToProto(p *metadata.RetentionPolicy) *pb.RetentionPolicy {
	out := &pb.RetentionPolicy{OrgId: p.OrgID, KeepLast: int32(p.KeepLast), KeepDaily: int32(p.KeepDaily), KeepWeekly: int32(p.KeepWeekly),
		KeepMonthly: int32(p.KeepMonthly), KeepYearly: int32(p.KeepYearly), UpdateTime: ts(p.UpdatedAt)}
	if p.KeepWithin > 0 {
		out.KeepWithin = durationpb.New(p.KeepWithin)
	}
	return out
}

// SetRetentionPolicy implements pb.MaintenanceServiceServer.
func (s *Server) SetRetentionPolicy(ctx context.Context, req *pb.SetRetentionPolicyRequest) (*pb.SetRetentionPolicyResponse, error) {
	in := req.GetPolicy()
	p := &metadata.RetentionPolicy{TenantID: TenantFrom(ctx), OrgID: in.GetOrgId(), KeepLast: int(in.GetKeepLast()), KeepDaily: int(in.GetKeepDaily()),
		KeepWeekly: int(in.GetKeepWeekly()), KeepMonthly: int(in.GetKeepMonthly()), KeepYearly: int(in.GetKeepYearly())}
	if in.KeepWithin != nil {
		p.KeepWithin = in.GetKeepWithin().AsDuration()
	}
	got, err := s.mnt.SetPolicy(ctx, p)
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	return &pb.SetRetentionPolicyResponse{Policy: policyToProto(got)}, nil
}

// GetRetentionPolicy implements pb.MaintenanceServiceServer.
func (s *Server) GetRetentionPolicy(ctx context.Context, req *pb.GetRetentionPolicyRequest) (*pb.GetRetentionPolicyResponse, error) {
	p, err := s.mnt.Policy(ctx, TenantFrom(ctx), req.GetOrgId())
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	return &pb.GetRetentionPolicyResponse{Policy: policyToProto(p)}, nil
}

// DeleteRetentionPolicy implements pb.MaintenanceServiceServer.
func (s *Server) DeleteRetentionPolicy(ctx context.Context, req *pb.DeleteRetentionPolicyRequest) (*pb.DeleteRetentionPolicyResponse, error) {
	if err := s.mnt.DeletePolicy(ctx, TenantFrom(ctx), req.GetOrgId()); err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	return &pb.DeleteRetentionPolicyResponse{}, nil
}

// DeleteBackup implements pb.MaintenanceServiceServer.
func (s *Server) DeleteBackup(ctx context.Context, req *pb.DeleteBackupRequest) (*pb.DeleteBackupResponse, error) {
	b, d, err := s.mnt.DeleteBackup(ctx, TenantFrom(ctx), req.GetBackupId())
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	return &pb.DeleteBackupResponse{Backup: backupToProto(b), ObjectsDeleted: int64(d.Objects), BytesFreed: d.Bytes}, nil
}

// maxItems caps the items a cleanup response lists (the totals count all).
const maxItems = 1000

// RunCleanup implements pb.MaintenanceServiceServer.
func (s *Server) RunCleanup(ctx context.Context, req *pb.RunCleanupRequest) (*pb.RunCleanupResponse, error) {
	rep, err := s.mnt.Cleanup(ctx, TenantFrom(ctx), req.GetDryRun())
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	resp := &pb.RunCleanupResponse{RunId: rep.RunID, DryRun: rep.DryRun, BackupsExpired: rep.Expired, ObjectsDeleted: rep.ObjectsDeleted,
		BytesFreed: rep.BytesFreed, GarbageDeleted: rep.GarbageDeleted, UploadsAborted: rep.UploadsAborted, Skipped: rep.Skip}
	for i, it := range rep.Items {
		if i == maxItems {
			break
		}
		resp.Items = append(resp.Items, &pb.CleanupItem{Action: it.Action, BackupId: it.BackupID, Key: it.Key, UploadId: it.UploadID,
			S3UploadId: it.S3UploadID, Bytes: it.Bytes, Reason: it.Reason})
	}
	return resp, nil
}

// VerifyBackup implements pb.MaintenanceServiceServer.
func (s *Server) VerifyBackup(ctx context.Context, req *pb.VerifyBackupRequest) (*pb.VerifyBackupResponse, error) {
	b, rep, err := s.mnt.Verify(ctx, TenantFrom(ctx), req.GetBackupId(), int(req.GetReadPercent()))
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	resp := &pb.VerifyBackupResponse{Backup: backupToProto(b), ObjectsChecked: rep.Checked, ObjectsRead: rep.Read, BytesRead: rep.BytesRead}
	for _, p := range rep.Problems {
		resp.Problems = append(resp.Problems, &pb.ObjectProblem{Key: p.Key, Problem: p.Problem, Detail: p.Detail})
	}
	for _, d := range rep.Dangling {
		resp.Dangling = append(resp.Dangling, &pb.DanglingReference{Sobject: d.SObject, Field: d.Field, Target: d.Target, Count: d.Count})
	}
	return resp, nil
}

// ListMaintenanceRuns implements pb.MaintenanceServiceServer.
func (s *Server) ListMaintenanceRuns(ctx context.Context, req *pb.ListMaintenanceRunsRequest) (*pb.ListMaintenanceRunsResponse, error) {
	runs, next, err := s.mnt.Runs(ctx, TenantFrom(ctx), int(req.GetPageSize()), req.GetPageToken())
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	resp := &pb.ListMaintenanceRunsResponse{NextPageToken: next}
	for _, r := range runs {
		resp.Runs = append(resp.Runs, &pb.MaintenanceRun{RunId: r.ID, Kind: r.Kind, Replica: r.Replica, StartTime: ts(r.StartedAt),
			EndTime: ts(r.EndedAt), DryRun: r.DryRun, Outcome: r.Outcome, Message: r.Message})
	}
	return resp, nil
}
