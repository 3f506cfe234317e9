package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"backupstore/client"
	pb "backupstore/proto/backupstore/v1"
)

// fakeBackup is an in-test BackupService that really keeps what it receives
// (in memory) and enforces the upload protocol the way the service
// documents it: header first, at most 4 MiB a data message, record chunks
// from offset 0, files at write_offset == committed_size (else OutOfRange),
// finish last, declared size and SHA-256 checked, bodies deduplicated by
// declared SHA-256 per org, idempotency keys, generations, ListUploads
// states and paging, CommitBackup refusing pending uploads.
type fakeBackup struct {
	pb.UnimplementedBackupServiceServer

	// partSize is the granularity of a file's committed_size.
	partSize int64
	// pageSize caps ListUploads and ListBackups pages, to exercise paging.
	pageSize int
	// failStream, when set, is asked at every upload stream's header
	// (received 0) and after each data message whether to fail the stream
	// now; the error is returned to the client. A file upload then stays
	// PENDING with its whole parts, as after a service-side failure.
	failStream func(up *fakeUpload, received int64) error

	mu      sync.Mutex
	backups map[string]*fakeBackupEntry
	order   []string
	keys    map[string]string // idempotency key → backup id
	bodies  map[string][]byte // org + "/" + sha256 → body
	headers []proto.Message   // every upload header received, in order
	msgs    map[string][]int  // upload id → data message sizes of its last stream
	calls   []string
}

type fakeBackupEntry struct {
	b         *pb.Backup
	uploads   map[string]*fakeUpload
	order     []string
	headerRow map[string][]byte // sObject → header row of its first chunk
}

type fakeUpload struct {
	u      *pb.Upload
	data   []byte
	rec    *pb.RecordsHeader
	file   *pb.FileHeader
	ids    []string // record ids of a committed chunk
	stream int      // streams opened
}

func newFakeBackup() *fakeBackup {
	return &fakeBackup{
		partSize: 64 << 10,
		pageSize: 3,
		backups:  map[string]*fakeBackupEntry{},
		keys:     map[string]string{},
		bodies:   map[string][]byte{},
		msgs:     map[string][]int{},
	}
}

func startBackupFake(t *testing.T, f *fakeBackup) string {
	return serveFake(t, func(srv *grpc.Server) { pb.RegisterBackupServiceServer(srv, f) })
}

// setFail sets failStream.
func (f *fakeBackup) setFail(fn func(up *fakeUpload, received int64) error) {
	f.mu.Lock()
	f.failStream = fn
	f.mu.Unlock()
}

func (f *fakeBackup) call(name string) {
	f.mu.Lock()
	f.calls = append(f.calls, name)
	f.mu.Unlock()
}

// snapshotHeaders returns the upload headers received so far.
func (f *fakeBackup) snapshotHeaders() []proto.Message {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.headers)
}

func (f *fakeBackup) snapshotCalls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

func validID(s string) bool { return client.ValidRecordID(s) }

func (f *fakeBackup) CreateBackup(ctx context.Context, req *pb.CreateBackupRequest) (*pb.CreateBackupResponse, error) {
	f.call("CreateBackup")
	f.mu.Lock()
	defer f.mu.Unlock()
	if !validID(req.GetOrgId()) {
		return nil, status.Errorf(codes.InvalidArgument, "org_id %q is not a Salesforce id", req.GetOrgId())
	}
	if k := req.GetIdempotencyKey(); k != "" {
		if id, ok := f.keys[k]; ok {
			return &pb.CreateBackupResponse{Backup: proto.CloneOf(f.backups[id].b)}, nil
		}
	}
	id := fmt.Sprintf("bk-%03d", len(f.order)+1)
	b := &pb.Backup{
		Id: id, OrgId: req.GetOrgId(), StorageId: req.GetStorageId(), Labels: req.GetLabels(),
		Status:    pb.BackupStatus_BACKUP_STATUS_OPEN,
		StartTime: timestamppb.New(time.Date(2026, 3, 1, 12, len(f.order), 0, 0, time.UTC)),
	}
	f.backups[id] = &fakeBackupEntry{b: b, uploads: map[string]*fakeUpload{}, headerRow: map[string][]byte{}}
	f.order = append(f.order, id)
	if k := req.GetIdempotencyKey(); k != "" {
		f.keys[k] = id
	}
	return &pb.CreateBackupResponse{Backup: proto.CloneOf(b), Created: true}, nil
}

