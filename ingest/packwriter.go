package ingest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/google/uuid"

	"backupstore/fault"
	"backupstore/metadata"
	"backupstore/pack"
	"backupstore/storage"
)

// Small-file packs, phase 1 (docs/FORMAT.md §2, "phase 1"): bodies ≤
// Config.PackThreshold with a declared size go into the open pack of their
// backup in this process. A pack is written with ONE PutObject when it is
// sealed — at the first body boundary past PackTarget, after PackLinger with
// no new body, on CommitBackup — and then recorded in one catalog
// transaction (pack, blobs, uploads, files); only then are its uploads
// answered, so an upload response is still a promise. A crash between the
// PUT and the transaction leaves an object without a row, which garbage
// collection owns after its grace period, as a single-PUT file's.

// Defaults of the pack settings.
const (
	// DefaultPackThreshold is the largest body packed when packing is on.
	DefaultPackThreshold = 1 << 20
	// DefaultPackLinger is how long an open pack waits for another body
	// while uploads wait on it.
	DefaultPackLinger = 20 * time.Millisecond
	// maxPackBodies seals a pack of many tiny bodies: its index stays ≤ 448 KiB.
	maxPackBodies = 8192
	// maxSealedPacks is how many sealed packs of one backup may be writing
	// and committing in this process at once; a body that needs a new pack
	// beyond waits for one of them (backpressure, not memory: each holds
	// its buffer until committed).
	maxSealedPacks = 4
)

// PackThreshold is the largest body packed (0: packing is off).
func (s *Service) PackThreshold() int64 { return s.cfg.PackThreshold }

// packable reports whether a body declared by h goes into a pack (when it
// arrives whole: a resumed upload's does not).
func (s *Service) packable(h *FileHeader) bool {
	return s.cfg.PackThreshold > 0 && h.DeclaredSize >= 0 && h.DeclaredSize <= s.cfg.PackThreshold
}

// packKey is where a pack lives: per org, as file objects (dedup is per org
// and storage).
func packKey(b *metadata.Backup, packID string) string {
	return b.TenantID + "/" + b.OrgID + "/packs/" + packID
}

// packWriters holds the open pack writer of each backup in this process.
type packWriters struct {
	mu sync.Mutex
	m  map[string]*packWriter // by tenant + "\x00" + backup id
	// headed memoises, per backup and pack, that dedup found the pack in the
	// bucket with its size: one HEAD per (backup, pack), not per file.
	// Bounded: cleared when it reaches maxHeaded entries.
	headed map[string]bool
}

const maxHeaded = 16384

func (s *Service) packHeaded(b *metadata.Backup, packID string) bool {
	s.packs.mu.Lock()
	defer s.packs.mu.Unlock()
	return s.packs.headed[b.TenantID+"\x00"+b.ID+"\x00"+packID]
}

func (s *Service) setPackHeaded(b *metadata.Backup, packID string) {
	s.packs.mu.Lock()
	defer s.packs.mu.Unlock()
	if s.packs.headed == nil || len(s.packs.headed) >= maxHeaded {
		s.packs.headed = map[string]bool{}
	}
	s.packs.headed[b.TenantID+"\x00"+b.ID+"\x00"+packID] = true
}

// packWriter fills one backup's packs. One pack is open at a time; sealed
// packs upload and commit on their own goroutines while the next fills.
type packWriter struct {
	s   *Service
	key string
	b   *metadata.Backup
	st  storage.Store

	mu  sync.Mutex
	cur *openPack
	// sealed packs not yet committed (or failed), and how many. Not a
	// WaitGroup: flushes (stream ends, CommitBackup) and seals of other
	// streams run concurrently, and a WaitGroup's Add may not race its Wait
	// ("WaitGroup is reused before previous Wait has returned", a panic the
	// scale benchmark hit with 64 UploadFiles streams ending together).
	inFlight map[*openPack]struct{}
	freed    chan struct{} // closed (and replaced) whenever one of them ends
	// coming is how many uploads of the backup in this process may still
	// add to the open pack (packToken). A pack with files waiting and none
	// coming is sealed at once: waiting out the linger would only delay
	// them (16 one-file streams would each wait the linger per file).
	coming int
}

// packToken is one upload counted in packWriter.coming until it joins the
// open pack or turns away (release); guarded by the writer's mu.
type packToken struct {
	pw   *packWriter
	done bool
}

