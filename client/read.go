package client

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"iter"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"backupstore/internal/wirecodec"
	pb "backupstore/proto/backupstore/v1"
)

// MaxRecvMsgSize is what restore calls accept per message: a data message
// may hold 4 MiB plus framing, and a contents page up to 1000 files. Pass it
// as grpc.MaxCallRecvMsgSize when calling the Restore stub directly.
const MaxRecvMsgSize = 64 << 20

// recvStream receives a server stream's messages. A stream may run for
// hours, so the call timeout does not bound it as a whole: Recv fails with
// DeadlineExceeded when no message arrives for that long. Time spent
// writing what arrived does not count.
type recvStream[T any] struct {
	s      grpc.ServerStreamingClient[T]
	ctx    context.Context // the caller's
	sctx   context.Context // the stream's
	cancel context.CancelCauseFunc
	idle   time.Duration
	timer  *time.Timer
}

func openRecv[Req, T any](ctx context.Context, idle time.Duration,
	call func(context.Context, *Req, ...grpc.CallOption) (grpc.ServerStreamingClient[T], error), req *Req,
) (*recvStream[T], error) {
	sctx, cancel := context.WithCancelCause(ctx)
	r := &recvStream[T]{ctx: ctx, sctx: sctx, cancel: cancel, idle: idle}
	if idle > 0 {
		r.timer = time.AfterFunc(idle, func() { cancel(errStalled) })
	}
	s, err := call(sctx, req, grpc.MaxCallRecvMsgSize(MaxRecvMsgSize))
	if err != nil {
		err = r.fail(err)
		r.close()
		return nil, err
	}
	r.s = s
	return r, nil
}

// recv returns the next message; io.EOF when the stream ended without an
// error.
func (r *recvStream[T]) recv() (*T, error) {
	if r.timer != nil {
		r.timer.Reset(r.idle)
	}
	m, err := r.s.Recv()
	if r.timer != nil {
		r.timer.Stop()
	}
	if err != nil {
		return nil, r.fail(err)
	}
	return m, nil
}

// end checks that nothing follows a stream's summary.
func (r *recvStream[T]) end(what string) error {
	_, err := r.recv()
	switch {
	case errors.Is(err, io.EOF):
		return nil
	case err != nil:
		return err
	}
	return fmt.Errorf("%s: a message followed the summary, which must be the last", what)
}

func (r *recvStream[T]) fail(err error) error {
	if errors.Is(err, io.EOF) {
		return err
	}
	if r.ctx.Err() == nil && errors.Is(context.Cause(r.sctx), errStalled) {
		return status.Errorf(codes.DeadlineExceeded, "no message for %s (call timeout)", r.idle)
	}
	return err
}

func (r *recvStream[T]) close() {
	if r.timer != nil {
		r.timer.Stop()
	}
	r.cancel(nil)
}

// cutShort is a read stream that ended without its summary message. The
// protocol makes it a failure: what arrived is incomplete. It is reported
// as Unavailable, like a broken connection: try again.
func cutShort(what string, n int64) error {
	return status.Errorf(codes.Unavailable,
		"%s: the stream ended after %d data bytes without its summary message: it was cut short and the data is incomplete", what, n)
}