// openBackup returns an OPEN backup; f.mu is held.
func (f *fakeBackup) openBackup(id string) (*fakeBackupEntry, error) {
	e := f.backups[id]
	if e == nil {
		return nil, status.Errorf(codes.NotFound, "backup %s not found", id)
	}
	if e.b.GetStatus() != pb.BackupStatus_BACKUP_STATUS_OPEN {
		return nil, status.Errorf(codes.FailedPrecondition, "backup %s is %s", id, e.b.GetStatus())
	}
	return e, nil
}

// reopen registers a new stream of an upload: a new upload, or a new
// generation of an existing one. f.mu is held.
func (e *fakeBackupEntry) reopen(id string, kind pb.UploadKind) (*fakeUpload, error) {
	if !uuidPattern.MatchString(id) {
		return nil, status.Errorf(codes.InvalidArgument, "upload_id %q is not a UUID", id)
	}
	up := e.uploads[id]
	switch {
	case up == nil:
		up = &fakeUpload{u: &pb.Upload{UploadId: id, Kind: kind}}
		e.uploads[id] = up
		e.order = append(e.order, id)
	case up.u.GetKind() != kind:
		return nil, status.Errorf(codes.InvalidArgument, "upload %s is of another kind", id)
	case up.u.GetState() == pb.UploadState_UPLOAD_STATE_COMMITTED:
		// The real service answers with the first result; the fake refuses,
		// so that a test notices a client resending a committed upload.
		return nil, status.Errorf(codes.AlreadyExists, "upload %s already committed", id)
	}
	up.u.State = pb.UploadState_UPLOAD_STATE_PENDING
	up.u.Generation++
	up.stream++
	return up, nil
}

// fail ends a stream of generation gen: a record chunk is FAILED, a file
// keeps its whole parts and stays PENDING unless the client went away.
func (f *fakeBackup) fail(up *fakeUpload, gen int64, clientGone bool, err error) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if up.u.GetGeneration() != gen {
		return err
	}
	if up.file != nil && !clientGone {
		up.data = up.data[:up.u.GetCommittedSize()]
		return err
	}
	up.data, up.u.CommittedSize = nil, 0
	up.u.State = pb.UploadState_UPLOAD_STATE_FAILED
	up.u.Error = err.Error()
	return err
}

// recvHeader logs the call name and receives an upload stream's first message, which must be
// its header, and records the header. Unless it fails, it returns with f.mu held: the caller
// checks the header against the fake's state under it.
func recvHeader[H proto.Message, Req interface{ GetHeader() H }](f *fakeBackup, name string, stream interface{ Recv() (Req, error) }) (H, error) {
	f.call(name)
	var h H
	m, err := stream.Recv()
	if err != nil {
		return h, err
	}
	if h = m.GetHeader(); !h.ProtoReflect().IsValid() {
		return h, status.Error(codes.InvalidArgument, "the first message must be the header")
	}
	f.mu.Lock()
	f.headers = append(f.headers, proto.Clone(h))
	return h, nil
}

