package restore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"

	"backupstore/csvframes"
	"backupstore/csvscan"
	"backupstore/fault"
	"backupstore/metadata"
	"backupstore/recindex"
	"backupstore/sfid"
	"backupstore/storage"
)

// Reference is an indexed lookup column of a record set.
type Reference struct {
	Field  string `json:"field"`
	Target string `json:"target"`
}

// RecordSet summarises one sObject's chunks.
type RecordSet struct {
	SObject                       string
	Chunks                        int32
	Records, BytesIn, BytesStored int64
	References                    []Reference
	chunks                        []*metadata.RecordChunk
}

// recordSets groups a backup's chunks by sObject, chunks in sequence order.
func (s *Service) recordSets(ctx context.Context, b *metadata.Backup) (map[string]*RecordSet, []string, error) {
	chunks, err := s.cfg.Catalog.ListRecordChunks(ctx, b.TenantID, b.ID)
	if err != nil {
		return nil, nil, err
	}
	sets := map[string]*RecordSet{}
	var names []string
	for _, c := range chunks {
		rs := sets[c.SObject]
		if rs == nil {
			rs = &RecordSet{SObject: c.SObject}
			if len(c.References) > 0 {
				if err := json.Unmarshal(c.References, &rs.References); err != nil {
					return nil, nil, fmt.Errorf("references of %s: %w", c.SObject, err)
				}
			}
			sets[c.SObject] = rs
			names = append(names, c.SObject)
		}
		rs.Chunks++
		rs.Records += c.Records
		rs.BytesIn += c.BytesIn
		rs.BytesStored += c.BytesStored
		rs.chunks = append(rs.chunks, c)
	}
	for _, rs := range sets {
		sort.Slice(rs.chunks, func(i, j int) bool { return rs.chunks[i].Sequence < rs.chunks[j].Sequence })
	}
	sort.Strings(names)
	return sets, names, nil
}

// Contents lists a backup's record sets and a page of its files.
func (s *Service) Contents(ctx context.Context, tenant, backupID string, pageSize int, token string) (*metadata.Backup, []*RecordSet, []*metadata.File, string, error) {
	b, _, err := s.readable(ctx, tenant, backupID)
	if err != nil {
		return nil, nil, nil, "", err
	}
	if pageSize < 0 || pageSize > 1000 {
		return nil, nil, nil, "", fault.Invalid(fault.Violation{Field: "page_size", Description: "must be between 0 and 1000"})
	}
	sets, names, err := s.recordSets(ctx, b)
	if err != nil {
		return nil, nil, nil, "", err
	}
	files, next, err := s.cfg.Catalog.ListFiles(ctx, tenant, backupID, pageSize, token)
	if errors.Is(err, metadata.ErrInvalid) {
		return nil, nil, nil, "", fault.Invalid(fault.Violation{Field: "page_token", Description: "not a token from a previous response"})
	}
	if err != nil {
		return nil, nil, nil, "", err
	}
	out := make([]*RecordSet, len(names))
	for i, n := range names {
		out[i] = sets[n]
	}
	return b, out, files, next, nil
}

// Summary ends a ReadRecords stream.
type Summary struct {
	Records, Bytes int64
	Missing        []string
	StoredBytes    int64 // frames sent (ReadRecordFrames)
}

// maxIDs caps one ReadRecords by ids.
const maxIDs = 10000

// RecordsRead selects what ReadRecords (or ReadRecordFrames) sends.
type RecordsRead struct {
	BackupID, SObject string
	// IDs, if any: only these records (never with a sequence range).
	IDs []string
	// Whole reads: only the chunks with StartSeq <= sequence < EndSeq
	// (EndSeq 0: no upper bound). A chunk other than the set's first one
	// never sends its header row.
	StartSeq, EndSeq int32
}

// recordsRead is a RecordsRead resolved against the catalog.
type recordsRead struct {
	b      *metadata.Backup
	st     storage.Store
	rs     *RecordSet
	header []byte   // the record set's header row (the catalog's)
	ids    []string // normalised; nil for a whole read
	chunks []*metadata.RecordChunk
	first  int // index in rs.chunks of chunks[0]
}

