package ingest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"backupstore/fault"
	"backupstore/metadata"
	"backupstore/sfid"
	"backupstore/storage"
)

// MaxObjectSize is the largest object S3 stores: 5 TiB.
const MaxObjectSize = 5 << 40

// FileHeader opens or resumes a file upload.
type FileHeader struct {
	BackupID, ParentID, Path, Name, ContentType, UploadID string
	WriteOffset                                           int64
	DeclaredSize                                          int64 // -1: not declared
	DeclaredSHA256                                        string

	// coming counts this upload among those on their way to its backup's
	// open pack until it joins the pack or turns away (nil: not packable).
	coming *packToken
}

func (h *FileHeader) check() error {
	var vs []fault.Violation
	add := func(f, d string) { vs = append(vs, fault.Violation{Field: "header." + f, Description: d}) }
	if h.BackupID == "" {
		add("backup_id", "required")
	}
	if id, err := sfid.Normalize(h.ParentID); err != nil {
		add("parent_id", "must be a Salesforce record id: 15 or 18 characters of A-Z, a-z, 0-9")
	} else {
		h.ParentID = id
	}
	if h.Path == "" || len(h.Path) > 1024 || !utf8.ValidString(h.Path) || strings.IndexFunc(h.Path, unicode.IsControl) >= 0 {
		add("path", "required: 1 to 1024 bytes of UTF-8 without control characters")
	}
	if len(h.Name) > 255 || !utf8.ValidString(h.Name) || strings.IndexFunc(h.Name, unicode.IsControl) >= 0 {
		add("name", "at most 255 bytes of UTF-8 without control characters")
	}
	if len(h.ContentType) > 255 || strings.IndexFunc(h.ContentType, func(r rune) bool { return r < ' ' || r > '~' }) >= 0 {
		add("content_type", "at most 255 printable ASCII characters")
	}
	if v := checkUploadID(h.UploadID); v != nil {
		add("upload_id", v.Description)
	}
	if h.DeclaredSize < -1 || h.DeclaredSize > MaxObjectSize {
		add("declared_size", "must be between 0 and 5 TiB")
	}
	if h.DeclaredSHA256 != "" {
		h.DeclaredSHA256 = strings.ToLower(h.DeclaredSHA256)
		if b, err := hex.DecodeString(h.DeclaredSHA256); err != nil || len(b) != sha256.Size {
			add("declared_sha256", "must be 64 hex digits")
		}
	}
	if h.WriteOffset < 0 {
		add("write_offset", "must be ≥ 0")
	}
	if len(vs) > 0 {
		return fault.Invalid(vs...)
	}
	return nil
}

// partSizeFor returns the input size of part n. With a declared size the part
// size is fixed and large enough for 9,000 parts; without one it doubles
// every 1,000 parts, so an undeclared stream reaches S3's 5 TiB well before
// part 10,000.
func partSizeFor(u *metadata.Upload, n int32) int64 {
	if u.DeclaredSize >= 0 {
		return u.PartSize
	}
	return u.PartSize << min((n-1)/1000, 9)
}

func declaredPartSize(base, declared int64) int64 {
	if declared < 0 {
		return base
	}
	per := (declared + 8999) / 9000
	per = (per + 1<<20 - 1) &^ (1<<20 - 1)
	return max(base, per)
}

// UploadFile stores (or resumes, or deduplicates) one file.
func (s *Service) UploadFile(ctx context.Context, tenant string, h FileHeader, src Source) (*Result, error) {
	// Counted already (Expectation.Add) or below; released however this ends.
	defer func() { h.coming.release() }()
	if err := h.check(); err != nil {
		return nil, err
	}
	b, st, err := s.openBackup(ctx, tenant, h.BackupID)
	if err != nil {
		return nil, err
	}
	if h.coming == nil && h.WriteOffset == 0 && s.packable(&h) {
		// The open pack waits for this upload rather than seal without it.
		h.coming = s.expectPack(b, st)
	}
	u, prev, err := s.openFileUpload(ctx, b, &h)
	if err != nil || prev != nil {
		return prev, err
	}
	if u == nil {
		// Declared within one part, it is a single PUT or a pack's body:
		// it can never leave a PENDING upload.
		onePart := h.DeclaredSize >= 0 && h.DeclaredSize <= s.cfg.PartSize
		if err := s.checkNewUpload(ctx, tenant, !onePart); err != nil {
			return nil, err
		}
	}
	if h.DeclaredSHA256 != "" && h.WriteOffset == 0 {
		if res, err := s.dedup(ctx, b, st, u, &h); res != nil || err != nil {
			if err != nil {
				s.fail(ctx, st, u, err)
			}
			return res, err
		}
	}
	if u == nil && (h.DeclaredSize < 0 || h.DeclaredSize <= s.cfg.PartSize) {
		return s.smallFile(ctx, b, st, &h, src)
	}
	if u == nil {
		if u, err = s.createFileUpload(ctx, b, &h); err != nil {
			return nil, err
		}
	}
	res, err := s.multipartFile(ctx, b, st, u, &h, src, nil)
	if err != nil {
		s.fail(ctx, st, u, err)
	}
	call(s.hooks().FileUploadDone, u)
	return res, err
}

