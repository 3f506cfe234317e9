package metadata

import (
	"context"
	"database/sql"
	"time"
)

// Storage is a tenant's registered bucket. Ids and names are case-sensitive byte strings. An
// empty byte slice and nil are the same value: GetStorage returns nil for both.
type Storage struct {
	ID, TenantID, Name  string
	Region, Bucket      string
	AccessKeyID         string
	SecretCiphertext    []byte // sealed by the caller (AES-GCM); the catalog never sees the secret
	SecretKeyID         string // id of the master key that sealed SecretCiphertext (rotation)
	Endpoint            string // S3-compatible server; "" = AWS
	Prefix              string // key prefix inside the bucket
	KMSKeyID            string // "" = no SSE-KMS
	PathStyle           bool
	IsDefault           bool // the tenant's default storage (see SetDefaultStorage)
	Status              string
	StatusMessage       string
	ValidatedAt         time.Time // zero = never validated
	ConsecutiveFailures int
	AbortDenied         bool   // AbortMultipartUpload was denied at the last validation
	Report              []byte // the last validation report, opaque to the catalog
	CreatedAt           time.Time
	UpdatedAt           time.Time
}

// Validation is the outcome of validating a storage, as UpdateStorageValidation records it.
type Validation struct {
	Status              string
	Message             string
	ValidatedAt         time.Time
	ConsecutiveFailures int
	AbortDenied         bool
	Report              []byte
}

// Page sizes for ListStorages.
const (
	DefaultPageSize = 50
	MaxPageSize     = 1000
)

// forEachBatch is how many storages ForEachStorage reads per query.
const forEachBatch = 100

const (
	storageCols = `s.tenant_id, s.id, s.name, s.region, s.bucket, s.access_key_id,
 s.secret_ciphertext, s.secret_key_id, s.endpoint, s.key_prefix, s.kms_key_id, s.path_style,
 s.status, s.status_message, s.validated_at, s.consecutive_failures, s.abort_denied, s.report,
 s.created_at, s.updated_at, d.storage_id IS NOT NULL`
	storageFrom = ` FROM storages s LEFT JOIN default_storages d
 ON d.tenant_id = s.tenant_id AND d.storage_id = s.id`
	selectStorage = "SELECT " + storageCols + storageFrom
)

var storageInsertCols = []string{"tenant_id", "id", "name", "region", "bucket", "access_key_id",
	"secret_ciphertext", "secret_key_id", "endpoint", "key_prefix", "kms_key_id", "path_style",
	"status", "status_message", "validated_at", "consecutive_failures", "abort_denied", "report",
	"created_at", "updated_at"}

type scanner interface{ Scan(dest ...any) error }

func scanStorage(r scanner) (*Storage, error) {
	var (
		st               Storage
		validated        sql.NullInt64
		created, updated int64
		secret, report   []byte
	)
	err := r.Scan(&st.TenantID, &st.ID, &st.Name, &st.Region, &st.Bucket, &st.AccessKeyID,
		&secret, &st.SecretKeyID, &st.Endpoint, &st.Prefix, &st.KMSKeyID, &st.PathStyle,
		&st.Status, &st.StatusMessage, &validated, &st.ConsecutiveFailures, &st.AbortDenied, &report,
		&created, &updated, &st.IsDefault)
	if err != nil {
		return nil, err
	}
	st.SecretCiphertext = nilIfEmpty(secret)
	st.Report = nilIfEmpty(report)
	st.ValidatedAt = fromOptMicros(validated)
	st.CreatedAt, st.UpdatedAt = fromMicros(created), fromMicros(updated)
	return &st, nil
}