// resolveRecords checks a read's request and finds what it reads.
func (s *Service) resolveRecords(ctx context.Context, tenant string, req RecordsRead) (*recordsRead, error) {
	switch {
	case req.StartSeq < 0 || req.EndSeq < 0:
		return nil, fault.Invalid(fault.Violation{Field: "start_sequence", Description: "sequence bounds must not be negative"})
	case req.EndSeq != 0 && req.EndSeq <= req.StartSeq:
		return nil, fault.Invalid(fault.Violation{Field: "end_sequence", Description: "must be 0 (no bound) or greater than start_sequence"})
	case len(req.IDs) > 0 && (req.StartSeq != 0 || req.EndSeq != 0):
		return nil, fault.Invalid(fault.Violation{Field: "start_sequence", Description: "a sequence range applies to whole reads only, not to reads by id"})
	}
	b, st, err := s.readable(ctx, tenant, req.BackupID)
	if err != nil {
		return nil, err
	}
	want, err := normalizeIDs("ids", req.IDs)
	if err != nil {
		return nil, err
	}
	sets, _, err := s.recordSets(ctx, b)
	if err != nil {
		return nil, err
	}
	rs := sets[req.SObject]
	if rs == nil {
		return nil, fault.New(fault.NotFound, "RECORD_SET_NOT_FOUND", "backup %s has no record set %q", req.BackupID, req.SObject)
	}
	header, _, err := s.cfg.Catalog.GetRecordSetSchema(ctx, tenant, req.BackupID, req.SObject)
	if err != nil {
		return nil, err
	}
	r := &recordsRead{b: b, st: st, rs: rs, header: header, first: -1}
	if len(req.IDs) > 0 {
		r.ids = want
		return r, nil
	}
	for i, c := range rs.chunks {
		if c.Sequence >= req.StartSeq && (req.EndSeq == 0 || c.Sequence < req.EndSeq) {
			if r.first < 0 {
				r.first = i
			}
			r.chunks = append(r.chunks, c)
		}
	}
	return r, nil
}

// ReadRecords sends a record set's CSV: whole (or a range of its chunks),
// or only the given ids.
func (s *Service) ReadRecords(ctx context.Context, tenant string, req RecordsRead, send func([]byte) error) (*Summary, error) {
	r, err := s.resolveRecords(ctx, tenant, req)
	if err != nil {
		return nil, err
	}
	// Whole reads: the pipeline's base (streamChunkFrames charges larger
	// frames on top). Reads by id: messages being built and sent, and the
	// frame buffers, which frameRows charges on top.
	reserve := int64(3 * s.cfg.MessageSize)
	if r.ids == nil {
		reserve = s.pipelineBase()
	}
	if err := s.cfg.Budget.AcquireFor(ctx, tenant, reserve); err != nil {
		return nil, budgetFault(err)
	}
	defer s.cfg.Budget.ReleaseFor(tenant, reserve)
	sum := &Summary{}
	out := &sender{send: func(b []byte) error { s.sent.Add(int64(len(b))); return send(b) }, size: s.cfg.MessageSize, sum: sum, eol: csvscan.LineEnding(r.header)}
	if r.ids == nil {
		for i, c := range r.chunks {
			out.boundary()
			if err := s.streamChunkFrames(ctx, r.b, r.st, c, r.first+i > 0, out.eol, out); err != nil {
				return nil, err
			}
			sum.Records += c.Records
		}
	} else if err := s.readByID(ctx, r.b, r.st, r.rs, r.header, r.ids, out); err != nil {
		return nil, err
	}
	return sum, out.flush()
}

// sender batches bytes into messages. It keeps rows apart: the scanner
// accepts a last row without a line ending, so a chunk (or a row read by id)
// may end without one; when more rows follow it, boundary has the sender put
// a line ending between them, or they would come back glued into one row.
type sender struct {
	send func([]byte) error
	size int
	buf  []byte
	sum  *Summary

	eol     []byte // the record set's line ending (its header row's)
	wrote   bool
	last    byte   // the last byte written
	pending []byte // a line ending owed before the next bytes
}

