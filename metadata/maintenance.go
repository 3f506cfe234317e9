package metadata

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// The maintenance catalog: retention policies, what deleting a backup and collecting garbage
// read, and the record of maintenance runs.

// RetentionPolicy says which COMMITTED backups of an org to keep; the catalog only stores it.
type RetentionPolicy struct {
	TenantID, OrgID                                          string // OrgID "" = the tenant's default policy
	KeepLast, KeepDaily, KeepWeekly, KeepMonthly, KeepYearly int
	KeepWithin                                               time.Duration // stored as microseconds
	UpdatedAt                                                time.Time
}

var policyCols = []string{"tenant_id", "org_id", "keep_last", "keep_daily", "keep_weekly",
	"keep_monthly", "keep_yearly", "keep_within", "updated_at"}

// PutRetentionPolicy inserts or replaces the policy of (p.TenantID, p.OrgID), recording the tenant
// if new. It sets p.UpdatedAt and truncates p.KeepWithin to microseconds (what is stored).
// ErrInvalid: empty tenant id, a negative count or duration, a count above math.MaxInt32.
func (c catalog) PutRetentionPolicy(ctx context.Context, p *RetentionPolicy) error {
	const op = "PutRetentionPolicy"
	if err := notEmpty("tenant id", p.TenantID); err != nil {
		return c.fail(op, err, nil)
	}
	for _, k := range []struct {
		name string
		n    int
	}{{"keep_last", p.KeepLast}, {"keep_daily", p.KeepDaily}, {"keep_weekly", p.KeepWeekly},
		{"keep_monthly", p.KeepMonthly}, {"keep_yearly", p.KeepYearly}} {
		if k.n < 0 || k.n > math.MaxInt32 {
			return c.fail(op, fmt.Errorf("%w: %s %d", ErrInvalid, k.name, k.n), nil)
		}
	}
	if p.KeepWithin < 0 {
		return c.fail(op, fmt.Errorf("%w: negative keep_within %v", ErrInvalid, p.KeepWithin), nil)
	}
	within := p.KeepWithin.Truncate(time.Microsecond)
	t := now()
	err := c.inTx(ctx, func(c catalog) error {
		if err := c.ensureTenant(ctx, p.TenantID); err != nil {
			return err
		}
		_, err := c.q.ExecContext(ctx, c.d.upsert("retention_policies", policyCols, policyCols[:2], policyCols[2:]),
			p.TenantID, p.OrgID, p.KeepLast, p.KeepDaily, p.KeepWeekly, p.KeepMonthly, p.KeepYearly,
			within.Microseconds(), toMicros(t))
		return err
	})
	if err != nil {
		return c.fail(op, err, ErrNotFound)
	}
	p.KeepWithin, p.UpdatedAt = within, t
	return nil
}

// GetRetentionPolicy returns the policy of exactly (tenantID, orgID) — orgID "" is the tenant's
// default — or ErrNotFound. It does not fall back from an org to the tenant's default.
func (c catalog) GetRetentionPolicy(ctx context.Context, tenantID, orgID string) (*RetentionPolicy, error) {
	var (
		p               RetentionPolicy
		within, updated int64
	)
	err := c.q.QueryRowContext(ctx, "SELECT "+strings.Join(policyCols, ", ")+
		" FROM retention_policies WHERE tenant_id = ? AND org_id = ?", tenantID, orgID).
		Scan(&p.TenantID, &p.OrgID, &p.KeepLast, &p.KeepDaily, &p.KeepWeekly, &p.KeepMonthly,
			&p.KeepYearly, &within, &updated)
	if err != nil {
		return nil, c.fail("GetRetentionPolicy", err, nil)
	}
	p.KeepWithin, p.UpdatedAt = time.Duration(within)*time.Microsecond, fromMicros(updated)
	return &p, nil
}

// DeleteRetentionPolicy deletes the policy of exactly (tenantID, orgID). ErrNotFound: there is
// none.
func (c catalog) DeleteRetentionPolicy(ctx context.Context, tenantID, orgID string) error {
	res, err := c.q.ExecContext(ctx, "DELETE FROM retention_policies WHERE tenant_id = ? AND org_id = ?", tenantID, orgID)
	if err == nil {
		err = affectedOne(res)
	}
	return c.fail("DeleteRetentionPolicy", err, nil)
}

