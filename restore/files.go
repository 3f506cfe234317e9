package restore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"time"

	"backupstore/fault"
	"backupstore/metadata"
	"backupstore/sfid"
	"backupstore/storage"
)

// FileRead selects what ReadFile streams.
type FileRead struct {
	BackupID, FileID, ParentID string
	Offset, Limit              int64
}

// FileSummary ends a ReadFile stream.
type FileSummary struct {
	Files int
	Bytes int64
}

// ReadFile streams one file, or every file of a parent record, each after
// its info. A whole read is checked against the catalog's SHA-256 before its
// last bytes go out.
func (s *Service) ReadFile(ctx context.Context, tenant string, req FileRead, info func(*metadata.File) error, send func([]byte) error) (*FileSummary, error) {
	b, st, err := s.readable(ctx, tenant, req.BackupID)
	if err != nil {
		return nil, err
	}
	if req.Offset < 0 || req.Limit < 0 {
		return nil, fault.Invalid(fault.Violation{Field: "read_offset", Description: "read_offset and read_limit must be ≥ 0"})
	}
	var files []*metadata.File
	switch {
	case req.FileID != "":
		f, err := s.cfg.Catalog.GetFile(ctx, tenant, req.BackupID, req.FileID)
		if errors.Is(err, metadata.ErrNotFound) {
			return nil, fault.Wrap(err, fault.NotFound, "FILE_NOT_FOUND", "backup %s has no file %q", req.BackupID, req.FileID)
		}
		if err != nil {
			return nil, err
		}
		if req.Offset > f.Size {
			return nil, fault.New(fault.OutOfRange, "READ_OFFSET_PAST_END", "read_offset %d is past the end of file %s (%d bytes)", req.Offset, f.ID, f.Size)
		}
		files = []*metadata.File{f}
	case req.ParentID != "":
		if req.Offset != 0 || req.Limit != 0 {
			return nil, fault.Invalid(fault.Violation{Field: "read_offset", Description: "ranged reads need a file_id"})
		}
		p, err := sfid.Normalize(req.ParentID)
		if err != nil {
			return nil, fault.Invalid(fault.Violation{Field: "parent_id", Description: "must be a Salesforce record id"})
		}
		if files, err = s.cfg.Catalog.FilesByParent(ctx, tenant, req.BackupID, []string{p}); err != nil {
			return nil, err
		}
	default:
		return nil, fault.Invalid(fault.Violation{Field: "selector", Description: "file_id or parent_id is required"})
	}
	reserve := int64(2 * s.cfg.MessageSize)
	if err := s.cfg.Budget.AcquireFor(ctx, tenant, reserve); err != nil {
		return nil, budgetFault(err)
	}
	defer s.cfg.Budget.ReleaseFor(tenant, reserve)
	sum := &FileSummary{}
	for _, f := range files {
		if err := info(f); err != nil {
			return nil, err
		}
		n, err := s.streamFile(ctx, b, st, f, req.Offset, req.Limit, func(p []byte) error { s.sent.Add(int64(len(p))); return send(p) })
		if err != nil {
			return nil, err
		}
		sum.Files++
		sum.Bytes += n
	}
	return sum, nil
}

// body is where a file's bytes are: a whole object of its own, or a blob at
// base in a pack (then blob is set). obj stands for the object holding them
// (for a pack: its key, id and size) in messages and checks.
type body struct {
	obj  *metadata.Object
	blob *metadata.Blob
	base int64
}

// locateBody finds a file's body: its object, or its blob and pack (one join).
func (s *Service) locateBody(ctx context.Context, b *metadata.Backup, f *metadata.File) (*body, error) {
	if f.BlobID == "" {
		obj, err := s.cfg.Catalog.GetObject(ctx, b.TenantID, f.ObjectID)
		if err != nil {
			return nil, err
		}
		return &body{obj: obj}, nil
	}
	_, bl, p, err := s.cfg.Catalog.FileLocation(ctx, b.TenantID, b.ID, f.ID)
	if err != nil {
		return nil, err
	}
	if bl.Size != f.Size || bl.Offset < 0 || bl.Offset+bl.Size > p.Size {
		return nil, fault.New(fault.Internal, "CATALOG_INCONSISTENT", "file %s: blob %s (%d bytes at %d) does not fit its file or pack %s", f.ID, bl.ID, bl.Size, bl.Offset, p.Key)
	}
	return &body{obj: &metadata.Object{TenantID: p.TenantID, ID: p.ID, OrgID: p.OrgID, StorageID: p.StorageID,
		Key: p.Key, Size: p.Size, Damaged: p.Damaged || bl.Damaged}, blob: bl, base: bl.Offset}, nil
}

