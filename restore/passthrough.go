package restore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/klauspost/compress/zstd"

	"backupstore/csvframes"
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
	buf := make([]byte, s.cfg.MessageSize)
	for i, c := range r.chunks {
		t, err := s.frameTable(ctx, r.b, r.st, c)
		if err != nil {
			return nil, err
		}
		if t.problem != nil {
			return nil, s.damaged(ctx, r.b, t.idx, "record index does not describe %s: %v", t.data.Key, t.problem)
		}
		// A frame larger than a message goes alone, in a buffer charged on top.
		extra := max(t.maxStored-int64(len(buf)), 0)
		if err := s.tryReserve(tenant, extra); err != nil {
			return nil, err
		}
		err = sink.Chunk(ChunkInfo{Sequence: c.Sequence, BytesIn: c.BytesIn, StoredSize: t.data.Size, SHA256: c.SHA256,
			Records: c.Records, SkipHeader: r.first+i > 0, Frames: len(t.frames)})
		var n int64
		if err == nil {
			n, err = s.fetchFrames(ctx, r.b, r.st, t, func(size int) []byte {
				if size > len(buf) {
					return make([]byte, size)
				}
				return buf[:size]
			}, func(stored, input []uint32, data []byte) error {
				s.sent.Add(int64(len(data)))
				return sink.Frames(stored, input, data)
			})
		}
		s.cfg.Budget.ReleaseFor(tenant, extra)
		if err != nil {
			return nil, err
		}
		sum.Records += c.Records
		sum.StoredBytes += n
	}
	return sum, nil
}

// tryReserve charges n more bytes to the tenant without waiting (the read
// holds its base reservation already: waiting could deadlock readers
// against each other), or answers ResourceExhausted (retryable).
func (s *Service) tryReserve(tenant string, n int64) error {
	if n == 0 || s.cfg.Budget.TryAcquireFor(tenant, n) {
		return nil
	}
	e := fault.New(fault.ResourceExhausted, "MEMORY_BUDGET", "the server's memory budget (or this tenant's share of it) is in use; retry in a few seconds")
	e.Detail = fault.RetryDelay(2 * time.Second)
	return e
}

// frameTable is a chunk's data object and its frame table from the index,
// checked against the catalog.
type frameTable struct {
	data, idx *metadata.Object
	frames    []recindex.FrameInfo
	problem   error // the index is unreadable or does not describe the data (nothing flagged yet)
	maxStored int64 // the largest frame, stored
	maxInput  int64 // and decoded
}

// frameTable opens a chunk's index (cached) and checks its frame table.
// Catalog and S3 failures are errors; an index that is corrupt or does not
// describe the data is t.problem, for the caller to flag or work around.
func (s *Service) frameTable(ctx context.Context, b *metadata.Backup, st storage.Store, c *metadata.RecordChunk) (*frameTable, error) {
	data, err := s.cfg.Catalog.GetObject(ctx, b.TenantID, c.DataObjectID)
	if err != nil {
		return nil, err
	}
	idx, err := s.cfg.Catalog.GetObject(ctx, b.TenantID, c.IndexObjectID)
	if err != nil {
		return nil, err
	}
	t := &frameTable{data: data, idx: idx}
	ir, err := s.openIndex(st, idx)
	if err != nil {
		if errors.Is(err, recindex.ErrCorrupt) {
			t.problem = err
			return t, nil
		}
		return nil, s.indexFault(ctx, b, idx, err)
	}
	t.frames = ir.Frames()
	if t.problem = s.checkFrameTable(t.frames, c, data); t.problem == nil {
		for _, f := range t.frames {
			t.maxStored, t.maxInput = max(t.maxStored, f.StoredLen), max(t.maxInput, f.InputLen)
		}
	}
	return t, nil
}