// expectPack counts an upload that may add a body to the backup's open
// pack. Under the registry's lock, so the writer cannot be forgotten in
// between: it stays registered while any upload is counted.
func (s *Service) expectPack(b *metadata.Backup, st storage.Store) *packToken {
	s.packs.mu.Lock()
	defer s.packs.mu.Unlock()
	pw := s.packWriterLocked(b, st)
	pw.mu.Lock()
	defer pw.mu.Unlock()
	pw.coming++
	return &packToken{pw: pw}
}

// arrivedLocked uncounts t as it joins the open pack; pw.mu is held. t may
// be nil (an upload not counted) or of another writer (not this one's).
func (pw *packWriter) arrivedLocked(t *packToken) {
	if t != nil && t.pw == pw && !t.done {
		t.done = true
		pw.coming--
	}
}

// release uncounts an upload that turned away (failed, deduplicated
// against a sealed pack, resent); idempotent. If it was the last one coming,
// the open pack is sealed for the files that wait on it.
func (t *packToken) release() {
	if t == nil {
		return
	}
	pw := t.pw
	pw.mu.Lock()
	if !t.done {
		t.done = true
		pw.coming--
		if pw.coming == 0 && pw.cur != nil && len(pw.cur.files) > 0 {
			pw.sealLocked("idle")
		}
	}
	pw.mu.Unlock()
	pw.forgetIfIdle()
}

// openPack is a pack being filled, then sealed, written and committed.
type openPack struct {
	pw       *packWriter
	id, key  string
	w        *pack.Writer
	buf      []byte // w's buffer, from s.bufs: given back once the pack is written
	reserved int64  // budget bytes held for the buffer
	blobs    []*metadata.Blob
	bySHA    map[[32]byte]*metadata.Blob
	files    []*metadata.PackedFile
	results  []*Result
	timer    *time.Timer

	done chan struct{} // closed once committed or failed
	err  error         // the commit's error, if any
}

// packBufSize is the buffer one open pack reserves: the target, one body
// past it, the largest index, header and trailer (0 without packing).
func packBufSize(cfg *Config) int64 {
	if cfg.PackThreshold == 0 {
		return 0 // no packs
	}
	return cfg.PackTarget + cfg.PackThreshold + pack.FinishedSize(maxPackBodies, 0)
}

func (s *Service) packWriter(b *metadata.Backup, st storage.Store) *packWriter {
	s.packs.mu.Lock()
	defer s.packs.mu.Unlock()
	return s.packWriterLocked(b, st)
}

func (s *Service) packWriterLocked(b *metadata.Backup, st storage.Store) *packWriter {
	k := b.TenantID + "\x00" + b.ID
	if s.packs.m == nil {
		s.packs.m = map[string]*packWriter{}
	}
	pw := s.packs.m[k]
	if pw == nil {
		pw = &packWriter{s: s, key: k, b: b, st: st, freed: make(chan struct{}), inFlight: map[*openPack]struct{}{}}
		s.packs.m[k] = pw
	}
	return pw
}

// lookupPackWriter returns the backup's writer in this process, or nil.
func (s *Service) lookupPackWriter(tenant, backupID string) *packWriter {
	s.packs.mu.Lock()
	defer s.packs.mu.Unlock()
	return s.packs.m[tenant+"\x00"+backupID]
}

// packFile stores a whole small body through the backup's pack writer and
// returns once the pack holding it is in the bucket and committed. copied
// is called once the body is in the pack (whose own reservation holds it
// now): the caller's buffer and its reservation are free from then on.
func (s *Service) packFile(ctx context.Context, b *metadata.Backup, st storage.Store, h *FileHeader, body, digest []byte, copied func()) (*Result, error) {
	pw := s.packWriter(b, st)
	call(s.hooks().BeforePackAdd, *h)
	op, i, err := pw.add(ctx, h, body, digest)
	if err != nil {
		return nil, err
	}
	call(s.hooks().PackAdded, *h)
	copied()
	return s.waitPacked(ctx, st, h, op, i)
}

