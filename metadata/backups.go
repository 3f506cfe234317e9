package metadata

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strings"
	"time"
)

// Backup statuses. A backup is created OPEN and ends COMMITTED or ABORTED; DELETING marks one
// whose objects are being deleted (no longer readable).
const (
	BackupOpen      = "OPEN"
	BackupCommitted = "COMMITTED"
	BackupAborted   = "ABORTED"
	BackupDeleting  = "DELETING"
)

func validBackupStatus(s string) bool {
	switch s {
	case BackupOpen, BackupCommitted, BackupAborted, BackupDeleting:
		return true
	}
	return false
}

// Backup is one run of a worker for one Salesforce org. The counts are set by CommitBackup.
type Backup struct {
	TenantID, ID, OrgID string
	// StorageID is the tenant's storage the backup is written to; "" means the service-managed
	// default storage. A backup stays on its storage whatever the tenant's default becomes.
	StorageID string
	// Labels are the worker's; empty and nil are the same value (the store returns nil).
	Labels map[string]string
	// IdempotencyKey, when set, is unique per tenant: CreateBackup with a key already used
	// returns the backup that has it.
	IdempotencyKey string
	Status         string
	Damaged        bool
	StartedAt      time.Time
	CommittedAt    time.Time // zero until committed
	// Counts, as CommitBackup computes them from the catalog's rows.
	RecordCount      int64 // records in all record set chunks
	RecordChunkCount int64 // record set chunks
	FileCount        int64 // file rows (a deduplicated file counts too)
	BytesIn          int64 // input bytes: chunks' CSV bytes plus file sizes
	BytesStored      int64 // bytes this backup added to the bucket (see CommitBackup)
	ManifestKey      string
}

// BackupFilter selects backups for ListBackups; zero fields select everything.
type BackupFilter struct {
	OrgID  string
	Status string
	// From and To bound StartedAt to [From, To); the zero time leaves that side unbounded.
	From, To time.Time
}

// PendingUploadsError is CommitBackup's refusal while uploads of the backup are PENDING. It is an
// ErrConflict (errors.Is) and names the uploads (errors.As).
type PendingUploadsError struct {
	UploadIDs []string // in byte order
}

// maxNamedUploads is how many upload ids PendingUploadsError.Error spells out.
const maxNamedUploads = 20

func (e *PendingUploadsError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "metadata: %d upload(s) still pending: ", len(e.UploadIDs))
	for i, id := range e.UploadIDs {
		if i == maxNamedUploads {
			fmt.Fprintf(&b, " and %d more", len(e.UploadIDs)-i)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(id)
	}
	return b.String()
}

// Is makes a PendingUploadsError an ErrConflict.
func (e *PendingUploadsError) Is(target error) bool { return target == ErrConflict }

var backupInsertCols = []string{"tenant_id", "id", "org_id", "storage_id", "labels",
	"idempotency_key", "status", "damaged", "started_at", "committed_at", "record_count",
	"record_chunk_count", "file_count", "bytes_in", "bytes_stored", "manifest_key"}

var selectBackup = "SELECT " + strings.Join(backupInsertCols, ", ") + " FROM backups"

func scanBackup(r scanner) (*Backup, error) {
	var (
		b            Backup
		storage, key sql.NullString
		labels       []byte
		started      int64
		committed    sql.NullInt64
	)
	err := r.Scan(&b.TenantID, &b.ID, &b.OrgID, &storage, &labels, &key, &b.Status, &b.Damaged,
		&started, &committed, &b.RecordCount, &b.RecordChunkCount, &b.FileCount, &b.BytesIn,
		&b.BytesStored, &b.ManifestKey)
	if err != nil {
		return nil, err
	}
	b.StorageID, b.IdempotencyKey = storage.String, key.String
	b.StartedAt, b.CommittedAt = fromMicros(started), fromOptMicros(committed)
	if len(labels) > 0 {
		if err := json.Unmarshal(labels, &b.Labels); err != nil {
			return nil, fmt.Errorf("backup %s: labels: %w", b.ID, err)
		}
	}
	if len(b.Labels) == 0 {
		b.Labels = nil
	}
	return &b, nil
}

// optString maps "" (none) to NULL.
func optString(s string) sql.NullString { return sql.NullString{String: s, Valid: s != ""} }

