package client

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"runtime"
	"sync"

	"github.com/klauspost/compress/zstd"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"backupstore/csvscan"
	pb "backupstore/proto/backupstore/v1"
)

// DefaultMaxFrameBytes is what one stored frame of a zstd-encoded
// ReadRecords stream may decode to, and the window its decoder may hold,
// unless WithMaxFrameBytes says otherwise: the service's frames decode to at
// most 9 MiB at its defaults. The server's numbers are never a limit here:
// a frame that claims more is refused before anything is allocated for it.
const DefaultMaxFrameBytes = 16 << 20

// frameReader decodes a zstd-encoded ReadRecords stream (ReadRecordsStart,
// then per chunk a ChunkStart and FrameBatches) into CSV and checks it end
// to end: each frame's own checksum and its decoded length, then each
// chunk's frame count, stored and decoded sizes and SHA-256 against its
// ChunkStart. A chunk's last bytes are written only once its SHA-256
// matched. Frames are decoded on several goroutines (they are independent);
// one goroutine hashes and writes them in order.
//
// Use: start, then feed each message in order, then finish. Not safe for
// concurrent use (its own goroutines aside).
type frameReader struct {
	w        io.Writer
	maxFrame int
	dec      *zstd.Decoder

	work   chan *frameJob
	order  chan orderItem
	failed chan struct{} // closed when the writer failed (err says why)
	done   chan struct{} // closed when the writer goroutine ended
	err    error         // the writer's failure, read after failed or done
	closed bool
	wg     sync.WaitGroup
	bufs   sync.Pool

	// Counted by the feeding goroutine, for the summary.
	stored  int64
	records int64
	chunks  int

	// Owned by the writer goroutine.
	eol         []byte
	wrote       bool
	last        byte
	pending     []byte
	cur         *pb.ChunkStart
	h           hash.Hash
	skip        csvscan.RowSkipper
	frames      int32
	curStored   int64
	curInput    int64
	held        *[]byte // the chunk's last piece, owed until its hash matched
	heldPiece   []byte
	written     int64
	failedChunk int32 // the chunk whose content did not check out, or -1
}

type frameJob struct {
	raw      []byte
	inputLen int
	out      *[]byte
	err      error
	done     chan struct{}
}

// orderItem is, in stream order, a chunk start or a frame.
type orderItem struct {
	chunk *pb.ChunkStart
	job   *frameJob
}

// errChunkContent marks a chunk whose frames did not decode or check out.
var errChunkContent = errors.New("chunk content does not check out")

func newFrameReader(w io.Writer, maxFrame int) (*frameReader, error) {
	workers := max(runtime.GOMAXPROCS(0), 1)
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(workers),
		zstd.WithDecoderMaxMemory(uint64(maxFrame)), zstd.WithDecoderMaxWindow(uint64(max(maxFrame, zstd.MinWindowSize))))
	if err != nil {
		return nil, err
	}
	r := &frameReader{w: w, maxFrame: maxFrame, dec: dec,
		work: make(chan *frameJob, workers), order: make(chan orderItem, 2*workers+2),
		failed: make(chan struct{}), done: make(chan struct{}), h: sha256.New(), failedChunk: -1}
	for range workers {
		r.wg.Add(1)
		go r.decoder()
	}
	go r.writer()
	return r, nil
}

func (r *frameReader) decoder() {
	defer r.wg.Done()
	for j := range r.work {
		j.out = r.buf(j.inputLen)
		out, err := r.dec.DecodeAll(j.raw, (*j.out)[:0])
		switch {
		case err != nil:
			j.err = fmt.Errorf("a frame does not decode: %w", err)
		case len(out) != j.inputLen:
			j.err = fmt.Errorf("a frame decodes to %d bytes, the stream said %d", len(out), j.inputLen)
		}
		*j.out = out // a frame without a declared size may have grown it, within the decoder's bound
		close(j.done)
	}
}

func (r *frameReader) buf(n int) *[]byte {
	if p, ok := r.bufs.Get().(*[]byte); ok && cap(*p) >= n {
		return p
	}
	b := make([]byte, 0, n)
	return &b
}

func (r *frameReader) free(p *[]byte) {
	if p != nil {
		r.bufs.Put(p)
	}
}

// start takes the stream's first message.
func (r *frameReader) start(m *pb.ReadRecordsStart) error {
	switch eol := m.GetLineEnding(); {
	case m.GetEncoding() != pb.ContentEncoding_CONTENT_ENCODING_ZSTD:
		return fmt.Errorf("the stream starts as %v, not zstd", m.GetEncoding())
	case string(eol) != "\n" && string(eol) != "\r\n":
		return fmt.Errorf("line ending %q is neither LF nor CRLF", eol)
	default:
		r.eol = bytes.Clone(eol)
	}
	return nil
}