func (f *fakeBackup) UploadRecords(stream grpc.ClientStreamingServer[pb.UploadRecordsRequest, pb.UploadRecordsResponse]) error {
	h, err := recvHeader(f, "UploadRecords", stream)
	if err != nil {
		return err
	}
	e, err := f.openBackup(h.GetBackupId()) // f.mu is held
	if err == nil && !client.ValidSObjectName(h.GetSobject()) {
		err = status.Errorf(codes.InvalidArgument, "sobject %q", h.GetSobject())
	}
	if err == nil && h.GetWriteOffset() != 0 {
		err = status.Errorf(codes.OutOfRange, "write_offset %d: record chunks restart from 0", h.GetWriteOffset())
	}
	if err == nil {
		for _, id := range e.order {
			o := e.uploads[id]
			if id != h.GetUploadId() && o.rec != nil && o.rec.GetSobject() == h.GetSobject() && o.rec.GetSequence() == h.GetSequence() &&
				o.u.GetState() != pb.UploadState_UPLOAD_STATE_FAILED {
				err = status.Errorf(codes.AlreadyExists, "%s #%d is upload %s", h.GetSobject(), h.GetSequence(), id)
			}
		}
	}
	var up *fakeUpload
	if err == nil {
		up, err = e.reopen(h.GetUploadId(), pb.UploadKind_UPLOAD_KIND_RECORDS)
	}
	if err != nil {
		f.mu.Unlock()
		return err
	}
	up.rec = proto.CloneOf(h)
	up.u.Sobject, up.u.Sequence = h.GetSobject(), h.GetSequence()
	up.data = nil
	gen := up.u.GetGeneration()
	f.msgs[h.GetUploadId()] = nil
	hook := f.failStream
	f.mu.Unlock()

	return receive(f, stream, up, gen, h.GetUploadId(), hook, false, recordsPart, func() error {
		res, err := f.finishRecords(e, up, gen)
		if err != nil {
			return f.fail(up, gen, false, err)
		}
		return stream.SendAndClose(&pb.UploadRecordsResponse{Result: res})
	})
}

var errAfterFinish = status.Error(codes.InvalidArgument, "a message after finish")

// msgPart is what one upload message carries.
type msgPart int

const (
	partNone msgPart = iota
	partHeader
	partData
	partFinish
)

func recordsPart(m *pb.UploadRecordsRequest) msgPart {
	switch m.GetMessage().(type) {
	case *pb.UploadRecordsRequest_Header:
		return partHeader
	case *pb.UploadRecordsRequest_Data:
		return partData
	case *pb.UploadRecordsRequest_Finish:
		return partFinish
	}
	return partNone
}

func filePart(m *pb.UploadFileRequest) msgPart {
	switch m.GetMessage().(type) {
	case *pb.UploadFileRequest_Header:
		return partHeader
	case *pb.UploadFileRequest_Data:
		return partData
	case *pb.UploadFileRequest_Finish:
		return partFinish
	}
	return partNone
}

// receive runs an upload stream after its header, for records and files alike: hook at
// received 0, then the data messages (data), and finish once the client has ended the stream
// after the finish message. Any other message order fails the upload as the service does.
func receive[Req interface{ GetData() []byte }](f *fakeBackup, stream interface{ Recv() (Req, error) },
	up *fakeUpload, gen int64, uploadID string, hook func(*fakeUpload, int64) error, file bool,
	part func(Req) msgPart, finish func() error,
) error {
	if hook != nil {
		if err := hook(up, 0); err != nil {
			return f.fail(up, gen, false, err)
		}
	}
	var received int64
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return f.fail(up, gen, false, status.Error(codes.InvalidArgument, "the stream ended without a finish message"))
		}
		if err != nil {
			return f.fail(up, gen, true, err)
		}
		switch part(m) {
		case partHeader:
			return f.fail(up, gen, false, status.Error(codes.InvalidArgument, "a second header"))
		case partData:
			if err := f.data(up, gen, uploadID, m.GetData(), &received, hook, file); err != nil {
				return err
			}
		case partFinish:
			if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
				return f.fail(up, gen, false, errAfterFinish)
			}
			return finish()
		default:
			return f.fail(up, gen, false, status.Error(codes.InvalidArgument, "an empty message"))
		}
	}
}

