package client

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "backupstore/proto/backupstore/v1"
)

// dataMessageSize is the payload of one data message: the protocol allows
// 4 MiB and calls 1 MiB the sweet spot.
const dataMessageSize = 1 << 20

// bufPool holds dataMessageSize buffers, so that a run of many small files
// does not allocate a buffer per upload.
var bufPool = sync.Pool{New: func() any { return new([dataMessageSize]byte) }}

var errStalled = errors.New("upload stalled")

// sendUpload runs one upload stream: the header, body in data messages of
// at most dataMessageSize bytes, the finish message; then it returns the
// response. The stream is cancelled when no message goes out (or no
// response comes back) for idle (0: never), because a whole chunk cannot
// be bounded by a per-call timeout. sent is told every data message's size.
//
// The service may answer before the body is sent (a deduplicated file):
// Send then reports io.EOF and the response is read at once. A local read
// error cancels the stream, so the service never commits a partial body.
func sendUpload[Req, Resp any](ctx context.Context, idle time.Duration,
	open func(context.Context, ...grpc.CallOption) (grpc.ClientStreamingClient[Req, Resp], error),
	header, finish *Req, data func([]byte) *Req, body io.Reader, sent func(int64), waitGo bool,
) (*Resp, error) {
	sctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	touch := func() {}
	if idle > 0 {
		timer := time.AfterFunc(idle, func() { cancel(errStalled) })
		defer timer.Stop()
		touch = func() { timer.Reset(idle) }
	}
	fail := func(err error) error {
		if ctx.Err() == nil && errors.Is(context.Cause(sctx), errStalled) {
			return status.Errorf(codes.DeadlineExceeded, "no progress for %s (call timeout)", idle)
		}
		return err
	}

	stream, err := open(sctx)
	if err != nil {
		return nil, fail(err)
	}
	// send reports whether the stream is still open; io.EOF means the
	// service has answered or failed, and CloseAndRecv says which.
	send := func(m *Req) (bool, error) {
		if err := stream.Send(m); err != nil {
			if errors.Is(err, io.EOF) {
				return false, nil
			}
			return false, fail(err)
		}
		touch()
		return true, nil
	}
	open2, err := send(header)
	if err != nil {
		return nil, err
	}
	if open2 && waitGo {
		// A file with a declared SHA-256 may be stored already: the service
		// then answers at once; otherwise it asks for the body with a
		// response header. Waiting costs one round trip and saves the body.
		md, err := stream.Header()
		if err != nil || len(md.Get(pb.UploadHeader)) == 0 {
			open2 = false // answered (or failed): CloseAndRecv says which
		}
	}
	if open2 {
		bp := bufPool.Get().(*[dataMessageSize]byte)
		defer bufPool.Put(bp)
		buf := bp[:]
		for open2 {
			n, rerr := io.ReadFull(body, buf)
			if n > 0 {
				if open2, err = send(data(buf[:n])); err != nil {
					return nil, err
				}
				sent(int64(n))
			}
			if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
				break
			}
			if rerr != nil {
				cancel(rerr)
				return nil, rerr
			}
			if err := sctx.Err(); err != nil {
				return nil, fail(status.FromContextError(err).Err())
			}
		}
		if open2 {
			if _, err := send(finish); err != nil {
				return nil, err
			}
		}
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		return nil, fail(err)
	}
	return resp, nil
}