// enqueue hands an item to the writer, unless it failed.
func (r *frameReader) enqueue(it orderItem) error {
	select {
	case r.order <- it:
		return nil
	case <-r.failed:
		return r.err
	}
}

// failure is the writer's failure, if it failed.
func (r *frameReader) failure() error {
	select {
	case <-r.failed:
		return r.err
	default:
		return nil
	}
}

func (r *frameReader) chunk(c *pb.ChunkStart) error {
	switch {
	case c.GetFrameCount() < 0 || c.GetBytesIn() < 0 || c.GetStoredSize() < 0 || c.GetRecords() < 0:
		return fmt.Errorf("chunk %d: negative counts", c.GetSequence())
	case len(c.GetSha256()) != sha256.Size:
		return fmt.Errorf("chunk %d: a SHA-256 of %d bytes", c.GetSequence(), len(c.GetSha256()))
	}
	r.chunks++
	r.records += c.GetRecords()
	return r.enqueue(orderItem{chunk: c})
}

func (r *frameReader) batch(b *pb.FrameBatch) error {
	stored, input, data := b.GetStoredLen(), b.GetInputLen(), b.GetData()
	if len(stored) != len(input) || len(stored) == 0 {
		return fmt.Errorf("a frame batch of %d stored and %d decoded lengths", len(stored), len(input))
	}
	limit := uint64(r.maxFrame)
	var off uint64
	for i := range stored {
		if uint64(input[i]) > limit || uint64(stored[i]) > limit+limit/64+1024 || stored[i] == 0 {
			return fmt.Errorf("a frame of %d bytes stored, %d decoded (this reader takes at most %d; see WithMaxFrameBytes)", stored[i], input[i], limit)
		}
		off += uint64(stored[i])
	}
	if off != uint64(len(data)) {
		return fmt.Errorf("a frame batch whose frames add up to %d bytes holds %d", off, len(data))
	}
	r.stored += int64(len(data))
	off = 0
	for i := range stored {
		j := &frameJob{raw: data[off : off+uint64(stored[i])], inputLen: int(input[i]), done: make(chan struct{})}
		off += uint64(stored[i])
		// To the decoders first: every job the writer sees gets decoded (it
		// waits for each), and the decoders never stop before close.
		r.work <- j
		if err := r.enqueue(orderItem{job: j}); err != nil {
			return err
		}
	}
	return nil
}

// finish ends the stream (the summary arrived) and returns the CSV bytes
// written, once every frame is decoded, hashed and written.
func (r *frameReader) finish() (int64, error) {
	if err := r.enqueue(orderItem{}); err != nil {
		r.close()
		return 0, err
	}
	r.close()
	if err := r.failure(); err != nil {
		return 0, err
	}
	return r.written, nil
}

// close stops the goroutines (after finish, or on failure). Idempotent.
func (r *frameReader) close() {
	if r.closed {
		return
	}
	r.closed = true
	close(r.order)
	<-r.done
	close(r.work)
	r.wg.Wait()
	r.dec.Close()
}

// writer takes items in stream order: it waits for each frame's decoding,
// hashes and writes it; an empty item ends the stream. After a failure, or
// after the end, it only drains what follows until close.
func (r *frameReader) writer() {
	defer close(r.done)
	ended := false
	for it := range r.order {
		if it.job != nil {
			<-it.job.done
		}
		if ended || r.err != nil {
			if it.job != nil {
				r.free(it.job.out)
			}
			continue
		}
		var err error
		switch {
		case it.chunk != nil:
			if err = r.endChunk(); err == nil {
				r.beginChunk(it.chunk)
			}
		case it.job != nil:
			err = r.frame(it.job)
		default:
			err = r.endChunk()
			ended = true
		}
		if err != nil {
			r.err = err
			close(r.failed)
		}
	}
}

func (r *frameReader) beginChunk(c *pb.ChunkStart) {
	r.cur = c
	r.h.Reset()
	r.skip = csvscan.RowSkipper{}
	r.frames, r.curStored, r.curInput = 0, 0, 0
	r.pending = nil
	if r.wrote {
		r.pending = csvscan.OwedEOL([]byte{r.last}, r.eol)
	}
}

func (r *frameReader) frame(j *frameJob) error {
	c := r.cur
	if c == nil {
		r.free(j.out)
		return errors.New("frames before the first chunk")
	}
	if j.err != nil {
		r.free(j.out)
		r.failedChunk = c.GetSequence()
		return fmt.Errorf("%w: chunk %d frame %d: %v", errChunkContent, c.GetSequence(), r.frames, j.err)
	}
	r.frames++
	r.curStored += int64(len(j.raw))
	r.curInput += int64(len(*j.out))
	if r.frames > c.GetFrameCount() || r.curStored > c.GetStoredSize() || r.curInput > c.GetBytesIn() {
		r.free(j.out)
		r.failedChunk = c.GetSequence()
		return fmt.Errorf("%w: chunk %d: more frames or bytes than its start announced (%d frames, %d stored, %d decoded)",
			errChunkContent, c.GetSequence(), c.GetFrameCount(), c.GetStoredSize(), c.GetBytesIn())
	}
	plain := *j.out
	r.h.Write(plain)
	piece := plain
	if c.GetSkipHeader() {
		piece = r.skip.Skip(plain)
	}
	if err := r.release(); err != nil {
		r.free(j.out)
		return err
	}
	r.held, r.heldPiece = j.out, piece
	return nil
}

