package restore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/klauspost/compress/zstd"

	"backupstore/csvscan"
	"backupstore/fault"
	"backupstore/metadata"
	"backupstore/recindex"
	"backupstore/storage"
)

// ChunkInfo describes one chunk of a passthrough read, sent before its
// frames: what they must add up to and decode to, from the catalog.
type ChunkInfo struct {
	Sequence   int32
	BytesIn    int64 // what the frames decode to, header row included
	StoredSize int64 // what the frames add up to
	SHA256     []byte
	Records    int64
	SkipHeader bool // drop the chunk's header row: not the record set's first chunk
	Frames     int
}

// FrameSink receives a passthrough read: Start once, then per chunk its
// ChunkInfo and its frames in batches of whole frames (stored and decoded
// length per frame; data is their concatenation, valid only during the
// call).
type FrameSink struct {
	Start  func(lineEnding []byte) error
	Chunk  func(ChunkInfo) error
	Frames func(stored, input []uint32, data []byte) error
}

// ReadRecordFrames sends a whole record set (or a range of its chunks) as
// its stored zstd frames, without decoding them: the reader decodes and
// checks each chunk's SHA-256 (ChunkInfo). What the server can check without
// decoding it checks before sending, and a failure is DataLoss that flags
// the object as the plain read does: the index's frame table against the
// catalog (sizes, contiguity, limits) before the first byte, the object's
// length, and each frame's header (zstd magic, content size equal to the
// index's, window within MaxFrameBytes, no dictionary). Memory: a message
// buffer, plus one frame larger than a message (charged on top, as reads by
// id are).
func (s *Service) ReadRecordFrames(ctx context.Context, tenant string, req RecordsRead, sink FrameSink) (*Summary, error) {
	if len(req.IDs) > 0 {
		return nil, fault.Invalid(fault.Violation{Field: "ids", Description: "a read by id is sent as CSV, not as frames"})
	}
	r, err := s.resolveRecords(ctx, tenant, req)
	if err != nil {
		return nil, err
	}
	reserve := int64(2 * s.cfg.MessageSize)
	if err := s.cfg.Budget.AcquireFor(ctx, tenant, reserve); err != nil {
		return nil, budgetFault(err)
	}
	defer s.cfg.Budget.ReleaseFor(tenant, reserve)
	if err := sink.Start(csvscan.LineEnding(r.header)); err != nil {
		return nil, err
	}
	sum := &Summary{}
	buf := make([]byte, 0, s.cfg.MessageSize)
	for i, c := range r.chunks {
		n, err := s.sendChunkFrames(ctx, r.b, r.st, c, r.first+i > 0, &buf, sink)
		if err != nil {
			return nil, err
		}
		sum.Records += c.Records
		sum.StoredBytes += n
	}
	return sum, nil
}

// checkFrameTable checks an index's frame table against the catalog's
// chunk and data object, and every frame against the limits, before
// anything is read or allocated for them.
func (s *Service) checkFrameTable(frames []recindex.FrameInfo, c *metadata.RecordChunk, data *metadata.Object) error {
	limit := int64(s.cfg.MaxFrameBytes)
	var stored, input int64
	for i, f := range frames {
		switch {
		case f.StoredOffset != stored || f.InputOffset != input:
			return fmt.Errorf("frame %d starts at %d stored, %d decoded; the frames before it end at %d, %d", i, f.StoredOffset, f.InputOffset, stored, input)
		case f.StoredLen <= 0 || f.StoredLen > limit+limit/64+1024 || f.InputLen < 0 || f.InputLen > limit:
			return fmt.Errorf("frame %d is %d bytes stored, %d decoded (at most %d)", i, f.StoredLen, f.InputLen, limit)
		}
		stored += f.StoredLen
		input += f.InputLen
	}
	if stored != data.Size || input != c.BytesIn {
		return fmt.Errorf("its %d frames add up to %d bytes stored and %d decoded; the catalog says %d and %d", len(frames), stored, input, data.Size, c.BytesIn)
	}
	return nil
}

// checkFrameHeader checks what a stored frame's header says against the
// index, without decoding the frame.
func (s *Service) checkFrameHeader(raw []byte, inputLen int64) error {
	var h zstd.Header
	if err := h.Decode(raw); err != nil {
		return err
	}
	switch {
	case h.Skippable:
		return errors.New("a skippable frame, not a data frame")
	case h.DictionaryID != 0:
		return fmt.Errorf("the frame needs dictionary %d", h.DictionaryID)
	case h.HasFCS && h.FrameContentSize != uint64(inputLen):
		return fmt.Errorf("the frame declares %d bytes, the index %d", h.FrameContentSize, inputLen)
	case !h.SingleSegment && h.WindowSize > uint64(max(s.cfg.MaxFrameBytes, zstd.MinWindowSize)):
		return fmt.Errorf("the frame asks for a %d-byte window (at most %d)", h.WindowSize, s.cfg.MaxFrameBytes)
	}
	return nil
}

