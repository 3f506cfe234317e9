package server

import (
	"context"
	"errors"
	"io"
	"time"

	"google.golang.org/grpc/codes"
	grpcmd "google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"backupstore/fault"
	"backupstore/ingest"
	"backupstore/maintenance"
	"backupstore/metadata"
	pb "backupstore/proto/backupstore/v1"
)

// CreateBackup implements pb.BackupServiceServer.
func (s *Server) CreateBackup(ctx context.Context, req *pb.CreateBackupRequest) (*pb.CreateBackupResponse, error) {
	b, created, err := s.ing.CreateBackup(ctx, TenantFrom(ctx), ingest.CreateInput{OrgID: req.GetOrgId(),
		StorageID: req.GetStorageId(), Labels: req.GetLabels(), IdempotencyKey: req.GetIdempotencyKey()})
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	return &pb.CreateBackupResponse{Backup: backupToProto(b), Created: created}, nil
}

// streamSource adapts an upload stream (after its header) to ingest.Source.
type streamSource struct {
	recv func() (data []byte, finish, header bool, err error)
}

func (s streamSource) Next() ([]byte, bool, error) {
	data, fin, hdr, err := s.recv()
	switch {
	case errors.Is(err, io.EOF):
		return nil, false, fault.Wrap(ingest.ErrNoFinish, fault.InvalidArgument, "NO_FINISH", "the stream ended without a finish message; nothing was stored")
	case err != nil:
		return nil, false, err
	case hdr:
		return nil, false, fault.New(fault.InvalidArgument, "SECOND_HEADER", "a header may only be the first message of a stream")
	case fin:
		// Nothing may follow finish.
		_, _, _, err := s.recv()
		if errors.Is(err, io.EOF) {
			return nil, true, nil
		}
		if err == nil {
			return nil, false, fault.New(fault.InvalidArgument, "DATA_AFTER_FINISH", "a message followed the finish message; nothing was stored")
		}
		return nil, false, err
	case data == nil:
		return nil, false, fault.New(fault.InvalidArgument, "EMPTY_MESSAGE", "a message carried neither header, data nor finish")
	}
	return data, false, nil
}

func recvErr(err error) error {
	st, ok := status.FromError(err)
	switch {
	case ok && st.Code() == codes.Canceled:
		return context.Canceled
	case ok && st.Code() == codes.ResourceExhausted:
		// A message over the size limit is bad input: it ends the upload
		// (a broken stream would leave it resumable).
		return fault.Wrap(err, fault.InvalidArgument, "MESSAGE_TOO_LARGE", "a message exceeds the server's size limit: %s", st.Message())
	}
	return err
}

// UploadRecords implements pb.BackupServiceServer.
func (s *Server) UploadRecords(stream pb.BackupService_UploadRecordsServer) error {
	ctx := stream.Context()
	in, first, leave, err := openUpload(s, ctx, "UploadRecords", stream.Recv, (*pb.UploadRecordsRequest).GetHeader)
	if err != nil {
		return toStatus(ctx, s.log, err)
	}
	defer leave()
	h := first.GetHeader()
	hdr := ingest.RecordsHeader{BackupID: h.GetBackupId(), SObject: h.GetSobject(), Sequence: h.GetSequence(),
		UploadID: h.GetUploadId(), WriteOffset: h.GetWriteOffset()}
	for _, r := range h.GetReferences() {
		hdr.References = append(hdr.References, ingest.Reference{Field: r.GetField(), Target: r.GetTarget()})
	}
	src := streamSource{recv: func() ([]byte, bool, bool, error) {
		m, err := in.Recv()
		if err != nil {
			return nil, false, false, recvErr(err)
		}
		return m.GetData(), m.GetFinish() != nil, m.GetHeader() != nil, nil
	}}
	res, err := s.ing.UploadRecords(ctx, TenantFrom(ctx), hdr, src)
	if err != nil {
		return toStatus(ctx, s.log, err)
	}
	return stream.SendAndClose(&pb.UploadRecordsResponse{Result: resultToProto(res)})
}