// release writes the held piece (the chunk goes on, or its hash matched).
func (r *frameReader) release() error {
	if r.held == nil {
		return nil
	}
	p := r.heldPiece
	defer func() { r.free(r.held); r.held, r.heldPiece = nil, nil }()
	if len(p) == 0 {
		return nil
	}
	if r.pending != nil {
		pend := r.pending
		r.pending = nil
		if _, err := r.w.Write(pend); err != nil {
			return err
		}
		r.written += int64(len(pend))
	}
	if _, err := r.w.Write(p); err != nil {
		return err
	}
	r.written += int64(len(p))
	r.wrote, r.last = true, p[len(p)-1]
	return nil
}

// endChunk checks the current chunk whole, then writes its last piece.
func (r *frameReader) endChunk() error {
	c := r.cur
	if c == nil {
		return nil
	}
	r.cur = nil
	if r.frames != c.GetFrameCount() || r.curStored != c.GetStoredSize() || r.curInput != c.GetBytesIn() {
		r.failedChunk = c.GetSequence()
		return fmt.Errorf("%w: chunk %d: %d frames, %d bytes stored, %d decoded arrived; its start announced %d, %d, %d",
			errChunkContent, c.GetSequence(), r.frames, r.curStored, r.curInput, c.GetFrameCount(), c.GetStoredSize(), c.GetBytesIn())
	}
	if !bytes.Equal(r.h.Sum(nil), c.GetSha256()) {
		r.failedChunk = c.GetSequence()
		return fmt.Errorf("%w: chunk %d decodes to content whose SHA-256 does not match", errChunkContent, c.GetSequence())
	}
	return r.release()
}

// readFrames runs the rest of a zstd-encoded ReadRecords stream whose start
// message arrived. A chunk that does not check out is read again as
// identity: the server decodes and hashes it itself, so damage in the bucket
// is found (and flagged) by the server, never on this reader's word, and
// answered DataLoss; if the server's read checks out, the frames were
// corrupted on the way and the read is Unavailable (retry).
func (c *Client) readFrames(ctx context.Context, s *recvStream[pb.ReadRecordsResponse], req *pb.ReadRecordsRequest, start *pb.ReadRecordsStart, w io.Writer) (*pb.ReadRecordsSummary, error) {
	what := "ReadRecords " + req.GetSobject()
	fr, err := newFrameReader(w, c.maxFrameBytes())
	if err != nil {
		return nil, err
	}
	defer fr.close()
	protocol := func(err error) error {
		return status.Errorf(codes.Internal, "%s: the zstd stream breaks the protocol: %v", what, err)
	}
	if err := fr.start(start); err != nil {
		return nil, protocol(err)
	}
	for {
		m, err := s.recv()
		if errors.Is(err, io.EOF) {
			fr.close()
			return nil, cutShort(what, fr.written)
		}
		if err != nil {
			return nil, err
		}
		switch msg := m.GetMessage().(type) {
		case *pb.ReadRecordsResponse_Chunk:
			err = fr.chunk(msg.Chunk)
		case *pb.ReadRecordsResponse_Frames:
			err = fr.batch(msg.Frames)
		case *pb.ReadRecordsResponse_Summary:
			sum := msg.Summary
			n, err := fr.finish()
			if err != nil {
				return nil, c.chunkFailure(ctx, req, what, fr, err)
			}
			if sum.GetRecords() != fr.records || sum.GetStoredBytes() != fr.stored {
				return nil, status.Errorf(codes.DataLoss, "%s: the summary counts %d records and %d frame bytes but the chunks announced %d and %d arrived",
					what, sum.GetRecords(), sum.GetStoredBytes(), fr.records, fr.stored)
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
			fr.close()
			if werr := fr.failure(); werr != nil {
				return nil, c.chunkFailure(ctx, req, what, fr, werr) // the writer's failure: content, or w's own error
			}
			return nil, protocol(err)
		}
	}
}

// chunkFailure answers a stream the reader stopped: a chunk whose content
// did not check out is re-read as identity to let the server judge it; any
// other failure (the writer's own) is returned as it is.
func (c *Client) chunkFailure(ctx context.Context, req *pb.ReadRecordsRequest, what string, fr *frameReader, err error) error {
	if !errors.Is(err, errChunkContent) {
		return err
	}
	seq := fr.failedChunk
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