// data takes one data message of an upload stream of generation gen, like
// the service: a file's bytes count as committed part by part (partSize)
// and a stale generation's message fails Aborted; records restart from 0.
func (f *fakeBackup) data(up *fakeUpload, gen int64, uploadID string, d []byte, received *int64,
	hook func(*fakeUpload, int64) error, file bool,
) error {
	if len(d) > 4<<20 {
		return f.fail(up, gen, false, status.Errorf(codes.InvalidArgument, "data message of %d bytes", len(d)))
	}
	*received += int64(len(d))
	f.mu.Lock()
	if file && up.u.GetGeneration() != gen {
		f.mu.Unlock()
		return status.Error(codes.Aborted, "a newer generation of the upload exists")
	}
	up.data = append(up.data, d...)
	if file {
		up.u.CommittedSize = int64(len(up.data)) / f.partSize * f.partSize
	}
	f.msgs[uploadID] = append(f.msgs[uploadID], len(d))
	f.mu.Unlock()
	if hook != nil {
		if err := hook(up, *received); err != nil {
			return f.fail(up, gen, false, err)
		}
	}
	return nil
}

func (f *fakeBackup) finishRecords(e *fakeBackupEntry, up *fakeUpload, gen int64) (*pb.UploadResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if up.u.GetGeneration() != gen {
		return nil, status.Error(codes.Aborted, "a newer generation of the upload exists")
	}
	headerRow, _, ok := bytes.Cut(up.data, []byte("\n"))
	if !ok {
		return nil, status.Error(codes.InvalidArgument, "no header row")
	}
	if first, ok := e.headerRow[up.rec.GetSobject()]; ok && !bytes.Equal(first, headerRow) {
		return nil, status.Errorf(codes.InvalidArgument, "chunk %d's header row differs from the record set's", up.rec.GetSequence())
	}
	e.headerRow[up.rec.GetSobject()] = headerRow
	r := csv.NewReader(bytes.NewReader(up.data))
	recs, err := r.ReadAll()
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "csv: %v", err)
	}
	idCol := slices.IndexFunc(recs[0], func(s string) bool { return strings.EqualFold(strings.TrimPrefix(s, "\uFEFF"), "Id") })
	if idCol < 0 {
		return nil, status.Error(codes.InvalidArgument, "no Id column")
	}
	for _, ref := range up.rec.GetReferences() {
		if !slices.Contains(recs[0], ref.GetField()) {
			return nil, status.Errorf(codes.InvalidArgument, "no column %s", ref.GetField())
		}
	}
	up.ids = nil
	for _, rec := range recs[1:] {
		up.ids = append(up.ids, rec[idCol])
	}
	sum := sha256.Sum256(up.data)
	res := &pb.UploadResult{
		UploadId: up.u.GetUploadId(),
		DataKey:  fmt.Sprintf("t/org/%s/records/%s/%s.csv.zst", e.b.GetId(), up.rec.GetSobject(), up.u.GetUploadId()),
		IndexKey: fmt.Sprintf("t/org/%s/records/%s/%s.idx", e.b.GetId(), up.rec.GetSobject(), up.u.GetUploadId()),
		BytesIn:  int64(len(up.data)), BytesStored: int64(len(up.data)) / 2, Records: int64(len(recs) - 1),
		Sha256: hex.EncodeToString(sum[:]),
	}
	up.u.State, up.u.Result, up.u.CommittedSize = pb.UploadState_UPLOAD_STATE_COMMITTED, res, int64(len(up.data))
	return res, nil
}

