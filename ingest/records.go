package ingest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/klauspost/compress/zstd"

	"backupstore/csvscan"
	"backupstore/fault"
	"backupstore/metadata"
	"backupstore/recindex"
	"backupstore/sfid"
	"backupstore/storage"
)

// Source yields an upload stream's data messages.
type Source interface {
	// Next returns the next data bytes (valid until the next call), or
	// finish=true once the client sent finish and nothing after it. An error
	// means the stream broke (the client went away, or sent garbage); one
	// that wraps ErrNoFinish leaves the upload resumable.
	Next() (data []byte, finish bool, err error)
}

// ErrNoFinish is what a Source's error wraps when the stream ended without a
// finish message: the worker may resume the upload, so it is not ended even
// though the answer is InvalidArgument.
var ErrNoFinish = errors.New("ingest: stream ended without finish")

// Reference declares an indexed lookup column.
type Reference struct {
	Field  string `json:"field"`
	Target string `json:"target"`
}

// RecordsHeader opens a record-set chunk upload.
type RecordsHeader struct {
	BackupID, SObject, UploadID string
	Sequence                    int32
	References                  []Reference
	WriteOffset                 int64
}

// Result describes a committed upload; it is stored with the upload so a
// repeated finish returns the same.
type Result struct {
	UploadID     string `json:"upload_id"`
	DataKey      string `json:"data_key"`
	IndexKey     string `json:"index_key,omitempty"`
	BytesIn      int64  `json:"bytes_in"`
	BytesStored  int64  `json:"bytes_stored"`
	Records      int64  `json:"records"`
	SHA256       string `json:"sha256"`
	Deduplicated bool   `json:"deduplicated,omitempty"`
	FileID       string `json:"file_id,omitempty"`
}

// encoder is shared: EncodeAll is safe for concurrent use, up to its
// concurrency, and each call makes one independent frame (with its content
// size and checksum) that a ranged GET can decode alone. Its window is the
// default frame's size: a frame is compressed alone, so a longer history only
// costs memory (measured with 4 encoders: 34.7 MiB held by default, 6.3 MiB
// with this window and WithLowerEncoderMem, the same output, the same speed).
var encoder = sync.OnceValue(func() *zstd.Encoder {
	e, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest),
		zstd.WithEncoderConcurrency(runtime.GOMAXPROCS(0)*2), zstd.WithEncoderCRC(true),
		zstd.WithWindowSize(DefaultFrameSize), zstd.WithLowerEncoderMem(true))
	if err != nil {
		panic(err) // static options
	}
	return e
})

func (h *RecordsHeader) check() error {
	var vs []*fault.Violation
	if h.BackupID == "" {
		vs = append(vs, &fault.Violation{Field: "header.backup_id", Description: "required"})
	}
	if !sobjectRE.MatchString(h.SObject) {
		vs = append(vs, &fault.Violation{Field: "header.sobject", Description: "must be an sObject API name: [A-Za-z][A-Za-z0-9_]{0,79}"})
	}
	if h.Sequence < 0 {
		vs = append(vs, &fault.Violation{Field: "header.sequence", Description: "must be ≥ 0"})
	}
	if v := checkUploadID(h.UploadID); v != nil {
		v.Field = "header.upload_id"
		vs = append(vs, v)
	}
	seen := map[string]bool{}
	for i, r := range h.References {
		f := fmt.Sprintf("header.references[%d]", i)
		switch {
		case !sobjectRE.MatchString(r.Field):
			vs = append(vs, &fault.Violation{Field: f + ".field", Description: "must be a field API name"})
		case r.Field == "Id":
			vs = append(vs, &fault.Violation{Field: f + ".field", Description: "Id is the record's own id, not a reference"})
		case seen[r.Field]:
			vs = append(vs, &fault.Violation{Field: f + ".field", Description: "declared twice"})
		}
		seen[r.Field] = true
		if !sobjectRE.MatchString(r.Target) {
			vs = append(vs, &fault.Violation{Field: f + ".target", Description: "must be an sObject API name"})
		}
	}
	var out []fault.Violation
	for _, v := range vs {
		out = append(out, *v)
	}
	if len(out) > 0 {
		return fault.Invalid(out...)
	}
	if h.WriteOffset != 0 {
		return fault.New(fault.OutOfRange, "WRITE_OFFSET_MISMATCH", "record chunks restart from 0 when reopened: write_offset must be 0, not %d", h.WriteOffset)
	}
	return nil
}

