package metadata

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Upload states. An upload is PENDING from before its first S3 call until it is COMMITTED (its
// object and file or record chunk rows written), FAILED (aborted in S3), or ABANDONED (the abort
// was denied; the multipart upload may linger in the bucket).
const (
	UploadPending   = "PENDING"
	UploadCommitted = "COMMITTED"
	UploadFailed    = "FAILED"
	UploadAbandoned = "ABANDONED"
)

// Upload kinds.
const (
	KindRecords = "RECORDS" // one chunk of a record set
	KindFile    = "FILE"    // one file body
)

// Upload is an upload stream's state in the catalog, keyed by the client's upload id within the
// backup. Empty and nil byte slices are the same value (the store returns nil).
type Upload struct {
	TenantID, BackupID, UploadID string // UploadID: the client's handle (a UUID string)
	Kind, State                  string
	// Generation fences streams: a write names the generation it was opened at and fails with
	// ErrStale once a reopen has bumped it. It starts at 1.
	Generation int64
	// ObjectID and ObjectKey are the service's object id and key the data goes to (new ones on
	// every reset); S3UploadID is the multipart upload's id, "" for a single PUT or before the
	// multipart upload is created.
	ObjectID, ObjectKey string
	S3UploadID          string
	PartSize            int64
	// Records uploads.
	SObject  string
	Sequence int32
	// File uploads. DeclaredSize is -1 when none was declared; DeclaredSHA256 is hex or "".
	ParentID, Path, Name, ContentType string
	DeclaredSize                      int64
	DeclaredSHA256                    string
	// References is the JSON of the declared reference fields (records), opaque to the catalog.
	References []byte
	// CommittedSize and StoredSize are the input and stored bytes covered by recorded parts;
	// HashState is the marshalled SHA-256 state at CommittedSize (opaque).
	CommittedSize, StoredSize int64
	HashState                 []byte
	Error                     string
	// Result is the JSON of the finish response (opaque), set when the upload is committed.
	Result               []byte
	CreatedAt, UpdatedAt time.Time
	// Answered is set when the upload has no row and its file answers for it (a packed file,
	// docs/FORMAT.md §2.5): the upload is then COMMITTED at generation 1, without a Result or
	// declared size and SHA-256; ObjectID is the file's blob id, ObjectKey its pack's key, and
	// the file's Answer, id, size and SHA-256 make the finish response.
	Answered *File
}

// Part is a recorded part of a multipart upload.
type Part struct {
	Number                int32
	ETag                  string
	CRC32C                uint32
	Size                  int64 // stored bytes
	InputOffset, InputEnd int64 // the input bytes [InputOffset, InputEnd) it holds
}

var uploadCols = []string{"tenant_id", "backup_id", "upload_id", "kind", "state", "generation",
	"object_id", "object_key", "s3_upload_id", "part_size", "sobject", "seq", "parent_id", "path",
	"name", "content_type", "declared_size", "declared_sha256", "reference_fields",
	"committed_size", "stored_size", "hash_state", "error_message", "result", "created_at",
	"updated_at"}

var selectUpload = "SELECT " + strings.Join(uploadCols, ", ") + " FROM uploads"

const uploadKey = " WHERE tenant_id = ? AND backup_id = ? AND upload_id = ?"

func uploadArgs(u *Upload) []any {
	return []any{u.TenantID, u.BackupID, u.UploadID, u.Kind, u.State, u.Generation,
		u.ObjectID, u.ObjectKey, u.S3UploadID, u.PartSize, u.SObject, u.Sequence, u.ParentID, u.Path,
		u.Name, u.ContentType, u.DeclaredSize, u.DeclaredSHA256, nilIfEmpty(u.References),
		u.CommittedSize, u.StoredSize, nilIfEmpty(u.HashState), u.Error, nilIfEmpty(u.Result),
		toMicros(u.CreatedAt), toMicros(u.UpdatedAt)}
}

func scanUpload(r scanner) (*Upload, error) {
	var (
		u                Upload
		created, updated int64
	)
	err := r.Scan(&u.TenantID, &u.BackupID, &u.UploadID, &u.Kind, &u.State, &u.Generation,
		&u.ObjectID, &u.ObjectKey, &u.S3UploadID, &u.PartSize, &u.SObject, &u.Sequence, &u.ParentID,
		&u.Path, &u.Name, &u.ContentType, &u.DeclaredSize, &u.DeclaredSHA256, &u.References,
		&u.CommittedSize, &u.StoredSize, &u.HashState, &u.Error, &u.Result, &created, &updated)
	if err != nil {
		return nil, err
	}
	u.References, u.HashState, u.Result = nilIfEmpty(u.References), nilIfEmpty(u.HashState), nilIfEmpty(u.Result)
	u.CreatedAt, u.UpdatedAt = fromMicros(created), fromMicros(updated)
	return &u, nil
}

func (c catalog) queryUploads(ctx context.Context, q string, args ...any) ([]*Upload, error) {
	return queryRows(c, ctx, scanUpload, q, args...)
}

// prepareUpload validates u for insertion and fills its defaults: state PENDING, generation 1,
// both timestamps t.
func prepareUpload(u *Upload, t time.Time) error {
	if err := notEmpty("tenant id", u.TenantID, "backup id", u.BackupID, "upload id", u.UploadID); err != nil {
		return err
	}
	if u.Kind != KindRecords && u.Kind != KindFile {
		return fmt.Errorf("%w: upload kind %q", ErrInvalid, u.Kind)
	}
	switch u.State {
	case "":
		u.State = UploadPending
	case UploadPending, UploadCommitted, UploadFailed, UploadAbandoned:
	default:
		return fmt.Errorf("%w: upload state %q", ErrInvalid, u.State)
	}
	if u.Generation <= 0 {
		u.Generation = 1
	}
	u.CreatedAt, u.UpdatedAt = t, t
	return nil
}

// CreateUpload inserts u, PENDING at generation 1 unless u says otherwise, and sets its
// timestamps. It does not look at the backup's status (the commit does). ErrConflict: the backup
// already has an upload with this id; ErrNotFound: no such backup; ErrInvalid: empty ids or an
// unknown kind or state.
func (c catalog) CreateUpload(ctx context.Context, u *Upload) error {
	const op = "CreateUpload"
	nu := *u
	if err := prepareUpload(&nu, now()); err != nil {
		return c.fail(op, err, nil)
	}
	if _, err := c.q.ExecContext(ctx, insertSQL("uploads", uploadCols), uploadArgs(&nu)...); err != nil {
		return c.fail(op, err, ErrNotFound)
	}
	*u = nu
	return nil
}

// GetUpload returns the upload (answered by its file row if it has none, see Upload.Answered),
// or ErrNotFound.
func (c catalog) GetUpload(ctx context.Context, tenantID, backupID, uploadID string) (*Upload, error) {
	found, err := c.getUploads(ctx, tenantID, backupID, []string{uploadID})
	if err == nil && found[uploadID] == nil {
		err = fmt.Errorf("%w: backup %s has no upload %s", ErrNotFound, backupID, uploadID)
	}
	return found[uploadID], c.fail("GetUpload", err, nil)
}

// GetUploads is GetUpload for many upload ids of one backup: the uploads found, by upload id
// (unknown ids are absent). One query per 500 ids, and one more for those without a row.
func (c catalog) GetUploads(ctx context.Context, tenantID, backupID string, uploadIDs []string) (map[string]*Upload, error) {
	found, err := c.getUploads(ctx, tenantID, backupID, uploadIDs)
	return found, c.fail("GetUploads", err, nil)
}

func (c catalog) getUploads(ctx context.Context, tenantID, backupID string, uploadIDs []string) (map[string]*Upload, error) {
	found := make(map[string]*Upload, len(uploadIDs))
	var missing []string
	for start := 0; start < len(uploadIDs); start += purgeBatch {
		batch := uploadIDs[start:min(start+purgeBatch, len(uploadIDs))]
		in, args := inList(tenantID, batch)
		list, err := c.queryUploads(ctx, selectUpload+" WHERE tenant_id = ? AND backup_id = ? AND upload_id IN ("+in+")",
			append([]any{tenantID, backupID}, args[1:]...)...)
		if err != nil {
			return nil, err
		}
		for _, u := range list {
			found[u.UploadID] = u
		}
		for _, id := range batch {
			if found[id] == nil {
				missing = append(missing, id)
			}
		}
	}
	answered, err := c.answeredUploads(ctx, tenantID, backupID, missing)
	for _, u := range answered {
		found[u.UploadID] = u
	}
	return found, err
}

// selectAnswered reads the uploads files answer for (Upload.Answered): a file row without an
// upload row (upload_answer > 0), joined to its blob and pack for the pack's key; the WHERE is
// begun with the tenant and backup.
var selectAnswered = "SELECT " + colsAs("f", strings.Split(fileCols, ", ")) + ", p.object_key FROM files f" +
	" JOIN blobs b ON b.tenant_id = f.tenant_id AND b.id = f.blob_id" +
	" JOIN packs p ON p.tenant_id = b.tenant_id AND p.id = b.pack_id" +
	" WHERE f.tenant_id = ? AND f.backup_id = ? AND f.upload_answer > 0"

// queryAnswered runs a query of selectAnswered and makes each row's upload.
func (c catalog) queryAnswered(ctx context.Context, q string, args ...any) ([]*Upload, error) {
	type row struct {
		f   File
		key string
	}
	rows, err := queryFileRows(c, ctx, q, args, func() (*row, *File, []any) { r := &row{}; return r, &r.f, []any{&r.key} })
	if err != nil {
		return nil, err
	}
	list := make([]*Upload, len(rows))
	for i, r := range rows {
		list[i] = answeredUpload(&r.f, r.key)
	}
	return list, nil
}

// answeredUpload is the upload f answers for, its body a blob in the pack at packKey.
func answeredUpload(f *File, packKey string) *Upload {
	stored := f.Size
	if f.Answer != AnswerStored {
		stored = 0
	}
	return &Upload{TenantID: f.TenantID, BackupID: f.BackupID, UploadID: f.UploadID, Kind: KindFile,
		State: UploadCommitted, Generation: 1, ObjectID: f.BlobID, ObjectKey: packKey, ParentID: f.ParentID,
		Path: f.Path, Name: f.Name, ContentType: f.ContentType, DeclaredSize: -1, CommittedSize: f.Size,
		StoredSize: stored, CreatedAt: f.CreatedAt, UpdatedAt: f.CreatedAt, Answered: f}
}

// answeredUploads returns the uploads of ids (any number) that files answer for.
func (c catalog) answeredUploads(ctx context.Context, tenantID, backupID string, ids []string) ([]*Upload, error) {
	var all []*Upload
	for start := 0; start < len(ids); start += purgeBatch {
		in, args := inList(tenantID, ids[start:min(start+purgeBatch, len(ids))])
		list, err := c.queryAnswered(ctx, selectAnswered+" AND f.upload_id IN ("+in+")", append([]any{tenantID, backupID}, args[1:]...)...)
		if err != nil {
			return nil, fmt.Errorf("files: %w", err)
		}
		all = append(all, list...)
	}
	return all, nil
}

// BumpGeneration increments the upload's generation atomically, in any state, and returns the
// updated upload: from then on, writes fenced by an older generation fail with ErrStale.
// ErrNotFound: no such upload.
func (c catalog) BumpGeneration(ctx context.Context, tenantID, backupID, uploadID string) (*Upload, error) {
	var u *Upload
	err := c.inTx(ctx, func(c catalog) error {
		res, err := c.q.ExecContext(ctx, "UPDATE uploads SET generation = generation + 1, updated_at = ?"+uploadKey,
			toMicros(now()), tenantID, backupID, uploadID)
		if err != nil {
			return err
		}
		if err := affectedOne(res); err != nil {
			return err
		}
		u, err = scanUpload(c.q.QueryRowContext(ctx, selectUpload+uploadKey, tenantID, backupID, uploadID))
		return err
	})
	if err != nil {
		return nil, c.fail("BumpGeneration", err, nil)
	}
	return u, nil
}

// ResumeUpload reopens a PENDING upload at input offset committedSize in one atomic step: the
// generation is bumped only if the upload is still PENDING and its committed size is still
// committedSize, so a part that an older stream records between the caller's read and the bump
// cannot slip in unnoticed (the caller would continue at the wrong offset). It returns the
// reopened upload. If the upload is no longer PENDING or its committed size moved, nothing changes
// and it returns the current upload with ErrConflict, for the caller to decide again.
// ErrNotFound: no such upload.
func (c catalog) ResumeUpload(ctx context.Context, tenantID, backupID, uploadID string, committedSize int64) (*Upload, error) {
	var (
		u       *Upload
		changed bool
	)
	err := c.inTx(ctx, func(c catalog) error {
		res, err := c.q.ExecContext(ctx, "UPDATE uploads SET generation = generation + 1, updated_at = ?"+uploadKey+
			" AND state = ? AND committed_size = ?", toMicros(now()), tenantID, backupID, uploadID, UploadPending, committedSize)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		changed = n > 0
		u, err = scanUpload(c.q.QueryRowContext(ctx, selectUpload+uploadKey, tenantID, backupID, uploadID))
		return err
	})
	if err != nil {
		return nil, c.fail("ResumeUpload", err, nil)
	}
	if !changed {
		return u, fmt.Errorf("metadata.ResumeUpload: %w: upload %s is %s at committed size %d, not PENDING at %d",
			ErrConflict, uploadID, u.State, u.CommittedSize, committedSize)
	}
	return u, nil
}

// AbandonUpload marks the upload ABANDONED (its multipart upload could not be aborted and may
// linger in the bucket) if it is still at generation gen and not COMMITTED. ErrStale: a newer
// generation owns it; ErrConflict: it is committed; ErrNotFound: no such upload.
func (c catalog) AbandonUpload(ctx context.Context, tenantID, backupID, uploadID string, gen int64) error {
	err := c.updateFenced(ctx, fenceNotCommitted, tenantID, backupID, uploadID, gen,
		"state = ?, updated_at = ?", UploadAbandoned, toMicros(now()))
	return c.fail("AbandonUpload", err, nil)
}

// fence is what a fenced update of an upload requires besides its generation.
type fence int

const (
	fencePending      fence = iota // PENDING; in any other state the write is stale
	fenceCommit                    // PENDING; COMMITTED is a conflict, any other state stale
	fenceNotCommitted              // any state but COMMITTED, which is a conflict
)

// updateFenced runs "UPDATE uploads SET <set>" on the upload if it is at generation gen and in a
// state f admits. If it is not, it says why: ErrNotFound (no such upload), ErrConflict (already
// committed, where f says so) or ErrStale.
func (c catalog) updateFenced(ctx context.Context, f fence, tenantID, backupID, uploadID string, gen int64, set string, args ...any) error {
	q := "UPDATE uploads SET " + set + uploadKey + " AND generation = ?"
	state := UploadPending
	if f == fenceNotCommitted {
		q += " AND state <> ?"
		state = UploadCommitted
	} else {
		q += " AND state = ?"
	}
	res, err := c.q.ExecContext(ctx, q, append(args, tenantID, backupID, uploadID, gen, state)...)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil || n > 0 {
		return err
	}
	var (
		cur    string
		curGen int64
	)
	err = c.q.QueryRowContext(ctx, "SELECT state, generation FROM uploads"+uploadKey, tenantID, backupID, uploadID).
		Scan(&cur, &curGen)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("%w: upload %s", ErrNotFound, uploadID)
	case err != nil:
		return err
	case cur == UploadCommitted && f != fencePending:
		return fmt.Errorf("%w: upload %s is already committed", ErrConflict, uploadID)
	case curGen != gen:
		return fmt.Errorf("%w: upload %s is at generation %d, not %d", ErrStale, uploadID, curGen, gen)
	}
	return fmt.Errorf("%w: upload %s is %s", ErrStale, uploadID, cur)
}

