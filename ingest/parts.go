package ingest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"

	"backupstore/fault"
	"backupstore/metadata"
	"backupstore/storage"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// partBuf accumulates one part, computing its CRC32C as bytes arrive. It
// lives in memory up to a limit and in a spool file beyond it.
type partBuf struct {
	mem  []byte
	file *os.File
	n    int64
	crc  uint32
}

func (p *partBuf) Write(b []byte) (int, error) {
	p.crc = crc32.Update(p.crc, castagnoli, b)
	p.n += int64(len(b))
	if p.file != nil {
		return p.file.Write(b)
	}
	p.mem = append(p.mem, b...)
	return len(b), nil
}

func (p *partBuf) Len() int64 { return p.n }

func (p *partBuf) reader() io.Reader {
	if p.file != nil {
		return io.NewSectionReader(p.file, 0, p.n)
	}
	return bytes.NewReader(p.mem)
}

func (p *partBuf) reset() error {
	p.n, p.crc, p.mem = 0, 0, p.mem[:0]
	if p.file != nil {
		if _, err := p.file.Seek(0, io.SeekStart); err != nil {
			return err
		}
		return p.file.Truncate(0)
	}
	return nil
}

func (p *partBuf) close() {
	if p.file != nil {
		p.file.Close()
		os.Remove(p.file.Name())
		p.file = nil
	}
}

// newPartBuf returns a buffer for parts of size bytes: in memory when that
// fits maxMem, else a spool file in dir.
func newPartBuf(size, maxMem int64, dir string) (*partBuf, error) {
	if size <= maxMem {
		return &partBuf{mem: make([]byte, 0, size+64<<10)}, nil
	}
	f, err := os.CreateTemp(dir, "part-*")
	if err != nil {
		return nil, fmt.Errorf("spool part: %w", err)
	}
	return &partBuf{file: f}, nil
}

// mpu drives one multipart upload whose parts are recorded in the catalog.
// One part uploads in the background while the caller fills the next.
type mpu struct {
	s     *Service
	st    storage.Store
	u     *metadata.Upload
	parts []storage.CompletedPart

	inflight chan error
}

// ensure creates the S3 multipart upload on first use and records its id.
func (m *mpu) ensure(ctx context.Context) error {
	if m.u.S3UploadID != "" {
		return nil
	}
	id, err := m.st.CreateMultipart(ctx, m.u.ObjectKey)
	if err != nil {
		return s3Fault(err, "CreateMultipartUpload")
	}
	m.u.S3UploadID = id
	if err := m.s.cfg.Catalog.SetS3UploadID(ctx, m.u.TenantID, m.u.BackupID, m.u.UploadID, m.u.Generation, id); err != nil {
		// Not recorded: abort it now, nobody else knows it.
		actx, cancel := detached(ctx)
		defer cancel()
		_ = m.st.AbortMultipart(actx, m.u.ObjectKey, id)
		m.u.S3UploadID = ""
		return catalogFault(err, m.u)
	}
	return nil
}

// submit waits for the previous part, then uploads buf as part number n in
// the background. inputEnd/storedEnd are the offsets the upload covers once
// this part is recorded; hashState is the input hash state at inputEnd.
func (m *mpu) submit(ctx context.Context, n int32, buf *partBuf, inputStart, inputEnd, storedEnd int64, hashState []byte) error {
	if err := m.wait(); err != nil {
		return err
	}
	if err := m.ensure(ctx); err != nil {
		return err
	}
	m.inflight = make(chan error, 1)
	go func() {
		m.inflight <- fault.Catch(func() error { return m.upload(ctx, n, buf, inputStart, inputEnd, storedEnd, hashState) })
	}()
	return nil
}

func (m *mpu) wait() error {
	if m.inflight == nil {
		return nil
	}
	err := <-m.inflight
	m.inflight = nil
	return err
}

func (m *mpu) upload(ctx context.Context, n int32, buf *partBuf, inputStart, inputEnd, storedEnd int64, hashState []byte) error {
	size, crc := buf.Len(), buf.crc
	// Fence before spending an upload: a newer stream owns the upload now.
	if cur, err := m.s.cfg.Catalog.GetUpload(ctx, m.u.TenantID, m.u.BackupID, m.u.UploadID); err != nil {
		return err
	} else if cur.Generation != m.u.Generation || cur.State != metadata.UploadPending {
		return catalogFault(metadata.ErrStale, m.u)
	}
	etag, err := m.st.UploadPart(ctx, m.u.ObjectKey, m.u.S3UploadID, n, buf.reader(), size, crc)
	if err != nil {
		return s3Fault(err, fmt.Sprintf("UploadPart %d", n))
	}
	p := metadata.Part{Number: n, ETag: etag, CRC32C: crc, Size: size, InputOffset: inputStart, InputEnd: inputEnd}
	if err := m.s.inCatalog(ctx, m.u.TenantID, func() error {
		return m.s.cfg.Catalog.RecordPart(ctx, m.u.TenantID, m.u.BackupID, m.u.UploadID, m.u.Generation, p, inputEnd, storedEnd, hashState)
	}); err != nil {
		return catalogFault(err, m.u)
	}
	m.u.CommittedSize, m.u.StoredSize, m.u.HashState = inputEnd, storedEnd, hashState
	m.parts = append(m.parts, storage.CompletedPart{Number: n, ETag: etag, CRC32C: crc})
	return nil
}