// openFileUpload checks an existing upload id against the header. It returns
// (nil, nil) for a new upload, the reopened upload (new generation) for a
// resume or a restart, or the first result of a committed one.
func (s *Service) openFileUpload(ctx context.Context, b *metadata.Backup, h *FileHeader) (*metadata.Upload, *Result, error) {
	cat := s.cfg.Catalog
	u, found, err := s.look.uploads.get(ctx, [2]string{b.TenantID, b.ID}, h.UploadID)
	if err == nil && !found {
		if h.WriteOffset != 0 {
			return nil, nil, fault.New(fault.OutOfRange, "WRITE_OFFSET_MISMATCH",
				"upload %s has no committed bytes: start at write_offset 0, not %d", h.UploadID, h.WriteOffset)
		}
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	if !sameFileUpload(u, h) {
		return nil, nil, fault.New(fault.InvalidArgument, "UPLOAD_ID_REUSED",
			"upload id %s already belongs to an upload with another header (kind, parent, path, declared size or SHA-256); use a new UUID or the same header", h.UploadID)
	}
	// Decide on the row as read; when a concurrent stream changed it before
	// the atomic reopen, decide again on the row as it is now.
	for attempt := 0; ; attempt++ {
		switch u.State {
		case metadata.UploadCommitted:
			r, err := storedResult(u)
			return nil, r, err
		case metadata.UploadPending:
			if h.WriteOffset != u.CommittedSize {
				return nil, nil, fault.New(fault.OutOfRange, "WRITE_OFFSET_MISMATCH",
					"upload %s continues at committed_size %d, not at write_offset %d; ask QueryUploadStatus", h.UploadID, u.CommittedSize, h.WriteOffset)
			}
			// The offset check and the generation bump are one atomic step:
			// a part the old stream records in between moves committed_size,
			// and the reopen is decided again.
			call(s.hooks().BeforeResume, u)
			nu, err := cat.ResumeUpload(ctx, b.TenantID, b.ID, h.UploadID, h.WriteOffset)
			if errors.Is(err, metadata.ErrConflict) && nu != nil && attempt < 3 {
				u = nu
				continue
			}
			if err != nil {
				return nil, nil, err
			}
			call(s.hooks().AfterResume, nu)
			return nu, nil, nil
		default: // FAILED, ABANDONED: start over
			if h.WriteOffset != 0 {
				return nil, nil, fault.New(fault.OutOfRange, "WRITE_OFFSET_MISMATCH",
					"upload %s failed earlier (%s) and restarts from 0, not %d", h.UploadID, u.Error, h.WriteOffset)
			}
			nu, err := cat.BumpGeneration(ctx, b.TenantID, b.ID, h.UploadID)
			if err != nil {
				return nil, nil, err
			}
			if nu.State == metadata.UploadCommitted || nu.State == metadata.UploadPending {
				// Another stream restarted or committed it meanwhile.
				if attempt < 3 {
					u = nu
					continue
				}
				return nil, nil, fault.New(fault.Aborted, "CONCURRENT_OPEN", "upload %s is being reopened by another stream; retry", h.UploadID)
			}
			objID := newObjectID()
			ps := declaredPartSize(s.cfg.PartSize, h.DeclaredSize)
			if err := cat.ResetUpload(ctx, b.TenantID, b.ID, h.UploadID, nu.Generation, objID, fileKey(b, objID), ps); err != nil {
				return nil, nil, catalogFault(err, nu)
			}
			nu.ObjectID, nu.ObjectKey, nu.PartSize, nu.S3UploadID, nu.State = objID, fileKey(b, objID), ps, "", metadata.UploadPending
			nu.CommittedSize, nu.StoredSize, nu.HashState = 0, 0, nil
			return nu, nil, nil
		}
	}
}

// sameFileUpload reports whether a resend with header h is the file upload u (else the
// upload id was used for another upload): the same kind, parent and path, and the same declared
// size and SHA-256; for an upload its file answers for (a packed file, which keeps no
// declaration), a declared size or SHA-256 must be the file's.
func sameFileUpload(u *metadata.Upload, h *FileHeader) bool {
	if u.Kind != metadata.KindFile || u.ParentID != h.ParentID || u.Path != h.Path {
		return false
	}
	if f := u.Answered; f != nil {
		return (h.DeclaredSize < 0 || h.DeclaredSize == f.Size) &&
			(h.DeclaredSHA256 == "" || h.DeclaredSHA256 == hex.EncodeToString(f.SHA256))
	}
	return u.DeclaredSize == h.DeclaredSize && u.DeclaredSHA256 == h.DeclaredSHA256
}

// storedResult is the finish response a committed upload stored, or for an upload its file
// answers for (a packed file), the one it answered: made again from the file row.
func storedResult(u *metadata.Upload) (*Result, error) {
	if f := u.Answered; f != nil && len(u.Result) == 0 {
		r := &Result{UploadID: u.UploadID, DataKey: u.ObjectKey, SHA256: hex.EncodeToString(f.SHA256), FileID: f.ID}
		switch f.Answer {
		case metadata.AnswerStored:
			r.BytesIn, r.BytesStored = f.Size, f.Size
		case metadata.AnswerShared:
			r.BytesIn, r.Deduplicated = f.Size, true
		case metadata.AnswerSharedUnsent:
			r.Deduplicated = true
		default:
			return nil, fmt.Errorf("upload %s: its file %s answers %d", u.UploadID, f.ID, f.Answer)
		}
		return r, nil
	}
	var r Result
	if err := json.Unmarshal(u.Result, &r); err != nil {
		return nil, fmt.Errorf("stored result of upload %s: %w", u.UploadID, err)
	}
	return &r, nil
}

func (s *Service) createFileUpload(ctx context.Context, b *metadata.Backup, h *FileHeader) (*metadata.Upload, error) {
	objID := newObjectID()
	u := &metadata.Upload{TenantID: b.TenantID, BackupID: b.ID, UploadID: h.UploadID, Kind: metadata.KindFile,
		State: metadata.UploadPending, Generation: 1, ObjectID: objID, ObjectKey: fileKey(b, objID),
		PartSize: declaredPartSize(s.cfg.PartSize, h.DeclaredSize), ParentID: h.ParentID, Path: h.Path, Name: h.Name,
		ContentType: h.ContentType, DeclaredSize: h.DeclaredSize, DeclaredSHA256: h.DeclaredSHA256}
	if err := s.cfg.Catalog.CreateUpload(ctx, u); err != nil {
		if errors.Is(err, metadata.ErrConflict) {
			return nil, fault.Wrap(err, fault.Aborted, "CONCURRENT_OPEN", "upload %s was opened concurrently by another stream; retry", h.UploadID)
		}
		return nil, err
	}
	return u, nil
}

func (s *Service) newFileRow(b *metadata.Backup, h *FileHeader, objectID string, size int64, sum []byte) *metadata.File {
	return &metadata.File{TenantID: b.TenantID, BackupID: b.ID, ID: "fil-" + timeOrderedID(), ObjectID: objectID,
		UploadID: h.UploadID, ParentID: h.ParentID, Path: h.Path, Name: h.Name, ContentType: h.ContentType,
		Size: size, SHA256: sum, CreatedAt: s.cfg.Now().UTC()}
}

// committedUpload is the upload row a single-PUT or deduplicated upload
// commits as (u is nil when no PENDING row was written).
func committedUpload(b *metadata.Backup, h *FileHeader, u *metadata.Upload, objectID, key string) *metadata.Upload {
	if u != nil {
		return u
	}
	return &metadata.Upload{TenantID: b.TenantID, BackupID: b.ID, UploadID: h.UploadID, Kind: metadata.KindFile,
		State: metadata.UploadCommitted, Generation: 1, ObjectID: objectID, ObjectKey: key, ParentID: h.ParentID,
		Path: h.Path, Name: h.Name, ContentType: h.ContentType, DeclaredSize: h.DeclaredSize, DeclaredSHA256: h.DeclaredSHA256}
}

// dedup completes the upload at once when the declared body is stored already.
// It returns (nil, nil) when the body must be sent after all: none is stored,
// the stored one is missing or has another size (marked damaged, so no later
// backup shares it either), or the only backups that referenced it were
// deleted between the lookup and the commit.
func (s *Service) dedup(ctx context.Context, b *metadata.Backup, st storage.Store, u *metadata.Upload, h *FileHeader) (*Result, error) {
	sum, _ := hex.DecodeString(h.DeclaredSHA256)
	if u == nil && s.packable(h) {
		// The backup's open pack in this process: the file joins it and
		// waits for its commit.
		if pw := s.lookupPackWriter(b.TenantID, b.ID); pw != nil {
			if op, i, ok := pw.addShared(h, sum); ok {
				return s.waitPacked(ctx, st, h, op, i)
			}
		}
	}
	// One coalesced lookup: a packed body, else a file object.
	found, _, err := s.look.bodies.get(ctx, [3]string{b.TenantID, b.OrgID, b.StorageID}, string(sum))
	if err != nil {
		return nil, err
	}
	if found.blob != nil {
		if res, err := s.dedupBlob(ctx, b, st, u, h, sum, found.blob); res != nil || err != nil {
			return res, err
		}
		// Not shareable after all: a file object may be.
		obj, err := s.cfg.Catalog.FindFileObject(ctx, b.TenantID, b.OrgID, b.StorageID, sum)
		if errors.Is(err, metadata.ErrNotFound) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		found.obj = obj
	}
	obj := found.obj
	if obj == nil {
		return nil, nil
	}
	if h.DeclaredSize >= 0 && h.DeclaredSize != obj.Size {
		return nil, fault.New(fault.InvalidArgument, "DECLARATION_MISMATCH",
			"declared_size %d contradicts the stored body with the declared SHA-256 (%d bytes)", h.DeclaredSize, obj.Size)
	}
	// A catalog row is not the body: share it only if the bucket still has it.
	if ok, err := s.stillStored(ctx, st, obj.Key, obj.Size, false, func(ctx context.Context) error {
		s.cfg.Logger.WarnContext(ctx, "deduplication skipped a stored body that is missing or has the wrong size; marked damaged",
			"tenant", b.TenantID, "object", obj.ID, "key", obj.Key)
		return s.cfg.Catalog.SetObjectDamaged(ctx, b.TenantID, obj.ID)
	}); !ok || err != nil {
		return nil, err
	}
	call(s.hooks().BeforeDedupCommit, obj)
	f := s.newFileRow(b, h, obj.ID, obj.Size, sum)
	res := &Result{UploadID: h.UploadID, DataKey: obj.Key, BytesIn: 0, BytesStored: 0, SHA256: h.DeclaredSHA256, Deduplicated: true, FileID: f.ID}
	cu := committedUpload(b, h, u, obj.ID, obj.Key)
	cu.Result, _ = json.Marshal(res)
	if err := s.inCatalog(ctx, b.TenantID, func() error { return s.cfg.Catalog.CommitFileUpload(ctx, cu, nil, f) }); err != nil {
		if errors.Is(err, metadata.ErrNotFound) {
			// The stored body stopped being shareable (its backups are being
			// deleted): ask for the body after all. The client has not been
			// told to skip it yet.
			if _, gerr := s.cfg.Catalog.GetBackup(ctx, b.TenantID, b.ID); gerr == nil {
				return nil, nil
			}
		}
		return s.afterFailedCommit(ctx, st, cu, res, "", err)
	}
	if u != nil && u.S3UploadID != "" { // a restarted upload that had begun a multipart upload
		actx, cancel := detached(ctx)
		_ = st.AbortMultipart(actx, u.ObjectKey, u.S3UploadID)
		cancel()
	}
	return res, nil
}

// dedupBlob is dedup against bl, a packed body in a sealed pack that the
// lookup found (then one HEAD of the pack per backup). (nil, nil): not
// shareable, send the body.
func (s *Service) dedupBlob(ctx context.Context, b *metadata.Backup, st storage.Store, u *metadata.Upload, h *FileHeader, sum []byte, bl *metadata.Blob) (*Result, error) {
	if h.DeclaredSize >= 0 && h.DeclaredSize != bl.Size {
		return nil, fault.New(fault.InvalidArgument, "DECLARATION_MISMATCH",
			"declared_size %d contradicts the stored body with the declared SHA-256 (%d bytes)", h.DeclaredSize, bl.Size)
	}
	// Where the body is now: a repack may have moved it since the lookup.
	var p *metadata.Pack
	if err := s.inCatalog(ctx, b.TenantID, func() (err error) {
		bl, p, err = s.cfg.Catalog.BlobLocation(ctx, b.TenantID, bl.ID)
		return err
	}); err != nil {
		if errors.Is(err, metadata.ErrNotFound) {
			return nil, nil // gone since the lookup: send the body
		}
		return nil, err
	}
	// A catalog row is not the body: share it only if the bucket still has the
	// pack (asked once per backup and pack).
	ok, err := s.stillStored(ctx, st, p.Key, p.Size, s.packHeaded(b, p.ID), func(ctx context.Context) error {
		// A repack may have moved the body, and its old pack's grace passed,
		// since it was located: only a body still said to be there is lost.
		if _, now, err := s.cfg.Catalog.BlobLocation(ctx, b.TenantID, bl.ID); err != nil || now.ID != p.ID {
			return err
		}
		s.cfg.Logger.WarnContext(ctx, "deduplication skipped a pack that is missing or has the wrong size; marked damaged",
			"tenant", b.TenantID, "pack", p.ID, "key", p.Key)
		return s.cfg.Catalog.SetBlobDamaged(ctx, b.TenantID, bl.ID)
	})
	if !ok || err != nil {
		return nil, err
	}
	s.setPackHeaded(b, p.ID)
	f := s.newFileRow(b, h, "", bl.Size, sum)
	f.BlobID = bl.ID
	if u == nil {
		f.Answer = metadata.AnswerSharedUnsent // no upload row: the file answers for it
	}
	res := &Result{UploadID: h.UploadID, DataKey: p.Key, SHA256: h.DeclaredSHA256, Deduplicated: true, FileID: f.ID}
	cu := committedUpload(b, h, u, bl.ID, p.Key)
	cu.Result, _ = json.Marshal(res)
	if err := s.inCatalog(ctx, b.TenantID, func() error { return s.cfg.Catalog.CommitFileUpload(ctx, cu, nil, f) }); err != nil {
		if errors.Is(err, metadata.ErrNotFound) {
			if _, gerr := s.cfg.Catalog.GetBackup(ctx, b.TenantID, b.ID); gerr == nil {
				return nil, nil
			}
		}
		return s.afterFailedCommit(ctx, st, cu, res, "", err)
	}
	if u != nil && u.S3UploadID != "" {
		actx, cancel := detached(ctx)
		_ = st.AbortMultipart(actx, u.ObjectKey, u.S3UploadID)
		cancel()
	}
	return res, nil
}

// afterFailedCommit decides what a failed file upload commit means (see
// settleFailedCommit) and maps the catalog's error.
func (s *Service) afterFailedCommit(ctx context.Context, st storage.Store, u *metadata.Upload, mine *Result, ownKey string, cerr error) (*Result, error) {
	var own []string
	if ownKey != "" {
		own = append(own, ownKey)
	}
	r, cur, serr := s.settleFailedCommit(ctx, st, u, own...)
	if r != nil {
		return r, nil
	}
	switch {
	case serr != nil:
		return nil, serr
	case errors.Is(cerr, metadata.ErrStale):
		return nil, catalogFault(cerr, u)
	case errors.Is(cerr, metadata.ErrConflict):
		if cur != nil && cur.State == metadata.UploadPending {
			return nil, fault.Wrap(cerr, fault.Aborted, "CONCURRENT_OPEN", "upload %s is being written by another stream; retry", u.UploadID)
		}
		return nil, fault.Wrap(cerr, fault.FailedPrecondition, "BACKUP_NOT_OPEN", "backup %s is no longer open", u.BackupID)
	case errors.Is(cerr, metadata.ErrNotFound):
		return nil, fault.Wrap(cerr, fault.NotFound, "BACKUP_NOT_FOUND", "backup %q not found", u.BackupID)
	}
	return nil, cerr
}

// settleFailedCommit is what follows a failed upload commit. The outcome of
// a commit can be uncertain (the catalog committed, its OK was lost), so the
// upload row is read again: if it is COMMITTED, its stored result is returned
// — this stream's own (the upload succeeded after all) or the first stream's
// (which wins). ownKeys are keys only this stream's commit could have made
// reachable (a single PUT to a fresh object id, a record chunk's per-
// generation data and index): they are deleted only when the re-read proves
// no committed row references them. Every other key — a multipart file body
// shared by the upload's generations, anything when the re-read fails — is
// left to its owner: the next generation, or garbage collection after its
// grace period. Nothing is deleted on "my commit failed" alone. cur is the
// row as re-read (nil if that failed or there is none).
func (s *Service) settleFailedCommit(ctx context.Context, st storage.Store, u *metadata.Upload, ownKeys ...string) (r *Result, cur *metadata.Upload, err error) {
	rctx, cancel := detached(ctx)
	defer cancel()
	// A locking read: it waits for a commit still in flight on another
	// connection, so "not committed" is the outcome, not a stale snapshot.
	cur, err = s.cfg.Catalog.SettledUpload(rctx, u.TenantID, u.BackupID, u.UploadID)
	if f := s.hooks().LoseSettleRead; f != nil && f(u) {
		cur, err = nil, fmt.Errorf("test: the re-read was lost: %w", metadata.ErrUnavailable)
	}
	switch {
	case err == nil && cur.State == metadata.UploadCommitted:
		r, rerr := storedResult(cur)
		if rerr != nil {
			return nil, cur, rerr
		}
		var drop []string
		for _, k := range ownKeys {
			if k != r.DataKey && k != r.IndexKey {
				drop = append(drop, k)
			}
		}
		if len(drop) > 0 {
			_ = st.Delete(rctx, drop...)
		}
		return r, cur, nil
	case err == nil || errors.Is(err, metadata.ErrNotFound):
		if len(ownKeys) > 0 {
			_ = st.Delete(rctx, ownKeys...)
		}
		if err != nil {
			cur = nil
		}
		return nil, cur, nil
	}
	// The re-read failed: whether the commit happened is unknown. Nothing
	// is deleted, and the stream is told to retry (the same upload id
	// answers the committed result if it did).
	return nil, nil, fault.Wrap(err, fault.Unavailable, "COMMIT_OUTCOME_UNKNOWN",
		"upload %s: the catalog could not say whether the commit happened; retry with the same upload id", u.UploadID)
}

// smallFile buffers a file that may fit one part: if it ends within PartSize
// it costs one PUT and one transaction; if it grows beyond, it becomes a
// multipart upload (its PENDING row written before the first S3 call).
func (s *Service) smallFile(ctx context.Context, b *metadata.Backup, st storage.Store, h *FileHeader, src Source) (*Result, error) {
	limit := s.cfg.PartSize
	// The reservation follows the buffer: a declared size at once, else a
	// step at a time as the body arrives (growth never waits).
	first := int64(growStep)
	if h.DeclaredSize >= 0 {
		first = max(h.DeclaredSize, 1)
	}
	res := newReservation(s.cfg.Budget, b.TenantID, 0)
	if rs, ok := src.(ReservedSource); ok {
		// The body is charged already (UploadFiles): take the charge over,
		// never wait for a second one.
		res.adopt(rs.TakeReservation())
		if err := res.fit(first); err != nil {
			res.release()
			return nil, err
		}
	} else if err := res.acquire(ctx, first); err != nil {
		return nil, err
	}
	release := res.release
	defer release()
	var buf bytes.Buffer
	buf.Grow(int(first))
	sum := sha256.New()
	for {
		data, fin, err := src.Next()
		if err != nil {
			return nil, err
		}
		if fin {
			break
		}
		if h.DeclaredSize >= 0 && int64(buf.Len()+len(data)) > h.DeclaredSize {
			return nil, sizeMismatch(h.DeclaredSize, int64(buf.Len()+len(data)), false)
		}
		if need := buf.Len() + len(data); need > buf.Cap() {
			// Grow explicitly (not by Write's doubling), reserving first.
			size := max(need, min(2*buf.Cap(), int(limit)+len(data)))
			if err := res.fit(int64(size)); err != nil {
				return nil, err
			}
			buf.Grow(size - buf.Len())
		}
		sum.Write(data)
		buf.Write(data)
		if int64(buf.Len()) > limit {
			// Too big for one PUT: continue as a multipart upload.
			u, err := s.createFileUpload(ctx, b, h)
			if err != nil {
				return nil, err
			}
			release()
			res, err := s.multipartFile(ctx, b, st, u, h, src, &carry{data: buf.Bytes()})
			if err != nil {
				s.fail(ctx, st, u, err)
			}
			return res, err
		}
	}
	size := int64(buf.Len())
	digest := sum.Sum(nil)
	if err := checkDeclared(h, size, digest); err != nil {
		return nil, err
	}
	if s.packable(h) { // size = the declared size: checkDeclared
		return s.packFile(ctx, b, st, h, buf.Bytes(), digest, release)
	}
	objID := newObjectID()
	key := fileKey(b, objID)
	if _, err := st.Put(ctx, key, bytes.NewReader(buf.Bytes())); err != nil {
		return nil, s3Fault(err, "PutObject")
	}
	return s.commitFile(ctx, b, st, committedUpload(b, h, nil, objID, key), h, objID, key, size, digest, true)
}

func (s *Service) commitFile(ctx context.Context, b *metadata.Backup, st storage.Store, u *metadata.Upload, h *FileHeader, objID, key string, size int64, digest []byte, single bool) (*Result, error) {
	f := s.newFileRow(b, h, objID, size, digest)
	res := &Result{UploadID: h.UploadID, DataKey: key, BytesIn: size, BytesStored: size, SHA256: hex.EncodeToString(digest), FileID: f.ID}
	u.Result, _ = json.Marshal(res)
	obj := &metadata.Object{TenantID: b.TenantID, ID: objID, OrgID: b.OrgID, StorageID: b.StorageID, BackupID: b.ID,
		Key: key, Kind: metadata.ObjFile, Size: size, SHA256: digest, CreatedAt: s.cfg.Now().UTC()}
	err := s.inCatalog(ctx, b.TenantID, func() error {
		call(s.hooks().BeforeFileCommit, u)
		return s.cfg.Catalog.CommitFileUpload(ctx, u, obj, f)
	})
	if err == nil && s.hooks().LoseCommitOK != nil && s.hooks().LoseCommitOK(u) {
		err = errors.New("test: the commit's OK was lost")
	}
	if err != nil {
		ownKey := ""
		if single {
			ownKey = key // a fresh object id: only this commit could reference it
		}
		return s.afterFailedCommit(ctx, st, u, res, ownKey, err)
	}
	return res, nil
}

// carry is data a small-file attempt buffered before it turned multipart.
type carry struct{ data []byte }

// multipartFile streams the body in parts, each recorded with the hash state
// after it, so a new stream (on any replica) can resume at committed_size.
func (s *Service) multipartFile(ctx context.Context, b *metadata.Backup, st storage.Store, u *metadata.Upload, h *FileHeader, src Source, c *carry) (*Result, error) {
	cat := s.cfg.Catalog
	m := &mpu{s: s, st: st, u: u}
	sum := sha256.New()
	var n int32 = 1
	if c == nil && u.CommittedSize > 0 {
		parts, err := cat.ListParts(ctx, u.TenantID, u.BackupID, u.UploadID)
		if err != nil {
			return nil, err
		}
		for _, p := range parts {
			m.parts = append(m.parts, storage.CompletedPart{Number: p.Number, ETag: p.ETag, CRC32C: p.CRC32C})
			n = p.Number + 1
		}
		if err := sum.(encoding.BinaryUnmarshaler).UnmarshalBinary(u.HashState); err != nil {
			return nil, fmt.Errorf("upload %s: restoring hash state: %w", u.UploadID, err)
		}
	}
	maxPart := partSizeFor(u, 10000)
	reserve := s.fileReservation(maxPart)
	if err := s.cfg.Budget.AcquireFor(ctx, u.TenantID, reserve); err != nil {
		return nil, budgetFault(err, s.cfg.Budget)
	}
	defer s.cfg.Budget.ReleaseFor(u.TenantID, reserve)
	var bufs [2]*partBuf
	for i := range bufs {
		pb, err := newPartBuf(maxPart, s.cfg.MaxMemoryPart, s.cfg.SpoolDir)
		if err != nil {
			return nil, err
		}
		defer pb.close()
		bufs[i] = pb
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w := newPartWriter(m, bufs, n, func(n int32) int64 { return partSizeFor(u, n) })
	w.sum = sum
	total := u.CommittedSize // input bytes received, including the part being filled
	// stop ends the stream on err: the part in flight is cancelled and waited for.
	stop := func(err error) (*Result, error) {
		cancel()
		_ = w.wait()
		return nil, err
	}
	if c != nil {
		total = int64(len(c.data))
		if err := w.Write(ctx, c.data); err != nil {
			_ = w.wait()
			return nil, err
		}
	}
	for {
		data, fin, err := src.Next()
		if err != nil {
			// A part in flight may have found this stream stale: say so
			// rather than blame the broken stream.
			if werr := w.wait(); errors.Is(werr, metadata.ErrStale) {
				return nil, werr
			}
			return nil, err
		}
		if fin {
			break
		}
		total += int64(len(data))
		if h.DeclaredSize >= 0 && total > h.DeclaredSize {
			return stop(sizeMismatch(h.DeclaredSize, total, false))
		}
		if total > MaxObjectSize {
			return stop(fault.New(fault.InvalidArgument, "TOO_LARGE", "the file exceeds S3's 5 TiB object limit"))
		}
		if err := w.Write(ctx, data); err != nil {
			return stop(err)
		}
	}
	digest := sum.Sum(nil)
	if err := checkDeclared(h, total, digest); err != nil {
		return stop(err)
	}
	if _, err := w.Close(ctx); err != nil {
		return nil, err
	}
	return s.commitFile(ctx, b, st, u, h, u.ObjectID, u.ObjectKey, total, digest, false)
}

// stillStored reports whether key is in the bucket with size bytes (HEAD;
// known skips it), before a dedup hit shares it. A missing or resized object
// is not shared: damaged flags it (ErrNotFound from it is no failure) and
// stillStored answers false; any other HEAD failure is Unavailable.
func (s *Service) stillStored(ctx context.Context, st storage.Store, key string, size int64, known bool, damaged func(context.Context) error) (bool, error) {
	if known {
		return true, nil
	}
	info, err := st.Head(ctx, key)
	switch {
	case errors.Is(err, storage.ErrNotFound) || (err == nil && info.Size != size):
		if err := damaged(ctx); err != nil && !errors.Is(err, metadata.ErrNotFound) {
			return false, err
		}
		return false, nil
	case err != nil:
		return false, s3Fault(err, "HeadObject")
	}
	return true, nil
}

func checkDeclared(h *FileHeader, size int64, digest []byte) error {
	if h.DeclaredSize >= 0 && size != h.DeclaredSize {
		return sizeMismatch(h.DeclaredSize, size, true)
	}
	if h.DeclaredSHA256 != "" && hex.EncodeToString(digest) != h.DeclaredSHA256 {
		return &fault.Error{Kind: fault.InvalidArgument, Reason: "SHA256_MISMATCH",
			Msg:        fmt.Sprintf("the body's SHA-256 is %x, not the declared %s; nothing was stored", digest, h.DeclaredSHA256),
			Violations: []fault.Violation{{Field: "header.declared_sha256", Description: "does not match the body"}}}
	}
	return nil
}

func sizeMismatch(declared, got int64, final bool) error {
	msg := fmt.Sprintf("the body has %d bytes, not the declared %d; nothing was stored", got, declared)
	if !final {
		msg = fmt.Sprintf("the body exceeds the declared size of %d bytes (%d received); nothing was stored", declared, got)
	}
	return &fault.Error{Kind: fault.InvalidArgument, Reason: "SIZE_MISMATCH", Msg: msg,
		Violations: []fault.Violation{{Field: "header.declared_size", Description: "does not match the body"}}}
}