// sendChunkFrames sends one chunk's ChunkInfo and frames, batched into
// messages of at most MessageSize (a larger frame goes alone), and returns
// the stored bytes sent.
func (s *Service) sendChunkFrames(ctx context.Context, b *metadata.Backup, st storage.Store, c *metadata.RecordChunk, skipHeader bool, buf *[]byte, sink FrameSink) (int64, error) {
	data, err := s.cfg.Catalog.GetObject(ctx, b.TenantID, c.DataObjectID)
	if err != nil {
		return 0, err
	}
	idx, err := s.cfg.Catalog.GetObject(ctx, b.TenantID, c.IndexObjectID)
	if err != nil {
		return 0, err
	}
	ir, err := s.openIndex(st, idx)
	if err != nil {
		return 0, s.indexFault(ctx, b, idx, err)
	}
	frames := ir.Frames()
	if err := s.checkFrameTable(frames, c, data); err != nil {
		return 0, s.damaged(ctx, b, idx, "record index does not describe %s: %v", data.Key, err)
	}
	if err := sink.Chunk(ChunkInfo{Sequence: c.Sequence, BytesIn: c.BytesIn, StoredSize: data.Size, SHA256: c.SHA256,
		Records: c.Records, SkipHeader: skipHeader, Frames: len(frames)}); err != nil {
		return 0, err
	}
	if len(frames) == 0 {
		return 0, nil
	}
	rc, err := st.Get(ctx, data.Key, 0, -1)
	if err != nil {
		return 0, s.s3Fault(ctx, b, data, err, "GetObject")
	}
	defer rc.Close()
	src := &storage.CountingReader{R: rc}
	var storedLens, inputLens []uint32
	batch := (*buf)[:0]
	flush := func() error {
		if len(storedLens) == 0 {
			return nil
		}
		s.sent.Add(int64(len(batch)))
		err := sink.Frames(storedLens, inputLens, batch)
		storedLens, inputLens, batch = storedLens[:0], inputLens[:0], batch[:0]
		return err
	}
	// read fills p from the object; a short object is found by shortRead.
	read := func(p []byte) error {
		if _, err := io.ReadFull(src, p); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if src.Err != nil {
				return s.s3Fault(ctx, b, data, src.Err, "GetObject")
			}
			return s.shortRead(ctx, b, st, data, src.N, data.Size)
		}
		return nil
	}
	for i, f := range frames {
		n := int(f.StoredLen)
		if n > cap(batch) {
			// A frame larger than a message (rows longer than a frame) goes
			// alone, in a buffer charged on top of the stream's reservation.
			if err := flush(); err != nil {
				return 0, err
			}
			if !s.cfg.Budget.TryAcquireFor(b.TenantID, int64(n)) {
				e := fault.New(fault.ResourceExhausted, "MEMORY_BUDGET", "the server's memory budget (or this tenant's share of it) is in use; retry in a few seconds")
				e.Detail = fault.RetryDelay(2 * time.Second)
				return 0, e
			}
			big := make([]byte, n)
			err := read(big)
			if err == nil {
				if herr := s.checkFrameHeader(big, f.InputLen); herr != nil {
					err = s.damaged(ctx, b, data, "frame %d: %v", i, herr)
				}
			}
			if err == nil {
				s.sent.Add(int64(n))
				err = sink.Frames([]uint32{uint32(n)}, []uint32{uint32(f.InputLen)}, big)
			}
			s.cfg.Budget.ReleaseFor(b.TenantID, int64(n))
			if err != nil {
				return 0, err
			}
			continue
		}
		if len(batch)+n > cap(batch) {
			if err := flush(); err != nil {
				return 0, err
			}
		}
		at := len(batch)
		batch = batch[:at+n]
		if err := read(batch[at:]); err != nil {
			return 0, err
		}
		if err := s.checkFrameHeader(batch[at:], f.InputLen); err != nil {
			return 0, s.damaged(ctx, b, data, "frame %d: %v", i, err)
		}
		storedLens = append(storedLens, uint32(n))
		inputLens = append(inputLens, uint32(f.InputLen))
	}
	// The object ends where its frames do: one more byte is a longer object
	// than the catalog's.
	var one [1]byte
	if n, _ := io.ReadFull(src, one[:]); n > 0 {
		return 0, s.shortRead(ctx, b, st, data, src.N, data.Size)
	}
	if src.Err != nil && ctx.Err() == nil {
		return 0, s.s3Fault(ctx, b, data, src.Err, "GetObject")
	}
	if err := flush(); err != nil {
		return 0, err
	}
	*buf = batch
	s.frameGets.Add(1)
	s.frameBytes.Add(src.N)
	return src.N, nil
}