// ReadRecordsTo runs one ReadRecords stream, writing the CSV bytes to w, and
// returns its summary once the whole stream arrived and checked out. A
// stream cut short is Unavailable; one whose summary disagrees with what
// arrived is DataLoss. It is not retried: w holds what arrived.
//
// A whole read whose request offers CONTENT_ENCODING_ZSTD in
// AcceptEncoding (ReadRecords and RestoreDir do) receives the stored frames
// and decodes them here, on GOMAXPROCS goroutines: a quarter of the bytes on
// the wire and no decoding on the server. What reaches w is the same CSV
// either way, and checked as thoroughly: every frame's checksum and size,
// and each chunk's SHA-256 before its last bytes are written. A chunk that
// does not check out is read again as identity so that the server judges
// it (DataLoss if it is damaged in the bucket, Unavailable if it was
// corrupted on the way). The summary's Bytes counts what was written.
func (c *Client) ReadRecordsTo(ctx context.Context, req *pb.ReadRecordsRequest, w io.Writer) (*pb.ReadRecordsSummary, error) {
	what := "ReadRecords " + req.GetSobject()
	s, err := openRecv(ctx, c.timeout, c.readRecords, req)
	if err != nil {
		return nil, err
	}
	defer s.close()
	var n int64
	for first := true; ; first = false {
		m, err := s.recv()
		if errors.Is(err, io.EOF) {
			return nil, cutShort(what, n)
		}
		if err != nil {
			return nil, err
		}
		switch msg := m.GetMessage().(type) {
		case *pb.ReadRecordsResponse_Start:
			if !first {
				return nil, status.Errorf(codes.Internal, "%s: a start message after the first", what)
			}
			return c.readFrames(ctx, s, req, msg.Start, w)
		case *pb.ReadRecordsResponse_Data:
			_, err := w.Write(msg.Data)
			n += int64(len(msg.Data))
			wirecodec.Release(m) // w does not keep msg.Data (io.Writer's rule)
			if err != nil {
				return nil, err
			}
		case *pb.ReadRecordsResponse_Summary:
			sum := msg.Summary
			if sum.GetBytes() != n {
				return nil, status.Errorf(codes.DataLoss, "%s: the summary counts %d bytes but %d arrived", what, sum.GetBytes(), n)
			}
			if err := s.end(what); err != nil {
				return nil, err
			}
			return sum, nil
		default:
			return nil, fmt.Errorf("%s: a message with neither data nor summary", what)
		}
	}
}

// readRecords opens a ReadRecords stream whose messages' data (CSV, or
// frames) alias the received buffers (internal/wirecodec) rather than being
// copied into fresh slices: the reader releases each message once it wrote
// or decoded its data, and the buffer goes back to a pool.
func (c *Client) readRecords(ctx context.Context, req *pb.ReadRecordsRequest, opts ...grpc.CallOption) (grpc.ServerStreamingClient[pb.ReadRecordsResponse], error) {
	return c.restore.ReadRecords(ctx, req, append(opts, grpc.ForceCodecV2(wirecodec.Codec{}))...)
}

// readFile opens a ReadFile stream whose data messages alias the received
// buffers, as readRecords does: ReadFiles releases each once its sink's
// writer returned.
func (c *Client) readFile(ctx context.Context, req *pb.ReadFileRequest, opts ...grpc.CallOption) (grpc.ServerStreamingClient[pb.ReadFileResponse], error) {
	return c.restore.ReadFile(ctx, req, append(opts, grpc.ForceCodecV2(wirecodec.Codec{}))...)
}

// AcceptZstd is the AcceptEncoding of a whole read that takes the stored
// frames as they are (ReadRecordsTo decodes and checks them).
var AcceptZstd = []pb.ContentEncoding{pb.ContentEncoding_CONTENT_ENCODING_ZSTD, pb.ContentEncoding_CONTENT_ENCODING_IDENTITY}

// ReadRecords yields the CSV of a backup's record set of sobject (all of it,
// or only the records ids when ids is not empty) in pieces as they arrive:
// the header row once, then the rows in backup order. A piece is valid until
// the loop body returns (its buffer is reused): copy what you keep. A failure
// is yielded last, with nil data; what was yielded before it is then
// incomplete.
// Requested ids the backup lacks are not reported: use ReadRecordsTo for the
// summary that lists them.
func (c *Client) ReadRecords(ctx context.Context, backupID, sobject string, ids []string) iter.Seq2[[]byte, error] {
	return func(yield func([]byte, error) bool) {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		stopped := false
		_, err := c.ReadRecordsTo(ctx, &pb.ReadRecordsRequest{BackupId: backupID, Sobject: sobject, Ids: ids, AcceptEncoding: AcceptZstd},
			writerFunc(func(p []byte) (int, error) {
				if !yield(p, nil) {
					stopped = true
					return 0, errStopped
				}
				return len(p), nil
			}))
		if err != nil && !stopped {
			yield(nil, err)
		}
	}
}

// ChecksumError is a file read whole whose bytes do not match its SHA-256:
// DataLoss (status.Code reports it).
type ChecksumError struct {
	File *pb.FileInfo
	Got  string // the SHA-256 of what arrived
}

func (e *ChecksumError) Error() string {
	return fmt.Sprintf("file %s (%s): SHA-256 %s, want %s", e.File.GetFileId(), e.File.GetPath(), e.Got, e.File.GetSha256())
}