// ReserveBody charges n bytes of a body received ahead of its upload to the
// tenant's share of the memory budget, waiting as an upload's base does
// (ResourceExhausted past the budget's bound on waiting). The upload adopts
// the charge when its Source is a ReservedSource; release (idempotent)
// gives back what was not adopted.
func (s *Service) ReserveBody(ctx context.Context, tenant string, n int64) (release func(), err error) {
	if err := s.cfg.Budget.AcquireFor(ctx, tenant, n); err != nil {
		return nil, budgetFault(err, s.cfg.Budget)
	}
	var once sync.Once
	return func() { once.Do(func() { s.cfg.Budget.ReleaseFor(tenant, n) }) }, nil
}

// ReservedSource is a Source whose body is charged to the tenant already
// (ReserveBody): a small file's upload takes the charge over
// (TakeReservation returns it, once) instead of reserving its buffer anew —
// reserving twice could wait on itself.
type ReservedSource interface {
	Source
	TakeReservation() int64
}

// waitPacked waits for file i of op to be committed and answers it.
func (s *Service) waitPacked(ctx context.Context, st storage.Store, h *FileHeader, op *openPack, i int) (*Result, error) {
	select {
	case <-op.done:
	case <-ctx.Done():
		// The body stays in the pack and is committed without us: a resend
		// of the same upload id answers the stored result.
		return nil, ctx.Err()
	}
	pf := op.files[i]
	if op.err != nil {
		return s.afterFailedCommit(ctx, st, pf.Upload, op.results[i], "", op.err)
	}
	if w := pf.Winner; w != nil {
		if w.State == metadata.UploadCommitted && sameFileUpload(w, h) {
			return storedResult(w)
		}
		return nil, fault.New(fault.Aborted, "CONCURRENT_OPEN", "upload %s is being written by another stream; retry", h.UploadID)
	}
	return op.results[i], nil
}

