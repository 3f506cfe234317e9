package server

import (
	"context"
	"encoding/hex"
	"time"

	"backupstore/metadata"
	pb "backupstore/proto/backupstore/v1"
	"backupstore/restore"
)

// ListBackupContents implements pb.RestoreServiceServer.
func (s *Server) ListBackupContents(ctx context.Context, req *pb.ListBackupContentsRequest) (*pb.ListBackupContentsResponse, error) {
	b, sets, files, next, err := s.rst.Contents(ctx, TenantFrom(ctx), req.GetBackupId(), int(req.GetPageSize()), req.GetPageToken())
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	resp := &pb.ListBackupContentsResponse{Backup: backupToProto(b), NextPageToken: next}
	for _, rs := range sets {
		info := &pb.RecordSetInfo{Sobject: rs.SObject, Chunks: rs.Chunks, Records: rs.Records, BytesIn: rs.BytesIn, BytesStored: rs.BytesStored}
		for _, r := range rs.References {
			info.References = append(info.References, &pb.ReferenceField{Field: r.Field, Target: r.Target})
		}
		resp.RecordSets = append(resp.RecordSets, info)
	}
	for _, f := range files {
		resp.Files = append(resp.Files, fileToProto(f))
	}
	return resp, nil
}

func fileToProto(f *metadata.File) *pb.FileInfo {
	return &pb.FileInfo{FileId: f.ID, ParentId: f.ParentID, Path: f.Path, Name: f.Name, ContentType: f.ContentType,
		Size: f.Size, Sha256: hex.EncodeToString(f.SHA256)}
}

// FindBackup implements pb.RestoreServiceServer.
func (s *Server) FindBackup(ctx context.Context, req *pb.FindBackupRequest) (*pb.FindBackupResponse, error) {
	var at time.Time // zero: Find takes now
	if req.At != nil {
		at = req.GetAt().AsTime()
	}
	b, err := s.rst.Find(ctx, TenantFrom(ctx), req.GetOrgId(), at)
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	return &pb.FindBackupResponse{Backup: backupToProto(b)}, nil
}

// ReadRecords implements pb.RestoreServiceServer.
func (s *Server) ReadRecords(req *pb.ReadRecordsRequest, stream pb.RestoreService_ReadRecordsServer) error {
	ctx := stream.Context()
	leave, err := s.enterStream(ctx)
	if err != nil {
		return toStatus(ctx, s.log, err)
	}
	defer leave()
	read := restore.RecordsRead{BackupID: req.GetBackupId(), SObject: req.GetSobject(), IDs: req.GetIds(),
		StartSeq: req.GetStartSequence(), EndSeq: req.GetEndSequence()}
	if recordsEncoding(req) == pb.ContentEncoding_CONTENT_ENCODING_ZSTD {
		return s.readRecordFrames(ctx, read, stream)
	}
	sum, err := s.rst.ReadRecords(ctx, TenantFrom(ctx), read, func(b []byte) error {
		return stream.Send(&pb.ReadRecordsResponse{Message: &pb.ReadRecordsResponse_Data{Data: b}})
	})
	if err != nil {
		return toStatus(ctx, s.log, err)
	}
	return stream.Send(&pb.ReadRecordsResponse{Message: &pb.ReadRecordsResponse_Summary{Summary: &pb.ReadRecordsSummary{
		Records: sum.Records, MissingIds: sum.Missing, Bytes: sum.Bytes}}})
}

// recordsEncoding picks how a ReadRecords stream is sent: the first
// encoding the client offers that the server has, identity when it offers
// none, and always identity for reads by id (a whole frame per row would
// move more bytes, and the id filtering to the client).
func recordsEncoding(req *pb.ReadRecordsRequest) pb.ContentEncoding {
	if len(req.GetIds()) > 0 {
		return pb.ContentEncoding_CONTENT_ENCODING_IDENTITY
	}
	for _, e := range req.GetAcceptEncoding() {
		switch e {
		case pb.ContentEncoding_CONTENT_ENCODING_IDENTITY, pb.ContentEncoding_CONTENT_ENCODING_ZSTD:
			return e
		}
	}
	return pb.ContentEncoding_CONTENT_ENCODING_IDENTITY
}