// ResetUpload restarts the upload at generation gen from scratch, in one transaction: its parts
// are deleted, it goes to the new object id, key and part size, and it is PENDING with no S3
// upload id, no sizes, hash state, error or result. ErrStale: gen is not the current generation;
// ErrConflict: the upload is committed (its object is in use); ErrNotFound: no such upload.
func (c catalog) ResetUpload(ctx context.Context, tenantID, backupID, uploadID string, gen int64, objectID, objectKey string, partSize int64) error {
	const op = "ResetUpload"
	if err := notEmpty("object id", objectID, "object key", objectKey); err != nil {
		return c.fail(op, err, nil)
	}
	err := c.inTx(ctx, func(c catalog) error {
		err := c.updateFenced(ctx, fenceNotCommitted, tenantID, backupID, uploadID, gen,
			`object_id = ?, object_key = ?, part_size = ?, s3_upload_id = '', committed_size = 0,
 stored_size = 0, hash_state = NULL, error_message = '', result = NULL, state = ?, updated_at = ?`,
			objectID, objectKey, partSize, UploadPending, toMicros(now()))
		if err != nil {
			return err
		}
		_, err = c.q.ExecContext(ctx, "DELETE FROM upload_parts"+uploadKey, tenantID, backupID, uploadID)
		return err
	})
	return c.fail(op, err, nil)
}

