package client

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "backupstore/proto/backupstore/v1"
)

// MaxBatchedFile is the largest body UploadFiles sends: the service's
// default pack threshold. Larger files go through UploadFile.
const MaxBatchedFile = 1 << 20

// SmallFile is one file of UploadFiles: its header fields and its whole
// body (at most MaxBatchedFile bytes).
type SmallFile struct {
	File
	Body []byte
}

// UploadFiles uploads many small files on one UploadFiles stream, all of
// them in flight at once within the service's window, so that they share
// packs (about one PUT per thousand files). done is called once per file,
// from one goroutine, when the service answered it durably (res) or for
// good (err); files are answered in any order. A file without an upload id
// gets a random one; SHA-256 is computed when not given. A stream that
// breaks, and a file answered with a retryable code, are resent (the same
// upload ids: a file that had committed answers its first result) under
// the client's retry policy. The error is the stream's last one when files
// were left unanswered.
func (c *Client) UploadFiles(ctx context.Context, backupID string, files []SmallFile, done func(i int, res *pb.UploadResult, err error)) error {
	hdrs := make([]*pb.FileHeader, len(files))
	for i := range files {
		f := &files[i]
		if len(f.Body) > MaxBatchedFile {
			return fmt.Errorf("client: UploadFiles: file %d (%s) is %d bytes, more than %d: use UploadFile", i, f.Path, len(f.Body), MaxBatchedFile)
		}
		id := f.UploadID
		if id == "" {
			// Time-ordered: the catalog keeps a row per upload id, keyed by it, and ids that
			// follow each other keep one backup's rows together.
			id = uuid.Must(uuid.NewV7()).String()
		}
		sum := f.SHA256
		if sum == "" {
			s := sha256.Sum256(f.Body)
			sum = hex.EncodeToString(s[:])
		}
		size := int64(len(f.Body))
		hdrs[i] = &pb.FileHeader{BackupId: backupID, ParentId: f.ParentID, Path: f.Path, Name: f.Name, ContentType: f.ContentType,
			UploadId: id, DeclaredSize: &size, DeclaredSha256: sum}
	}
	left := map[string]int{} // upload id → file index, not yet answered for good
	for i, h := range hdrs {
		if _, dup := left[h.UploadId]; dup {
			return fmt.Errorf("client: UploadFiles: upload id %s is given to two files", h.UploadId)
		}
		left[h.UploadId] = i
	}
	// Unimplemented (a service older than UploadFiles) comes back at once,
	// before any file is answered: the caller may send them with UploadFile.
	return c.retry.do(ctx, Retryable, func(int) error {
		err := c.uploadFilesOnce(ctx, files, hdrs, left, done)
		if err == nil && len(left) > 0 {
			err = status.Errorf(codes.Unavailable, "UploadFiles: %d files answered with a retryable error", len(left))
		}
		return err
	})
}

// uploadFilesOnce runs one stream for the files still in left, and removes
// each file answered for good.
func (c *Client) uploadFilesOnce(ctx context.Context, files []SmallFile, hdrs []*pb.FileHeader, left map[string]int,
	done func(i int, res *pb.UploadResult, err error)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := c.backup.UploadFiles(ctx)
	if err != nil {
		return err
	}
	var order []int
	for _, i := range left {
		order = append(order, i)
	}
	sendErr := make(chan error, 1)
	go func() {
		for _, i := range order {
			h := hdrs[i]
			if err := st.Send(&pb.UploadFilesRequest{Message: &pb.UploadFilesRequest_Header{Header: h}}); err != nil {
				sendErr <- err
				return
			}
			if err := st.Send(&pb.UploadFilesRequest{Message: &pb.UploadFilesRequest_Data{Data: &pb.FileData{UploadId: h.UploadId, Data: files[i].Body}}}); err != nil {
				sendErr <- err
				return
			}
			if p := files[i].Progress; p != nil {
				p(int64(len(files[i].Body)))
			}
		}
		sendErr <- st.CloseSend()
	}()
	for {
		a, err := st.Recv()
		if errors.Is(err, io.EOF) {
			if serr := <-sendErr; serr != nil && !errors.Is(serr, io.EOF) {
				return serr
			}
			return nil
		}
		if err != nil {
			return err
		}
		i, ok := left[a.GetUploadId()]
		if !ok {
			continue // answered for good already (a resend's duplicate)
		}
		if fe := a.GetError(); fe != nil {
			ferr := status.Error(codes.Code(fe.GetCode()), fe.GetMessage())
			if Retryable(ferr) {
				continue // resent with the next stream
			}
			delete(left, a.GetUploadId())
			done(i, nil, annotate(ferr, "file %s", files[i].Path))
			continue
		}
		delete(left, a.GetUploadId())
		done(i, a.GetResult(), nil)
	}
}