func (f *fakeBackup) UploadFile(stream grpc.ClientStreamingServer[pb.UploadFileRequest, pb.UploadFileResponse]) error {
	h, err := recvHeader(f, "UploadFile", stream)
	if err != nil {
		return err
	}
	e, err := f.openBackup(h.GetBackupId()) // f.mu is held
	if err == nil && !validID(h.GetParentId()) {
		err = status.Errorf(codes.InvalidArgument, "parent_id %q", h.GetParentId())
	}
	var up *fakeUpload
	if err == nil {
		if old := e.uploads[h.GetUploadId()]; old != nil && old.u.GetState() == pb.UploadState_UPLOAD_STATE_PENDING {
			if h.GetWriteOffset() != old.u.GetCommittedSize() {
				err = status.Errorf(codes.OutOfRange, "write_offset %d, committed_size %d", h.GetWriteOffset(), old.u.GetCommittedSize())
			}
		} else if h.GetWriteOffset() != 0 {
			err = status.Errorf(codes.OutOfRange, "write_offset %d of a new upload", h.GetWriteOffset())
		}
	}
	if err == nil {
		up, err = e.reopen(h.GetUploadId(), pb.UploadKind_UPLOAD_KIND_FILE)
	}
	if err != nil {
		f.mu.Unlock()
		return err
	}
	up.file = proto.CloneOf(h)
	up.u.Path, up.u.ParentId = h.GetPath(), h.GetParentId()
	up.data = up.data[:h.GetWriteOffset()]
	gen := up.u.GetGeneration()
	f.msgs[h.GetUploadId()] = nil
	dedupKey := e.b.GetOrgId() + "/" + h.GetDeclaredSha256()
	if body, ok := f.bodies[dedupKey]; ok && h.GetDeclaredSha256() != "" {
		res := &pb.UploadResult{
			UploadId: h.GetUploadId(), DataKey: "t/org/files/" + h.GetDeclaredSha256()[:16],
			BytesIn: int64(len(body)), Sha256: h.GetDeclaredSha256(), Deduplicated: true,
			FileId: "file-" + h.GetUploadId()[:8],
		}
		up.data = body
		up.u.State, up.u.Result, up.u.CommittedSize = pb.UploadState_UPLOAD_STATE_COMMITTED, res, int64(len(body))
		f.mu.Unlock()
		return stream.SendAndClose(&pb.UploadFileResponse{Result: res})
	}
	hook := f.failStream
	f.mu.Unlock()
	// Like the real service: ask for the body once it is needed, with the
	// response header backup.proto names.
	if err := stream.SendHeader(metadata.Pairs(pb.UploadHeader, pb.UploadSendData)); err != nil {
		return err
	}

	return receive(f, stream, up, gen, h.GetUploadId(), hook, true, filePart, func() error {
		res, err := f.finishFile(e, up, gen)
		if err != nil {
			return f.fail(up, gen, true, err)
		}
		return stream.SendAndClose(&pb.UploadFileResponse{Result: res})
	})
}

func (f *fakeBackup) finishFile(e *fakeBackupEntry, up *fakeUpload, gen int64) (*pb.UploadResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if up.u.GetGeneration() != gen {
		return nil, status.Error(codes.Aborted, "a newer generation of the upload exists")
	}
	h := up.file
	sum := sha256.Sum256(up.data)
	hexSum := hex.EncodeToString(sum[:])
	if h.DeclaredSize != nil && h.GetDeclaredSize() != int64(len(up.data)) {
		return nil, status.Errorf(codes.InvalidArgument, "declared size %d, got %d", h.GetDeclaredSize(), len(up.data))
	}
	if h.GetDeclaredSha256() != "" && h.GetDeclaredSha256() != hexSum {
		return nil, status.Errorf(codes.InvalidArgument, "declared sha256 %s, got %s", h.GetDeclaredSha256(), hexSum)
	}
	f.bodies[e.b.GetOrgId()+"/"+hexSum] = up.data
	res := &pb.UploadResult{
		UploadId: up.u.GetUploadId(), DataKey: "t/org/files/" + hexSum[:16],
		BytesIn: int64(len(up.data)), BytesStored: int64(len(up.data)), Sha256: hexSum,
		FileId: "file-" + up.u.GetUploadId()[:8],
	}
	up.u.State, up.u.Result, up.u.CommittedSize = pb.UploadState_UPLOAD_STATE_COMMITTED, res, int64(len(up.data))
	return res, nil
}