// boundary marks the end of a unit of whole rows (a chunk, a row): if what
// was written does not end with a line feed, the next bytes written, if any,
// are preceded by a line ending — the header's, or just LF after a row that
// ended in a lone CR (which then becomes its CRLF).
func (o *sender) boundary() {
	o.pending = nil
	if o.wrote {
		o.pending = csvscan.OwedEOL([]byte{o.last}, o.eol)
	}
}

// endRow ends what was written with a line ending now, if it lacks one.
func (o *sender) endRow() error {
	o.pending = nil
	if eol := csvscan.OwedEOL([]byte{o.last}, o.eol); o.wrote && eol != nil {
		return o.write(eol)
	}
	return nil
}

func (o *sender) write(p []byte) error {
	if len(p) == 0 {
		return nil
	}
	if o.pending != nil {
		pend := o.pending
		o.pending = nil
		if err := o.put(pend); err != nil {
			return err
		}
	}
	o.wrote, o.last = true, p[len(p)-1]
	return o.put(p)
}

func (o *sender) put(p []byte) error {
	o.sum.Bytes += int64(len(p))
	if len(o.buf) == 0 && len(p) >= o.size/2 {
		// A piece worth a message of its own (a decoded frame) is sent as
		// it is, without a copy: Send has encoded it when it returns.
		for len(p) > 0 {
			n := min(len(p), o.size)
			if err := o.send(p[:n]); err != nil {
				return err
			}
			p = p[n:]
		}
		return nil
	}
	for len(p) > 0 {
		if o.buf == nil {
			o.buf = make([]byte, 0, o.size)
		}
		n := min(len(p), o.size-len(o.buf))
		o.buf = append(o.buf, p[:n]...)
		p = p[n:]
		if len(o.buf) == o.size {
			if err := o.flush(); err != nil {
				return err
			}
		}
	}
	return nil
}

func (o *sender) flush() error {
	if len(o.buf) == 0 {
		return nil
	}
	err := o.send(o.buf)
	o.buf = o.buf[:0]
	return err
}

// streamChunk decodes one chunk object as it streams from S3, checks its
// SHA-256 against the catalog before the chunk's last bytes go out, and
// skips the chunk's header row unless it is the first chunk.
func (s *Service) streamChunk(ctx context.Context, b *metadata.Backup, st storage.Store, c *metadata.RecordChunk, skipHeader bool, out *sender) error {
	obj, err := s.cfg.Catalog.GetObject(ctx, b.TenantID, c.DataObjectID)
	if err != nil {
		return err
	}
	rc, err := st.Get(ctx, obj.Key, 0, -1)
	if err != nil {
		return s.s3Fault(ctx, b, obj, err, "GetObject")
	}
	defer rc.Close()
	// The body's own errors are told apart from a decode failure they cause.
	src := &storage.CountingReader{R: rc}
	// The object is bucket content: a frame that declares a window larger
	// than any frame ingest writes is refused before the window is allocated
	// (the reservation of the read covers this much).
	limit := uint64(max(s.cfg.MaxFrameBytes, zstd.MinWindowSize))
	dec, err := zstd.NewReader(src, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
		zstd.WithDecoderMaxWindow(limit), zstd.WithDecoderMaxMemory(limit))
	if err != nil {
		return err
	}
	defer dec.Close()
	// The chunk decodes to exactly the bytes that came in: one more is
	// damage (a bomb in the bucket), found before it is sent on.
	decoded := io.LimitReader(dec, c.BytesIn+1)
	var total int64
	h := sha256.New()
	buf := make([]byte, s.cfg.MessageSize)
	var held []byte // the last piece read, sent only once the next read succeeds
	// The header row ends at its first line feed outside quotes, which may be
	// in a later piece; a chunk of only a header row (with or without a line
	// ending) adds nothing.
	var skip csvscan.RowSkipper
	for {
		n, rerr := io.ReadFull(decoded, buf)
		if total += int64(n); total > c.BytesIn {
			return s.damaged(ctx, b, obj, "decodes to more than the %d bytes stored", c.BytesIn)
		}
		piece := buf[:n]
		h.Write(piece)
		if skipHeader {
			piece = skip.Skip(piece)
		}
		if held != nil {
			if err := out.write(held); err != nil {
				return err
			}
		}
		held = append(held[:0], piece...)
		// io.ReadFull's own short read, not a decoder error that wraps it
		// (a damaged block can end in "unexpected EOF" too).
		if rerr == io.EOF || (rerr == io.ErrUnexpectedEOF && src.Err == nil) {
			break // the decoder ended cleanly (a short last read)
		}
		if rerr != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if src.Err == nil {
				// The decoder failed on what it read: a whole object that does
				// not decode is damage; a short one may be a cut (shortRead
				// asks the bucket). The rest is read to tell them apart.
				_, _ = io.Copy(io.Discard, io.LimitReader(src, obj.Size-src.N+1))
			}
			if src.Err != nil {
				return s.s3Fault(ctx, b, obj, src.Err, "GetObject")
			}
			if src.N != obj.Size {
				return s.shortRead(ctx, b, st, obj, src.N, obj.Size)
			}
			return s.damaged(ctx, b, obj, "does not decode: %v", rerr)
		}
	}
	if src.N != obj.Size {
		return s.shortRead(ctx, b, st, obj, src.N, obj.Size)
	}
	if !bytes.Equal(h.Sum(nil), c.SHA256) {
		return s.damaged(ctx, b, obj, "decodes to content whose SHA-256 does not match the catalog")
	}
	s.frameGets.Add(1)
	s.frameBytes.Add(src.N)
	return out.write(held)
}

