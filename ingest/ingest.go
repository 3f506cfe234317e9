package ingest

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"backupstore/budget"
	"backupstore/csvscan"
	"backupstore/fault"
	"backupstore/metadata"
	"backupstore/pack"
	"backupstore/recindex"
	"backupstore/registry"
	"backupstore/sfid"
	"backupstore/storage"
)

// Config configures the ingest Service. Zero values take the defaults in withDefaults.
type Config struct {
	Catalog *metadata.Store
	// Registry resolves the store a backup lives on (StoreFor), the
	// service-managed default storage included.
	Registry *registry.Registry
	// Budget is the service-wide budget of buffered bytes.
	Budget *budget.Budget
	Logger *slog.Logger

	// PartSize is the target stored size of a multipart part (≥ 5 MiB).
	// Default DefaultPartSize.
	PartSize int64
	// MaxMemoryPart is the largest part kept in memory; larger parts (only
	// very large files need them) are staged in SpoolDir. Default 64 MiB.
	MaxMemoryPart int64
	// FrameSize is the input bytes per zstd frame (frames never split a
	// row). Default DefaultFrameSize.
	FrameSize int
	// CompressWorkers is the zstd goroutines per record stream. Default
	// DefaultCompressWorkers.
	CompressWorkers int
	// Limits caps CSV field and row sizes. Defaults
	// csvscan.DefaultMaxFieldBytes and csvscan.DefaultMaxRowBytes.
	Limits csvscan.Limits
	// SpoolDir holds record-index objects while they are built, and
	// oversized parts. Default os.TempDir().
	SpoolDir string
	// IndexRunBytes is the memory of one record-index run. Default
	// recindex.DefaultRunBytes.
	IndexRunBytes int
	// BenchmarkWithoutIndex skips record and reference entries (frames are
	// still indexed), so a benchmark can measure what indexing costs. Never
	// set it in production: duplicate ids go undetected and lookups fail.
	BenchmarkWithoutIndex bool
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Quotas cap what one tenant may have in the catalog; zero: no limits.
	Quotas Quotas
	// CatalogShare is how many catalog calls of the upload path (lookups,
	// commits, parts) one tenant may have in flight at once; more wait for
	// one of its own to end (gate.go). Default DefaultCatalogShare.
	CatalogShare int
	// FilesInFlight is how many files one tenant's UploadFiles streams may
	// have read and not yet answered, together (EnterFile). Default
	// DefaultFilesInFlight.
	FilesInFlight int
	// PackThreshold is the largest file body packed with others into a pack
	// object (packwriter.go); 0 disables packing. At most PartSize.
	PackThreshold int64
	// PackTarget seals a pack at the first body boundary past it. Default
	// PartSize.
	PackTarget int64
	// PackLinger seals an open pack that got no new body for this long
	// while uploads wait on it. Default DefaultPackLinger.
	PackLinger time.Duration
	// PackKey returns the key id and the key that authenticate a tenant's
	// pack indexes (secrets.Keyring.DeriveKey("pack-index", tenant));
	// required when PackThreshold > 0.
	PackKey func(tenant string) (keyID string, key []byte, err error)
	// Hooks are testing knobs; nil in production.
	Hooks *Hooks
}