// UploadFile implements pb.BackupServiceServer.
func (s *Server) UploadFile(stream pb.BackupService_UploadFileServer) error {
	ctx := stream.Context()
	in, first, leave, err := openUpload(s, ctx, "UploadFile", stream.Recv, (*pb.UploadFileRequest).GetHeader)
	if err != nil {
		return toStatus(ctx, s.log, err)
	}
	defer leave()
	h := first.GetHeader()
	hdr := ingest.FileHeader{BackupID: h.GetBackupId(), ParentID: h.GetParentId(), Path: h.GetPath(), Name: h.GetName(),
		ContentType: h.GetContentType(), UploadID: h.GetUploadId(), WriteOffset: h.GetWriteOffset(), DeclaredSize: -1,
		DeclaredSHA256: h.GetDeclaredSha256()}
	if h.DeclaredSize != nil {
		hdr.DeclaredSize = h.GetDeclaredSize()
		if hdr.DeclaredSize < 0 {
			return toStatus(ctx, s.log, fault.Invalid(fault.Violation{Field: "header.declared_size", Description: "must be ≥ 0"}))
		}
	}
	asked := false
	src := streamSource{recv: func() ([]byte, bool, bool, error) {
		if !asked {
			// The body is needed (not a deduplicated one): say so, for
			// clients that wait before sending it.
			asked = true
			_ = stream.SendHeader(grpcmd.Pairs(pb.UploadHeader, pb.UploadSendData))
		}
		m, err := in.Recv()
		if err != nil {
			return nil, false, false, recvErr(err)
		}
		return m.GetData(), m.GetFinish() != nil, m.GetHeader() != nil, nil
	}}
	res, err := s.ing.UploadFile(ctx, TenantFrom(ctx), hdr, src)
	if err != nil {
		return toStatus(ctx, s.log, err)
	}
	return stream.SendAndClose(&pb.UploadFileResponse{Result: resultToProto(res)})
}

// QueryUploadStatus implements pb.BackupServiceServer.
func (s *Server) QueryUploadStatus(ctx context.Context, req *pb.QueryUploadStatusRequest) (*pb.QueryUploadStatusResponse, error) {
	u, err := s.ing.QueryUploadStatus(ctx, TenantFrom(ctx), req.GetBackupId(), req.GetUploadId())
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	return &pb.QueryUploadStatusResponse{Upload: uploadToProto(u)}, nil
}

var uploadStates = map[string]pb.UploadState{
	metadata.UploadPending: pb.UploadState_UPLOAD_STATE_PENDING, metadata.UploadCommitted: pb.UploadState_UPLOAD_STATE_COMMITTED,
	metadata.UploadFailed: pb.UploadState_UPLOAD_STATE_FAILED, metadata.UploadAbandoned: pb.UploadState_UPLOAD_STATE_ABANDONED,
}

// ListUploads implements pb.BackupServiceServer.
func (s *Server) ListUploads(ctx context.Context, req *pb.ListUploadsRequest) (*pb.ListUploadsResponse, error) {
	state := ""
	for k, v := range uploadStates {
		if v == req.GetState() {
			state = k
		}
	}
	list, next, err := s.ing.ListUploads(ctx, TenantFrom(ctx), req.GetBackupId(), state, int(req.GetPageSize()), req.GetPageToken())
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	resp := &pb.ListUploadsResponse{NextPageToken: next}
	for _, u := range list {
		resp.Uploads = append(resp.Uploads, uploadToProto(u))
	}
	return resp, nil
}

// CommitBackup implements pb.BackupServiceServer.
func (s *Server) CommitBackup(ctx context.Context, req *pb.CommitBackupRequest) (*pb.CommitBackupResponse, error) {
	b, orphans, err := s.ing.CommitBackup(ctx, TenantFrom(ctx), req.GetBackupId(), req.GetRequireParents())
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	resp := &pb.CommitBackupResponse{Backup: backupToProto(b)}
	for _, o := range orphans {
		resp.OrphanFiles = append(resp.OrphanFiles, &pb.OrphanFile{FileId: o.FileID, ParentId: o.ParentID, Path: o.Path})
	}
	return resp, nil
}