// fetchFrames reads a chunk's data object with one GET and hands its frames
// to emit in batches of whole frames: a batch fills a buffer from newBuf(
// MessageSize), a frame larger than that goes alone in newBuf(its size).
// Each frame's header is checked against the index before it is handed on
// (DataLoss flagging the object otherwise). It returns the bytes read.
func (s *Service) fetchFrames(ctx context.Context, b *metadata.Backup, st storage.Store, t *frameTable,
	newBuf func(size int) []byte, emit func(stored, input []uint32, data []byte) error) (int64, error) {
	data := t.data
	if len(t.frames) == 0 {
		return 0, nil
	}
	rc, err := st.Get(ctx, data.Key, 0, -1)
	if err != nil {
		return 0, s.s3Fault(ctx, b, data, err, "GetObject")
	}
	defer rc.Close()
	src := &storage.CountingReader{R: rc}
	var storedLens, inputLens []uint32
	var batch []byte
	flush := func() error {
		if len(storedLens) == 0 {
			return nil
		}
		err := emit(storedLens, inputLens, batch)
		storedLens, inputLens, batch = nil, nil, nil
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
	for i, f := range t.frames {
		n := int(f.StoredLen)
		if batch != nil && len(batch)+n > cap(batch) {
			if err := flush(); err != nil {
				return 0, err
			}
		}
		if batch == nil {
			batch = newBuf(max(s.cfg.MessageSize, n))[:0]
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
	s.frameGets.Add(1)
	s.frameBytes.Add(src.N)
	return src.N, nil
}

// pipelineInFlight is what a plain whole read keeps between fetching frames
// and sending their CSV (stored and decoded bytes): about four frames of
// ingest's default 1 MiB, enough to keep the decoders and the sender busy.
const pipelineInFlight = 6 << 20

// pipelineBase is a plain whole read's reservation: the frames in flight,
// one held frame (a chunk's last piece waits for its hash) of a typical
// size, the message being built and two fetch buffers. A chunk whose frames
// are larger charges the difference on top while it is read.
func (s *Service) pipelineBase() int64 { return pipelineInFlight + 4*int64(s.cfg.MessageSize) }

// streamChunkFrames sends one chunk as CSV through the parallel pipeline:
// this goroutine fetches the stored frames (cut at the index's frame
// boundaries, each header checked), DecodeWorkers decode them, and one
// goroutine hashes, drops the header row and hands the CSV to out, in order
// (csvframes, the client's decoder of passthrough reads). The chunk's
// SHA-256 is checked before its last bytes go out. A chunk whose index is
// unreadable or does not describe it is read by streamChunk instead: the
// data may be intact, and the SHA-256 will tell.
func (s *Service) streamChunkFrames(ctx context.Context, b *metadata.Backup, st storage.Store, c *metadata.RecordChunk, skipHeader bool, eol []byte, out *sender) error {
	t, err := s.frameTable(ctx, b, st, c)
	if err != nil {
		return err
	}
	if t.problem != nil {
		s.cfg.Logger.WarnContext(ctx, "record index unusable for a whole read; decoding the data object as a stream",
			"tenant", b.TenantID, "backup", b.ID, "index", t.idx.Key, "problem", t.problem)
		if err := s.tryReserve(b.TenantID, int64(s.cfg.MaxFrameBytes)); err != nil {
			return err
		}
		defer s.cfg.Budget.ReleaseFor(b.TenantID, int64(s.cfg.MaxFrameBytes))
		return s.streamChunk(ctx, b, st, c, skipHeader, out)
	}
	// Frames larger than typical: what they need beyond the base reservation.
	need := max(pipelineInFlight, t.maxStored+t.maxInput) + t.maxInput + 4*int64(s.cfg.MessageSize)
	extra := max(need-s.pipelineBase(), 0)
	if err := s.tryReserve(b.TenantID, extra); err != nil {
		return err
	}
	defer s.cfg.Budget.ReleaseFor(b.TenantID, extra)
	dec, err := csvframes.NewDecoder(writerFunc(func(p []byte) (int, error) { return len(p), out.write(p) }), eol,
		csvframes.Options{MaxFrameBytes: s.cfg.MaxFrameBytes, Workers: s.cfg.DecodeWorkers, MaxInFlight: pipelineInFlight, Decoder: s.frames})
	if err != nil {
		return err
	}
	defer dec.Close()
	if err := dec.Chunk(csvframes.Chunk{Sequence: c.Sequence, BytesIn: c.BytesIn, StoredSize: t.data.Size, SHA256: c.SHA256,
		Frames: len(t.frames), SkipHeader: skipHeader}); err != nil {
		return err
	}
	decodeFault := func(err error) error {
		var ce *csvframes.ChunkError
		if errors.As(err, &ce) {
			return s.damaged(ctx, b, t.data, "%v", ce.Err)
		}
		return err // the sender's (the client went away), or the context's
	}
	_, err = s.fetchFrames(ctx, b, st, t, func(size int) []byte {
		if size <= s.cfg.MessageSize {
			if p, ok := s.batches.Get().(*[]byte); ok {
				return (*p)[:size]
			}
		}
		return make([]byte, size)
	}, func(stored, input []uint32, data []byte) error {
		release := func() {}
		if cap(data) == s.cfg.MessageSize {
			release = func() { p := data[:0]; s.batches.Put(&p) }
		}
		return decodeFault(dec.Frames(stored, input, data, release))
	})
	if err != nil {
		// The writer's own failure explains a refusal to take more frames.
		return err
	}
	if _, err := dec.Finish(); err != nil {
		return decodeFault(err)
	}
	return nil
}

type writerFunc func([]byte) (int, error)

func (w writerFunc) Write(p []byte) (int, error) { return w(p) }

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
		case f.StoredLen <= 0 || f.StoredLen > csvframes.MaxStored(limit) || f.InputLen < 0 || f.InputLen > limit:
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
