package client

import (
	"context"
	"errors"
	"fmt"
	"io"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"backupstore/csvframes"
	"backupstore/internal/wirecodec"
	pb "backupstore/proto/backupstore/v1"
)

// DefaultMaxFrameBytes is what one stored frame of a zstd-encoded
// ReadRecords stream may decode to, and the window its decoder may hold,
// unless WithMaxFrameBytes says otherwise: the service's frames decode to at
// most 9 MiB at its defaults. The server's numbers are never a limit here:
// a frame that claims more is refused before anything is allocated for it.
const DefaultMaxFrameBytes = 16 << 20

// readFrames runs the rest of a zstd-encoded ReadRecords stream whose start
// message arrived. A chunk that does not check out is read again as
// identity: the server decodes and hashes it itself, so damage in the bucket
// is found (and flagged) by the server, never on this reader's word, and
// answered DataLoss; if the server's read checks out, the frames were
// corrupted on the way and the read is Unavailable (retry).
func (c *Client) readFrames(ctx context.Context, s *recvStream[pb.ReadRecordsResponse], req *pb.ReadRecordsRequest, start *pb.ReadRecordsStart, w io.Writer) (*pb.ReadRecordsSummary, error) {
	what := "ReadRecords " + req.GetSobject()
	protocol := func(err error) error {
		return status.Errorf(codes.Internal, "%s: the zstd stream breaks the protocol: %v", what, err)
	}
	if start.GetEncoding() != pb.ContentEncoding_CONTENT_ENCODING_ZSTD {
		return nil, protocol(fmt.Errorf("the stream starts as %v, not zstd", start.GetEncoding()))
	}
	d, err := csvframes.NewDecoder(w, start.GetLineEnding(), csvframes.Options{MaxFrameBytes: c.maxFrameBytes()})
	if err != nil {
		return nil, protocol(err)
	}
	defer d.Close()
	var records int64
	for {
		m, err := s.recv()
		if errors.Is(err, io.EOF) {
			d.Close()
			return nil, cutShort(what, d.Written())
		}
		if err != nil {
			return nil, err
		}
		switch msg := m.GetMessage().(type) {
		case *pb.ReadRecordsResponse_Chunk:
			ch := msg.Chunk
			records += ch.GetRecords()
			err = d.Chunk(csvframes.Chunk{Sequence: ch.GetSequence(), BytesIn: ch.GetBytesIn(), StoredSize: ch.GetStoredSize(),
				SHA256: ch.GetSha256(), Frames: int(ch.GetFrameCount()), SkipHeader: ch.GetSkipHeader()})
		case *pb.ReadRecordsResponse_Frames:
			f := msg.Frames
			// The batch's data aliases its received buffer until every frame of it
			// is decoded; the decoder then releases it (or, if Frames fails, the
			// buffer is left to the garbage collector).
			err = d.Frames(f.GetStoredLen(), f.GetInputLen(), f.GetData(), func() { wirecodec.Release(m) })
		case *pb.ReadRecordsResponse_Summary:
			sum := msg.Summary
			n, err := d.Finish()
			if err != nil {
				return nil, c.chunkFailure(ctx, req, what, err)
			}
			if sum.GetRecords() != records || sum.GetStoredBytes() != d.Stored() {
				return nil, status.Errorf(codes.DataLoss, "%s: the summary counts %d records and %d frame bytes but the chunks announced %d and %d arrived",
					what, sum.GetRecords(), sum.GetStoredBytes(), records, d.Stored())
			}
			if err := s.end(what); err != nil {
				return nil, err
			}
			return &pb.ReadRecordsSummary{Records: sum.GetRecords(), MissingIds: sum.GetMissingIds(), Bytes: n,
				StoredBytes: sum.GetStoredBytes(), Encoding: sum.GetEncoding()}, nil
		default:
			err = fmt.Errorf("a %T message", msg)
		}
		if err != nil {
			d.Close()
			if errors.Is(err, csvframes.ErrMalformed) {
				return nil, protocol(err)
			}
			return nil, c.chunkFailure(ctx, req, what, err)
		}
	}
}

// chunkFailure answers a stream the reader stopped: a chunk whose content
// did not check out is re-read as identity to let the server judge it; any
// other failure (w's own, the stream's) is returned as it is.
func (c *Client) chunkFailure(ctx context.Context, req *pb.ReadRecordsRequest, what string, err error) error {
	var ce *csvframes.ChunkError
	switch {
	case errors.Is(err, csvframes.ErrMalformed):
		return status.Errorf(codes.Internal, "%s: the zstd stream breaks the protocol: %v", what, err)
	case !errors.As(err, &ce):
		return err
	}
	seq := ce.Sequence
	re := &pb.ReadRecordsRequest{BackupId: req.GetBackupId(), Sobject: req.GetSobject(), StartSequence: seq, EndSequence: seq + 1,
		AcceptEncoding: []pb.ContentEncoding{pb.ContentEncoding_CONTENT_ENCODING_IDENTITY}}
	if _, rerr := c.ReadRecordsTo(ctx, re, io.Discard); rerr != nil {
		if status.Code(rerr) == codes.DataLoss {
			return rerr
		}
		return status.Errorf(codes.Unavailable, "%s: %v; re-reading the chunk to check it failed too: %v", what, err, rerr)
	}
	return status.Errorf(codes.Unavailable, "%s: %v, but the server's own read of that chunk checks out: the frames were corrupted on the way; retry", what, err)
}