// SetS3UploadID records the multipart upload's id. ErrStale: gen is not the current generation,
// or the upload is no longer PENDING; ErrNotFound: no such upload.
func (c catalog) SetS3UploadID(ctx context.Context, tenantID, backupID, uploadID string, gen int64, s3UploadID string) error {
	err := c.updateFenced(ctx, fencePending, tenantID, backupID, uploadID, gen,
		"s3_upload_id = ?, updated_at = ?", s3UploadID, toMicros(now()))
	return c.fail("SetS3UploadID", err, nil)
}

// RecordPart records a finished part in one transaction: the part row (replacing one with the
// same number) and the upload's committed and stored sizes and hash state. ErrStale: gen is not
// the current generation, or the upload is no longer PENDING; ErrNotFound: no such upload;
// ErrInvalid: a part number below 1.
func (c catalog) RecordPart(ctx context.Context, tenantID, backupID, uploadID string, gen int64, p Part, committedSize, storedSize int64, hashState []byte) error {
	const op = "RecordPart"
	if p.Number < 1 {
		return c.fail(op, fmt.Errorf("%w: part number %d", ErrInvalid, p.Number), nil)
	}
	err := c.inTx(ctx, func(c catalog) error {
		// The fenced update comes first: it locks the upload row, so a concurrent reopen
		// (BumpGeneration, ResetUpload) waits for this part or wins before it.
		err := c.updateFenced(ctx, fencePending, tenantID, backupID, uploadID, gen,
			"committed_size = ?, stored_size = ?, hash_state = ?, updated_at = ?",
			committedSize, storedSize, nilIfEmpty(hashState), toMicros(now()))
		if err != nil {
			return err
		}
		cols := []string{"tenant_id", "backup_id", "upload_id", "part_number", "etag", "crc32c",
			"size", "input_offset", "input_end"}
		_, err = c.q.ExecContext(ctx,
			c.d.upsert("upload_parts", cols, cols[:4], cols[4:]),
			tenantID, backupID, uploadID, p.Number, p.ETag, int64(p.CRC32C), p.Size, p.InputOffset, p.InputEnd)
		return err
	})
	return c.fail(op, err, ErrNotFound)
}