// UploadRecords stores one record-set chunk.
func (s *Service) UploadRecords(ctx context.Context, tenant string, h RecordsHeader, src Source) (*Result, error) {
	if err := h.check(); err != nil {
		return nil, err
	}
	b, st, err := s.openBackup(ctx, tenant, h.BackupID)
	if err != nil {
		return nil, err
	}
	refs, _ := json.Marshal(h.References)
	u, prev, err := s.openRecordsUpload(ctx, b, &h, refs)
	if err != nil || prev != nil {
		return prev, err
	}
	res, err := s.writeRecords(ctx, b, st, u, &h, src)
	var re *csvscan.RowError
	if errors.As(err, &re) {
		err = rowFault(re)
	}
	if err != nil {
		s.fail(ctx, st, u, err)
		return nil, err
	}
	return res, nil
}

// openRecordsUpload creates the PENDING row (before any S3 call), or reopens
// an existing upload id from 0 with a new generation. A committed upload
// returns its first result.
func (s *Service) openRecordsUpload(ctx context.Context, b *metadata.Backup, h *RecordsHeader, refs []byte) (*metadata.Upload, *Result, error) {
	cat := s.cfg.Catalog
	objID := newObjectID()
	key := recordsKey(b, h.SObject, objID)
	u, err := cat.GetUpload(ctx, b.TenantID, b.ID, h.UploadID)
	switch {
	case errors.Is(err, metadata.ErrNotFound):
		if err := s.checkNewUpload(ctx, b.TenantID, true); err != nil {
			return nil, nil, err
		}
		u = &metadata.Upload{TenantID: b.TenantID, BackupID: b.ID, UploadID: h.UploadID, Kind: metadata.KindRecords,
			State: metadata.UploadPending, Generation: 1, ObjectID: objID, ObjectKey: key, PartSize: s.cfg.PartSize,
			SObject: h.SObject, Sequence: h.Sequence, References: refs, DeclaredSize: -1}
		if err := cat.CreateUpload(ctx, u); err != nil {
			if errors.Is(err, metadata.ErrConflict) {
				return nil, nil, fault.Wrap(err, fault.Aborted, "CONCURRENT_OPEN", "upload %s was opened concurrently by another stream; retry", h.UploadID)
			}
			return nil, nil, err
		}
		return u, nil, nil
	case err != nil:
		return nil, nil, err
	}
	if u.Kind != metadata.KindRecords || u.SObject != h.SObject || u.Sequence != h.Sequence {
		return nil, nil, fault.New(fault.InvalidArgument, "UPLOAD_ID_REUSED",
			"upload id %s already belongs to another upload (%s %s #%d); use a new UUID", h.UploadID, u.Kind, u.SObject, u.Sequence)
	}
	if u.State == metadata.UploadCommitted {
		var r Result
		if err := json.Unmarshal(u.Result, &r); err != nil {
			return nil, nil, fmt.Errorf("stored result of upload %s: %w", u.UploadID, err)
		}
		return nil, &r, nil
	}
	// Reopen from 0: a new generation fences the old stream, a new object key
	// keeps its late writes away from ours.
	old := *u
	if u, err = cat.BumpGeneration(ctx, b.TenantID, b.ID, h.UploadID); err != nil {
		return nil, nil, err
	}
	call(s.hooks().BeforeRecordsReset, u)
	if err := cat.ResetUpload(ctx, b.TenantID, b.ID, h.UploadID, u.Generation, objID, key, s.cfg.PartSize); err != nil {
		if errors.Is(err, metadata.ErrConflict) {
			// Another stream of this upload id committed it meanwhile: its
			// result is the answer. If it cannot be read now (the catalog
			// restarting), that failure is the answer: a retry finds the
			// committed upload (found by the torture run: the bare conflict
			// reached the client as AlreadyExists).
			cur, gerr := cat.GetUpload(ctx, b.TenantID, b.ID, h.UploadID)
			if f := s.hooks().LoseRecordsReread; f != nil && f(u) {
				cur, gerr = nil, fmt.Errorf("%w: injected: the re-read after a conflict was lost", metadata.ErrUnavailable)
			}
			switch {
			case gerr != nil:
				return nil, nil, gerr
			case cur.State == metadata.UploadCommitted:
				r, err := storedResult(cur)
				return nil, r, err
			}
			return nil, nil, fault.Wrap(err, fault.Aborted, "CONCURRENT_OPEN", "upload %s changed under this stream; retry", h.UploadID)
		}
		return nil, nil, catalogFault(err, u)
	}
	if old.S3UploadID != "" && old.State == metadata.UploadPending {
		if st, err := s.cfg.Registry.StoreFor(ctx, b.TenantID, b.StorageID); err == nil {
			actx, cancel := detached(ctx)
			_ = st.AbortMultipart(actx, old.ObjectKey, old.S3UploadID)
			cancel()
		}
	}
	u.ObjectID, u.ObjectKey, u.PartSize, u.S3UploadID = objID, key, s.cfg.PartSize, ""
	u.State, u.CommittedSize, u.StoredSize, u.HashState, u.References = metadata.UploadPending, 0, 0, nil, refs
	return u, nil, nil
}

