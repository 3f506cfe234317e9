package metadata

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// ExclusiveObjectsPage is ExclusiveObjects one page at a time, in byte order of object id: of the
// backup's objects with an id after `after` (its chunks' data and index objects, the objects it
// stored, the objects its files share), at most limit candidates are examined and those that no
// file or record chunk of another backup references are returned. next is the cursor of the
// following page ("" after the last); a page may be empty while next is not. Each page is a
// handful of indexed queries (no correlated subquery per object), so deleting a backup costs
// time proportional to its objects and memory bounded by limit.
func (c catalog) ExclusiveObjectsPage(ctx context.Context, tenantID, backupID, after string, limit int) (objs []*Object, next string, err error) {
	const op = "ExclusiveObjectsPage"
	if limit <= 0 || limit > 1000 {
		return nil, "", c.fail(op, fmt.Errorf("%w: limit %d (want 1 to 1000)", ErrInvalid, limit), nil)
	}
	ids, err := c.queryStrings(ctx, `SELECT id FROM (
 SELECT object_id AS id FROM files WHERE tenant_id = ? AND backup_id = ? AND object_id > ?
 UNION SELECT data_object_id FROM record_chunks WHERE tenant_id = ? AND backup_id = ? AND data_object_id > ?
 UNION SELECT index_object_id FROM record_chunks WHERE tenant_id = ? AND backup_id = ? AND index_object_id > ?
 UNION SELECT id FROM objects WHERE tenant_id = ? AND backup_id = ? AND id > ?
) mine ORDER BY id LIMIT ?`,
		tenantID, backupID, after, tenantID, backupID, after, tenantID, backupID, after, tenantID, backupID, after, limit)
	if err != nil {
		return nil, "", c.fail(op, err, nil)
	}
	if len(ids) == 0 {
		return nil, "", nil
	}
	if len(ids) == limit {
		next = ids[len(ids)-1]
	}
	in, args := inList(tenantID, ids)
	others, err := c.queryStrings(ctx, `SELECT object_id FROM files WHERE tenant_id = ? AND object_id IN (`+in+`) AND backup_id <> ?
 UNION SELECT data_object_id FROM record_chunks WHERE tenant_id = ? AND data_object_id IN (`+in+`) AND backup_id <> ?
 UNION SELECT index_object_id FROM record_chunks WHERE tenant_id = ? AND index_object_id IN (`+in+`) AND backup_id <> ?`,
		slices.Concat(args, []any{backupID}, args, []any{backupID}, args, []any{backupID})...)
	if err != nil {
		return nil, "", c.fail(op, err, nil)
	}
	shared := map[string]bool{}
	for _, id := range others {
		shared[id] = true
	}
	var mine []string
	for _, id := range ids {
		if !shared[id] {
			mine = append(mine, id)
		}
	}
	if len(mine) == 0 {
		return nil, next, nil
	}
	in, args = inList(tenantID, mine)
	objs, err = c.queryObjects(ctx, selectObject+" WHERE o.tenant_id = ? AND o.id IN ("+in+") ORDER BY o.id", args...)
	if err != nil {
		return nil, "", c.fail(op, err, nil)
	}
	return objs, next, nil
}

// inList returns "?, ?, …" for ids and the arguments tenantID, ids….
func inList(tenantID string, ids []string) (string, []any) {
	args := make([]any, 0, len(ids)+1)
	args = append(args, tenantID)
	for _, id := range ids {
		args = append(args, id)
	}
	return strings.TrimSuffix(strings.Repeat("?, ", len(ids)), ", "), args
}

// PurgeObjectRows deletes, in one transaction, the rows of an ABORTED or DELETING backup that
// reference the given objects (its files sharing them, its record chunks holding them) and then
// those objects' rows, unless a row of another backup still references one (it stays). Call it
// after the objects were deleted from the bucket: a crash in between leaves the rows, and the
// next run finds the same objects again. ErrConflict: the backup is not ABORTED or DELETING;
// ErrNotFound: no such backup.
func (c catalog) PurgeObjectRows(ctx context.Context, tenantID, backupID string, objectIDs []string) error {
	const op = "PurgeObjectRows"
	if len(objectIDs) == 0 {
		return nil
	}
	if len(objectIDs) > purgeBatch {
		return c.fail(op, fmt.Errorf("%w: %d object ids (at most %d)", ErrInvalid, len(objectIDs), purgeBatch), nil)
	}
	err := c.inTx(ctx, func(c catalog) error {
		if err := c.lockDeletable(ctx, tenantID, backupID); err != nil {
			return err
		}
		in, args := inList(tenantID, objectIDs)
		withBackup := append([]any{tenantID, backupID}, args[1:]...)
		if _, err := c.q.ExecContext(ctx, "DELETE FROM files WHERE tenant_id = ? AND backup_id = ? AND object_id IN ("+in+")", withBackup...); err != nil {
			return fmt.Errorf("files: %w", err)
		}
		if _, err := c.q.ExecContext(ctx, "DELETE FROM record_chunks WHERE tenant_id = ? AND backup_id = ? AND (data_object_id IN ("+in+") OR index_object_id IN ("+in+"))",
			slices.Concat(withBackup, args[1:])...); err != nil {
			return fmt.Errorf("record_chunks: %w", err)
		}
		return c.deleteUnreferencedObjects(ctx, tenantID, objectIDs)
	})
	return c.fail(op, err, ErrReferenced)
}