func normalizeIDs(field string, ids []string) ([]string, error) {
	if len(ids) > maxIDs {
		return nil, fault.Invalid(fault.Violation{Field: field, Description: fmt.Sprintf("at most %d ids per call", maxIDs)})
	}
	out := make([]string, 0, len(ids))
	seen := map[string]bool{}
	var bad []string
	for _, id := range ids {
		n, err := sfid.Normalize(id)
		if err != nil {
			bad = append(bad, id)
			continue
		}
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	if len(bad) > 0 {
		if len(bad) > 5 {
			bad = append(bad[:5], "…")
		}
		return nil, fault.Invalid(fault.Violation{Field: field, Description: "not Salesforce ids (15 or 18 characters of A-Z, a-z, 0-9): " + strings.Join(bad, ", ")})
	}
	return out, nil
}

type frameRef struct {
	chunk int
	frame uint32
}

// locate finds, per chunk and frame, which of the ids live there.
func (s *Service) locate(ctx context.Context, b *metadata.Backup, st storage.Store, rs *RecordSet, ids []string) (map[frameRef][]string, []*recindex.Reader, []string, error) {
	readers := make([]*recindex.Reader, len(rs.chunks))
	objs := make([]*metadata.Object, len(rs.chunks))
	for i, c := range rs.chunks {
		obj, err := s.cfg.Catalog.GetObject(ctx, b.TenantID, c.IndexObjectID)
		if err != nil {
			return nil, nil, nil, err
		}
		r, err := s.openIndex(st, obj)
		if err != nil {
			return nil, nil, nil, s.indexFault(ctx, b, obj, err)
		}
		readers[i], objs[i] = r, obj
	}
	found := map[frameRef][]string{}
	var missing []string
	for _, id := range ids {
		hit := false
		for i, r := range readers {
			if !r.MayContain(id) {
				continue
			}
			f, ok, err := r.Lookup(id)
			if err != nil {
				return nil, nil, nil, s.indexFault(ctx, b, objs[i], err)
			}
			if ok {
				k := frameRef{i, f}
				found[k] = append(found[k], id)
				hit = true
				break
			}
		}
		if !hit {
			missing = append(missing, id)
		}
	}
	return found, readers, missing, nil
}

func (s *Service) indexFault(ctx context.Context, b *metadata.Backup, obj *metadata.Object, err error) error {
	if errors.Is(err, recindex.ErrCorrupt) {
		return s.damaged(ctx, b, obj, "record index is corrupt: %v", err)
	}
	var fe *fault.Error
	if errors.As(err, &fe) {
		return err
	}
	return s.s3Fault(ctx, b, obj, err, "GetObject (index)")
}

// readByID sends the header, then the rows of the wanted ids in backup
// order (chunk, frame, row), one ranged GET per frame.
func (s *Service) readByID(ctx context.Context, b *metadata.Backup, st storage.Store, rs *RecordSet, header []byte, ids []string, out *sender) error {
	found, readers, missing, err := s.locate(ctx, b, st, rs, ids)
	if err != nil {
		return err
	}
	out.sum.Missing = missing
	if err := out.write(header); err != nil {
		return err
	}
	out.boundary()
	refs := make([]string, len(rs.References))
	for i, r := range rs.References {
		refs[i] = r.Field
	}
	keys := make([]frameRef, 0, len(found))
	for k := range found {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b frameRef) int {
		if a.chunk != b.chunk {
			return a.chunk - b.chunk
		}
		return int(a.frame) - int(b.frame)
	})
	for _, k := range keys {
		if err := ctx.Err(); err != nil {
			return err
		}
		want := map[string]bool{}
		for _, id := range found[k] {
			want[id] = true
		}
		err := s.frameRows(ctx, b, st, rs.chunks[k.chunk], readers[k.chunk], k.frame, header, refs, func(r *csvscan.Row) error {
			if id := string(r.ID[:]); want[id] {
				delete(want, id)
				out.sum.Records++
				if err := out.write(r.Raw); err != nil {
					return err
				}
				// A by-id read is a CSV of its own: every row ends with a line
				// ending, the chunk's last row (which may lack one) too.
				return out.endRow()
			}
			return nil
		})
		if err != nil {
			return err
		}
		if len(want) > 0 {
			// The index sent these ids to a frame that does not hold them: the
			// bucket contradicts itself. Never drop them silently.
			c := rs.chunks[k.chunk]
			idx, err := s.cfg.Catalog.GetObject(ctx, b.TenantID, c.IndexObjectID)
			if err != nil {
				return err
			}
			data, err := s.cfg.Catalog.GetObject(ctx, b.TenantID, c.DataObjectID)
			if err != nil {
				return err
			}
			return s.damaged(ctx, b, idx, "record index places %s in frame %d of %s, which does not hold it",
				strings.Join(slices.Sorted(maps.Keys(want)), ", "), k.frame, data.Key)
		}
	}
	return nil
}