type frameJob struct {
	seq             uint32
	in, out         []byte
	rows, firstRow  int64
	inputOff        int64
	compressionDone bool
	big             bool // holds the stream's one oversized frame slot (see recMem)
}

// recWriter is one chunk's pipeline: the caller's goroutine receives, scans
// and indexes rows into ~FrameSize frames; CompressWorkers goroutines
// compress frames; the assembler puts compressed frames in order into parts
// and hands full parts to the multipart uploader, one in flight.
type recWriter struct {
	s   *Service
	ctx context.Context
	st  storage.Store
	b   *metadata.Backup
	u   *metadata.Upload
	h   *RecordsHeader

	scan      *csvscan.Scanner
	idx       *recindex.Writer
	spool     *hashedSpool
	sum       hash.Hash
	schema    []byte // the record set's header row, if a chunk already set it
	headerSet bool

	mem      recMem
	res      *reservation  // the stream's part of the budget, fitted to held
	memMu    sync.Mutex    // orders account's updates of held and res
	big      chan struct{} // the oversized frame slot: a token while it is free
	held     atomic.Int64  // bytes of buffer capacity held now (frames, parts, scanner, schema)
	peakHeld atomic.Int64

	frame    *frameJob
	frameNo  uint32
	bytesIn  int64
	inputOff int64 // input offset of the current frame
	records  int64

	free    chan *frameJob
	jobs    chan *frameJob
	results chan *frameJob
	errOnce sync.Once
	err     error
	failed  chan struct{}

	// assembler state
	frames []recindex.FrameInfo
	parts  *partWriter
	done   chan struct{}
}

func (w *recWriter) setErr(err error) {
	w.errOnce.Do(func() { w.err = err; close(w.failed) })
}

