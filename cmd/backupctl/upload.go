package main

import (
	"context"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"mime"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
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

// retryPolicy bounds how often an upload is retried and how long to wait
// between attempts (exponential backoff with jitter).
type retryPolicy struct {
	attempts  int // in all, the first one included
	base, max time.Duration
}

// uploadRetry is the policy of every upload; tests shorten it.
var uploadRetry = retryPolicy{attempts: 5, base: time.Second, max: 30 * time.Second}

// retryable reports whether the API allows retrying err (see storage.proto).
func retryable(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.Aborted, codes.ResourceExhausted:
		return true
	}
	return false
}

// wait sleeps before retry number n (1 for the first retry): base·2^(n-1),
// at most max, jittered by up to -50%, and at least what a RetryInfo detail
// in err asks for.
func (p retryPolicy) wait(ctx context.Context, n int, err error) error {
	d := p.max
	if n-1 < 30 && p.base<<(n-1) < p.max {
		d = p.base << (n - 1)
	}
	if d > 1 {
		d -= mrand.N(d / 2)
	}
	if st, ok := status.FromError(err); ok {
		for _, det := range st.Details() {
			if ri, ok := det.(*errdetails.RetryInfo); ok && ri.GetRetryDelay().AsDuration() > d {
				d = min(ri.GetRetryDelay().AsDuration(), 5*time.Minute)
			}
		}
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// annotate prefixes err's message with what failed. A gRPC status keeps its
// code and details, so the exit code stays the one the code documents.
func annotate(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	prefix := fmt.Sprintf(format, args...)
	if st, ok := status.FromError(err); ok {
		p := st.Proto()
		p.Message = prefix + ": " + p.Message
		return status.FromProto(p).Err()
	}
	return fmt.Errorf("%s: %w", prefix, err)
}

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
// uploadGoHeader is the response header with which the service asks for a
// file's body (see UploadFile in backup.proto).
const uploadGoHeader = "backupstore-upload"

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
			return status.Errorf(codes.DeadlineExceeded, "no progress for %s (--timeout)", idle)
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
		if err != nil || len(md.Get(uploadGoHeader)) == 0 {
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

// queryUpload returns an upload's state, nil when the service does not know
// the upload id.
func queryUpload(ctx context.Context, c *cli, client pb.BackupServiceClient, backupID, uploadID string) (*pb.Upload, error) {
	cctx, cancel := c.callCtx(ctx)
	defer cancel()
	resp, err := client.QueryUploadStatus(cctx, &pb.QueryUploadStatusRequest{BackupId: backupID, UploadId: uploadID})
	if status.Code(err) == codes.NotFound {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return resp.GetUpload(), nil
}

// progressFunc is told the bytes of an upload done so far: sent, skipped by
// a resume, or all of them when the service deduplicated the body. It may go
// down when a retry starts over.
type progressFunc func(done int64)

// recordsBody opens a record chunk's bytes from the start, for each attempt.
type recordsBody func() (io.Reader, func() error, error)

// uploadRecords uploads one record chunk, retrying retryable failures from
// the start with the same upload id (record chunks always restart from 0).
// A retry first asks whether the lost attempt committed after all. With
// retry false a failure is returned at once (the body cannot be re-read).
func uploadRecords(ctx context.Context, c *cli, client pb.BackupServiceClient, hdr *pb.RecordsHeader,
	open recordsBody, retry bool, progress progressFunc,
) (*pb.UploadResult, error) {
	attempts := uploadRetry.attempts
	if !retry {
		attempts = 1
	}
	for n := 1; ; n++ {
		if n > 1 {
			u, err := queryUpload(ctx, c, client, hdr.GetBackupId(), hdr.GetUploadId())
			if err == nil && u.GetState() == pb.UploadState_UPLOAD_STATE_COMMITTED {
				return u.GetResult(), nil
			}
		}
		res, err := uploadRecordsOnce(ctx, c, client, hdr, open, progress)
		if err == nil {
			return res, nil
		}
		if !retryable(err) || n >= attempts || ctx.Err() != nil {
			return nil, err
		}
		if err := uploadRetry.wait(ctx, n, err); err != nil {
			return nil, err
		}
	}
}

func uploadRecordsOnce(ctx context.Context, c *cli, client pb.BackupServiceClient, hdr *pb.RecordsHeader,
	open recordsBody, progress progressFunc,
) (*pb.UploadResult, error) {
	body, closeBody, err := open()
	if err != nil {
		return nil, err
	}
	defer closeBody()
	var done int64
	progress(0)
	resp, err := sendUpload(ctx, c.g.timeout, client.UploadRecords,
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

// fileJob is one file upload: the header to send (write_offset is set per
// attempt) and the local file.
type fileJob struct {
	hdr   *pb.FileHeader
	local string // the file to read
	size  int64  // its size when the upload was planned
	// query says whether the upload id may already exist, so that its state
	// must be asked before the first attempt.
	query bool
	// known is what ListUploads said about the upload; used instead of a
	// first query.
	known *pb.Upload
}

// fileOutcome says how a file upload went.
type fileOutcome struct {
	result    *pb.UploadResult
	resumedAt int64 // > 0 when an earlier attempt's committed bytes were kept
	already   bool  // the upload had committed before this command asked
}

// uploadFile uploads one file, resuming at the service's committed size:
// before the first attempt when the job says so, and before every retry.
func uploadFile(ctx context.Context, c *cli, client pb.BackupServiceClient, job fileJob, progress progressFunc) (fileOutcome, error) {
	var out fileOutcome
	f, err := os.Open(job.local)
	if err != nil {
		return out, err
	}
	defer f.Close()
	query, known := job.query, job.known
	for n := 1; ; n++ {
		var offset int64
		var err error
		u := known
		known = nil
		if u == nil && query {
			u, err = queryUpload(ctx, c, client, job.hdr.GetBackupId(), job.hdr.GetUploadId())
		}
		if err == nil && u != nil {
			switch u.GetState() {
			case pb.UploadState_UPLOAD_STATE_COMMITTED:
				progress(job.size)
				out.result, out.already = u.GetResult(), n == 1
				return out, nil
			case pb.UploadState_UPLOAD_STATE_PENDING:
				offset = u.GetCommittedSize()
			}
			if offset > job.size {
				return out, fmt.Errorf("the service holds %d bytes of upload %s, more than the file's %d: did the file change?",
					offset, job.hdr.GetUploadId(), job.size)
			}
		}
		if err == nil {
			if err = uploadFileOnce(ctx, c, client, job, f, offset, progress, &out); err == nil {
				return out, nil
			}
		}
		// OUT_OF_RANGE: the committed size moved after it was asked (an
		// older stream of this upload recorded a part meanwhile): ask again.
		if !(retryable(err) || status.Code(err) == codes.OutOfRange) || n >= uploadRetry.attempts || ctx.Err() != nil {
			return out, err
		}
		if err := uploadRetry.wait(ctx, n, err); err != nil {
			return out, err
		}
		query = true
	}
}

func uploadFileOnce(ctx context.Context, c *cli, client pb.BackupServiceClient, job fileJob, f *os.File,
	offset int64, progress progressFunc, out *fileOutcome,
) error {
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return err
	}
	hdr := job.hdr
	h := &pb.FileHeader{
		BackupId: hdr.GetBackupId(), ParentId: hdr.GetParentId(), Path: hdr.GetPath(), Name: hdr.GetName(),
		ContentType: hdr.GetContentType(), UploadId: hdr.GetUploadId(), WriteOffset: offset,
		DeclaredSize: hdr.DeclaredSize, DeclaredSha256: hdr.GetDeclaredSha256(),
	}
	done := offset
	progress(done)
	resp, err := sendUpload(ctx, c.g.timeout, client.UploadFile,
		&pb.UploadFileRequest{Message: &pb.UploadFileRequest_Header{Header: h}},
		&pb.UploadFileRequest{Message: &pb.UploadFileRequest_Finish{Finish: &pb.FinishWrite{}}},
		func(b []byte) *pb.UploadFileRequest {
			return &pb.UploadFileRequest{Message: &pb.UploadFileRequest_Data{Data: b}}
		},
		f, func(n int64) { done += n; progress(done) }, h.GetDeclaredSha256() != "" && offset == 0)
	if err != nil {
		return err
	}
	out.result = resp.GetResult()
	out.resumedAt = offset
	progress(job.size)
	return nil
}

// hashFile returns the lowercase hex SHA-256 and the size of a file.
func hashFile(ctx context.Context, name string) (string, int64, error) {
	f, err := os.Open(name)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, ctxReader{ctx, f})
	if err != nil {
		return "", 0, fmt.Errorf("hash %s: %w", name, err)
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

var (
	uuidPattern   = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
	sha256Pattern = regexp.MustCompile(`^[0-9a-fA-F]{64}$`)
)

// uuidNamespace is backupctl's namespace for name-based (version 5) upload
// ids. Changing it would make resumed runs re-upload everything.
var uuidNamespace = [16]byte{0x3b, 0x6f, 0x2c, 0x8e, 0x51, 0x0d, 0x4a, 0x7b, 0x9c, 0x44, 0x0e, 0x1f, 0x6a, 0x52, 0xd3, 0x87}

// uuidV5 returns the RFC 9562 version 5 UUID of name in namespace ns.
func uuidV5(ns [16]byte, name string) string {
	h := sha1.New()
	h.Write(ns[:])
	h.Write([]byte(name))
	var u [16]byte
	copy(u[:], h.Sum(nil))
	u[6] = u[6]&0x0f | 0x50
	u[8] = u[8]&0x3f | 0x80
	return formatUUID(u)
}

// uuidV4 returns a random UUID.
func uuidV4() string {
	var u [16]byte
	_, _ = rand.Read(u[:]) // never fails
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return formatUUID(u)
}

func formatUUID(u [16]byte) string {
	s := hex.EncodeToString(u[:])
	return s[0:8] + "-" + s[8:12] + "-" + s[12:16] + "-" + s[16:20] + "-" + s[20:32]
}

// uploadIDFlag checks an --upload-id value, or makes a random one.
func uploadIDFlag(cmd *command, v string) (string, bool, error) {
	if v == "" {
		return uuidV4(), false, nil
	}
	if !uuidPattern.MatchString(v) {
		return "", false, usagef(cmd.path(), "--upload-id %q: want a UUID", v)
	}
	return strings.ToLower(v), true, nil
}

func backupUploadRecords(ctx context.Context, c *cli, cmd *command, args []string) error {
	fs := c.newFlagSet("backupctl " + cmd.path())
	hdr := &pb.RecordsHeader{}
	refs := &pairList{what: "reference"}
	var seq int
	var uploadID string
	fs.StringVar(&hdr.BackupId, "backup", "", "backup `id` (required)")
	fs.StringVar(&hdr.Sobject, "sobject", "", "sObject API `name`, e.g. Account (required)")
	fs.IntVar(&seq, "sequence", 0, "the chunk's `number` within the record set: 0, 1, 2, ...")
	fs.Var(refs, "ref", "reference column to index, `Field=Target`, e.g. AccountId=Account; repeatable")
	fs.StringVar(&uploadID, "upload-id", "", "client-chosen `uuid`; default: a random one")
	pos, err := c.parse(cmd, fs, args)
	if err != nil {
		return err
	}
	switch {
	case len(pos) == 0:
		return usagef(cmd.path(), "missing FILE (or - for stdin)")
	case len(pos) > 1:
		return usagef(cmd.path(), "want one FILE, got %d arguments", len(pos))
	}
	if err := required(cmd, [2]string{"backup", hdr.BackupId}, [2]string{"sobject", hdr.Sobject}); err != nil {
		return err
	}
	if !sObjectName.MatchString(hdr.Sobject) {
		return usagef(cmd.path(), "--sobject %q: not an sObject API name ([A-Za-z][A-Za-z0-9_]{0,79})", hdr.Sobject)
	}
	if seq < 0 || seq > 1<<31-1 {
		return usagef(cmd.path(), "--sequence %d: want 0 or more", seq)
	}
	hdr.Sequence = int32(seq)
	if hdr.References, err = refs.references(cmd); err != nil {
		return err
	}
	if hdr.UploadId, _, err = uploadIDFlag(cmd, uploadID); err != nil {
		return err
	}

	var open recordsBody
	retry := pos[0] != "-"
	if retry {
		f, err := os.Open(pos[0])
		if err != nil {
			return usagef(cmd.path(), "%v", err)
		}
		defer f.Close()
		if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
			retry = false // a pipe or device is read once
		}
		first := true
		open = func() (io.Reader, func() error, error) {
			if !first {
				if _, err := f.Seek(0, io.SeekStart); err != nil {
					return nil, nil, err
				}
			}
			first = false
			return ctxReader{ctx, f}, func() error { return nil }, nil
		}
	} else {
		open = func() (io.Reader, func() error, error) {
			return ctxReader{ctx, c.stdin}, func() error { return nil }, nil
		}
	}

	client, done, err := c.backupClient()
	if err != nil {
		return err
	}
	defer done()
	res, err := uploadRecords(ctx, c, client, hdr, open, retry, func(int64) {})
	if err != nil {
		return err
	}
	if c.json() {
		return printJSON(c.stdout, &pb.UploadRecordsResponse{Result: res})
	}
	return printUploadResult(c.stdout, res)
}

func backupUploadFile(ctx context.Context, c *cli, cmd *command, args []string) error {
	fs := c.newFlagSet("backupctl " + cmd.path())
	hdr := &pb.FileHeader{}
	var uploadID, sum string
	var hash bool
	fs.StringVar(&hdr.BackupId, "backup", "", "backup `id` (required)")
	fs.StringVar(&hdr.ParentId, "parent", "", "`id` of the record the file belongs to (required)")
	fs.StringVar(&hdr.Path, "path", "", "the worker's `path` for the file; default: FILE as given")
	fs.StringVar(&hdr.Name, "name", "", "display `name`; default: FILE's base name")
	fs.StringVar(&hdr.ContentType, "content-type", "", "content `type`; default: guessed from the extension")
	fs.StringVar(&sum, "sha256", "", "declare the body's SHA-256 (lowercase `hex`), enabling deduplication")
	fs.BoolVar(&hash, "hash", false, "compute and declare the body's SHA-256 first, enabling deduplication")
	fs.StringVar(&uploadID, "upload-id", "", "client-chosen `uuid`; an existing pending upload resumes; default: a random one")
	pos, err := c.parse(cmd, fs, args)
	if err != nil {
		return err
	}
	switch {
	case len(pos) == 0:
		return usagef(cmd.path(), "missing FILE")
	case len(pos) > 1:
		return usagef(cmd.path(), "want one FILE, got %d arguments", len(pos))
	}
	local := pos[0]
	if err := required(cmd, [2]string{"backup", hdr.BackupId}, [2]string{"parent", hdr.ParentId}); err != nil {
		return err
	}
	if sum != "" && hash {
		return usagef(cmd.path(), "--sha256 and --hash are mutually exclusive")
	}
	if sum != "" && !sha256Pattern.MatchString(sum) {
		return usagef(cmd.path(), "--sha256 %q: want 64 hex digits", sum)
	}
	var query bool
	if hdr.UploadId, query, err = uploadIDFlag(cmd, uploadID); err != nil {
		return err
	}
	fi, err := os.Stat(local)
	if err != nil {
		return usagef(cmd.path(), "%v", err)
	}
	if !fi.Mode().IsRegular() {
		return usagef(cmd.path(), "%s: not a regular file (uploads resume by seeking)", local)
	}
	size := fi.Size()
	if hash {
		if sum, size, err = hashFile(ctx, local); err != nil {
			return err
		}
	}
	hdr.DeclaredSha256 = strings.ToLower(sum)
	hdr.DeclaredSize = &size
	if hdr.Path == "" {
		hdr.Path = filepath.ToSlash(local)
	}
	if hdr.Name == "" {
		hdr.Name = filepath.Base(local)
	}
	if hdr.ContentType == "" {
		hdr.ContentType = contentTypeOf(local)
	}

	client, done, err := c.backupClient()
	if err != nil {
		return err
	}
	defer done()
	out, err := uploadFile(ctx, c, client, fileJob{hdr: hdr, local: local, size: size, query: query}, func(int64) {})
	if err != nil {
		return err
	}
	switch {
	case out.already:
		fmt.Fprintf(c.stderr, "backupctl: upload %s had already committed\n", hdr.UploadId)
	case out.resumedAt > 0:
		fmt.Fprintf(c.stderr, "backupctl: resumed at byte %d of %d\n", out.resumedAt, size)
	}
	if c.json() {
		return printJSON(c.stdout, &pb.UploadFileResponse{Result: out.result})
	}
	return printUploadResult(c.stdout, out.result)
}

// contentTypeOf guesses a content type from a file name's extension; "" when
// unknown, leaving the choice to the service.
func contentTypeOf(name string) string {
	return mime.TypeByExtension(strings.ToLower(filepath.Ext(name)))
}