// GRPCStatus makes the error DataLoss for status.Code and status.FromError.
func (e *ChecksumError) GRPCStatus() *status.Status { return status.New(codes.DataLoss, e.Error()) }

// WantBytes is how many bytes a read of info as req asks for returns: from
// the offset to the end of the file, at most the limit (0: no limit).
func WantBytes(info *pb.FileInfo, req *pb.ReadFileRequest) int64 {
	n := max(info.GetSize()-req.GetReadOffset(), 0)
	if l := req.GetReadLimit(); l > 0 && l < n {
		n = l
	}
	return n
}

var errStopped = errors.New("the caller stopped")

type writerFunc func([]byte) (int, error)

func (w writerFunc) Write(p []byte) (int, error) { return w(p) }

// FileSink receives the files of a ReadFile stream: Begin is called with
// each file's FileInfo and returns where its data goes; End, if set, is
// called when its data ended (at the next FileInfo or the summary) and
// checked out, with its length. The writer must not keep the slices it is
// given (io.Writer's rule): they are the received messages' buffers, reused
// once Write returns.
type FileSink struct {
	Begin func(info *pb.FileInfo) (io.Writer, error)
	End   func(info *pb.FileInfo, n int64) error
}

// ReadFiles runs one ReadFile stream into sink and returns its summary,
// checked against what arrived. Each file is checked as it ends: its length
// against what the request asks for and, for a whole read, its SHA-256
// (DataLoss otherwise, and End is not called). It is not retried.
func (c *Client) ReadFiles(ctx context.Context, req *pb.ReadFileRequest, sink FileSink) (*pb.ReadFileSummary, error) {
	what := "ReadFile " + req.GetFileId() + req.GetParentId()
	s, err := openRecv(ctx, c.timeout, c.readFile, req)
	if err != nil {
		return nil, err
	}
	defer s.close()
	var cur *pb.FileInfo
	var w io.Writer
	var h hash.Hash // of a whole read
	var n, total int64
	var files int32
	whole := req.GetReadOffset() == 0 && req.GetReadLimit() == 0
	finish := func() error {
		if cur == nil {
			return nil
		}
		info := cur
		cur = nil
		if want := WantBytes(info, req); n != want {
			return status.Errorf(codes.DataLoss, "file %s (%s): %d bytes arrived, want %d", info.GetFileId(), info.GetPath(), n, want)
		}
		if got := hex.EncodeToString(h.Sum(nil)); whole && !strings.EqualFold(got, info.GetSha256()) {
			return &ChecksumError{File: info, Got: got}
		}
		if sink.End == nil {
			return nil
		}
		return sink.End(info, n)
	}
	for {
		m, err := s.recv()
		if errors.Is(err, io.EOF) {
			return nil, cutShort(what, total)
		}
		if err != nil {
			return nil, err
		}
		switch msg := m.GetMessage().(type) {
		case *pb.ReadFileResponse_Info:
			if err := finish(); err != nil {
				return nil, err
			}
			cur, n = msg.Info, 0
			files++
			if w, err = sink.Begin(cur); err != nil {
				return nil, err
			}
			h = sha256.New()
			if whole {
				w = io.MultiWriter(w, h)
			}
		case *pb.ReadFileResponse_Data:
			if cur == nil {
				return nil, fmt.Errorf("%s: data before the first FileInfo", what)
			}
			_, err := w.Write(msg.Data)
			n += int64(len(msg.Data))
			total += int64(len(msg.Data))
			wirecodec.Release(m) // w does not keep msg.Data (io.Writer's rule)
			if err != nil {
				return nil, err
			}
		case *pb.ReadFileResponse_Summary:
			if err := finish(); err != nil {
				return nil, err
			}
			sum := msg.Summary
			if sum.GetFiles() != files || sum.GetBytes() != total {
				return nil, status.Errorf(codes.DataLoss, "%s: the summary counts %d files and %d bytes but %d and %d arrived",
					what, sum.GetFiles(), sum.GetBytes(), files, total)
			}
			if err := s.end(what); err != nil {
				return nil, err
			}
			return sum, nil
		default:
			return nil, fmt.Errorf("%s: a message with neither info, data nor summary", what)
		}
	}
}