func nilIfEmpty(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

// EnsureTenant records tenantID if it is new. It is idempotent.
func (c catalog) EnsureTenant(ctx context.Context, tenantID string) error {
	if err := notEmpty("tenant id", tenantID); err != nil {
		return c.fail("EnsureTenant", err, nil)
	}
	return c.fail("EnsureTenant", c.ensureTenant(ctx, tenantID), ErrNotFound)
}

func (c catalog) ensureTenant(ctx context.Context, tenantID string) error {
	_, err := c.q.ExecContext(ctx, c.d.upsert("tenants", []string{"id", "created_at"}, []string{"id"}, nil),
		tenantID, toMicros(now()))
	return err
}

// CreateStorage inserts st (recording its tenant if new) and, if st.IsDefault, makes it the
// tenant's default, in one transaction. It sets st.CreatedAt and st.UpdatedAt. ErrConflict: the
// tenant already has a storage with this id or name; ErrInvalid: empty tenant, id or name.
func (c catalog) CreateStorage(ctx context.Context, st *Storage) error {
	const op = "CreateStorage"
	if err := notEmpty("tenant id", st.TenantID, "storage id", st.ID, "storage name", st.Name); err != nil {
		return c.fail(op, err, nil)
	}
	t := now()
	secret := st.SecretCiphertext
	if secret == nil {
		secret = []byte{} // NOT NULL; the MySQL driver sends a nil slice as NULL
	}
	err := c.inTx(ctx, func(c catalog) error {
		if err := c.ensureTenant(ctx, st.TenantID); err != nil {
			return err
		}
		_, err := c.q.ExecContext(ctx, insertSQL("storages", storageInsertCols),
			st.TenantID, st.ID, st.Name, st.Region, st.Bucket, st.AccessKeyID,
			secret, st.SecretKeyID, st.Endpoint, st.Prefix, st.KMSKeyID, st.PathStyle,
			st.Status, st.StatusMessage, optMicros(st.ValidatedAt), st.ConsecutiveFailures,
			st.AbortDenied, nilIfEmpty(st.Report), toMicros(t), toMicros(t))
		if err != nil || !st.IsDefault {
			return err
		}
		return c.setDefault(ctx, st.TenantID, st.ID, t)
	})
	if err != nil {
		return c.fail(op, err, ErrNotFound)
	}
	st.CreatedAt, st.UpdatedAt = t, t
	return nil
}

// GetStorage returns the tenant's storage with this id, or ErrNotFound (also when the id belongs
// to another tenant).
func (c catalog) GetStorage(ctx context.Context, tenantID, id string) (*Storage, error) {
	st, err := scanStorage(c.q.QueryRowContext(ctx,
		selectStorage+" WHERE s.tenant_id = ? AND s.id = ?", tenantID, id))
	return st, c.fail("GetStorage", err, nil)
}

// GetStorageByName returns the tenant's storage with this name (case-sensitive), or ErrNotFound.
func (c catalog) GetStorageByName(ctx context.Context, tenantID, name string) (*Storage, error) {
	st, err := scanStorage(c.q.QueryRowContext(ctx,
		selectStorage+" WHERE s.tenant_id = ? AND s.name = ?", tenantID, name))
	return st, c.fail("GetStorageByName", err, nil)
}

// ListStorages returns one page of the tenant's storages in byte order of name, and the token of
// the next page ("" after the last). pageSize 0 means DefaultPageSize; larger than MaxPageSize
// means MaxPageSize. ErrInvalid: negative pageSize or a token ListStorages did not make.
func (c catalog) ListStorages(ctx context.Context, tenantID string, pageSize int, pageToken string) ([]*Storage, string, error) {
	const op = "ListStorages"
	limit, err := pageLimit(pageSize)
	if err != nil {
		return nil, "", c.fail(op, err, nil)
	}
	return listPage(c, op, keyset{cols: []keyCol{{name: "s.name"}}}, selectStorage+" WHERE s.tenant_id = ?", []any{tenantID},
		limit, pageToken, func(q string, args ...any) ([]*Storage, error) { return c.queryStorages(ctx, q, args...) },
		func(st *Storage) []any { return []any{st.Name} })
}

func (c catalog) queryStorages(ctx context.Context, q string, args ...any) ([]*Storage, error) {
	return queryRows(c, ctx, scanStorage, q, args...)
}

// UpdateStorageCredentials replaces the storage's access key id and sealed secret. ErrNotFound:
// no such storage for this tenant.
func (c catalog) UpdateStorageCredentials(ctx context.Context, tenantID, id, accessKeyID string, ciphertext []byte, keyID string) error {
	if ciphertext == nil {
		ciphertext = []byte{}
	}
	res, err := c.q.ExecContext(ctx, `UPDATE storages
 SET access_key_id = ?, secret_ciphertext = ?, secret_key_id = ?, updated_at = ?
 WHERE tenant_id = ? AND id = ?`,
		accessKeyID, ciphertext, keyID, toMicros(now()), tenantID, id)
	if err == nil {
		err = affectedOne(res)
	}
	return c.fail("UpdateStorageCredentials", err, nil)
}

// UpdateStorageValidation records the outcome of a validation. ErrNotFound: no such storage for
// this tenant.
func (c catalog) UpdateStorageValidation(ctx context.Context, tenantID, id string, v Validation) error {
	res, err := c.q.ExecContext(ctx, `UPDATE storages
 SET status = ?, status_message = ?, validated_at = ?, consecutive_failures = ?,
     abort_denied = ?, report = ?, updated_at = ?
 WHERE tenant_id = ? AND id = ?`,
		v.Status, v.Message, optMicros(v.ValidatedAt), v.ConsecutiveFailures,
		v.AbortDenied, nilIfEmpty(v.Report), toMicros(now()), tenantID, id)
	if err == nil {
		err = affectedOne(res)
	}
	return c.fail("UpdateStorageValidation", err, nil)
}

// SetDefaultStorage makes the storage the tenant's default, replacing any other. ErrNotFound: no
// such storage for this tenant.
func (c catalog) SetDefaultStorage(ctx context.Context, tenantID, id string) error {
	// One statement, atomic by itself; default_storages' primary key allows one per tenant and
	// its foreign key rejects a storage that is not this tenant's.
	return c.fail("SetDefaultStorage", c.setDefault(ctx, tenantID, id, now()), ErrNotFound)
}

func (c catalog) setDefault(ctx context.Context, tenantID, id string, t time.Time) error {
	_, err := c.q.ExecContext(ctx,
		c.d.upsert("default_storages", []string{"tenant_id", "storage_id", "updated_at"},
			[]string{"tenant_id"}, []string{"storage_id", "updated_at"}),
		tenantID, id, toMicros(t))
	return err
}

// DefaultStorage returns the tenant's default storage, or ErrNotFound if it has none.
func (c catalog) DefaultStorage(ctx context.Context, tenantID string) (*Storage, error) {
	st, err := scanStorage(c.q.QueryRowContext(ctx, "SELECT "+storageCols+` FROM default_storages d
 JOIN storages s ON s.tenant_id = d.tenant_id AND s.id = d.storage_id
 WHERE d.tenant_id = ?`, tenantID))
	return st, c.fail("DefaultStorage", err, nil)
}

// DeleteStorage deletes the storage (and its default mark). ErrReferenced: a backup or an object
// still names it; ErrNotFound: no such storage for this tenant.
func (c catalog) DeleteStorage(ctx context.Context, tenantID, id string) error {
	res, err := c.q.ExecContext(ctx, "DELETE FROM storages WHERE tenant_id = ? AND id = ?", tenantID, id)
	if err == nil {
		err = affectedOne(res)
	}
	return c.fail("DeleteStorage", err, ErrReferenced)
}

// ForEachStorage calls fn for every storage of every tenant, in (tenant, id) order, and stops at
// the first error, which it returns. It reads in batches and holds no rows open while fn runs, so
// fn may call the store (but, inside InTx, only through the Tx). Storages created or deleted
// meanwhile may or may not be seen.
func (c catalog) ForEachStorage(ctx context.Context, fn func(*Storage) error) error {
	return forEachKeyset(ctx, c, "ForEachStorage", forEachBatch, func(after *Storage) ([]*Storage, error) {
		q := selectStorage
		var args []any
		if after != nil {
			q += " WHERE s.tenant_id > ? OR (s.tenant_id = ? AND s.id > ?)"
			args = []any{after.TenantID, after.TenantID, after.ID}
		}
		return c.queryStorages(ctx, q+" ORDER BY s.tenant_id, s.id LIMIT ?", append(args, forEachBatch)...)
	}, fn)
}