// ListParts returns the upload's recorded parts by number (none for an unknown upload).
func (c catalog) ListParts(ctx context.Context, tenantID, backupID, uploadID string) ([]Part, error) {
	const op = "ListParts"
	rows, err := c.q.QueryContext(ctx, `SELECT part_number, etag, crc32c, size, input_offset, input_end
 FROM upload_parts`+uploadKey+" ORDER BY part_number", tenantID, backupID, uploadID)
	if err != nil {
		return nil, c.fail(op, err, nil)
	}
	defer rows.Close()
	var parts []Part
	for rows.Next() {
		var (
			p   Part
			crc int64
		)
		if err := rows.Scan(&p.Number, &p.ETag, &crc, &p.Size, &p.InputOffset, &p.InputEnd); err != nil {
			return nil, c.fail(op, err, nil)
		}
		p.CRC32C = uint32(crc)
		parts = append(parts, p)
	}
	return parts, c.fail(op, rows.Err(), nil)
}

// FailUpload moves a PENDING upload to state (FAILED or ABANDONED) with an error message.
// ErrStale: gen is not the current generation, or the upload is no longer PENDING; ErrNotFound:
// no such upload; ErrInvalid: another state.
func (c catalog) FailUpload(ctx context.Context, tenantID, backupID, uploadID string, gen int64, state, msg string) error {
	const op = "FailUpload"
	if state != UploadFailed && state != UploadAbandoned {
		return c.fail(op, fmt.Errorf("%w: FailUpload to state %q", ErrInvalid, state), nil)
	}
	err := c.updateFenced(ctx, fencePending, tenantID, backupID, uploadID, gen,
		"state = ?, error_message = ?, updated_at = ?", state, msg, toMicros(now()))
	return c.fail(op, err, nil)
}