func (m *mpu) complete(ctx context.Context) (storage.ObjectInfo, error) {
	if err := m.wait(); err != nil {
		return storage.ObjectInfo{}, err
	}
	info, err := m.st.CompleteMultipart(ctx, m.u.ObjectKey, m.u.S3UploadID, m.parts)
	if err != nil {
		return info, s3Fault(err, "CompleteMultipartUpload")
	}
	return info, nil
}

// fail ends an upload whose input was bad (a malformed row, a size or
// SHA-256 mismatch, a chunk another upload id committed): the upload goes to
// FAILED — fenced by this stream's generation, so only the current owner ends
// it — and only then is its S3 upload aborted (with a context that outlives
// the stream); where the credentials may not abort, it is marked ABANDONED and
// logged with its S3 upload id. Any other failure (the client went away, the
// network or S3 or the catalog failed, a newer stream took over) leaves the
// upload PENDING and resumable: its recorded parts stay, and cleanup's TTL
// ends it if nobody resumes it.
func (s *Service) fail(ctx context.Context, st storage.Store, u *metadata.Upload, cause error) {
	if u == nil || !endsUpload(cause) {
		return
	}
	s.endUpload(ctx, st, u, cause)
}

// endUpload moves the upload, if it is still PENDING at u's generation, to
// FAILED and then aborts its multipart upload (ABANDONED where that is
// denied). A newer generation's upload is left alone.
func (s *Service) endUpload(ctx context.Context, st storage.Store, u *metadata.Upload, cause error) {
	ctx, cancel := detached(ctx)
	defer cancel()
	msg := cause.Error()
	if fe, ok := fault.As(cause); ok {
		msg = fe.Msg
	}
	if len(msg) > 1000 {
		msg = msg[:1000]
	}
	if err := s.cfg.Catalog.FailUpload(ctx, u.TenantID, u.BackupID, u.UploadID, u.Generation, metadata.UploadFailed, msg); err != nil {
		if !errors.Is(err, metadata.ErrStale) {
			s.cfg.Logger.ErrorContext(ctx, "marking upload failed", "upload", u.UploadID, "err", err)
		}
		return // not ours to end (a newer stream owns it), or not recorded: leave S3 alone
	}
	if u.S3UploadID == "" {
		return
	}
	err := st.AbortMultipart(ctx, u.ObjectKey, u.S3UploadID)
	if err == nil {
		return
	}
	if errors.Is(err, storage.ErrAbortDenied) {
		s.cfg.Logger.WarnContext(ctx, "multipart upload abandoned: AbortMultipartUpload denied; its parts stay until a lifecycle rule removes them",
			"tenant", u.TenantID, "backup", u.BackupID, "upload", u.UploadID, "key", u.ObjectKey, "s3_upload_id", u.S3UploadID)
	} else {
		s.cfg.Logger.ErrorContext(ctx, "multipart upload abandoned: abort failed", "tenant", u.TenantID, "backup", u.BackupID,
			"upload", u.UploadID, "key", u.ObjectKey, "s3_upload_id", u.S3UploadID, "err", err)
	}
	if err := s.cfg.Catalog.AbandonUpload(ctx, u.TenantID, u.BackupID, u.UploadID, u.Generation); err != nil {
		s.cfg.Logger.ErrorContext(ctx, "marking upload abandoned", "upload", u.UploadID, "err", err)
	}
}

// endsUpload reports whether an upload error is the input's fault, which
// ends the upload; everything else leaves it resumable.
func endsUpload(err error) bool {
	fe, ok := fault.As(err)
	if !ok {
		return false
	}
	switch fe.Kind {
	case fault.InvalidArgument:
		return !errors.Is(err, ErrNoFinish)
	case fault.AlreadyExists:
		return true
	}
	return false
}

// s3Fault says which object-store call failed, worth a retry; a refusal
// inside (storage.ErrAccessDenied) is answered FailedPrecondition by the
// server's one mapping, whatever wraps it.
func s3Fault(err error, op string) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return fault.Wrap(err, fault.Unavailable, "STORAGE_UNAVAILABLE", "S3 %s failed; retry", op)
}

// catalogFault maps a fenced write to Aborted.
func catalogFault(err error, u *metadata.Upload) error {
	if errors.Is(err, metadata.ErrStale) {
		return fault.Wrap(err, fault.Aborted, "STALE_GENERATION",
			"upload %s was reopened by another stream (this stream had generation %d); this stream stops", u.UploadID, u.Generation)
	}
	return err
}
