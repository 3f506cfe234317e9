package restore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"

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

func (s *Service) streamFile(ctx context.Context, b *metadata.Backup, st storage.Store, f *metadata.File, off, limit int64, send func([]byte) error) (int64, error) {
	obj, err := s.cfg.Catalog.GetObject(ctx, b.TenantID, f.ObjectID)
	if err != nil {
		return 0, err
	}
	length := f.Size - off
	if limit > 0 && limit < length {
		length = limit
	}
	whole := off == 0 && length == f.Size
	if length == 0 {
		if whole && !bytes.Equal(sha256Of(nil), f.SHA256) {
			return 0, s.damaged(ctx, b, obj, "is empty but the catalog's SHA-256 is of other content")
		}
		return 0, nil
	}
	rc, err := st.Get(ctx, obj.Key, off, length)
	if err != nil {
		return 0, s.s3Fault(ctx, b, obj, err, "GetObject")
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
			return 0, s.s3Fault(ctx, b, obj, rerr, "GetObject")
		}
		if got > length {
			break
		}
	}
	if got != length {
		return 0, s.shortRead(ctx, b, st, obj, got, length)
	}
	if whole && !bytes.Equal(h.Sum(nil), f.SHA256) {
		return 0, s.damaged(ctx, b, obj, "content does not match its SHA-256")
	}
	if len(held) > 0 {
		if err := send(held); err != nil {
			return 0, err
		}
	}
	return got, nil
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