// add puts the body into the open pack (starting one if needed; a body the
// open pack holds already is shared, not copied) and returns the pack and
// the file's index in it.
func (pw *packWriter) add(ctx context.Context, h *FileHeader, body, digest []byte) (*openPack, int, error) {
	s := pw.s
	var sum [32]byte
	copy(sum[:], digest)
	for {
		pw.mu.Lock()
		if pw.cur != nil {
			break
		}
		sealed, freed := len(pw.inFlight), pw.freed
		pw.mu.Unlock()
		// wait for a sealed pack of this backup to end. That needs no
		// memory, so waiting while the caller holds its body cannot close a
		// cycle of streams waiting for each other's memory.
		wait := func() error {
			select {
			case <-freed:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if sealed >= maxSealedPacks {
			if err := wait(); err != nil {
				return nil, 0, err
			}
			continue
		}
		// Reserve a whole pack buffer, then install it unless another stream
		// did. The caller holds its body's reservation, so this waits only
		// for this backup's sealed packs to give theirs back; with none in
		// flight, no room fails the upload as ResourceExhausted, to be
		// retried.
		n := packBufSize(&s.cfg)
		if !s.cfg.Budget.TryAcquireFor(pw.b.TenantID, n) {
			if sealed > 0 {
				if err := wait(); err != nil {
					return nil, 0, err
				}
				continue
			}
			return nil, 0, growFault(s.cfg.Budget, pw.b.TenantID, n)
		}
		id := "pck-" + uuid.NewString()
		// Pooled: packs seal when nothing more is coming, often far below
		// their target, and a fresh buffer each (8 MiB by default) made
		// 3 GB of garbage in 25 s and backupd's peak RSS reach the budget.
		buf := s.bufs.get(int(n))
		w, err := pack.NewWriter(buf, id)
		if err != nil {
			s.bufs.put(buf)
			s.cfg.Budget.ReleaseFor(pw.b.TenantID, n)
			return nil, 0, err
		}
		pw.mu.Lock()
		if pw.cur == nil {
			pw.cur = &openPack{pw: pw, id: id, key: packKey(pw.b, id), w: w, buf: buf, reserved: n,
				bySHA: map[[32]byte]*metadata.Blob{}, done: make(chan struct{})}
			break
		}
		pw.mu.Unlock()
		s.bufs.put(buf)
		s.cfg.Budget.ReleaseFor(pw.b.TenantID, n)
	}
	defer pw.mu.Unlock()
	op, i := pw.addLocked(h, body, digest, pw.cur.bySHA[sum])
	return op, i, nil
}

// addShared adds a file whose declared SHA-256 the open pack holds already,
// without its body; ok is false when there is no open pack or it does not
// hold that body.
func (pw *packWriter) addShared(h *FileHeader, digest []byte) (op *openPack, i int, ok bool) {
	// (h.coming is released by the caller's defer if the body is not here.)
	var sum [32]byte
	copy(sum[:], digest)
	pw.mu.Lock()
	defer pw.mu.Unlock()
	if pw.cur == nil || pw.cur.bySHA[sum] == nil {
		return nil, 0, false
	}
	bl := pw.cur.bySHA[sum]
	if h.DeclaredSize >= 0 && h.DeclaredSize != bl.Size {
		return nil, 0, false
	}
	op, i = pw.addLocked(h, nil, digest, bl)
	return op, i, true
}

// addLocked adds a file to the open pack: its body, or a share of bl when bl
// is not nil. pw.mu is held.
func (pw *packWriter) addLocked(h *FileHeader, body, digest []byte, bl *metadata.Blob) (*openPack, int) {
	s := pw.s
	var sum [32]byte
	copy(sum[:], digest)
	op := pw.cur
	dup := bl != nil
	if !dup {
		off, _ := op.w.Add(body, sum) // ≤ PackThreshold ≤ MaxBody, < maxPackBodies: cannot fail
		bl = &metadata.Blob{ID: "blb-" + timeOrderedID(), Offset: off, Size: int64(len(body)), SHA256: digest}
		op.blobs = append(op.blobs, bl)
		op.bySHA[sum] = bl
	}
	b := pw.b
	f := s.newFileRow(b, h, "", bl.Size, digest)
	f.BlobID = bl.ID
	in, stored := bl.Size, bl.Size
	f.Answer = metadata.AnswerStored
	if dup {
		in, stored = int64(len(body)), 0 // as a dedup of a stored body: nothing was sent if body is nil
		f.Answer = metadata.AnswerShared
		if body == nil {
			f.Answer = metadata.AnswerSharedUnsent
		}
	}
	res := &Result{UploadID: h.UploadID, DataKey: op.key, BytesIn: in, BytesStored: stored,
		SHA256: hex.EncodeToString(digest), Deduplicated: dup, FileID: f.ID}
	u := committedUpload(b, h, nil, bl.ID, op.key)
	u.Result, _ = json.Marshal(res)
	op.files = append(op.files, &metadata.PackedFile{Upload: u, File: f})
	op.results = append(op.results, res)
	i := len(op.files) - 1
	pw.arrivedLocked(h.coming)
	if int64(op.w.Size()) >= s.cfg.PackTarget || op.w.Count() >= maxPackBodies {
		pw.sealLocked("target")
	} else if pw.coming == 0 {
		pw.sealLocked("idle")
	} else if op.timer == nil {
		op.timer = time.AfterFunc(s.cfg.PackLinger, func() { pw.lingered(op) })
	} else {
		op.timer.Reset(s.cfg.PackLinger)
	}
	return op, i
}

// lingered seals op if it is still the open pack: no body came for a
// linger while uploads wait on it.
func (pw *packWriter) lingered(op *openPack) {
	pw.mu.Lock()
	defer pw.mu.Unlock()
	if pw.cur == op {
		pw.sealLocked("linger")
	}
}

// flush seals the open pack, if any, and waits until every sealed pack of
// the backup in this process is committed or failed.
func (pw *packWriter) flush() {
	pw.mu.Lock()
	if pw.cur != nil {
		pw.sealLocked("flush")
	}
	// Wait for the packs sealed so far, not for those other streams seal
	// meanwhile (a busy backup may never have none in flight).
	var dones []chan struct{}
	for op := range pw.inFlight {
		dones = append(dones, op.done)
	}
	pw.mu.Unlock()
	for _, d := range dones {
		<-d
	}
}

// sealLocked detaches the open pack and writes and commits it on a
// goroutine of its own. pw.mu is held.
func (pw *packWriter) sealLocked(reason string) {
	op := pw.cur
	pw.cur = nil
	if op.timer != nil {
		op.timer.Stop()
	}
	pw.inFlight[op] = struct{}{}
	go func() {
		op.err = pw.write(op)
		if op.err == nil {
			// The PUT has returned: nothing reads the buffer any more. After
			// a failed one the HTTP transport may still be sending it.
			pw.s.bufs.put(op.buf)
		}
		op.buf = nil
		pw.s.cfg.Budget.ReleaseFor(pw.b.TenantID, op.reserved)
		close(op.done)
		pw.mu.Lock()
		delete(pw.inFlight, op)
		close(pw.freed)
		pw.freed = make(chan struct{})
		pw.mu.Unlock()
		pw.forgetIfIdle()
	}()
}

// forgetIfIdle drops the writer from the registry once nothing is open.
func (pw *packWriter) forgetIfIdle() {
	s := pw.s
	s.packs.mu.Lock()
	defer s.packs.mu.Unlock()
	pw.mu.Lock()
	defer pw.mu.Unlock()
	if pw.cur == nil && len(pw.inFlight) == 0 && pw.coming == 0 && s.packs.m[pw.key] == pw {
		delete(s.packs.m, pw.key)
	}
}

// write finishes the pack (index and MAC), PUTs it, and commits its rows.
// It runs detached from any one upload's context: the uploads waiting on it
// may end, the pack is still the promise to those that did not.
func (pw *packWriter) write(op *openPack) (err error) {
	s, b := pw.s, pw.b
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	defer func() {
		if p := recover(); p != nil {
			err = fault.New(fault.Internal, "PANIC", "pack writer: %v", p)
		}
	}()
	keyID, macKey, err := s.cfg.PackKey(b.TenantID)
	if err != nil {
		return err
	}
	count := op.w.Count()
	data, indexOffset, err := op.w.Finish(macKey, keyID, b.TenantID, b.OrgID)
	if err != nil {
		return err
	}
	if _, err := pw.st.Put(ctx, op.key, bytes.NewReader(data)); err != nil {
		return s3Fault(err, "PutObject")
	}
	call(s.hooks().BeforePackCommit, op.key)
	isum := sha256.Sum256(data[indexOffset:])
	p := &metadata.Pack{TenantID: b.TenantID, ID: op.id, BackupID: b.ID, Key: op.key, Size: int64(len(data)),
		BodyCount: count, IndexOffset: indexOffset, IndexSHA256: isum[:], KeyID: keyID, CreatedAt: s.cfg.Now().UTC()}
	if err := s.inCatalog(ctx, b.TenantID, func() error { return s.cfg.Catalog.CommitPack(ctx, p, op.blobs, op.files) }); err != nil {
		return err
	}
	if f := s.hooks().LosePackCommitOK; f != nil && f(op.key) {
		return errors.New("test: the pack commit's OK was lost")
	}
	return nil
}

// Expectation counts an UploadFiles stream among the uploads that may still
// add to a backup's open pack (ExpectFiles). nil counts nothing.
type Expectation struct {
	s   *Service
	b   *metadata.Backup
	st  storage.Store
	tok *packToken
}

// ExpectFiles counts an UploadFiles stream among the uploads that may still
// add to the backup's open pack, until Release: while the stream may send
// more, the pack seals at its target or after the linger, not each time the
// files read so far have all joined it. A backup that is not open counts
// nothing (each file's upload answers why).
func (s *Service) ExpectFiles(ctx context.Context, tenant, backupID string) *Expectation {
	if s.cfg.PackThreshold == 0 {
		return nil
	}
	b, st, err := s.openBackup(ctx, tenant, backupID)
	if err != nil {
		return nil
	}
	return &Expectation{s: s, b: b, st: st, tok: s.expectPack(b, st)}
}

// Add counts h's upload (a file of the expectation's backup) as on its way
// to the open pack from now until UploadFile(h) is done with it, so that the
// stream can stop counting itself while its files read so far are still to
// join: a stream waiting for answers (its window full) sends nothing more,
// and its pack then seals as soon as they have all joined, not after the
// linger.
func (e *Expectation) Add(h *FileHeader) {
	if e == nil || h.WriteOffset != 0 || !e.s.packable(h) || h.BackupID != e.b.ID {
		return
	}
	h.coming = e.s.expectPack(e.b, e.st)
}

// Release stops counting the stream (idempotent). If it was the last upload
// coming, the open pack is sealed for the files that wait on it.
func (e *Expectation) Release() {
	if e != nil {
		e.tok.release()
	}
}

// flushPacks seals the backup's open pack in this process and waits for its
// packs sealed so far (CommitBackup calls it first).
func (s *Service) flushPacks(tenant, backupID string) {
	if pw := s.lookupPackWriter(tenant, backupID); pw != nil {
		pw.flush()
	}
}