// ListTenants returns the id of every tenant the catalog has recorded, in byte order. It is the one
// query not scoped to a tenant: scheduled maintenance walks the tenants with it.
func (c catalog) ListTenants(ctx context.Context) ([]string, error) {
	list, err := c.queryStrings(ctx, "SELECT id FROM tenants ORDER BY id")
	return list, c.fail("ListTenants", err, nil)
}

// OrgsWithBackups returns the distinct org ids of the tenant's COMMITTED backups, in byte order:
// the orgs retention applies to.
func (c catalog) OrgsWithBackups(ctx context.Context, tenantID string) ([]string, error) {
	list, err := c.queryStrings(ctx, "SELECT DISTINCT org_id FROM backups WHERE tenant_id = ? AND status = ? ORDER BY org_id",
		tenantID, BackupCommitted)
	return list, c.fail("OrgsWithBackups", err, nil)
}

// backupChildren are the tables whose rows name a backup. objects.backup_id has no foreign key (a
// file object outlives the backup that stored it while other backups share it); the others do.
var backupChildren = []string{"files", "record_chunks", "record_sets", "uploads", "objects"}

// DeleteBackupRow deletes the backup row itself, the last step of deleting a backup (after
// PurgeBackupRows). The backup must be DELETING or ABORTED (ErrConflict otherwise), and no file,
// record chunk, record set, upload or object row may name it any more (ErrReferenced). An object
// the backup stored first that another backup's file still shares keeps its row, and with it the
// backup's, until that backup is deleted too: then ErrReferenced means "keep the row for now; a
// later run deletes it". ErrNotFound: no such backup.
func (c catalog) DeleteBackupRow(ctx context.Context, tenantID, id string) error {
	const op = "DeleteBackupRow"
	err := c.inTx(ctx, func(c catalog) error {
		b, err := c.getBackup(ctx, tenantID, id, c.d.forUpdate())
		if err != nil {
			return err
		}
		if b.Status != BackupDeleting && b.Status != BackupAborted {
			return fmt.Errorf("%w: backup %s is %s, not %s or %s", ErrConflict, id, b.Status, BackupDeleting, BackupAborted)
		}
		for _, table := range backupChildren {
			// Locking reads: the latest committed rows, and (MySQL) no insert into the
			// range until the delete commits. The foreign keys back this up anyway.
			var one int
			err := c.q.QueryRowContext(ctx, "SELECT 1 FROM "+table+" WHERE tenant_id = ? AND backup_id = ? LIMIT 1"+c.d.forShare(),
				tenantID, id).Scan(&one)
			switch {
			case err == nil:
				return fmt.Errorf("%w: backup %s still has %s rows", ErrReferenced, id, table)
			case !errors.Is(err, sql.ErrNoRows):
				return fmt.Errorf("%s: %w", table, err)
			}
		}
		_, err = c.q.ExecContext(ctx, "DELETE FROM backups WHERE tenant_id = ? AND id = ?", tenantID, id)
		return err
	})
	return c.fail(op, err, ErrReferenced)
}

// forEachKeyBatch is how many keys ForEachObjectKey reads per query (S3's ListObjectsV2 page).
const forEachKeyBatch = 1000

// ForEachObjectKey calls fn with every object key of the tenant on the storage ("" = the service
// default storage), in byte order of key, which is the order S3's ListObjectsV2 returns keys in,
// and stops at the first error fn returns, which it returns. Like ForEachStorage it reads in
// batches (a key on from the last one) and holds no rows or connection while fn runs: memory stays
// at one batch however many objects there are, and fn may block (on SQLite, where the store has one
// connection, an open result set would stall every other catalog call meanwhile). Objects added or
// deleted during the walk may or may not be seen.
func (c catalog) ForEachObjectKey(ctx context.Context, tenantID, storageID string, fn func(key string) error) error {
	const op = "ForEachObjectKey"
	// Object keys and pack keys, merged in key order: each side is a keyset page on its own
	// unique key index, and the union of the two pages is cut at forEachKeyBatch.
	side := func(table string) (string, []any) {
		q := "SELECT object_key FROM " + table + " WHERE tenant_id = ?"
		args := []any{tenantID}
		if storageID == "" {
			q += " AND storage_id IS NULL"
		} else {
			q += " AND storage_id = ?"
			args = append(args, storageID)
		}
		return q, args
	}
	return forEachKeyset(ctx, c, op, forEachKeyBatch, func(after string) ([]string, error) {
		var all []string
		for _, table := range []string{"objects", "packs"} {
			q, qargs := side(table)
			if after != "" {
				q += " AND object_key > ?"
				qargs = append(qargs, after)
			}
			keys, err := c.queryStrings(ctx, q+" ORDER BY object_key LIMIT ?", append(qargs, forEachKeyBatch)...)
			if err != nil {
				return nil, err
			}
			all = append(all, keys...)
		}
		slices.Sort(all)
		return all[:min(len(all), forEachKeyBatch)], nil
	}, fn)
}