// decodeFrame decodes one stored frame that the index says holds n bytes
// of input, never producing more than n+1 (csvframes.DecodeFrame).
func (s *Service) decodeFrame(raw []byte, n int64) ([]byte, error) {
	return csvframes.DecodeFrame(s.frames, raw, make([]byte, 0, n), int(n), int64(s.cfg.MaxFrameBytes))
}

// frameRows reads one frame with one ranged GET, decodes it (the frame's own
// checksum verifies it) and scans its rows.
func (s *Service) frameRows(ctx context.Context, b *metadata.Backup, st storage.Store, c *metadata.RecordChunk, r *recindex.Reader, frame uint32, header []byte, refs []string, emit func(*csvscan.Row) error) error {
	frames := r.Frames()
	obj, err := s.cfg.Catalog.GetObject(ctx, b.TenantID, c.DataObjectID)
	if err != nil {
		return err
	}
	if int(frame) >= len(frames) {
		return s.damaged(ctx, b, obj, "record index names frame %d of %d", frame, len(frames))
	}
	f := frames[frame]
	// The index is bucket content: its frame sizes are checked before anything
	// is allocated, and the frame's buffers (stored and decoded) are charged to
	// the budget on top of the stream's own reservation. Waiting for them while
	// holding that reservation could deadlock readers against each other, so a
	// budget in use answers ResourceExhausted (retryable) instead.
	// A frame stores at most its input plus zstd's few bytes of framing.
	if limit := int64(s.cfg.MaxFrameBytes); f.StoredLen <= 0 || f.StoredLen > limit+limit/64+1024 || f.InputLen < 0 || f.InputLen > limit {
		return s.damaged(ctx, b, obj, "record index describes frame %d as %d bytes stored, %d decoded (at most %d)", frame, f.StoredLen, f.InputLen, limit)
	}
	need := f.StoredLen + f.InputLen
	if !s.cfg.Budget.TryAcquireFor(b.TenantID, need) {
		e := fault.New(fault.ResourceExhausted, "MEMORY_BUDGET", "the server's memory budget (or this tenant's share of it) is in use; retry in a few seconds")
		e.Detail = fault.RetryDelay(2 * time.Second)
		return e
	}
	defer s.cfg.Budget.ReleaseFor(b.TenantID, need)
	rc, err := st.Get(ctx, obj.Key, f.StoredOffset, f.StoredLen)
	if err != nil {
		return s.s3Fault(ctx, b, obj, err, "GetObject (range)")
	}
	raw := make([]byte, f.StoredLen+1) // one more byte tells a body longer than asked (a store that ignored the range)
	n, err := io.ReadFull(rc, raw)
	rc.Close()
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return s.s3Fault(ctx, b, obj, err, "GetObject (range)")
	}
	raw = raw[:n]
	if int64(n) > f.StoredLen {
		return fault.New(fault.Unavailable, "STORAGE_UNAVAILABLE", "S3 answered a ranged GET of %s with more than the range; retry", obj.Key)
	}
	s.frameGets.Add(1)
	s.frameBytes.Add(int64(len(raw)))
	if int64(len(raw)) != f.StoredLen {
		return s.shortRead(ctx, b, st, obj, int64(len(raw)), f.StoredLen)
	}
	plain, err := s.decodeFrame(raw, f.InputLen)
	if err != nil {
		return s.damaged(ctx, b, obj, "frame %d does not decode: %v", frame, err)
	}
	if int64(len(plain)) != f.InputLen {
		return s.damaged(ctx, b, obj, "frame %d decodes to %d bytes, want %d", frame, len(plain), f.InputLen)
	}
	// The frame's bytes are what ingest stored (zstd checked them against the
	// frame's checksum, and their size against the index), and ingest parsed
	// them with the same scanner: a failure to parse them now is ours (a
	// header from the catalog that does not parse, a scanner that changed),
	// not the bucket's. It answers Internal and flags nothing: flagging would
	// mark an intact backup damaged for good.
	sc := csvscan.New(refs, csvscan.Limits{MaxFieldBytes: 1 << 30, MaxRowBytes: 1 << 30})
	malformed := func(err error) error {
		var re *csvscan.RowError
		if errors.As(err, &re) {
			s.cfg.Logger.ErrorContext(ctx, "stored frame does not parse", "tenant", b.TenantID, "backup", b.ID, "key", obj.Key, "frame", frame, "err", err)
			return fault.Wrap(err, fault.Internal, "FRAME_PARSE", "frame %d of object %s of backup %s decodes intact but does not parse as the record set's CSV: %v", frame, obj.Key, b.ID, err)
		}
		return err // the caller's own error
	}
	// Blank lines hold no record: the caller sees records only.
	records := func(r *csvscan.Row) error {
		if r.Blank {
			return nil
		}
		return emit(r)
	}
	if f.InputOffset != 0 {
		// A later frame: the catalog's header row (the first chunk's, equal to
		// this chunk's but perhaps for its line ending) tells the columns.
		if err := sc.Feed(header, records); err != nil {
			return malformed(err)
		}
		// A first chunk of only a header row may end without a line ending.
		if err := sc.Feed(csvscan.OwedEOL(header, csvscan.LineEnding(header)), records); err != nil {
			return malformed(err)
		}
	} // else frame 0 starts with the chunk's own header row, which the scanner parses (a quoted
	// column may hold a line break: it is never skipped at the first LF)
	if err := sc.Feed(plain, records); err != nil {
		return malformed(err)
	}
	if err := sc.Close(records); err != nil {
		return malformed(err)
	}
	return nil
}