// Hooks are testing knobs: each is called, when set, at the named step of an
// upload or commit, on the goroutine doing it, so that a test can park that
// stream there while another runs (no sleeps stand in for ordering).
type Hooks struct {
	// BeforeResume runs when a file upload's offset was checked against the
	// row as read, before the atomic reopen.
	BeforeResume func(u *metadata.Upload)
	// AfterResume runs when a file upload has been reopened at its
	// committed size (its generation bumped), before the body is read.
	AfterResume func(u *metadata.Upload)
	// FileUploadDone runs when UploadFile returns for an upload that had a
	// PENDING row (after any failure handling), with its outcome.
	FileUploadDone func(u *metadata.Upload)
	// BeforeFileCommit runs after a file's body is stored (PUT or
	// CompleteMultipartUpload), before the catalog transaction commits it.
	BeforeFileCommit func(u *metadata.Upload)
	// BeforeDedupCommit runs after the dedup lookup found a stored body,
	// before the catalog transaction that shares it.
	BeforeDedupCommit func(obj *metadata.Object)
	// AfterManifest runs in CommitBackup once the manifest is in the bucket,
	// before the catalog transaction that commits the backup.
	AfterManifest func(backupID string)
	// LoseCommitOK, when it returns true for an upload whose catalog commit
	// succeeded, makes the stream act as if the commit's OK was lost (as
	// after a failover): the outcome is uncertain, so nothing may be deleted.
	LoseCommitOK func(u *metadata.Upload) bool
	// LoseSettleRead, when it returns true, makes the re-read after a failed
	// commit fail as a dropped catalog connection does.
	LoseSettleRead func(u *metadata.Upload) bool
	// BeforeRecordsReset runs when a record upload being reopened has its
	// new generation, before its row is reset (a racing stream may commit
	// it in between).
	BeforeRecordsReset func(u *metadata.Upload)
	// LoseRecordsReread, when it returns true, makes the re-read of a record
	// upload found committed during its reopen fail as a dropped catalog
	// connection does.
	LoseRecordsReread func(u *metadata.Upload) bool
	// BeforeAbortMark runs in AbortBackup when the backup was read OPEN,
	// before the update that marks it ABORTED.
	BeforeAbortMark func(backupID string)
	// AfterAbortMark runs in AbortBackup once the backup is ABORTED, before
	// anything is deleted.
	AfterAbortMark func(backupID string)
	// BeforePackCommit runs when a pack is in the bucket, before the catalog
	// transaction that records it and its files (a crash here leaves an
	// object without a row).
	BeforePackCommit func(key string)
	// LosePackCommitOK is LoseCommitOK for a pack's transaction.
	LosePackCommitOK func(key string) bool
	// BeforePackAdd runs when a small file's body is whole and checked,
	// before it joins its backup's open pack; PackAdded once it has.
	BeforePackAdd, PackAdded func(h FileHeader)
	// CatalogWait runs when a catalog call of the tenant's waits for one of
	// its own to end (Config.CatalogShare).
	CatalogWait func(tenant string)
	// FileWait runs when an UploadFiles stream of the tenant's waits for one
	// of its files in flight to be answered (Config.FilesInFlight).
	FileWait func(tenant string)
}

func (s *Service) hooks() *Hooks {
	if s.cfg.Hooks == nil {
		return &noHooks
	}
	return s.cfg.Hooks
}

var noHooks Hooks

func call[T any](f func(T), v T) {
	if f != nil {
		f(v)
	}
}

// Defaults of Config.
const (
	// DefaultPartSize is storage's multipart part size: one part size for
	// every upload the service makes.
	DefaultPartSize = storage.DefaultPartSize
	// DefaultFrameSize is the input bytes per zstd frame: small enough that
	// reading one record back is one ranged GET of about this much.
	DefaultFrameSize = 1 << 20
	// DefaultCompressWorkers is the zstd goroutines per record stream.
	DefaultCompressWorkers = 2
)