// PendingUploadKeys returns, in byte order, the object keys of the tenant's PENDING uploads on any
// storage: their data may be in the bucket before the commit writes the object row, so garbage
// collection must leave these keys alone.
func (c catalog) PendingUploadKeys(ctx context.Context, tenantID string) ([]string, error) {
	list, err := c.queryStrings(ctx, "SELECT object_key FROM uploads WHERE tenant_id = ? AND state = ? ORDER BY object_key",
		tenantID, UploadPending)
	return list, c.fail("PendingUploadKeys", err, nil)
}

// StaleUploads returns the tenant's PENDING uploads last updated before `before` (UpdatedAt <
// before), least recently updated first: the uploads cleanup aborts once they pass their TTL.
// Every write to an upload (a part, a reopen) updates it.
func (c catalog) StaleUploads(ctx context.Context, tenantID string, before time.Time) ([]*Upload, error) {
	// updated_at is whole microseconds: it is before `before` if it is below before rounded up
	// to a microsecond.
	limit := toMicros(before)
	if !before.Equal(fromMicros(limit)) {
		limit++
	}
	list, err := c.queryUploads(ctx, selectUpload+" WHERE tenant_id = ? AND state = ? AND updated_at < ?"+
		" ORDER BY updated_at, backup_id, upload_id", tenantID, UploadPending, limit)
	return list, c.fail("StaleUploads", err, nil)
}

// Maintenance run kinds and outcomes.
const (
	MaintenanceCleanup = "cleanup"
	MaintenanceVerify  = "verify"
	MaintenanceDelete  = "delete"

	RunRunning = "running"
	RunOK      = "ok"
	RunFailed  = "failed"
)

// MaxRunMessage is how many bytes of a run's message the catalog keeps; longer ones are truncated
// (at a UTF-8 character boundary).
const MaxRunMessage = 4000

// MaintenanceRun records one maintenance run of a tenant.
type MaintenanceRun struct {
	TenantID, ID, Kind, Replica string    // Kind: cleanup | verify | delete
	StartedAt, EndedAt          time.Time // EndedAt zero while running
	DryRun                      bool
	Outcome, Message            string // running | ok | failed; Message up to MaxRunMessage bytes
}

func validRunKind(k string) bool {
	return k == MaintenanceCleanup || k == MaintenanceVerify || k == MaintenanceDelete
}

func validOutcome(o string) bool { return o == RunRunning || o == RunOK || o == RunFailed }

// runMessage makes msg storable: valid UTF-8 (a TEXT column refuses anything else), at most
// MaxRunMessage bytes.
func runMessage(msg string) string {
	msg = strings.ToValidUTF8(msg, "\uFFFD")
	if len(msg) <= MaxRunMessage {
		return msg
	}
	cut := MaxRunMessage
	for cut > 0 && !utf8.RuneStart(msg[cut]) {
		cut--
	}
	return msg[:cut]
}

var runCols = []string{"tenant_id", "id", "kind", "replica", "started_at", "ended_at", "dry_run",
	"outcome", "message"}

func scanRun(r scanner) (*MaintenanceRun, error) {
	var (
		run     MaintenanceRun
		started int64
		ended   sql.NullInt64
	)
	err := r.Scan(&run.TenantID, &run.ID, &run.Kind, &run.Replica, &started, &ended, &run.DryRun,
		&run.Outcome, &run.Message)
	if err != nil {
		return nil, err
	}
	run.StartedAt, run.EndedAt = fromMicros(started), fromOptMicros(ended)
	return &run, nil
}

