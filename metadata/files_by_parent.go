package metadata

import "context"

// FileWithKey is a file and the key of the object that holds its body.
type FileWithKey struct {
	File
	ObjectKey string
}

// ForEachFileByParent calls fn for every file of the backup with its object's key, ordered by
// parent id (byte order), then id, and stops at the first error, which it returns. It reads in
// keyset batches over the files_parent index (one query per batch, the object keys joined in, no
// query per file) and holds no rows open while fn runs, so memory stays bounded by one batch
// whatever the number of files. Ordered by parent, lookups of consecutive files in a record
// index touch the same blocks.
func (c catalog) ForEachFileByParent(ctx context.Context, tenantID, backupID string, fn func(*FileWithKey) error) error {
	const op = "ForEachFileByParent"
	var lastParent, lastID string
	first := true
	for {
		q := `SELECT f.tenant_id, f.backup_id, f.id, f.object_id, f.upload_id, f.parent_id, f.path, f.name,
 f.content_type, f.size, f.sha256, f.created_at, o.object_key
 FROM files f JOIN objects o ON o.tenant_id = f.tenant_id AND o.id = f.object_id
 WHERE f.tenant_id = ? AND f.backup_id = ?`
		args := []any{tenantID, backupID}
		if !first {
			q += " AND (f.parent_id > ? OR (f.parent_id = ? AND f.id > ?))"
			args = append(args, lastParent, lastParent, lastID)
		}
		q += " ORDER BY f.parent_id, f.id LIMIT ?"
		args = append(args, forEachFileBatch)
		batch, err := c.queryFilesWithKey(ctx, q, args...)
		if err != nil {
			return c.fail(op, err, nil)
		}
		for _, f := range batch {
			if err := ctx.Err(); err != nil {
				return c.fail(op, err, nil)
			}
			if err := fn(f); err != nil {
				return err
			}
		}
		if len(batch) < forEachFileBatch {
			return nil
		}
		first = false
		lastParent, lastID = batch[len(batch)-1].ParentID, batch[len(batch)-1].ID
	}
}

func (c catalog) queryFilesWithKey(ctx context.Context, q string, args ...any) ([]*FileWithKey, error) {
	rows, err := c.q.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var list []*FileWithKey
	for rows.Next() {
		var (
			f       FileWithKey
			created int64
		)
		if err := rows.Scan(&f.TenantID, &f.BackupID, &f.ID, &f.ObjectID, &f.UploadID, &f.ParentID,
			&f.Path, &f.Name, &f.ContentType, &f.Size, &f.SHA256, &created, &f.ObjectKey); err != nil {
			return nil, err
		}
		f.SHA256 = nilIfEmpty(f.SHA256)
		f.CreatedAt = fromMicros(created)
		list = append(list, &f)
	}
	return list, rows.Err()
}