func (s *Service) writeRecords(ctx context.Context, b *metadata.Backup, st storage.Store, u *metadata.Upload, h *RecordsHeader, src Source) (*Result, error) {
	schema, _, err := s.cfg.Catalog.GetRecordSetSchema(ctx, b.TenantID, b.ID, h.SObject)
	if err != nil && !errors.Is(err, metadata.ErrNotFound) {
		return nil, err
	}
	mem := newRecMem(&s.cfg)
	need := mem.total + int64(cap(schema))
	// The stream reserves what it holds: the index run and the first frame
	// at the start (waiting for them, holding nothing), the rest as its
	// buffers grow (see recWriter.account).
	res := newReservation(s.cfg.Budget, b.TenantID, mem.fixed)
	if err := res.acquire(ctx, mem.fixed+int64(cap(schema))+int64(mem.frameIn+mem.frameOut)); err != nil {
		return nil, err
	}
	defer res.release()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	spool, err := os.CreateTemp(s.cfg.SpoolDir, "index-*")
	if err != nil {
		return nil, fmt.Errorf("index spool: %w", err)
	}
	defer func() { spool.Close(); os.Remove(spool.Name()) }()
	refCols := make([]string, len(h.References))
	for i, r := range h.References {
		refCols[i] = r.Field
	}
	hs := &hashedSpool{File: spool, sum: sha256.New()}
	idx, err := recindex.NewWriter(hs, recindex.Options{RunBytes: s.cfg.IndexRunBytes, RefFields: refCols})
	if err != nil {
		return nil, err
	}
	w := &recWriter{s: s, ctx: ctx, st: st, b: b, u: u, h: h, scan: csvscan.New(refCols, s.cfg.Limits), idx: idx, spool: hs,
		sum: sha256.New(), schema: schema, failed: make(chan struct{}), done: make(chan struct{}),
		mem: mem, big: make(chan struct{}, 1), res: res}
	w.big <- struct{}{}
	// Part buffers are allocated when first filled, and grown, within the
	// stream's reservation (recMem.partMax).
	w.parts = newPartWriter(&mpu{s: s, st: st, u: u}, [2]*partBuf{{}, {}}, 1, func(int32) int64 { return s.cfg.PartSize })
	w.parts.grow, w.parts.base, w.parts.alloc = w.account, mem.partBase, s.bufs.get
	if err := w.account(int64(cap(schema))); err != nil {
		return nil, err
	}
	defer func() {
		if testHookRecordsMemory != nil {
			testHookRecordsMemory(w.peakHeld.Load(), need)
		}
	}()
	n := mem.frames
	w.free = make(chan *frameJob, n)
	w.jobs = make(chan *frameJob, s.cfg.CompressWorkers)
	w.results = make(chan *frameJob, n)
	jobs := make([]*frameJob, n)
	for i := range jobs {
		jobs[i] = &frameJob{} // buffers allocated when first filled (ready)
		w.free <- jobs[i]
	}
	// Every return below comes after stop(): the compress workers and the
	// assembler have ended, and no part upload is left once wait returns,
	// so the stream's baseline buffers go back to the pool for the next one.
	defer func() {
		_ = w.parts.wait()
		if w.bytesIn >= collectAfter {
			collectSoon(collectGapAtEnd)
		}
		for _, f := range jobs {
			if !f.big {
				s.bufs.put(f.in)
				s.bufs.put(f.out)
			}
		}
		for _, p := range w.parts.bufs {
			if p.file == nil && cap(p.mem) == mem.partBase {
				s.bufs.put(p.mem)
			}
		}
	}()
	var workers sync.WaitGroup
	for i := 0; i < s.cfg.CompressWorkers; i++ {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for j := range w.jobs {
				// out has room for zstd's bound of in (flushFrame saw to it), so
				// EncodeAll does not grow it; if it ever did, the accounting shows it.
				err := fault.Catch(func() error {
					c := cap(j.out)
					j.out = encoder().EncodeAll(j.in, j.out[:0])
					return w.account(int64(cap(j.out) - c))
				})
				if err != nil {
					w.setErr(err)
				}
				w.results <- j
			}
		}()
	}
	go w.assemble()
	stop := func() {
		close(w.jobs)
		workers.Wait()
		close(w.results)
		<-w.done
	}
	w.frame = <-w.free
	err = w.ready(w.frame)
	if err == nil {
		err = w.receive(src)
	}
	if err != nil {
		w.setErr(err)
		cancel()
		stop()
		_ = w.parts.wait()
		return nil, w.err
	}
	if w.frame != nil && len(w.frame.in) > 0 {
		if err := w.flushFrame(); err != nil {
			w.setErr(err)
		}
	}
	stop()
	select {
	case <-w.failed:
		cancel()
		_ = w.parts.wait()
		return nil, w.err
	default:
	}
	return w.finish()
}

// receive reads the stream through the scanner until finish.
func (w *recWriter) receive(src Source) error {
	for {
		data, fin, err := src.Next()
		if err != nil {
			return err
		}
		if fin {
			if err := w.scan.Close(w.emit); err != nil {
				return err
			}
			if !w.headerSet && w.scan.Header() != nil {
				return w.placeHeader() // a chunk of only a header row: a record set with no records
			}
			return nil
		}
		select {
		case <-w.failed:
			return w.err
		default:
		}
		w.sum.Write(data)
		if w.bytesIn/collectEvery != (w.bytesIn+int64(len(data)))/collectEvery {
			collectSoon(collectGapDuring)
		}
		w.bytesIn += int64(len(data))
		held := w.scan.Held()
		err = w.scan.Feed(data, w.emit)
		if aerr := w.account(int64(w.scan.Held() - held)); err == nil {
			err = aerr
		}
		if err != nil {
			return err
		}
	}
}