// ListUploads returns one page of the backup's uploads in the given state ("" = all), in byte
// order of upload id, and the token of the next page ("" after the last). Page sizes are as for
// ListStorages. ErrInvalid: negative pageSize or a token ListUploads did not make.
func (c catalog) ListUploads(ctx context.Context, tenantID, backupID, state string, pageSize int, pageToken string) ([]*Upload, string, error) {
	const op = "ListUploads"
	limit, err := pageLimit(pageSize)
	if err != nil {
		return nil, "", c.fail(op, err, nil)
	}
	q := selectUpload + " WHERE tenant_id = ? AND backup_id = ?"
	args := []any{tenantID, backupID}
	if state != "" {
		q += " AND state = ?"
		args = append(args, state)
	}
	k := keyset{cols: []keyCol{{name: "upload_id"}}}
	list, next, err := listPage(c, op, k, q, args, limit, pageToken,
		func(q string, args ...any) ([]*Upload, error) { return c.queryUploads(ctx, q, args...) },
		func(u *Upload) []any { return []any{u.UploadID} })
	if err != nil || (state != "" && state != UploadCommitted) {
		return list, next, err
	}
	// The uploads files answer for (committed, without a row), merged in: the page is the
	// first limit of both, and there is a next one if either has more. The files scan walks
	// files_upload and skips those whose upload row answers (every other file has one), so it
	// stops at the last row of a full uploads page: what it skips is bounded by that page.
	aq, aargs := selectAnswered, []any{tenantID, backupID}
	if pageToken != "" {
		cond, kargs, _ := keyset{cols: []keyCol{{name: "f.upload_id"}}}.after(pageToken) // listPage checked it
		aq += " AND " + cond
		aargs = append(aargs, kargs...)
	}
	if next != "" {
		aq += " AND f.upload_id <= ?"
		aargs = append(aargs, list[len(list)-1].UploadID)
	}
	answered, err := c.queryAnswered(ctx, aq+" ORDER BY f.upload_id LIMIT ?", append(aargs, limit+1)...)
	if err != nil {
		return nil, "", c.fail(op, err, nil)
	}
	more := next != "" || len(answered) > limit
	list = mergeUploads(list, answered)
	if len(list) > limit {
		list, more = list[:limit], true
	}
	if !more {
		return list, "", nil
	}
	return list, k.token(list[len(list)-1].UploadID), nil
}