// readRecordFrames sends a whole read as the stored zstd frames.
func (s *Server) readRecordFrames(ctx context.Context, read restore.RecordsRead, stream pb.RestoreService_ReadRecordsServer) error {
	zstd := pb.ContentEncoding_CONTENT_ENCODING_ZSTD
	var batch pb.FrameBatch // reused: Send has encoded it when it returns
	msg := &pb.ReadRecordsResponse{}
	sum, err := s.rst.ReadRecordFrames(ctx, TenantFrom(ctx), read, restore.FrameSink{
		Start: func(eol []byte) error {
			return stream.Send(&pb.ReadRecordsResponse{Message: &pb.ReadRecordsResponse_Start{Start: &pb.ReadRecordsStart{Encoding: zstd, LineEnding: eol}}})
		},
		Chunk: func(c restore.ChunkInfo) error {
			return stream.Send(&pb.ReadRecordsResponse{Message: &pb.ReadRecordsResponse_Chunk{Chunk: &pb.ChunkStart{Sequence: c.Sequence,
				BytesIn: c.BytesIn, StoredSize: c.StoredSize, Sha256: c.SHA256, Records: c.Records, SkipHeader: c.SkipHeader, FrameCount: int32(c.Frames)}}})
		},
		Frames: func(stored, input []uint32, data []byte) error {
			batch.StoredLen, batch.InputLen, batch.Data = stored, input, data
			msg.Message = &pb.ReadRecordsResponse_Frames{Frames: &batch}
			return stream.Send(msg)
		},
	})
	if err != nil {
		return toStatus(ctx, s.log, err)
	}
	return stream.Send(&pb.ReadRecordsResponse{Message: &pb.ReadRecordsResponse_Summary{Summary: &pb.ReadRecordsSummary{
		Records: sum.Records, StoredBytes: sum.StoredBytes, Encoding: zstd}}})
}

// ReadFile implements pb.RestoreServiceServer.
func (s *Server) ReadFile(req *pb.ReadFileRequest, stream pb.RestoreService_ReadFileServer) error {
	ctx := stream.Context()
	leave, err := s.enterStream(ctx)
	if err != nil {
		return toStatus(ctx, s.log, err)
	}
	defer leave()
	sum, err := s.rst.ReadFile(ctx, TenantFrom(ctx), restore.FileRead{BackupID: req.GetBackupId(), FileID: req.GetFileId(),
		ParentID: req.GetParentId(), Offset: req.GetReadOffset(), Limit: req.GetReadLimit()},
		func(f *metadata.File) error {
			return stream.Send(&pb.ReadFileResponse{Message: &pb.ReadFileResponse_Info{Info: fileToProto(f)}})
		},
		func(b []byte) error {
			return stream.Send(&pb.ReadFileResponse{Message: &pb.ReadFileResponse_Data{Data: b}})
		})
	if err != nil {
		return toStatus(ctx, s.log, err)
	}
	return stream.Send(&pb.ReadFileResponse{Message: &pb.ReadFileResponse_Summary{Summary: &pb.ReadFileSummary{Files: int32(sum.Files), Bytes: sum.Bytes}}})
}

var stepKinds = map[string]pb.StepKind{restore.StepInsert: pb.StepKind_STEP_KIND_INSERT, restore.StepUpdate: pb.StepKind_STEP_KIND_UPDATE, restore.StepFiles: pb.StepKind_STEP_KIND_FILES}

// PlanRestore implements pb.RestoreServiceServer.
func (s *Server) PlanRestore(ctx context.Context, req *pb.PlanRestoreRequest) (*pb.PlanRestoreResponse, error) {
	var roots []restore.Root
	for _, r := range req.GetRoots() {
		roots = append(roots, restore.Root{SObject: r.GetSobject(), IDs: r.GetIds()})
	}
	plan, err := s.rst.Plan(ctx, TenantFrom(ctx), req.GetBackupId(), roots, int(req.GetDepth()))
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	resp := &pb.PlanRestoreResponse{RecordCount: plan.Records, FileCount: plan.Files, MissingIds: plan.Missing}
	for i, st := range plan.Steps {
		resp.Steps = append(resp.Steps, &pb.RestoreStep{Order: int32(i + 1), Kind: stepKinds[st.Kind], Sobject: st.SObject,
			Ids: st.IDs, OmitFields: st.OmitFields, UpdateFields: st.UpdateFields, FileIds: st.FileIDs, Role: st.Role})
	}
	return resp, nil
}