func (w *recWriter) emit(r *csvscan.Row) error {
	if !w.headerSet {
		if err := w.placeHeader(); err != nil {
			return err
		}
	}
	if err := w.put(r.Raw); err != nil {
		return err
	}
	if r.Blank {
		// A blank line holds no record: its bytes are kept, so that the chunk
		// comes back byte for byte, but it is neither indexed nor counted.
		if len(w.frame.in) >= w.s.cfg.FrameSize {
			return w.flushFrame()
		}
		return nil
	}
	if w.frame.rows == 0 {
		w.frame.firstRow = r.Number
	}
	w.frame.rows++
	w.records++
	if !w.s.cfg.BenchmarkWithoutIndex {
		if err := w.indexRow(r); err != nil {
			return err
		}
	}
	if len(w.frame.in) >= w.s.cfg.FrameSize {
		return w.flushFrame()
	}
	return nil
}

// indexRow adds a row's id (checking it is new in the chunk) and its
// references to the record index.
func (w *recWriter) indexRow(r *csvscan.Row) error {
	if err := w.idx.AddRecordID(r.ID, w.frameNo, r.Number); err != nil {
		return duplicateFault(err)
	}
	for i, ref := range r.Refs {
		if ref != (sfid.ID{}) {
			if err := w.idx.AddRefID(i, ref, r.ID); err != nil {
				return err
			}
		}
	}
	return nil
}

// duplicateFault turns the index's report of an id seen twice in the chunk (at once, or by
// Finish when the first one is in an earlier run) into the row error naming the later row.
func duplicateFault(err error) error {
	var de *recindex.DuplicateError
	if errors.As(err, &de) {
		return &csvscan.RowError{Row: de.Row, Column: "Id", Reason: "DUPLICATE_ID",
			Detail: fmt.Sprintf("id %s appears twice in this chunk (first at row %d)", de.ID, de.FirstRow)}
	}
	return err
}

// placeHeader puts the chunk's header row at the start of frame 0, after
// checking it equals the record set's first chunk's header.
func (w *recWriter) placeHeader() error {
	hdr := w.scan.Header()
	for _, c := range w.scan.Columns() {
		if testAcceptHeaderLineBreaks {
			break
		}
		// A Salesforce field API name never holds a line break, and a header row
		// that does would be cut in two by any reader that takes a line for a row.
		if strings.ContainsAny(c, "\r\n") {
			return &csvscan.RowError{Row: 1, Column: c, Reason: csvscan.BadHeader,
				Detail: fmt.Sprintf("the column name %q holds a line break; field API names never do", c)}
		}
	}
	if w.schema != nil && !bytes.Equal(trimEOL(w.schema), trimEOL(hdr)) {
		return &csvscan.RowError{Row: 1, Reason: "HEADER_MISMATCH",
			Detail: "the header row differs from the first chunk's header of this record set"}
	}
	w.headerSet = true
	return w.put(hdr)
}

func trimEOL(b []byte) []byte { return bytes.TrimRight(b, "\r\n") }

func (w *recWriter) flushFrame() error {
	f := w.frame
	if need := zstdBound(len(f.in)); cap(f.out) < need {
		// Only the oversized frame gets here (a baseline out holds the bound of a
		// baseline in), and it holds the big slot.
		if err := w.account(int64(need - cap(f.out))); err != nil {
			return err
		}
		f.out = make([]byte, 0, need)
	}
	f.seq = w.frameNo
	f.inputOff = w.inputOff
	w.inputOff += int64(len(f.in))
	w.frameNo++
	select {
	case w.jobs <- f:
	case <-w.failed:
		return w.err
	}
	select {
	case w.frame = <-w.free:
		w.frame.in, w.frame.rows, w.frame.firstRow = w.frame.in[:0], 0, 0
		return w.ready(w.frame)
	case <-w.failed:
		w.frame = nil
		return w.err
	}
}

// put appends b (a row, or the header row) to the current frame. A frame
// never grows past its baseline capacity (FrameSize): when b does not fit,
// the frame is sent first; a b larger than a whole baseline frame goes alone
// into a frame that takes the stream's one oversized slot (waiting until the
// previous oversized frame is in a part), so that at most one frame at a time
// holds more than the baseline.
func (w *recWriter) put(b []byte) error {
	f := w.frame
	if len(f.in)+len(b) > cap(f.in) && len(f.in) > 0 {
		if err := w.flushFrame(); err != nil {
			return err
		}
		f = w.frame
	}
	if len(b) > cap(f.in) {
		select {
		case <-w.big:
		case <-w.failed:
			return w.err
		case <-w.ctx.Done():
			return w.ctx.Err()
		}
		f.big = true
		if err := w.account(int64(len(b) - cap(f.in))); err != nil {
			return err
		}
		f.in = make([]byte, 0, len(b))
	}
	f.in = append(f.in, b...)
	return nil
}

