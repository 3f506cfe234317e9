package metadata

import (
	"context"
	"database/sql"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
)

// pageBatch is how many rows one keyset page of the ForEach*Object queries reads: memory stays
// bounded by one page whatever the backup's size.
const pageBatch = 500

// keyset is the order a List query pages in: its key columns, most significant first (together
// unique), all ascending or all descending. A page token holds the previous page's last key,
// its values joined by "/" (only the last may hold a "/"), base64url-encoded: opaque to
// callers, and holding nothing but values of the caller's own rows.
type keyset struct {
	cols []keyCol
	desc bool
}

// keyCol is a key column; ints are BIGINT columns (timestamps in micros), the others strings.
type keyCol struct {
	name string
	int  bool
}

// orderBy is the ORDER BY list of the keyset.
func (k keyset) orderBy() string {
	names := make([]string, len(k.cols))
	for i, c := range k.cols {
		names[i] = c.name
		if k.desc {
			names[i] += " DESC"
		}
	}
	return strings.Join(names, ", ")
}

// token is the page token of the key vals (one per column: int64 or string).
func (k keyset) token(vals ...any) string {
	parts := make([]string, len(vals))
	for i, v := range vals {
		parts[i] = fmt.Sprint(v)
	}
	return base64.RawURLEncoding.EncodeToString([]byte(strings.Join(parts, "/")))
}

// after returns the condition selecting the rows after tok's key, and its arguments.
// ErrInvalid: a token this keyset did not make.
func (k keyset) after(tok string) (string, []any, error) {
	b, err := base64.RawURLEncoding.DecodeString(tok)
	parts := strings.SplitN(string(b), "/", len(k.cols))
	if err != nil || len(parts) != len(k.cols) {
		return "", nil, fmt.Errorf("%w: malformed page token", ErrInvalid)
	}
	vals := make([]any, len(parts))
	for i, p := range parts {
		if !k.cols[i].int {
			if p == "" {
				return "", nil, fmt.Errorf("%w: malformed page token", ErrInvalid)
			}
			vals[i] = p
			continue
		}
		n, err := strconv.ParseInt(p, 10, 64)
		if err != nil {
			return "", nil, fmt.Errorf("%w: malformed page token", ErrInvalid)
		}
		vals[i] = n
	}
	op := " > ?"
	if k.desc {
		op = " < ?"
	}
	// (a > ? OR (a = ? AND (b > ? …))): the rows after the key, in the keyset's order.
	var cond func(i int) (string, []any)
	cond = func(i int) (string, []any) {
		c := k.cols[i].name
		if i == len(k.cols)-1 {
			return c + op, []any{vals[i]}
		}
		rest, args := cond(i + 1)
		return "(" + c + op + " OR (" + c + " = ? AND " + rest + "))", append([]any{vals[i], vals[i]}, args...)
	}
	q, args := cond(0)
	return q, args, nil
}

// listPage runs one page of a List query: q (its WHERE begun) and args select the rows, the
// page starts after pageToken's key ("" = the first page) in k's order and holds at most limit
// items; it returns them and the next page's token ("" after the last page). query runs the
// SQL, key gives an item's key values. Errors are c.fail(op)'s.
func listPage[T any](c catalog, op string, k keyset, q string, args []any, limit int, pageToken string,
	query func(q string, args ...any) ([]T, error), key func(T) []any) ([]T, string, error) {
	if pageToken != "" {
		cond, kargs, err := k.after(pageToken)
		if err != nil {
			return nil, "", c.fail(op, err, nil)
		}
		q += " AND " + cond
		args = append(args, kargs...)
	}
	q += " ORDER BY " + k.orderBy() + " LIMIT ?"
	list, err := query(q, append(args, limit+1)...) // one more tells whether there is a next page
	if err != nil {
		return nil, "", c.fail(op, err, nil)
	}
	if len(list) <= limit {
		return list, "", nil
	}
	list = list[:limit]
	return list, k.token(key(list[limit-1])...), nil
}

// queryRows runs q and scans every row with scan.
func queryRows[T any](c catalog, ctx context.Context, scan func(scanner) (T, error), q string, args ...any) ([]T, error) {
	rows, err := c.q.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var list []T
	for rows.Next() {
		it, err := scan(rows)
		if err != nil {
			return nil, err
		}
		list = append(list, it)
	}
	return list, rows.Err()
}

// forEachKeyset calls fn for every item of successive keyset batches of up to batch items
// (fetch gets the last item of the previous batch, the zero T for the first: keys are never
// zero) and stops at the first error, which it returns. No rows are open while fn runs, so fn
// may block or call the store, and memory stays at one batch whatever the number of rows.
func forEachKeyset[T comparable](ctx context.Context, c catalog, op string, batch int, fetch func(after T) ([]T, error), fn func(T) error) error {
	var after T
	for {
		items, err := fetch(after)
		if err != nil {
			return c.fail(op, err, nil)
		}
		for _, it := range items {
			if err := ctx.Err(); err != nil {
				return c.fail(op, err, nil)
			}
			if err := fn(it); err != nil {
				return err
			}
		}
		if len(items) < batch {
			return nil
		}
		after = items[len(items)-1]
	}
}

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
	return forEachKeyset(ctx, c, "ForEachChunkObjects", pageBatch, func(after *ChunkObjects) ([]*ChunkObjects, error) {
		q := "SELECT rc.sobject, rc.seq, rc.reference_fields, " + objectColsAs("d") + ", " + objectColsAs("i") +
			` FROM record_chunks rc
 JOIN objects d ON d.tenant_id = rc.tenant_id AND d.id = rc.data_object_id
 JOIN objects i ON i.tenant_id = rc.tenant_id AND i.id = rc.index_object_id
 WHERE rc.tenant_id = ? AND rc.backup_id = ?`
		args := []any{tenantID, backupID}
		if after != nil {
			q += " AND (rc.sobject > ? OR (rc.sobject = ? AND rc.seq > ?))"
			args = append(args, after.SObject, after.SObject, after.Sequence)
		}
		return c.queryChunkObjects(ctx, q+" ORDER BY rc.sobject, rc.seq LIMIT ?", append(args, pageBatch)...)
	}, fn)
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
	return forEachKeyset(ctx, c, "ForEachFileObject", pageBatch, func(after *FileObject) ([]*FileObject, error) {
		q := "SELECT f.id, " + objectColsAs("o") +
			" FROM files f JOIN objects o ON o.tenant_id = f.tenant_id AND o.id = f.object_id" +
			" WHERE f.tenant_id = ? AND f.backup_id = ?"
		args := []any{tenantID, backupID}
		if after != nil {
			q += " AND f.id > ?"
			args = append(args, after.FileID)
		}
		return c.queryFileObjects(ctx, q+" ORDER BY f.id LIMIT ?", append(args, pageBatch)...)
	}, fn)
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