// damaged is Service.damaged for a body: a packed one flags its blob and
// pack, not an object row.
func (s *Service) bodyDamaged(ctx context.Context, b *metadata.Backup, bd *body, format string, args ...any) error {
	if bd.blob == nil {
		return s.damaged(ctx, b, bd.obj, format, args...)
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if !bd.obj.Damaged {
		if err := s.cfg.Catalog.SetBlobDamaged(dctx, b.TenantID, bd.blob.ID); err != nil {
			s.cfg.Logger.ErrorContext(ctx, "flagging blob damaged", "blob", bd.blob.ID, "err", err)
		}
	}
	if !b.Damaged {
		if err := s.cfg.Catalog.SetBackupDamaged(dctx, b.TenantID, b.ID); err != nil {
			s.cfg.Logger.ErrorContext(ctx, "flagging backup damaged", "backup", b.ID, "err", err)
		}
	}
	msg := fmt.Sprintf("pack %s (body at %d, %d bytes) of backup %s: ", bd.obj.Key, bd.base, bd.blob.Size, b.ID) + fmt.Sprintf(format, args...)
	s.cfg.Logger.ErrorContext(ctx, "data loss", "tenant", b.TenantID, "backup", b.ID, "key", bd.obj.Key, "problem", msg)
	return fault.New(fault.DataLoss, "DATA_LOSS", "%s", msg)
}

// bodyS3Fault is Service.s3Fault for a body.
func (s *Service) bodyS3Fault(ctx context.Context, b *metadata.Backup, bd *body, err error, op string) error {
	if bd.blob != nil && (errors.Is(err, storage.ErrNotFound) || errors.Is(err, storage.ErrInvalidRange)) {
		if errors.Is(err, storage.ErrNotFound) {
			return s.bodyDamaged(ctx, b, bd, "missing from the bucket")
		}
		return s.bodyDamaged(ctx, b, bd, "shorter than the catalog says (%d bytes)", bd.obj.Size)
	}
	return s.s3Fault(ctx, b, bd.obj, err, op)
}

func (s *Service) streamFile(ctx context.Context, b *metadata.Backup, st storage.Store, f *metadata.File, off, limit int64, send func([]byte) error) (int64, error) {
	bd, err := s.locateBody(ctx, b, f)
	if err != nil {
		return 0, err
	}
	obj := bd.obj
	length := f.Size - off
	if limit > 0 && limit < length {
		length = limit
	}
	whole := off == 0 && length == f.Size
	if length == 0 {
		if whole && !bytes.Equal(sha256Of(nil), f.SHA256) {
			return 0, s.bodyDamaged(ctx, b, bd, "is empty but the catalog's SHA-256 is of other content")
		}
		return 0, nil
	}
	rc, err := st.Get(ctx, obj.Key, bd.base+off, length)
	if err != nil && bd.blob != nil && errors.Is(err, storage.ErrNotFound) {
		// A repack may have moved the body since it was located and the
		// retired pack's grace passed: the blob row says where it is now.
		// Only a body still said to be in the missing pack is lost.
		if nbd, lerr := s.locateBody(ctx, b, f); lerr == nil && nbd.obj.ID != obj.ID {
			s.cfg.Logger.InfoContext(ctx, "packed body moved by a repack while located; reading it from its new pack",
				"tenant", b.TenantID, "backup", b.ID, "file", f.ID, "from", obj.Key, "to", nbd.obj.Key)
			bd, obj = nbd, nbd.obj
			rc, err = st.Get(ctx, obj.Key, bd.base+off, length)
		}
	}
	if err != nil {
		return 0, s.bodyS3Fault(ctx, b, bd, err, "GetObject")
	}
	if bd.blob != nil {
		// A pack's body is a range inside a larger object: a server that
		// sends more than asked must not make us read into the next body.
		rc = storage.ExactBody(obj.Key, rc, length)
	}
	defer rc.Close()
	h := sha256.New()
	buf := make([]byte, s.cfg.MessageSize)
	var held []byte
	var got int64
	for {
		n, rerr := io.ReadFull(rc, buf)
		got += int64(n)
		h.Write(buf[:n])
		if held != nil {
			if err := send(held); err != nil {
				return 0, err
			}
		}
		held = append(held[:0], buf[:n]...)
		if rerr == io.EOF || errors.Is(rerr, io.ErrUnexpectedEOF) {
			break
		}
		if rerr != nil {
			if ctx.Err() != nil {
				return 0, ctx.Err()
			}
			return 0, s.bodyS3Fault(ctx, b, bd, rerr, "GetObject")
		}
		if got > length {
			break
		}
	}
	if got != length {
		return 0, s.shortBody(ctx, b, st, bd, got, length)
	}
	if whole && !bytes.Equal(h.Sum(nil), f.SHA256) {
		return 0, s.bodyDamaged(ctx, b, bd, "content does not match its SHA-256")
	}
	if len(held) > 0 {
		if err := send(held); err != nil {
			return 0, err
		}
	}
	return got, nil
}

// shortBody is shortRead for a body.
func (s *Service) shortBody(ctx context.Context, b *metadata.Backup, st storage.Store, bd *body, got, want int64) error {
	if bd.blob == nil {
		return s.shortRead(ctx, b, st, bd.obj, got, want)
	}
	info, err := st.Head(ctx, bd.obj.Key)
	if err != nil {
		return s.bodyS3Fault(ctx, b, bd, err, "HeadObject")
	}
	if info.Size == bd.obj.Size {
		return fault.New(fault.Unavailable, "STORAGE_UNAVAILABLE", "reading %s ended after %d of %d bytes; retry", bd.obj.Key, got, want)
	}
	return s.bodyDamaged(ctx, b, bd, "is %d bytes, the catalog says %d (truncated or replaced)", info.Size, bd.obj.Size)
}

func sha256Of(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}

// shortRead tells a network cut (the object is intact: Unavailable) from an
// object truncated in the bucket (DataLoss).
func (s *Service) shortRead(ctx context.Context, b *metadata.Backup, st storage.Store, obj *metadata.Object, got, want int64) error {
	info, err := st.Head(ctx, obj.Key)
	if err != nil {
		return s.s3Fault(ctx, b, obj, err, "HeadObject")
	}
	if info.Size == obj.Size {
		return fault.New(fault.Unavailable, "STORAGE_UNAVAILABLE", "reading %s ended after %d of %d bytes; retry", obj.Key, got, want)
	}
	return s.damaged(ctx, b, obj, "is %d bytes, the catalog says %d (truncated or replaced)", info.Size, obj.Size)
}