func (c *Config) withDefaults() {
	if c.PartSize <= 0 {
		c.PartSize = DefaultPartSize
	}
	if c.MaxMemoryPart <= 0 {
		c.MaxMemoryPart = 64 << 20
	}
	if c.FrameSize <= 0 {
		c.FrameSize = DefaultFrameSize
	}
	if c.CompressWorkers <= 0 {
		c.CompressWorkers = DefaultCompressWorkers
	}
	if c.SpoolDir == "" {
		c.SpoolDir = os.TempDir()
	}
	if c.IndexRunBytes <= 0 {
		c.IndexRunBytes = recindex.DefaultRunBytes
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Limits.MaxFieldBytes <= 0 {
		c.Limits.MaxFieldBytes = csvscan.DefaultMaxFieldBytes
	}
	if c.Limits.MaxRowBytes <= 0 {
		c.Limits.MaxRowBytes = csvscan.DefaultMaxRowBytes
	}
	if c.PackTarget <= 0 {
		c.PackTarget = c.PartSize
	}
	if c.PackLinger <= 0 {
		c.PackLinger = DefaultPackLinger
	}
	if c.CatalogShare <= 0 {
		c.CatalogShare = DefaultCatalogShare
	}
	if c.FilesInFlight <= 0 {
		c.FilesInFlight = DefaultFilesInFlight
	}
}

// Service is the ingest domain service. It is safe for concurrent use.
type Service struct {
	cfg   Config
	packs packWriters
	look  *lookups
	bufs  *bufPool    // the record path's frame and part buffers
	gate  *tenantGate // each tenant's share of catalog calls
	files *tenantGate // each tenant's files read ahead by UploadFiles
}

// New returns a Service.
func New(cfg Config) (*Service, error) {
	switch {
	case cfg.Catalog == nil:
		return nil, errors.New("ingest: Catalog is required")
	case cfg.Registry == nil:
		return nil, errors.New("ingest: Registry is required")
	case cfg.Budget == nil:
		return nil, errors.New("ingest: Budget is required")
	}
	cfg.withDefaults()
	if cfg.PartSize < storage.MinPartSize {
		return nil, fmt.Errorf("ingest: PartSize %d is below S3's minimum %d", cfg.PartSize, storage.MinPartSize)
	}
	if cfg.MaxMemoryPart < cfg.PartSize {
		cfg.MaxMemoryPart = cfg.PartSize
	}
	switch {
	case cfg.PackThreshold < 0 || cfg.PackThreshold > cfg.PartSize || cfg.PackThreshold > pack.MaxBody:
		return nil, fmt.Errorf("ingest: PackThreshold %d is not between 0 and the part size %d", cfg.PackThreshold, cfg.PartSize)
	case cfg.PackThreshold > 0 && cfg.PackKey == nil:
		return nil, errors.New("ingest: PackKey is required when packing is on")
	}
	if need := recordsReservation(&cfg); need > cfg.Budget.TenantShare() {
		return nil, fmt.Errorf("ingest: a tenant's share of the memory budget (%d bytes) is below what one record stream may need (%d bytes)", cfg.Budget.TenantShare(), need)
	}
	if err := os.MkdirAll(cfg.SpoolDir, 0o700); err != nil {
		return nil, fmt.Errorf("ingest: spool dir: %w", err)
	}
	mem := newRecMem(&cfg)
	var wait, fileWait func(string)
	if cfg.Hooks != nil {
		wait, fileWait = cfg.Hooks.CatalogWait, cfg.Hooks.FileWait
	}
	gate := newTenantGate(cfg.CatalogShare, wait)
	return &Service{cfg: cfg, look: newLookups(cfg.Catalog, cfg.PackThreshold > 0, gate.enter),
		bufs: newBufPool(mem.frameIn, mem.frameOut, mem.partBase, int(packBufSize(&cfg))), gate: gate, files: newTenantGate(cfg.FilesInFlight, fileWait)}, nil
}

// StreamReservation is the most one upload stream reserves from the budget.
func (s *Service) StreamReservation() int64 { return recordsReservation(&s.cfg) }

// recordsReservation is what a record stream holds at most (see recMem in
// records.go), the record set's schema row aside.
func recordsReservation(c *Config) int64 { return newRecMem(c).total }

// fileReservation: two part buffers of at most MaxMemoryPart.
func (s *Service) fileReservation(partSize int64) int64 {
	return 2 * min(partSize, s.cfg.MaxMemoryPart)
}

var (
	sobjectRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]{0,79}$`)
	labelKey  = regexp.MustCompile(`^[a-z0-9_.-]{1,63}$`)
)

// CreateInput is what CreateBackup needs.
type CreateInput struct {
	OrgID, StorageID, IdempotencyKey string
	Labels                           map[string]string
}

// CreateBackup opens a backup on the given storage, else the tenant's
// default, else the service default. A storage marked unavailable is refused.
func (s *Service) CreateBackup(ctx context.Context, tenant string, in CreateInput) (*metadata.Backup, bool, error) {
	var vs []fault.Violation
	org, err := sfid.Normalize(in.OrgID)
	if err != nil {
		vs = append(vs, fault.Violation{Field: "org_id", Description: "must be a Salesforce org id: 15 or 18 characters of A-Z, a-z, 0-9"})
	}
	if len(in.Labels) > 32 {
		vs = append(vs, fault.Violation{Field: "labels", Description: "at most 32 labels"})
	}
	for k, v := range in.Labels {
		if !labelKey.MatchString(k) {
			vs = append(vs, fault.Violation{Field: "labels[" + k + "]", Description: "key must match [a-z0-9_.-]{1,63}"})
		}
		if len(v) > 256 || !utf8.ValidString(v) {
			vs = append(vs, fault.Violation{Field: "labels[" + k + "]", Description: "value must be valid UTF-8 of at most 256 bytes"})
		}
	}
	if len(in.IdempotencyKey) > 128 {
		vs = append(vs, fault.Violation{Field: "idempotency_key", Description: "at most 128 bytes"})
	}
	if len(vs) > 0 {
		return nil, false, fault.Invalid(vs...)
	}
	storageID := in.StorageID
	var st *metadata.Storage
	if storageID != "" {
		if st, err = s.cfg.Registry.Get(ctx, tenant, storageID); err != nil {
			return nil, false, err
		}
	} else if st, err = s.cfg.Catalog.DefaultStorage(ctx, tenant); err == nil {
		storageID = st.ID
	} else if !errors.Is(err, metadata.ErrNotFound) {
		return nil, false, err
	}
	if st != nil && st.Status == registry.StatusUnavailable {
		return nil, false, fault.New(fault.FailedPrecondition, "STORAGE_UNAVAILABLE",
			"storage %s is marked unavailable (%s); fix it and run ValidateStorage before starting backups", st.ID, st.StatusMessage)
	}
	if err := s.checkNewBackup(ctx, tenant); err != nil {
		// A retry of a create that happened answers the backup it made.
		if _, quota := fault.As(err); !quota || in.IdempotencyKey == "" {
			return nil, false, err
		}
		got, gerr := s.cfg.Catalog.BackupByIdempotencyKey(ctx, tenant, in.IdempotencyKey)
		if gerr != nil {
			return nil, false, err
		}
		if got.OrgID != org || (in.StorageID != "" && got.StorageID != in.StorageID) {
			return nil, false, fault.New(fault.AlreadyExists, "IDEMPOTENCY_KEY_REUSED",
				"idempotency key %q already created backup %s for another org or storage", in.IdempotencyKey, got.ID)
		}
		return got, false, nil
	}
	b := &metadata.Backup{
		TenantID: tenant, ID: "bkp-" + uuid.NewString(), OrgID: org, StorageID: storageID, Labels: in.Labels,
		IdempotencyKey: in.IdempotencyKey, Status: metadata.BackupOpen, StartedAt: s.cfg.Now().UTC(),
	}
	got, created, err := s.cfg.Catalog.CreateBackup(ctx, b)
	if err != nil {
		if errors.Is(err, metadata.ErrNotFound) {
			return nil, false, fault.Wrap(err, fault.NotFound, "STORAGE_NOT_FOUND", "storage %q not found", storageID)
		}
		return nil, false, err
	}
	if !created && (got.OrgID != org || (in.StorageID != "" && got.StorageID != in.StorageID)) {
		return nil, false, fault.New(fault.AlreadyExists, "IDEMPOTENCY_KEY_REUSED",
			"idempotency key %q already created backup %s for another org or storage", in.IdempotencyKey, got.ID)
	}
	if created {
		s.cfg.Logger.InfoContext(ctx, "backup created", "tenant", tenant, "backup", got.ID, "org", org, "storage", storageID)
	}
	return got, created, nil
}

// GetBackup returns a tenant's backup.
func (s *Service) GetBackup(ctx context.Context, tenant, id string) (*metadata.Backup, error) {
	if id == "" {
		return nil, fault.Invalid(fault.Violation{Field: "backup_id", Description: "required"})
	}
	// Coalesced: the uploads of a window ask for their backup at once.
	b, ok, err := s.look.backups.get(ctx, tenant, id)
	if err == nil && !ok {
		return nil, fault.Wrap(metadata.ErrNotFound, fault.NotFound, "BACKUP_NOT_FOUND", "backup %q not found", id)
	}
	return b, err
}

// ListBackups pages through a tenant's backups.
func (s *Service) ListBackups(ctx context.Context, tenant string, f metadata.BackupFilter, pageSize int, token string) ([]*metadata.Backup, string, error) {
	if pageSize < 0 || pageSize > 1000 {
		return nil, "", fault.Invalid(fault.Violation{Field: "page_size", Description: "must be between 0 and 1000"})
	}
	if f.OrgID != "" {
		org, err := sfid.Normalize(f.OrgID)
		if err != nil {
			return nil, "", fault.Invalid(fault.Violation{Field: "org_id", Description: "must be a Salesforce org id"})
		}
		f.OrgID = org
	}
	list, next, err := s.cfg.Catalog.ListBackups(ctx, tenant, f, pageSize, token)
	if errors.Is(err, metadata.ErrInvalid) {
		return nil, "", fault.Invalid(fault.Violation{Field: "page_token", Description: "not a token from a previous response"})
	}
	return list, next, err
}

// openBackup returns an OPEN backup of the tenant and the store it writes to.
func (s *Service) openBackup(ctx context.Context, tenant, id string) (*metadata.Backup, storage.Store, error) {
	b, err := s.GetBackup(ctx, tenant, id)
	if err != nil {
		return nil, nil, err
	}
	if b.Status != metadata.BackupOpen {
		return nil, nil, fault.New(fault.FailedPrecondition, "BACKUP_NOT_OPEN", "backup %s is %s; uploads need an OPEN backup", id, b.Status)
	}
	st, err := s.cfg.Registry.StoreFor(ctx, b.TenantID, b.StorageID)
	return b, st, err
}

// Keys. Every element is one of the service's ids or a validated name.
func recordsKey(b *metadata.Backup, sobject, objectID string) string {
	return b.TenantID + "/" + b.OrgID + "/" + b.ID + "/records/" + sobject + "/" + objectID + ".csv.zst"
}

func indexKey(dataKey string) string { return dataKey[:len(dataKey)-len(".csv.zst")] + ".idx" }

func fileKey(b *metadata.Backup, objectID string) string {
	return b.TenantID + "/" + b.OrgID + "/files/" + objectID
}

func manifestKey(b *metadata.Backup) string {
	return b.TenantID + "/" + b.OrgID + "/" + b.ID + "/manifest.json"
}

func newObjectID() string { return "obj-" + uuid.NewString() }

func checkUploadID(id string) *fault.Violation {
	if _, err := uuid.Parse(id); err != nil || len(id) != 36 {
		return &fault.Violation{Field: "upload_id", Description: "must be a UUID (8-4-4-4-12 hex digits)"}
	}
	return nil
}

// detached returns a context for cleanups that must outlive a dead request.
func detached(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
}

func sha256Sum(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}

// timeOrderedID is a UUIDv7 (time-ordered, random below the millisecond and a counter) for the
// ids of rows written by the million — files and blobs. Their tables are clustered on the id, so
// one backup's rows sit together in insertion order: inserts append at the right edge of the
// indexes, and a purge deletes neighbouring rows instead of one random page per row (random ids
// made a 1,000,000-file delete take 244 s). Object ids stay random: they become bucket keys.
func timeOrderedID() string { return uuid.Must(uuid.NewV7()).String() }