func (f *fakeBackup) QueryUploadStatus(ctx context.Context, req *pb.QueryUploadStatusRequest) (*pb.QueryUploadStatusResponse, error) {
	f.call("QueryUploadStatus")
	f.mu.Lock()
	defer f.mu.Unlock()
	e := f.backups[req.GetBackupId()]
	if e == nil || e.uploads[req.GetUploadId()] == nil {
		return nil, status.Errorf(codes.NotFound, "upload %s not found", req.GetUploadId())
	}
	return &pb.QueryUploadStatusResponse{Upload: proto.CloneOf(e.uploads[req.GetUploadId()].u)}, nil
}

// page returns the [start, end) of a page and the next token.
func (f *fakeBackup) page(n int, size int32, token string) (start, end int, next string, err error) {
	if token != "" {
		if start, err = strconv.Atoi(token); err != nil || start > n {
			return 0, 0, "", status.Error(codes.InvalidArgument, "bad page token")
		}
	}
	ps := f.pageSize
	if size > 0 && int(size) < ps {
		ps = int(size)
	}
	end = min(start+ps, n)
	if end < n {
		next = strconv.Itoa(end)
	}
	return start, end, next, nil
}

func (f *fakeBackup) ListUploads(ctx context.Context, req *pb.ListUploadsRequest) (*pb.ListUploadsResponse, error) {
	f.call("ListUploads")
	f.mu.Lock()
	defer f.mu.Unlock()
	e := f.backups[req.GetBackupId()]
	if e == nil {
		return nil, status.Errorf(codes.NotFound, "backup %s not found", req.GetBackupId())
	}
	var all []*pb.Upload
	for _, id := range e.order {
		if u := e.uploads[id].u; req.GetState() == 0 || u.GetState() == req.GetState() {
			all = append(all, proto.CloneOf(u))
		}
	}
	start, end, next, err := f.page(len(all), req.GetPageSize(), req.GetPageToken())
	if err != nil {
		return nil, err
	}
	return &pb.ListUploadsResponse{Uploads: all[start:end], NextPageToken: next}, nil
}

func (f *fakeBackup) CommitBackup(ctx context.Context, req *pb.CommitBackupRequest) (*pb.CommitBackupResponse, error) {
	f.call("CommitBackup")
	f.mu.Lock()
	defer f.mu.Unlock()
	e := f.backups[req.GetBackupId()]
	if e == nil {
		return nil, status.Errorf(codes.NotFound, "backup %s not found", req.GetBackupId())
	}
	b := e.b
	if b.GetStatus() != pb.BackupStatus_BACKUP_STATUS_OPEN && b.GetStatus() != pb.BackupStatus_BACKUP_STATUS_COMMITTED {
		return nil, status.Errorf(codes.FailedPrecondition, "backup %s is %s", b.GetId(), b.GetStatus())
	}
	var pending []*errdetails.PreconditionFailure_Violation
	ids := map[string]bool{}
	for _, id := range e.order {
		up := e.uploads[id]
		if up.u.GetState() == pb.UploadState_UPLOAD_STATE_PENDING {
			pending = append(pending, &errdetails.PreconditionFailure_Violation{Type: "UPLOAD_PENDING", Subject: id, Description: "pending"})
		}
		for _, rid := range up.ids {
			ids[rid] = true
		}
	}
	if len(pending) > 0 {
		st, _ := status.New(codes.FailedPrecondition, fmt.Sprintf("%d uploads are pending", len(pending))).WithDetails(
			&errdetails.ErrorInfo{Reason: "UPLOADS_PENDING", Domain: "backupstore.v1"},
			&errdetails.PreconditionFailure{Violations: pending})
		return nil, st.Err()
	}
	var orphans []*pb.OrphanFile
	var records, chunks, files, in, stored int64
	for _, id := range e.order {
		up := e.uploads[id]
		if up.u.GetState() != pb.UploadState_UPLOAD_STATE_COMMITTED {
			continue
		}
		in += up.u.GetResult().GetBytesIn()
		stored += up.u.GetResult().GetBytesStored()
		if up.rec != nil {
			chunks++
			records += up.u.GetResult().GetRecords()
			continue
		}
		files++
		if !ids[up.file.GetParentId()] {
			orphans = append(orphans, &pb.OrphanFile{FileId: up.u.GetResult().GetFileId(), ParentId: up.file.GetParentId(), Path: up.file.GetPath()})
		}
	}
	if req.GetRequireParents() && len(orphans) > 0 {
		st, _ := status.New(codes.FailedPrecondition, fmt.Sprintf("%d files have no parent record", len(orphans))).WithDetails(
			&errdetails.ErrorInfo{Reason: "ORPHAN_FILES", Domain: "backupstore.v1"})
		return nil, st.Err()
	}
	b.Status = pb.BackupStatus_BACKUP_STATUS_COMMITTED
	b.CommitTime = timestamppb.New(b.GetStartTime().AsTime().Add(time.Minute))
	b.RecordCount, b.RecordChunkCount, b.FileCount, b.BytesIn, b.BytesStored = records, chunks, files, in, stored
	b.ManifestKey = "t/org/" + b.GetId() + "/manifest.json"
	return &pb.CommitBackupResponse{Backup: proto.CloneOf(b), OrphanFiles: orphans}, nil
}