// mergeUploads merges two lists in byte order of upload id into one; of an id in both (a
// client that used one upload id for a packed file and another upload at the same time), the
// row of rows wins.
func mergeUploads(rows, answered []*Upload) []*Upload {
	out := make([]*Upload, 0, len(rows)+len(answered))
	for len(rows) > 0 || len(answered) > 0 {
		switch {
		case len(answered) == 0 || (len(rows) > 0 && rows[0].UploadID <= answered[0].UploadID):
			if len(answered) > 0 && rows[0].UploadID == answered[0].UploadID {
				answered = answered[1:]
			}
			out, rows = append(out, rows[0]), rows[1:]
		default:
			out, answered = append(out, answered[0]), answered[1:]
		}
	}
	return out
}

// PendingUploads returns all of the backup's PENDING uploads, by upload id.
func (c catalog) PendingUploads(ctx context.Context, tenantID, backupID string) ([]*Upload, error) {
	list, err := c.queryUploads(ctx, selectUpload+" WHERE tenant_id = ? AND backup_id = ? AND state = ? ORDER BY upload_id",
		tenantID, backupID, UploadPending)
	return list, c.fail("PendingUploads", err, nil)
}

// commitUpload is the upload half of CommitFileUpload and CommitRecordsUpload, inside their
// transaction: the upload row, if there is one, goes from PENDING at u.Generation to COMMITTED
// with u.Result; if there is none (a single PUT recorded only after it succeeded), u is inserted
// as COMMITTED. It does not change u; inserted tells which happened.
func (c catalog) commitUpload(ctx context.Context, u *Upload, kind string, t time.Time) (inserted bool, err error) {
	var one int
	err = c.q.QueryRowContext(ctx, "SELECT 1 FROM uploads"+uploadKey, u.TenantID, u.BackupID, u.UploadID).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		// A plain read first, not a fenced UPDATE of a missing row: on MySQL that would take a
		// gap lock, and two such commits of one upload id would deadlock instead of one of them
		// failing with a duplicate key.
		nu := *u
		nu.State, nu.Generation = UploadCommitted, max(nu.Generation, 1)
		if nu.Kind == "" {
			nu.Kind = kind
		}
		if err := prepareUpload(&nu, t); err != nil {
			return false, err
		}
		_, err := c.q.ExecContext(ctx, insertSQL("uploads", uploadCols), uploadArgs(&nu)...)
		return true, err
	}
	if err != nil {
		return false, err
	}
	return false, c.updateFenced(ctx, fenceCommit, u.TenantID, u.BackupID, u.UploadID, u.Generation,
		"state = ?, result = ?, updated_at = ?", UploadCommitted, nilIfEmpty(u.Result), toMicros(t))
}

// committed records in u what commitUpload did.
func committed(u *Upload, kind string, inserted bool, t time.Time) {
	u.State, u.UpdatedAt = UploadCommitted, t
	if inserted {
		u.Generation, u.CreatedAt = max(u.Generation, 1), t
		if u.Kind == "" {
			u.Kind = kind
		}
	}
}