// ready gives a frame job taken for filling its baseline buffers, accounted,
// if it has none yet: frames are allocated as the stream needs them, so a
// stream that sent little holds little.
func (w *recWriter) ready(f *frameJob) error {
	if cap(f.in) > 0 {
		return nil
	}
	if err := w.account(int64(w.mem.frameIn + w.mem.frameOut)); err != nil {
		return err
	}
	f.in, f.out = w.s.bufs.get(w.mem.frameIn), w.s.bufs.get(w.mem.frameOut)
	return nil
}

// recycle returns a frame job to the free list; an oversized one gives its
// buffers up (ready allocates baseline ones again) and frees the big slot.
func (w *recWriter) recycle(f *frameJob) {
	if f.big {
		_ = w.account(-int64(cap(f.in) + cap(f.out)))
		*f = frameJob{}
		w.big <- struct{}{}
	}
	w.free <- f
}

// account adds delta bytes of buffer capacity to what the stream holds, and
// fits the stream's reservation to it: growth the budget cannot give now is
// an error (ResourceExhausted) that ends the stream, and is not counted.
// Callers account before they allocate.
func (w *recWriter) account(delta int64) error {
	w.memMu.Lock()
	defer w.memMu.Unlock()
	n := w.held.Add(delta)
	if w.res != nil {
		if err := w.res.fit(n); err != nil {
			w.held.Add(-delta)
			return err
		}
	}
	if n > w.peakHeld.Load() {
		w.peakHeld.Store(n)
	}
	return nil
}

// testAcceptHeaderLineBreaks, set by tests only, stores header rows whose
// column names hold a line break, as backupd did before it refused them, so
// that tests can check such backups still restore.
var testAcceptHeaderLineBreaks bool

// testHookRecordsMemory, when set (by tests), is called as a record stream
// ends with the most buffer capacity it held at once and what it reserved.
var testHookRecordsMemory func(peak, reserved int64)

// recMem is what one record stream may hold in memory, and so reserves from
// the budget before it reads anything. Every buffer is sized up front or
// grown explicitly (never by append's doubling), within these bounds:
//
//   - frames: 2×CompressWorkers+3 frame jobs in flight (filling, queued,
//     compressing, waiting for the assembler), each with FrameSize of input
//     and zstd's bound of it for output. Rows never split a frame, so a frame
//     is sent before a row that would overflow it; a row (or header row)
//     longer than FrameSize goes alone into a frame that takes the one
//     oversized slot, up to MaxRowBytes of input and its zstd bound;
//   - parts: two part buffers (one filling, one uploading). A part is cut once
//     it reaches PartSize, and before a frame that would overflow it when it
//     already holds S3's minimum part size; so it holds at most
//     max(PartSize + bound(FrameSize), MinPartSize + bound(oversized frame));
//   - the scanner: a row that spans messages (MaxRowBytes) and its copy of the
//     header row (MaxRowBytes), plus the record set's schema read from the
//     catalog (its actual size, added when the stream starts);
//   - the record index: IndexRunBytes plus its block and write buffers.
//
// The index's bloom filters (1.25 bytes per record of the chunk) and the
// frame list (48 bytes per frame) grow with the chunk and are not in it.
type recMem struct {
	frames            int // frame jobs
	frameIn, frameOut int // baseline capacities
	bigExtra          int // the oversized slot, beyond one baseline frame
	partBase, partMax int
	fixed             int64 // the record index's run and buffers, held from the start
	total             int64
}

func newRecMem(c *Config) recMem {
	m := recMem{frames: 2*c.CompressWorkers + 3, frameIn: c.FrameSize, frameOut: zstdBound(c.FrameSize)}
	bigIn := max(c.FrameSize, c.Limits.MaxRowBytes)
	m.bigExtra = bigIn - m.frameIn + zstdBound(bigIn) - m.frameOut
	m.partBase = int(c.PartSize) + m.frameOut
	m.partMax = max(m.partBase, storage.MinPartSize+zstdBound(bigIn))
	m.fixed = int64(c.IndexRunBytes) + indexBuffers
	m.total = int64(m.frames)*int64(m.frameIn+m.frameOut) + int64(m.bigExtra) + 2*int64(m.partMax) +
		2*int64(c.Limits.MaxRowBytes) + m.fixed
	return m
}