func (f *fakeBackup) AbortBackup(ctx context.Context, req *pb.AbortBackupRequest) (*pb.AbortBackupResponse, error) {
	f.call("AbortBackup")
	f.mu.Lock()
	defer f.mu.Unlock()
	e, err := f.openBackup(req.GetBackupId())
	if err != nil {
		return nil, err
	}
	e.b.Status = pb.BackupStatus_BACKUP_STATUS_ABORTED
	return &pb.AbortBackupResponse{Backup: proto.CloneOf(e.b), ObjectsDeleted: int64(len(e.uploads))}, nil
}

func (f *fakeBackup) GetBackup(ctx context.Context, req *pb.GetBackupRequest) (*pb.GetBackupResponse, error) {
	f.call("GetBackup")
	f.mu.Lock()
	defer f.mu.Unlock()
	e := f.backups[req.GetId()]
	if e == nil {
		return nil, status.Errorf(codes.NotFound, "backup %s not found", req.GetId())
	}
	return &pb.GetBackupResponse{Backup: proto.CloneOf(e.b)}, nil
}

func (f *fakeBackup) ListBackups(ctx context.Context, req *pb.ListBackupsRequest) (*pb.ListBackupsResponse, error) {
	f.call("ListBackups")
	f.mu.Lock()
	defer f.mu.Unlock()
	var all []*pb.Backup
	for i := len(f.order) - 1; i >= 0; i-- { // newest first
		b := f.backups[f.order[i]].b
		switch {
		case req.GetOrgId() != "" && b.GetOrgId() != req.GetOrgId(),
			req.GetStatus() != 0 && b.GetStatus() != req.GetStatus(),
			req.StartTimeFrom != nil && b.GetStartTime().AsTime().Before(req.GetStartTimeFrom().AsTime()),
			req.StartTimeTo != nil && !b.GetStartTime().AsTime().Before(req.GetStartTimeTo().AsTime()):
			continue
		}
		all = append(all, proto.CloneOf(b))
	}
	start, end, next, err := f.page(len(all), req.GetPageSize(), req.GetPageToken())
	if err != nil {
		return nil, err
	}
	return &pb.ListBackupsResponse{Backups: all[start:end], NextPageToken: next}, nil
}

// uploadsOf returns a backup's uploads by id.
func (f *fakeBackup) uploadsOf(backupID string) map[string]*fakeUpload {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]*fakeUpload{}
	for id, up := range f.backups[backupID].uploads {
		c := *up
		c.u = proto.CloneOf(up.u)
		c.data = slices.Clone(up.data)
		out[id] = &c
	}
	return out
}