// QueryUpload returns an upload's state, nil when the service does not know
// the upload id.
func (c *Client) QueryUpload(ctx context.Context, backupID, uploadID string) (*pb.Upload, error) {
	cctx, cancel := c.callCtx(ctx)
	defer cancel()
	resp, err := c.backup.QueryUploadStatus(cctx, &pb.QueryUploadStatusRequest{BackupId: backupID, UploadId: uploadID})
	if status.Code(err) == codes.NotFound {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return resp.GetUpload(), nil
}

// RecordsOptions are the optional settings of UploadRecords.
type RecordsOptions struct {
	// Sequence is the chunk's number within the record set: 0, 1, 2, ...
	Sequence int32
	// References are the reference columns to index.
	References []*pb.ReferenceField
	// UploadID is the client-chosen upload id (a UUID); "" for a random
	// one. The same id makes a retried call reopen the same upload.
	UploadID string
	// Progress, if set, is told the bytes of the upload done so far. It
	// may go down when a retry starts over.
	Progress func(done int64)
}

// UploadRecords uploads one chunk of an sObject's record set (CSV whose first
// row is the header of field API names) and returns its result. Retryable
// failures are retried from the start of body with the same upload id
// (record chunks always restart from 0) when body is an io.Seeker that can
// seek; otherwise body is sent once. A retry first asks whether the lost
// attempt committed after all.
func (c *Client) UploadRecords(ctx context.Context, backupID, sobject string, body io.Reader, opts RecordsOptions) (*pb.UploadResult, error) {
	hdr := &pb.RecordsHeader{BackupId: backupID, Sobject: sobject, Sequence: opts.Sequence,
		References: opts.References, UploadId: opts.UploadID}
	if hdr.UploadId == "" {
		hdr.UploadId = uuid.NewString()
	}
	var start int64
	retry := false
	if s, ok := body.(io.Seeker); ok {
		var err error
		start, err = s.Seek(0, io.SeekCurrent)
		retry = err == nil // a pipe is read once
	}
	first := true
	open := func() (io.Reader, func() error, error) {
		if !first {
			if _, err := body.(io.Seeker).Seek(start, io.SeekStart); err != nil {
				return nil, nil, err
			}
		}
		first = false
		return ctxReader{ctx, body}, func() error { return nil }, nil
	}
	return c.uploadRecords(ctx, hdr, open, retry, opts.Progress)
}

// recordsBody opens a record chunk's bytes from the start, for each attempt.
type recordsBody func() (io.Reader, func() error, error)

func (c *Client) uploadRecords(ctx context.Context, hdr *pb.RecordsHeader, open recordsBody, retry bool, progress func(int64)) (*pb.UploadResult, error) {
	if progress == nil {
		progress = func(int64) {}
	}
	policy := c.retry
	if !retry {
		policy.Attempts = 1
	}
	var res *pb.UploadResult
	err := policy.do(ctx, Retryable, func(n int) error {
		if n > 1 {
			u, err := c.QueryUpload(ctx, hdr.GetBackupId(), hdr.GetUploadId())
			if err == nil && u.GetState() == pb.UploadState_UPLOAD_STATE_COMMITTED {
				res = u.GetResult()
				return nil
			}
		}
		var err error
		res, err = c.uploadRecordsOnce(ctx, hdr, open, progress)
		return err
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

func (c *Client) uploadRecordsOnce(ctx context.Context, hdr *pb.RecordsHeader, open recordsBody, progress func(int64)) (*pb.UploadResult, error) {
	body, closeBody, err := open()
	if err != nil {
		return nil, err
	}
	defer closeBody()
	var done int64
	progress(0)
	resp, err := sendUpload(ctx, c.timeout, c.backup.UploadRecords,
		&pb.UploadRecordsRequest{Message: &pb.UploadRecordsRequest_Header{Header: hdr}},
		&pb.UploadRecordsRequest{Message: &pb.UploadRecordsRequest_Finish{Finish: &pb.FinishWrite{}}},
		func(b []byte) *pb.UploadRecordsRequest {
			return &pb.UploadRecordsRequest{Message: &pb.UploadRecordsRequest_Data{Data: b}}
		},
		body, func(n int64) { done += n; progress(done) }, false)
	if err != nil {
		return nil, err
	}
	return resp.GetResult(), nil
}

// File describes one file body to upload.
type File struct {
	ParentID    string // id of the record the file belongs to (required)
	Path        string // the worker's path for the file
	Name        string // display name
	ContentType string
	// SHA256 is the body's declared SHA-256 (lowercase hex), "" for none.
	// Declared, it lets the service skip a body it already stores: the
	// upload then completes without sending it.
	SHA256 string
	// UploadID is the client-chosen upload id (a UUID); "" for a random
	// one. A known id is asked about first: committed, it is returned as
	// it is; pending, it resumes at the service's committed size.
	UploadID string
	// Progress, if set, is told the bytes of the upload done so far: sent,
	// skipped by a resume, or all of them when the service deduplicated
	// the body.
	Progress func(done int64)
}

// FileResult is how a file upload went.
type FileResult struct {
	Result    *pb.UploadResult
	ResumedAt int64 // > 0 when an earlier attempt's committed bytes were kept
	Already   bool  // the upload had committed before this call asked
}

// UploadFile uploads one file body of size bytes (declared to the service),
// read from body. It resumes at the service's committed size: before the
// first attempt when File.UploadID is set, and before every retry, which
// happens on the retryable codes and on OutOfRange (the committed size moved
// after it was asked).
func (c *Client) UploadFile(ctx context.Context, backupID string, f File, body io.ReaderAt, size int64) (*FileResult, error) {
	hdr := &pb.FileHeader{BackupId: backupID, ParentId: f.ParentID, Path: f.Path, Name: f.Name,
		ContentType: f.ContentType, UploadId: f.UploadID, DeclaredSize: &size, DeclaredSha256: f.SHA256}
	query := hdr.UploadId != ""
	if !query {
		hdr.UploadId = uuid.NewString()
	}
	return c.uploadFile(ctx, fileJob{hdr: hdr, body: body, size: size, query: query}, f.Progress)
}

// fileJob is one file upload: the header to send (write_offset is set per
// attempt) and the body.
type fileJob struct {
	hdr  *pb.FileHeader
	body io.ReaderAt
	size int64 // the body's size when the upload was planned
	// query says whether the upload id may already exist, so that its state
	// must be asked before the first attempt.
	query bool
	// known is what ListUploads said about the upload; used instead of a
	// first query.
	known *pb.Upload
}

func (c *Client) uploadFile(ctx context.Context, job fileJob, progress func(int64)) (*FileResult, error) {
	if progress == nil {
		progress = func(int64) {}
	}
	out := &FileResult{}
	query, known := job.query, job.known
	again := func(err error) bool {
		// OUT_OF_RANGE: the committed size moved after it was asked (an
		// older stream of this upload recorded a part meanwhile): ask again.
		return Retryable(err) || status.Code(err) == codes.OutOfRange
	}
	err := c.retry.do(ctx, again, func(n int) error {
		var offset int64
		u := known
		known = nil
		if u == nil && (query || n > 1) {
			var err error
			if u, err = c.QueryUpload(ctx, job.hdr.GetBackupId(), job.hdr.GetUploadId()); err != nil {
				return err
			}
		}
		if u != nil {
			switch u.GetState() {
			case pb.UploadState_UPLOAD_STATE_COMMITTED:
				progress(job.size)
				out.Result, out.Already = u.GetResult(), n == 1
				return nil
			case pb.UploadState_UPLOAD_STATE_PENDING:
				offset = u.GetCommittedSize()
			}
			if offset > job.size {
				return fmt.Errorf("the service holds %d bytes of upload %s, more than the file's %d: did the file change?",
					offset, job.hdr.GetUploadId(), job.size)
			}
		}
		return c.uploadFileOnce(ctx, job, offset, progress, out)
	})
	if err != nil {
		return out, err
	}
	return out, nil
}

func (c *Client) uploadFileOnce(ctx context.Context, job fileJob, offset int64, progress func(int64), out *FileResult) error {
	hdr := job.hdr
	h := &pb.FileHeader{
		BackupId: hdr.GetBackupId(), ParentId: hdr.GetParentId(), Path: hdr.GetPath(), Name: hdr.GetName(),
		ContentType: hdr.GetContentType(), UploadId: hdr.GetUploadId(), WriteOffset: offset,
		DeclaredSize: hdr.DeclaredSize, DeclaredSha256: hdr.GetDeclaredSha256(),
	}
	done := offset
	progress(done)
	// Read to the end of the body, not to the planned size: a body that
	// grew is the service's to refuse against the declared size.
	body := io.NewSectionReader(job.body, offset, math.MaxInt64-offset)
	resp, err := sendUpload(ctx, c.timeout, c.backup.UploadFile,
		&pb.UploadFileRequest{Message: &pb.UploadFileRequest_Header{Header: h}},
		&pb.UploadFileRequest{Message: &pb.UploadFileRequest_Finish{Finish: &pb.FinishWrite{}}},
		func(b []byte) *pb.UploadFileRequest {
			return &pb.UploadFileRequest{Message: &pb.UploadFileRequest_Data{Data: b}}
		},
		ctxReader{ctx, body}, func(n int64) { done += n; progress(done) }, h.GetDeclaredSha256() != "" && offset == 0)
	if err != nil {
		return err
	}
	out.Result = resp.GetResult()
	out.ResumedAt = offset
	progress(job.size)
	return nil
}

// HashSHA256 returns the lowercase hex SHA-256 of r's bytes and their count,
// reading until EOF or until ctx ends.
func HashSHA256(ctx context.Context, r io.Reader) (string, int64, error) {
	h := sha256.New()
	n, err := io.Copy(h, ctxReader{ctx, r})
	if err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// ctxReader stops reading once ctx ends, so long local reads obey Ctrl-C.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (r ctxReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}

// uploadNamespace is the namespace of BackupDir's name-based (version 5)
// upload ids. Changing it would make resumed runs re-upload everything.
var uploadNamespace = uuid.UUID{0x3b, 0x6f, 0x2c, 0x8e, 0x51, 0x0d, 0x4a, 0x7b, 0x9c, 0x44, 0x0e, 0x1f, 0x6a, 0x52, 0xd3, 0x87}

// RecordsUploadID is the upload id BackupDir gives chunk seq of sobject's
// record set in a backup: the same on every run, so that a rerun finds it.
func RecordsUploadID(backupID, sobject string, seq int) string {
	return uuid.NewSHA1(uploadNamespace, fmt.Appendf(nil, "%s/records/%s/%d", backupID, sobject, seq)).String()
}

// FileUploadID is the upload id BackupDir gives the file at path rel (under
// files/) in a backup.
func FileUploadID(backupID, rel string) string {
	return uuid.NewSHA1(uploadNamespace, []byte(backupID+"/file/"+rel)).String()
}