// indexBuffers is what a recindex.Writer holds beside its run: a block being
// encoded and its write buffer.
const indexBuffers = 256 << 10

// zstdBound is the most bytes zstd may make of n (ZSTD_COMPRESSBOUND), plus
// room for a frame header and checksum.
func zstdBound(n int) int {
	b := n + n>>8 + 64
	if n < 128<<10 {
		b += (128<<10 - n) >> 11
	}
	return b
}

// assemble orders compressed frames into parts, whole (rows never split a
// frame, and a frame never splits a part).
func (w *recWriter) assemble() {
	defer close(w.done)
	pending := map[uint32]*frameJob{}
	var next uint32
	for j := range w.results {
		pending[j.seq] = j
		for {
			f, ok := pending[next]
			if !ok {
				break
			}
			delete(pending, next)
			next++
			select {
			case <-w.failed:
				w.recycle(f)
				continue
			default:
			}
			w.frames = append(w.frames, recindex.FrameInfo{StoredOffset: w.parts.stored, StoredLen: int64(len(f.out)),
				InputOffset: f.inputOff, InputLen: int64(len(f.in)), Rows: f.rows, FirstRow: f.firstRow})
			if err := w.parts.WriteUnit(w.ctx, f.out, f.inputOff+int64(len(f.in))); err != nil {
				w.setErr(err)
			}
			w.recycle(f)
		}
	}
}

// finish uploads the last part (or the whole object in one PUT), the index,
// and commits the chunk in one transaction.
func (w *recWriter) finish() (*Result, error) {
	s, ctx, u := w.s, w.ctx, w.u
	if !w.headerSet {
		return nil, &csvscan.RowError{Row: 1, Reason: "NO_HEADER", Detail: "the chunk is empty: it must start with the header row"}
	}
	size := w.parts.stored
	// The index is finished and stored while the data object is completed: neither needs
	// the other, and the index's last run, duplicate check, footer and PUT would otherwise
	// add their time to every chunk's answer.
	for _, f := range w.frames {
		w.idx.AddFrame(f)
	}
	ikey := indexKey(u.ObjectKey)
	ictx, icancel := context.WithCancel(ctx)
	defer icancel()
	idone := make(chan indexStored, 1)
	go func() { idone <- w.storeIndex(ictx, ikey) }()
	var derr error
	if w.parts.Single() {
		if _, err := w.st.Put(ctx, u.ObjectKey, w.parts.Body()); err != nil {
			derr = s3Fault(err, "PutObject")
		}
	} else if _, err := w.parts.Close(ctx); err != nil {
		derr = err
	}
	if derr != nil {
		icancel()
	}
	is := <-idone
	cleanup := []string{u.ObjectKey, ikey}
	fail := func(err error) (*Result, error) {
		dctx, cancel := detached(ctx)
		defer cancel()
		_ = w.st.Delete(dctx, cleanup...)
		return nil, err
	}
	var re *csvscan.RowError
	switch {
	case errors.As(is.err, &re):
		return fail(is.err) // a duplicate id: the client's to fix, whatever S3 said
	case derr != nil:
		if is.err == nil {
			cleanup = cleanup[1:] // the data object is the failed upload's (aborted with it)
			return fail(derr)
		}
		return nil, derr
	case is.err != nil:
		return fail(is.err)
	}
	idxSize := is.size

	digest := w.sum.Sum(nil)
	res := &Result{UploadID: u.UploadID, DataKey: u.ObjectKey, IndexKey: ikey, BytesIn: w.bytesIn,
		BytesStored: size, Records: w.records, SHA256: hex.EncodeToString(digest)}
	u.Result, _ = json.Marshal(res)
	now := s.cfg.Now().UTC()
	data := &metadata.Object{TenantID: u.TenantID, ID: u.ObjectID, OrgID: w.b.OrgID, StorageID: w.b.StorageID, BackupID: w.b.ID,
		Key: u.ObjectKey, Kind: metadata.ObjRecords, Size: size, SHA256: digest, CreatedAt: now}
	index := &metadata.Object{TenantID: u.TenantID, ID: newObjectID(), OrgID: w.b.OrgID, StorageID: w.b.StorageID, BackupID: w.b.ID,
		Key: ikey, Kind: metadata.ObjIndex, Size: idxSize, SHA256: is.sum, CreatedAt: now}
	chunk := &metadata.RecordChunk{TenantID: u.TenantID, BackupID: w.b.ID, SObject: w.h.SObject, Sequence: w.h.Sequence,
		UploadID: u.UploadID, DataObjectID: data.ID, IndexObjectID: index.ID, Records: w.records, BytesIn: w.bytesIn,
		BytesStored: size + idxSize, SHA256: digest, References: u.References, CreatedAt: now}
	got, _, err := s.cfg.Catalog.PutRecordSetSchema(ctx, u.TenantID, w.b.ID, w.h.SObject, w.scan.Header(), u.References)
	if err != nil {
		return fail(err)
	}
	if !bytes.Equal(trimEOL(got), trimEOL(w.scan.Header())) {
		return fail(rowFault(&csvscan.RowError{Row: 1, Reason: "HEADER_MISMATCH",
			Detail: "the header row differs from the first chunk's header of this record set"}))
	}
	err = s.inCatalog(ctx, u.TenantID, func() error { return s.cfg.Catalog.CommitRecordsUpload(ctx, u, data, index, chunk) })
	if err == nil && s.hooks().LoseCommitOK != nil && s.hooks().LoseCommitOK(u) {
		err = errors.New("test: the commit's OK was lost")
	}
	if err != nil {
		// Not fail(): the outcome may be uncertain, and only a re-read
		// may decide whether the keys are referenced.
		r, _, serr := s.settleFailedCommit(ctx, w.st, u, cleanup...)
		if r != nil {
			return r, nil
		}
		if serr != nil {
			return nil, serr
		}
		if errors.Is(err, metadata.ErrConflict) {
			if b, gerr := s.cfg.Catalog.GetBackup(ctx, u.TenantID, u.BackupID); gerr == nil && b.Status == metadata.BackupOpen {
				return nil, fault.Wrap(err, fault.AlreadyExists, "CHUNK_EXISTS",
					"record set %s already has chunk %d in backup %s (another upload id committed it)", w.h.SObject, w.h.Sequence, w.b.ID)
			}
			return nil, fault.Wrap(err, fault.FailedPrecondition, "BACKUP_NOT_OPEN", "backup %s is no longer open", u.BackupID)
		}
		return nil, catalogFault(err, u)
	}
	return res, nil
}