// InsertMaintenanceRun records r (and its tenant, if new). Outcome "" means running; a zero
// StartedAt means now. It normalises r as stored: times in UTC microseconds, the message
// truncated. ErrConflict: the tenant has a run with this id; ErrInvalid: empty tenant or id, an
// unknown kind or outcome.
func (c catalog) InsertMaintenanceRun(ctx context.Context, r *MaintenanceRun) error {
	const op = "InsertMaintenanceRun"
	if err := notEmpty("tenant id", r.TenantID, "run id", r.ID); err != nil {
		return c.fail(op, err, nil)
	}
	if !validRunKind(r.Kind) {
		return c.fail(op, fmt.Errorf("%w: maintenance run kind %q", ErrInvalid, r.Kind), nil)
	}
	nr := *r
	if nr.Outcome == "" {
		nr.Outcome = RunRunning
	}
	if !validOutcome(nr.Outcome) {
		return c.fail(op, fmt.Errorf("%w: maintenance run outcome %q", ErrInvalid, nr.Outcome), nil)
	}
	if nr.StartedAt.IsZero() {
		nr.StartedAt = now()
	}
	nr.StartedAt = micros(nr.StartedAt)
	if !nr.EndedAt.IsZero() {
		nr.EndedAt = micros(nr.EndedAt)
	}
	nr.Message = runMessage(nr.Message)
	err := c.inTx(ctx, func(c catalog) error {
		if err := c.ensureTenant(ctx, nr.TenantID); err != nil {
			return err
		}
		_, err := c.q.ExecContext(ctx, insertSQL("maintenance_runs", runCols),
			nr.TenantID, nr.ID, nr.Kind, nr.Replica, toMicros(nr.StartedAt), optMicros(nr.EndedAt),
			nr.DryRun, nr.Outcome, nr.Message)
		return err
	})
	if err != nil {
		return c.fail(op, err, ErrNotFound)
	}
	*r = nr
	return nil
}

// FinishMaintenanceRun ends a running run with outcome (ok or failed) and message (truncated to
// MaxRunMessage bytes) at `at` (zero = now). ErrConflict: the run has already ended; ErrNotFound:
// no such run; ErrInvalid: another outcome.
func (c catalog) FinishMaintenanceRun(ctx context.Context, tenantID, id, outcome, message string, at time.Time) error {
	const op = "FinishMaintenanceRun"
	if outcome != RunOK && outcome != RunFailed {
		return c.fail(op, fmt.Errorf("%w: a run ends %s or %s, not %q", ErrInvalid, RunOK, RunFailed, outcome), nil)
	}
	if at.IsZero() {
		at = now()
	}
	res, err := c.q.ExecContext(ctx, `UPDATE maintenance_runs SET outcome = ?, message = ?, ended_at = ?
 WHERE tenant_id = ? AND id = ? AND outcome = ?`,
		outcome, runMessage(message), toMicros(at), tenantID, id, RunRunning)
	if err != nil {
		return c.fail(op, err, nil)
	}
	if err := affectedOne(res); err == nil || !errors.Is(err, ErrNotFound) {
		return c.fail(op, err, nil)
	}
	var cur string
	err = c.q.QueryRowContext(ctx, "SELECT outcome FROM maintenance_runs WHERE tenant_id = ? AND id = ?", tenantID, id).Scan(&cur)
	if err == nil {
		err = fmt.Errorf("%w: maintenance run %s already ended (%s)", ErrConflict, id, cur)
	}
	return c.fail(op, err, nil)
}

// ListMaintenanceRuns returns one page of the tenant's runs, newest first (StartedAt descending,
// then id descending), and the token of the next page ("" after the last). Page sizes are as for
// ListStorages. ErrInvalid: negative pageSize or a token ListMaintenanceRuns did not make.
func (c catalog) ListMaintenanceRuns(ctx context.Context, tenantID string, pageSize int, pageToken string) ([]*MaintenanceRun, string, error) {
	const op = "ListMaintenanceRuns"
	limit, err := pageLimit(pageSize)
	if err != nil {
		return nil, "", c.fail(op, err, nil)
	}
	q := "SELECT " + strings.Join(runCols, ", ") + " FROM maintenance_runs WHERE tenant_id = ?"
	return listPage(c, op, newestFirst, q, []any{tenantID}, limit, pageToken,
		func(q string, args ...any) ([]*MaintenanceRun, error) { return queryRows(c, ctx, scanRun, q, args...) },
		func(r *MaintenanceRun) []any { return []any{toMicros(r.StartedAt), r.ID} })
}