// AbortBackup implements pb.BackupServiceServer.
func (s *Server) AbortBackup(ctx context.Context, req *pb.AbortBackupRequest) (*pb.AbortBackupResponse, error) {
	tenant := TenantFrom(ctx)
	b, err := s.ing.AbortBackup(ctx, tenant, req.GetBackupId())
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	// The one deletion path, under the maintenance lock; if another replica
	// holds it for long, cleanup finishes the purge.
	var (
		d        maintenance.Deleted
		deferred = true
	)
	if s.mnt != nil {
		if d, deferred, err = s.mnt.PurgeAborted(ctx, tenant, b.ID, abortPurgeWait); err != nil {
			return nil, toStatus(ctx, s.log, err)
		}
	}
	if deferred {
		s.log.InfoContext(ctx, "aborted backup's purge deferred to cleanup: maintenance lock busy", "tenant", tenant, "backup", b.ID)
	}
	return &pb.AbortBackupResponse{Backup: backupToProto(b), ObjectsDeleted: int64(d.Objects)}, nil
}

// abortPurgeWait is how long AbortBackup waits for the maintenance lock.
const abortPurgeWait = 10 * time.Second

// GetBackup implements pb.BackupServiceServer.
func (s *Server) GetBackup(ctx context.Context, req *pb.GetBackupRequest) (*pb.GetBackupResponse, error) {
	b, err := s.ing.GetBackup(ctx, TenantFrom(ctx), req.GetId())
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	return &pb.GetBackupResponse{Backup: backupToProto(b)}, nil
}

var backupStatuses = map[string]pb.BackupStatus{
	metadata.BackupOpen: pb.BackupStatus_BACKUP_STATUS_OPEN, metadata.BackupCommitted: pb.BackupStatus_BACKUP_STATUS_COMMITTED,
	metadata.BackupAborted: pb.BackupStatus_BACKUP_STATUS_ABORTED, metadata.BackupDeleting: pb.BackupStatus_BACKUP_STATUS_DELETING,
}

// ListBackups implements pb.BackupServiceServer.
func (s *Server) ListBackups(ctx context.Context, req *pb.ListBackupsRequest) (*pb.ListBackupsResponse, error) {
	f := metadata.BackupFilter{OrgID: req.GetOrgId()}
	for k, v := range backupStatuses {
		if v == req.GetStatus() {
			f.Status = k
		}
	}
	if req.StartTimeFrom != nil {
		f.From = req.GetStartTimeFrom().AsTime()
	}
	if req.StartTimeTo != nil {
		f.To = req.GetStartTimeTo().AsTime()
	}
	list, next, err := s.ing.ListBackups(ctx, TenantFrom(ctx), f, int(req.GetPageSize()), req.GetPageToken())
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	resp := &pb.ListBackupsResponse{NextPageToken: next}
	for _, b := range list {
		resp.Backups = append(resp.Backups, backupToProto(b))
	}
	return resp, nil
}

func backupToProto(b *metadata.Backup) *pb.Backup {
	if b == nil {
		return nil
	}
	return &pb.Backup{Id: b.ID, OrgId: b.OrgID, StorageId: b.StorageID, Labels: b.Labels, Status: backupStatuses[b.Status],
		Damaged: b.Damaged, StartTime: ts(b.StartedAt), CommitTime: ts(b.CommittedAt), RecordCount: b.RecordCount,
		RecordChunkCount: b.RecordChunkCount, FileCount: b.FileCount, BytesIn: b.BytesIn, BytesStored: b.BytesStored,
		ManifestKey: b.ManifestKey}
}

func resultToProto(r *ingest.Result) *pb.UploadResult {
	if r == nil {
		return nil
	}
	return &pb.UploadResult{UploadId: r.UploadID, DataKey: r.DataKey, IndexKey: r.IndexKey, BytesIn: r.BytesIn,
		BytesStored: r.BytesStored, Records: r.Records, Sha256: r.SHA256, Deduplicated: r.Deduplicated, FileId: r.FileID}
}

func uploadToProto(us *ingest.UploadStatus) *pb.Upload {
	u := us.Upload
	kind := pb.UploadKind_UPLOAD_KIND_FILE
	if u.Kind == metadata.KindRecords {
		kind = pb.UploadKind_UPLOAD_KIND_RECORDS
	}
	out := &pb.Upload{UploadId: u.UploadID, Kind: kind, State: uploadStates[u.State], Sobject: u.SObject, Sequence: u.Sequence,
		Path: u.Path, ParentId: u.ParentID, CommittedSize: u.CommittedSize, Generation: u.Generation, Error: u.Error,
		CreateTime: ts(u.CreatedAt), UpdateTime: ts(u.UpdatedAt)}
	if us.Result != nil {
		out.Result = resultToProto(us.Result)
	}
	return out
}