// nonNil returns b, or an empty slice for nil: NOT NULL blob columns need a value, and the MySQL
// driver sends a nil slice as NULL.
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// micros normalises t to what the columns keep: UTC, microseconds.
func micros(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// pageLimit applies the page size rules of the List methods: 0 means DefaultPageSize, larger than
// MaxPageSize means MaxPageSize, negative is ErrInvalid.
func pageLimit(n int) (int, error) {
	switch {
	case n < 0:
		return 0, fmt.Errorf("%w: negative page size", ErrInvalid)
	case n == 0:
		return DefaultPageSize, nil
	case n > MaxPageSize:
		return MaxPageSize, nil
	}
	return n, nil
}

// CreateBackup inserts b (recording its tenant if new) and returns the stored backup with
// created = true. Status "" means OPEN; a zero StartedAt means now. If b.IdempotencyKey is set and
// a backup of the tenant already has it, CreateBackup returns that backup with created = false
// and no error, whatever its other fields are (the caller compares). ErrNotFound: StorageID names
// no storage of the tenant; ErrConflict: the id exists (without the idempotency key); ErrInvalid:
// empty tenant, id or org, or an unknown status.
func (c catalog) CreateBackup(ctx context.Context, b *Backup) (got *Backup, created bool, err error) {
	const op = "CreateBackup"
	if err := notEmpty("tenant id", b.TenantID, "backup id", b.ID, "org id", b.OrgID); err != nil {
		return nil, false, c.fail(op, err, nil)
	}
	nb := *b
	if nb.Status == "" {
		nb.Status = BackupOpen
	}
	if !validBackupStatus(nb.Status) {
		return nil, false, c.fail(op, fmt.Errorf("%w: backup status %q", ErrInvalid, nb.Status), nil)
	}
	if nb.StartedAt.IsZero() {
		nb.StartedAt = now()
	}
	nb.StartedAt = micros(nb.StartedAt)
	if !nb.CommittedAt.IsZero() {
		nb.CommittedAt = micros(nb.CommittedAt)
	}
	nb.Labels = maps.Clone(nb.Labels)
	if len(nb.Labels) == 0 {
		nb.Labels = nil
	}
	labels := []byte("{}")
	if nb.Labels != nil {
		if labels, err = json.Marshal(nb.Labels); err != nil {
			return nil, false, c.fail(op, fmt.Errorf("%w: labels: %v", ErrInvalid, err), nil)
		}
	}
	err = c.inTx(ctx, func(c catalog) error {
		if err := c.ensureTenant(ctx, nb.TenantID); err != nil {
			return err
		}
		_, err := c.q.ExecContext(ctx, insertSQL("backups", backupInsertCols),
			nb.TenantID, nb.ID, nb.OrgID, optString(nb.StorageID), labels,
			optString(nb.IdempotencyKey), nb.Status, nb.Damaged, toMicros(nb.StartedAt),
			optMicros(nb.CommittedAt), nb.RecordCount, nb.RecordChunkCount, nb.FileCount,
			nb.BytesIn, nb.BytesStored, nb.ManifestKey)
		return err
	})
	if err == nil {
		return &nb, true, nil
	}
	if nb.IdempotencyKey != "" && c.d.classify(err) == violDuplicate {
		// The key may be what collided. The row exists and is committed (a duplicate is
		// reported only then); a locking read sees it even inside an older snapshot.
		prev, gerr := scanBackup(c.q.QueryRowContext(ctx,
			selectBackup+" WHERE tenant_id = ? AND idempotency_key = ?"+c.d.forShare(),
			nb.TenantID, nb.IdempotencyKey))
		switch {
		case gerr == nil:
			return prev, false, nil
		case !errors.Is(gerr, sql.ErrNoRows):
			return nil, false, c.fail(op, gerr, nil)
		}
	}
	return nil, false, c.fail(op, err, ErrNotFound)
}

// CreateBackupStub inserts an OPEN backup of orgID on the tenant's storage (recording the tenant
// if new): CreateBackup with only those fields, kept for tests. ErrNotFound: the storage is not
// this tenant's; ErrConflict: the id exists.
func (c catalog) CreateBackupStub(ctx context.Context, tenantID, id, orgID, storageID string) error {
	if err := notEmpty("tenant id", tenantID, "backup id", id, "org id", orgID, "storage id", storageID); err != nil {
		return c.fail("CreateBackupStub", err, nil)
	}
	_, _, err := c.CreateBackup(ctx, &Backup{TenantID: tenantID, ID: id, OrgID: orgID, StorageID: storageID})
	return err
}

// GetBackup returns the tenant's backup with this id, or ErrNotFound.
func (c catalog) GetBackup(ctx context.Context, tenantID, id string) (*Backup, error) {
	b, err := c.getBackup(ctx, tenantID, id, "")
	return b, c.fail("GetBackup", err, nil)
}

// GetBackups is GetBackup for many ids of one tenant: the backups found, by id (ids without a
// row are absent). One query per 500 ids.
func (c catalog) GetBackups(ctx context.Context, tenantID string, ids []string) (map[string]*Backup, error) {
	found := make(map[string]*Backup, len(ids))
	for start := 0; start < len(ids); start += purgeBatch {
		in, args := inList(tenantID, ids[start:min(start+purgeBatch, len(ids))])
		list, err := queryRows(c, ctx, scanBackup, selectBackup+" WHERE tenant_id = ? AND id IN ("+in+")", args...)
		if err != nil {
			return nil, c.fail("GetBackups", err, nil)
		}
		for _, b := range list {
			found[b.ID] = b
		}
	}
	return found, nil
}

// getBackup reads a backup; lock is "" or a dialect's locking-read suffix.
func (c catalog) getBackup(ctx context.Context, tenantID, id, lock string) (*Backup, error) {
	return scanBackup(c.q.QueryRowContext(ctx,
		selectBackup+" WHERE tenant_id = ? AND id = ?"+lock, tenantID, id))
}

// ListBackups returns one page of the tenant's backups that match f, newest first (StartedAt
// descending, then id descending), and the token of the next page ("" after the last). Page sizes
// are as for ListStorages. A token is valid only with the same filter. ErrInvalid: negative
// pageSize or a token ListBackups did not make.
func (c catalog) ListBackups(ctx context.Context, tenantID string, f BackupFilter, pageSize int, pageToken string) ([]*Backup, string, error) {
	const op = "ListBackups"
	limit, err := pageLimit(pageSize)
	if err != nil {
		return nil, "", c.fail(op, err, nil)
	}
	q := selectBackup + " WHERE tenant_id = ?"
	args := []any{tenantID}
	if f.OrgID != "" {
		q += " AND org_id = ?"
		args = append(args, f.OrgID)
	}
	if f.Status != "" {
		q += " AND status = ?"
		args = append(args, f.Status)
	}
	if !f.From.IsZero() {
		q += " AND started_at >= ?"
		args = append(args, toMicros(f.From))
	}
	if !f.To.IsZero() {
		q += " AND started_at < ?"
		args = append(args, toMicros(f.To))
	}
	return listPage(c, op, newestFirst, q, args, limit, pageToken,
		func(q string, args ...any) ([]*Backup, error) { return queryRows(c, ctx, scanBackup, q, args...) },
		func(b *Backup) []any { return []any{toMicros(b.StartedAt), b.ID} })
}

// newestFirst is the order backups and maintenance runs are listed in: StartedAt descending,
// then id descending.
var newestFirst = keyset{cols: []keyCol{{name: "started_at", int: true}, {name: "id"}}, desc: true}

// FindBackup returns the org's latest COMMITTED backup that started at or before at: the one
// with the greatest StartedAt, then the greatest id. It is what restoring the org "as of" at
// reads. ErrNotFound: no such backup (none committed yet, or all of them started after at).
func (c catalog) FindBackup(ctx context.Context, tenantID, orgID string, at time.Time) (*Backup, error) {
	// toMicros floors, and started_at is whole microseconds, so this is StartedAt <= at exactly.
	b, err := scanBackup(c.q.QueryRowContext(ctx, selectBackup+
		" WHERE tenant_id = ? AND org_id = ? AND status = ? AND started_at <= ?"+
		" ORDER BY started_at DESC, id DESC LIMIT 1",
		tenantID, orgID, BackupCommitted, toMicros(at)))
	return b, c.fail("FindBackup", err, nil)
}

// SetBackupStatus changes the backup's status from `from` to `to`, atomically: ErrConflict if the
// status is not `from` (another caller changed it first), ErrNotFound if there is no such backup,
// ErrInvalid if `to` is not a status. It waits for upload commits in progress on the backup (they
// hold it shared), so none succeeds after the backup left OPEN.
func (c catalog) SetBackupStatus(ctx context.Context, tenantID, id, from, to string) error {
	const op = "SetBackupStatus"
	if !validBackupStatus(to) {
		return c.fail(op, fmt.Errorf("%w: backup status %q", ErrInvalid, to), nil)
	}
	res, err := c.q.ExecContext(ctx, "UPDATE backups SET status = ? WHERE tenant_id = ? AND id = ? AND status = ?",
		to, tenantID, id, from)
	if err != nil {
		return c.fail(op, err, nil)
	}
	if err := affectedOne(res); err == nil || !errors.Is(err, ErrNotFound) {
		return c.fail(op, err, nil)
	}
	var cur string
	err = c.q.QueryRowContext(ctx, "SELECT status FROM backups WHERE tenant_id = ? AND id = ?", tenantID, id).Scan(&cur)
	if err == nil {
		err = fmt.Errorf("%w: backup %s is %s, not %s", ErrConflict, id, cur, from)
	}
	return c.fail(op, err, nil)
}

// SetBackupDamaged marks the backup damaged (an object of it is missing or corrupt). It is
// idempotent. ErrNotFound: no such backup.
func (c catalog) SetBackupDamaged(ctx context.Context, tenantID, id string) error {
	res, err := c.q.ExecContext(ctx, "UPDATE backups SET damaged = ? WHERE tenant_id = ? AND id = ?", true, tenantID, id)
	if err == nil {
		err = affectedOne(res)
	}
	return c.fail("SetBackupDamaged", err, nil)
}

// CommitBackup flips an OPEN backup to COMMITTED at `at` (zero: now) with its manifest key and
// counts, in one transaction, and returns it. A COMMITTED backup is returned unchanged (a repeated
// commit succeeds); an ABORTED or DELETING one is ErrConflict; while any upload of the backup is
// PENDING it refuses with a *PendingUploadsError (also ErrConflict). ErrNotFound: no such backup.
//
// The counts come from the rows: RecordCount and RecordChunkCount sum the record set chunks;
// FileCount counts file rows; BytesIn is the chunks' input bytes plus the files' sizes; BytesStored
// is what the backup added to the bucket: the chunks' stored bytes (data and index objects) plus
// the sizes of file objects this backup stored first. A deduplicated file adds nothing, and the
// manifest, written before the commit, is not counted.
//
// The backup row is locked first, so upload commits of the backup (which hold it shared) have
// finished and no new one starts; call CommitBackup outside InTx, or first in it, so that its
// reads are not from an older snapshot (MySQL).
func (c catalog) CommitBackup(ctx context.Context, tenantID, id, manifestKey string, at time.Time) (*Backup, error) {
	return c.commitBackup(ctx, "CommitBackup", tenantID, id, manifestKey, nil, nil, at)
}

// ManifestCommit is what CommitBackupManifest checks and records: the manifest's object row and
// how many files and record chunks the manifest lists.
type ManifestCommit struct {
	Object        *Object
	Files, Chunks int64
}

// BackupChangedError: the backup gained files or record chunks after its manifest was built
// (an upload committed during CommitBackup). It matches ErrConflict; build the manifest again.
type BackupChangedError struct {
	Files, Chunks int64 // what the catalog holds now
}

func (e *BackupChangedError) Error() string {
	return fmt.Sprintf("the backup now has %d files and %d record chunks, not what its manifest lists", e.Files, e.Chunks)
}

// Is makes a *BackupChangedError match ErrConflict.
func (e *BackupChangedError) Is(target error) bool { return target == ErrConflict }

// CommitBackupManifest is CommitBackup for a backup whose manifest object m.Object was written: in
// the same transaction, with the backup row locked (so no upload commit of it runs), it checks
// that the backup has exactly m.Files files and m.Chunks record chunks (a *BackupChangedError
// otherwise: the manifest missed something) and inserts or updates the manifest's object row
// (a retried commit rewrites the manifest, so its size and SHA-256 are the new ones). A COMMITTED
// backup is returned unchanged, its manifest row untouched.
func (c catalog) CommitBackupManifest(ctx context.Context, tenantID, id string, m ManifestCommit, at time.Time) (*Backup, error) {
	if m.Object == nil {
		return nil, c.fail("CommitBackupManifest", fmt.Errorf("%w: no manifest object", ErrInvalid), nil)
	}
	return c.commitBackup(ctx, "CommitBackupManifest", tenantID, id, m.Object.Key, m.Object, &m, at)
}

func (c catalog) commitBackup(ctx context.Context, op, tenantID, id, manifestKey string, manifest *Object, want *ManifestCommit, at time.Time) (*Backup, error) {
	if at.IsZero() {
		at = now()
	}
	at = micros(at)
	var out *Backup
	err := c.inTx(ctx, func(c catalog) error {
		b, err := c.getBackup(ctx, tenantID, id, c.d.forUpdate())
		if err != nil {
			return err
		}
		switch b.Status {
		case BackupCommitted:
			out = b
			return nil
		case BackupOpen:
		default:
			return fmt.Errorf("%w: backup %s is %s", ErrConflict, id, b.Status)
		}
		pending, err := c.queryStrings(ctx, `SELECT upload_id FROM uploads
 WHERE tenant_id = ? AND backup_id = ? AND state = ? ORDER BY upload_id`, tenantID, id, UploadPending)
		if err != nil {
			return err
		}
		if len(pending) > 0 {
			return &PendingUploadsError{UploadIDs: pending}
		}
		var chunkIn, chunkStored, fileIn, fileStored int64
		err = c.q.QueryRowContext(ctx, `SELECT COUNT(*), COALESCE(SUM(records), 0),
 COALESCE(SUM(bytes_in), 0), COALESCE(SUM(bytes_stored), 0)
 FROM record_chunks WHERE tenant_id = ? AND backup_id = ?`, tenantID, id).
			Scan(&b.RecordChunkCount, &b.RecordCount, &chunkIn, &chunkStored)
		if err != nil {
			return err
		}
		err = c.q.QueryRowContext(ctx, `SELECT COUNT(*), COALESCE(SUM(size), 0)
 FROM files WHERE tenant_id = ? AND backup_id = ?`, tenantID, id).Scan(&b.FileCount, &fileIn)
		if err != nil {
			return err
		}
		err = c.q.QueryRowContext(ctx, `SELECT COALESCE(SUM(size), 0) FROM objects
 WHERE tenant_id = ? AND backup_id = ? AND kind = ?`, tenantID, id, ObjFile).Scan(&fileStored)
		if err != nil {
			return err
		}
		// Packs the backup's writer made count whole (index and header included).
		var packStored int64
		err = c.q.QueryRowContext(ctx, `SELECT COALESCE(SUM(size), 0) FROM packs
 WHERE tenant_id = ? AND backup_id = ?`, tenantID, id).Scan(&packStored)
		if err != nil {
			return err
		}
		fileStored += packStored
		if want != nil && (b.FileCount != want.Files || b.RecordChunkCount != want.Chunks) {
			return &BackupChangedError{Files: b.FileCount, Chunks: b.RecordChunkCount}
		}
		if manifest != nil {
			o := *manifest
			o.TenantID, o.BackupID, o.Kind = tenantID, id, ObjManifest
			if o.OrgID == "" {
				o.OrgID = b.OrgID
			}
			if err := onStorageOf(&o, b); err != nil {
				return err
			}
			res, err := c.q.ExecContext(ctx, `UPDATE objects SET size = ?, sha256 = ?, etag = ?, damaged = ?
 WHERE tenant_id = ? AND id = ? AND backup_id = ? AND object_key = ? AND kind = ?`,
				o.Size, nonNil(o.SHA256), o.ETag, false, tenantID, o.ID, id, o.Key, ObjManifest)
			if err != nil {
				return err
			}
			if n, err := res.RowsAffected(); err != nil {
				return err
			} else if n == 0 {
				if err := c.insertObject(ctx, &o, at); err != nil {
					return err
				}
			}
		}
		b.BytesIn, b.BytesStored = chunkIn+fileIn, chunkStored+fileStored
		b.Status, b.CommittedAt, b.ManifestKey = BackupCommitted, at, manifestKey
		_, err = c.q.ExecContext(ctx, `UPDATE backups SET status = ?, committed_at = ?, manifest_key = ?,
 record_count = ?, record_chunk_count = ?, file_count = ?, bytes_in = ?, bytes_stored = ?
 WHERE tenant_id = ? AND id = ?`,
			b.Status, toMicros(at), manifestKey, b.RecordCount, b.RecordChunkCount, b.FileCount,
			b.BytesIn, b.BytesStored, tenantID, id)
		out = b
		return err
	})
	if err != nil {
		return nil, c.fail(op, err, nil)
	}
	return out, nil
}

// lockOpenBackup reads the backup with a shared lock and checks that it is OPEN (ErrConflict
// otherwise, ErrNotFound if there is none). The lock lasts until the transaction ends, so the
// backup cannot leave OPEN (SetBackupStatus, CommitBackup wait) while rows are added to it.
func (c catalog) lockOpenBackup(ctx context.Context, tenantID, id string) (*Backup, error) {
	b, err := c.getBackup(ctx, tenantID, id, c.d.forShare())
	if err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil, fmt.Errorf("%w: backup %s", ErrNotFound, id)
		}
		return nil, err
	}
	if b.Status != BackupOpen {
		return nil, fmt.Errorf("%w: backup %s is %s", ErrConflict, id, b.Status)
	}
	return b, nil
}

func (c catalog) queryStrings(ctx context.Context, q string, args ...any) ([]string, error) {
	return queryRows(c, ctx, func(r scanner) (string, error) {
		var s string
		return s, r.Scan(&s)
	}, q, args...)
}