func (c catalog) lockDeletable(ctx context.Context, tenantID, backupID string) error {
	b, err := c.getBackup(ctx, tenantID, backupID, c.d.forUpdate())
	if err != nil {
		return err
	}
	if b.Status != BackupAborted && b.Status != BackupDeleting {
		return fmt.Errorf("%w: backup %s is %s, not %s or %s", ErrConflict, backupID, b.Status, BackupAborted, BackupDeleting)
	}
	return nil
}

// deleteUnreferencedObjects deletes those of ids (at most purgeBatch) that no file or record
// chunk references, looked up by object id (IN on the object-id indexes), not by a correlated
// NOT EXISTS per object: MariaDB planned that one through the primary key, which made a large
// purge quadratic.
func (c catalog) deleteUnreferencedObjects(ctx context.Context, tenantID string, ids []string) error {
	in, args := inList(tenantID, ids)
	kept, err := c.queryStrings(ctx, `SELECT object_id FROM files WHERE tenant_id = ? AND object_id IN (`+in+`)
 UNION SELECT data_object_id FROM record_chunks WHERE tenant_id = ? AND data_object_id IN (`+in+`)
 UNION SELECT index_object_id FROM record_chunks WHERE tenant_id = ? AND index_object_id IN (`+in+`)`,
		slices.Concat(args, args, args)...)
	if err != nil {
		return fmt.Errorf("objects: %w", err)
	}
	keep := map[string]bool{}
	for _, k := range kept {
		keep[k] = true
	}
	var del []string
	for _, id := range ids {
		if !keep[id] {
			del = append(del, id)
		}
	}
	if len(del) == 0 {
		return nil
	}
	in, args = inList(tenantID, del)
	if _, err := c.q.ExecContext(ctx, `DELETE FROM objects WHERE tenant_id = ? AND id IN (`+in+`)`, args...); err != nil {
		return fmt.Errorf("objects: %w", err)
	}
	return nil
}

// SettledUpload reads the upload row with a locking read, in its own transaction: if a
// transaction that writes the row is still open — a commit whose OK the caller never got, still
// on its way through a proxy, say — it waits until that one has committed or rolled back, so the
// row it returns is the outcome, not a snapshot from before it. Call it after a failed commit,
// before deciding that the commit did not happen. An upload without a row (a packed file's) is
// settled the same way by a locking read of its file row. ErrNotFound: no such upload.
func (c catalog) SettledUpload(ctx context.Context, tenantID, backupID, uploadID string) (*Upload, error) {
	var u *Upload
	err := c.inTx(ctx, func(c catalog) error {
		var err error
		u, err = scanUpload(c.q.QueryRowContext(ctx, selectUpload+uploadKey+c.d.forUpdate(), tenantID, backupID, uploadID))
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		// The file row alone is locked (files_upload): its blob and pack rows are not the
		// commit's outcome, and the read that follows sees what that commit wrote.
		var id string
		err = c.q.QueryRowContext(ctx, "SELECT id FROM files WHERE tenant_id = ? AND backup_id = ? AND upload_id = ?"+c.d.forShare(),
			tenantID, backupID, uploadID).Scan(&id)
		if err != nil {
			return err
		}
		list, err := c.answeredUploads(ctx, tenantID, backupID, []string{uploadID})
		if err == nil && len(list) == 0 {
			return sql.ErrNoRows // a file whose upload row answers for it, gone meanwhile
		}
		if err == nil {
			u = list[0]
		}
		return err
	})
	return u, c.fail("SettledUpload", err, nil)
}

// UnclaimedKeys returns those of keys (at most purgeBatch) that no object or pack row of the tenant names
// and that are not the data key, or the index key beside it, of a PENDING upload. The object rows
// are read with a locking read, so an insert of one of them that is still in flight (a commit
// whose transaction has not ended) is waited for rather than missed. Garbage collection deletes
// only what this returns.
func (c catalog) UnclaimedKeys(ctx context.Context, tenantID string, keys []string) ([]string, error) {
	const op = "UnclaimedKeys"
	if len(keys) == 0 {
		return nil, nil
	}
	if len(keys) > purgeBatch {
		return nil, c.fail(op, fmt.Errorf("%w: %d keys (at most %d)", ErrInvalid, len(keys), purgeBatch), nil)
	}
	// A PENDING records upload's index key is its data key with .idx for .csv.zst.
	dataKeys := slices.Clone(keys)
	for _, k := range keys {
		if base, ok := strings.CutSuffix(k, ".idx"); ok {
			dataKeys = append(dataKeys, base+".csv.zst")
		}
	}
	claimed := map[string]bool{}
	err := c.inTx(ctx, func(c catalog) error {
		in, args := inList(tenantID, keys)
		rows, err := c.queryStrings(ctx, "SELECT object_key FROM objects WHERE tenant_id = ? AND object_key IN ("+in+")"+c.d.forShare(), args...)
		if err != nil {
			return err
		}
		packs, err := c.queryStrings(ctx, "SELECT object_key FROM packs WHERE tenant_id = ? AND object_key IN ("+in+")"+c.d.forShare(), args...)
		if err != nil {
			return err
		}
		in, args = inList(tenantID, dataKeys)
		pending, err := c.queryStrings(ctx, "SELECT object_key FROM uploads WHERE tenant_id = ? AND object_key IN ("+in+") AND state = ?",
			append(args, UploadPending)...)
		if err != nil {
			return err
		}
		for _, k := range append(rows, packs...) {
			claimed[k] = true
		}
		for _, k := range pending {
			claimed[k] = true
			claimed[strings.TrimSuffix(k, ".csv.zst")+".idx"] = true
		}
		return nil
	})
	if err != nil {
		return nil, c.fail(op, err, nil)
	}
	var out []string
	for _, k := range keys {
		if !claimed[k] {
			out = append(out, k)
		}
	}
	return out, nil
}
