package metadata

import (
	"context"
	"database/sql"
	"strings"
)

// pageBatch is how many rows one keyset page of the ForEach*Object queries reads: memory stays
// bounded by one page whatever the backup's size.
const pageBatch = 500

// objectColsAs lists the objects columns of alias a in the order scanObjectInto reads them.
func objectColsAs(a string) string {
	cols := []string{"tenant_id", "id", "org_id", "storage_id", "backup_id", "object_key",
		"kind", "size", "sha256", "etag", "damaged", "created_at"}
	return a + "." + strings.Join(cols, ", "+a+".")
}

// objectDest returns scan destinations for objectColsAs and a function that finishes o after
// the scan.
func objectDest(o *Object) ([]any, func()) {
	var (
		storage, backup sql.NullString
		created         int64
	)
	dest := []any{&o.TenantID, &o.ID, &o.OrgID, &storage, &backup, &o.Key, &o.Kind, &o.Size,
		&o.SHA256, &o.ETag, &o.Damaged, &created}
	return dest, func() {
		o.StorageID, o.BackupID = storage.String, backup.String
		o.SHA256 = nilIfEmpty(o.SHA256)
		o.CreatedAt = fromMicros(created)
	}
}

// ChunkObjects is a record chunk of a backup with its data and index objects.
type ChunkObjects struct {
	SObject    string
	Sequence   int32
	References []byte // JSON of the declared reference fields, opaque
	Data       *Object
	Index      *Object
}

// ForEachChunkObjects calls fn for every record chunk of the backup, ordered by sObject and
// sequence, with its data and index objects, reading keyset pages of pageBatch chunks (one
// query a page, objects joined in). An error from fn stops it and is returned as is.
func (c catalog) ForEachChunkObjects(ctx context.Context, tenantID, backupID string, fn func(*ChunkObjects) error) error {
	const op = "ForEachChunkObjects"
	var lastSObject string
	var lastSeq int32
	first := true
	for {
		q := "SELECT rc.sobject, rc.seq, rc.reference_fields, " + objectColsAs("d") + ", " + objectColsAs("i") +
			` FROM record_chunks rc
 JOIN objects d ON d.tenant_id = rc.tenant_id AND d.id = rc.data_object_id
 JOIN objects i ON i.tenant_id = rc.tenant_id AND i.id = rc.index_object_id
 WHERE rc.tenant_id = ? AND rc.backup_id = ?`
		args := []any{tenantID, backupID}
		if !first {
			q += " AND (rc.sobject > ? OR (rc.sobject = ? AND rc.seq > ?))"
			args = append(args, lastSObject, lastSObject, lastSeq)
		}
		q += " ORDER BY rc.sobject, rc.seq LIMIT ?"
		args = append(args, pageBatch)
		batch, err := c.queryChunkObjects(ctx, q, args...)
		if err != nil {
			return c.fail(op, err, nil)
		}
		for _, co := range batch {
			if err := ctx.Err(); err != nil {
				return c.fail(op, err, nil)
			}
			if err := fn(co); err != nil {
				return err
			}
		}
		if len(batch) < pageBatch {
			return nil
		}
		first = false
		lastSObject, lastSeq = batch[len(batch)-1].SObject, batch[len(batch)-1].Sequence
	}
}

func (c catalog) queryChunkObjects(ctx context.Context, q string, args ...any) ([]*ChunkObjects, error) {
	rows, err := c.q.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var list []*ChunkObjects
	for rows.Next() {
		co := &ChunkObjects{Data: &Object{}, Index: &Object{}}
		dd, dfin := objectDest(co.Data)
		id, ifin := objectDest(co.Index)
		dest := append([]any{&co.SObject, &co.Sequence, &co.References}, dd...)
		if err := rows.Scan(append(dest, id...)...); err != nil {
			return nil, err
		}
		dfin()
		ifin()
		co.References = nilIfEmpty(co.References)
		list = append(list, co)
	}
	return list, rows.Err()
}

// FileObject is a file of a backup (its id) with the object that holds its body.
type FileObject struct {
	FileID string
	Object *Object
}

// ForEachFileObject calls fn for every file of the backup, ordered by file id, with the object
// holding its body (several files may share one), reading keyset pages of pageBatch files. An
// error from fn stops it and is returned as is.
func (c catalog) ForEachFileObject(ctx context.Context, tenantID, backupID string, fn func(*FileObject) error) error {
	const op = "ForEachFileObject"
	last, first := "", true
	for {
		q := "SELECT f.id, " + objectColsAs("o") +
			" FROM files f JOIN objects o ON o.tenant_id = f.tenant_id AND o.id = f.object_id" +
			" WHERE f.tenant_id = ? AND f.backup_id = ?"
		args := []any{tenantID, backupID}
		if !first {
			q += " AND f.id > ?"
			args = append(args, last)
		}
		q += " ORDER BY f.id LIMIT ?"
		args = append(args, pageBatch)
		batch, err := c.queryFileObjects(ctx, q, args...)
		if err != nil {
			return c.fail(op, err, nil)
		}
		for _, fo := range batch {
			if err := ctx.Err(); err != nil {
				return c.fail(op, err, nil)
			}
			if err := fn(fo); err != nil {
				return err
			}
		}
		if len(batch) < pageBatch {
			return nil
		}
		first, last = false, batch[len(batch)-1].FileID
	}
}

func (c catalog) queryFileObjects(ctx context.Context, q string, args ...any) ([]*FileObject, error) {
	rows, err := c.q.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var list []*FileObject
	for rows.Next() {
		fo := &FileObject{Object: &Object{}}
		dest, fin := objectDest(fo.Object)
		if err := rows.Scan(append([]any{&fo.FileID}, dest...)...); err != nil {
			return nil, err
		}
		fin()
		list = append(list, fo)
	}
	return list, rows.Err()
}

// PendingUploadOwns reports whether a PENDING upload of the tenant has object key key and S3
// multipart upload id s3UploadID: garbage collection aborts a multipart upload in the bucket
// only when none does. Upload ids are compared byte for byte.
func (c catalog) PendingUploadOwns(ctx context.Context, tenantID, key, s3UploadID string) (bool, error) {
	n, err := c.queryStrings(ctx, "SELECT upload_id FROM uploads WHERE tenant_id = ? AND state = ? AND object_key = ? AND s3_upload_id = ? LIMIT 1",
		tenantID, UploadPending, key, s3UploadID)
	return len(n) > 0, c.fail("PendingUploadOwns", err, nil)
}