// indexStored is what storeIndex did.
type indexStored struct {
	size int64
	sum  []byte // SHA-256 of the index object
	err  error
}

// storeIndex finishes the record index (its last run, the check for ids repeated across
// runs, the footer) and PUTs it at key. It runs beside the data object's completion.
func (w *recWriter) storeIndex(ctx context.Context, key string) (r indexStored) {
	r.err = fault.Catch(func() error {
		size, err := w.idx.Finish()
		if err != nil {
			return duplicateFault(err) // UploadRecords makes a row error InvalidArgument
		}
		// PUT as a section of the spool file: the store sends a section as it is, where a
		// stream costs fresh part-size buffers (about twice the index in garbage at the end
		// of every chunk, the peak of a long upload's heap). Its SHA-256 was taken as it was
		// written (the writer only appends).
		if w.spool.n != size {
			return fmt.Errorf("index spool: %d bytes written, the index says %d", w.spool.n, size)
		}
		if _, err := w.st.Put(ctx, key, io.NewSectionReader(w.spool, 0, size)); err != nil {
			return s3Fault(err, "PutObject (index)")
		}
		r.size, r.sum = size, w.spool.sum.Sum(nil)
		return nil
	})
	return r
}

// hashedSpool is the index's spool file, hashed as the writer appends to it (recindex.Writer
// only appends: bytes [0, n) are the object once Finish returned n).
type hashedSpool struct {
	*os.File
	sum hash.Hash
	n   int64
}

func (s *hashedSpool) Write(p []byte) (int, error) {
	n, err := s.File.Write(p)
	s.sum.Write(p[:n])
	s.n += int64(n)
	return n, err
}

// rowFault turns a CSV row error into InvalidArgument naming row and column.
func rowFault(re *csvscan.RowError) error {
	field := fmt.Sprintf("row %d", re.Row)
	if re.Column != "" {
		field += fmt.Sprintf(", column %s", re.Column)
	}
	return &fault.Error{Kind: fault.InvalidArgument, Reason: re.Reason, Msg: "malformed CSV: " + re.Error(),
		Violations: []fault.Violation{{Field: field, Description: re.Reason + ": " + re.Detail}}, Err: re}
}
