// Package maintenance is the cleanup half of backupstore: retention, safe
// deletion of backups, garbage collection of keys a crash left behind,
// aborting stale uploads, and verifying a backup's objects against the
// bucket. Every run takes a lock shared by all replicas on the catalog, so
// no two run at once, and is recorded as a maintenance run.
//
// Deletion follows DESIGN.md: mark DELETING (no longer readable), delete the
// objects no other backup references in DeleteObjects batches (per-key
// errors checked), then the rows. Each step is idempotent, so a run killed
// at any point is finished by the next.
//
// maintenance imports storage, metadata, registry, recindex, retention, pack,
// budget (a repack's memory) and fault; never server, ingest or restore.
package maintenance

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/google/uuid"

	"backupstore/budget"
	"backupstore/fault"
	"backupstore/metadata"
	"backupstore/registry"
)

// LockName prefixes the catalog lock a maintenance run holds: one per tenant
// (LockName + ":" + tenant), so one tenant's slow bucket never holds up another
// tenant's deletes and cleanups. Tenants' key spaces are disjoint (a storage's
// bucket and prefix are claimed by one tenant), so nothing two tenants'
// maintenance does at once can collide.
const LockName = "backupstore_maintenance"

// Config configures the maintenance Service.
type Config struct {
	Catalog *metadata.Store
	// Registry resolves the store a backup lives on (StoreFor), the
	// service-managed default storage included.
	Registry *registry.Registry
	Logger   *slog.Logger
	// Replica names this process in maintenance runs. Default hostname:pid.
	Replica string
	// Grace is how old a key without a catalog row must be before garbage
	// collection deletes it. Default DefaultGrace.
	Grace time.Duration
	// UploadTTL is how long a PENDING upload may sit idle before cleanup
	// aborts it. Default DefaultUploadTTL.
	UploadTTL time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// MaxFrameBytes bounds the zstd decoder when Verify reads a record data
	// object back: the most input one frame holds, FrameSize + MaxRowBytes
	// of ingest (default DefaultMaxFrameBytes, 9 MiB). A frame that declares
	// a larger window is a corrupt object, not an allocation.
	MaxFrameBytes int
	// Hooks are testing knobs; nil in production.
	Hooks *Hooks
	// PackKeyWith derives the key of a tenant's pack indexes under a named
	// master key (secrets.Keyring.DeriveKeyWith(keyID, "pack-index",
	// tenant)), for the MAC checks of Verify's sampled packs and of the
	// packs a repack reads.
	PackKeyWith func(keyID, tenant string) ([]byte, error)
	// PackKey returns the key id and key that authenticate the index of a
	// pack written for a tenant now (what ingest writes with): a repack's
	// new packs. nil: cleanup does not repack.
	PackKey func(tenant string) (keyID string, key []byte, err error)
	// RepackBelow: cleanup repacks a SEALED pack where a pack of only its
	// live bodies would be less than this fraction of it (0 < f ≤ 1; default
	// DefaultRepackBelow; negative: never).
	RepackBelow float64
	// RepackGrace is how long a retired pack's object stays readable after
	// its bodies moved. Default DefaultRepackGrace.
	RepackGrace time.Duration
	// RepackBytes bounds the source pack bytes one cleanup run repacks.
	// Default DefaultRepackBytes.
	RepackBytes int64
	// Budget, if set, is charged, on the tenant's share, with what a repack
	// holds (the new pack being filled and the bodies being copied, ~2×
	// the pack size): a tenant at its limit repacks at a later run, never
	// at another tenant's expense. nil: not charged.
	Budget *budget.Budget
}

// Defaults of Config.
const (
	// DefaultGrace leaves a day for an upload's row to catch up with its key.
	DefaultGrace = 24 * time.Hour
	// DefaultUploadTTL gives a worker a week to resume an upload.
	DefaultUploadTTL = 7 * 24 * time.Hour
)

// Hooks are testing knobs for fault injection.
type Hooks struct {
	// Crash is called at each named point of a deletion ("after-mark",
	// "after-objects", "after-purge", "after-packs") and of a repack
	// ("after-repack-put", "after-repack-switch", "after-retired-objects"). A crash test's process ends itself
	// there (the package never exits the process), so that the test can
	// prove the next run finishes what the killed one left.
	Crash func(point string)
	// BeforeCheckObject runs in a verify worker before it checks an object.
	BeforeCheckObject func(o *metadata.Object)
}

// ErrBusy is the cause of the Aborted MAINTENANCE_RUNNING error a run answers
// when another replica (or call) holds the tenant's maintenance lock; callers
// that retry later (the cleanup scheduler) test it with errors.Is.
var ErrBusy = errors.New("maintenance: lock busy")

// Service runs maintenance. Safe for concurrent use.
type Service struct{ cfg Config }

// New returns a Service.
func New(cfg Config) (*Service, error) {
	switch {
	case cfg.Catalog == nil:
		return nil, errors.New("maintenance: Catalog is required")
	case cfg.Registry == nil:
		return nil, errors.New("maintenance: Registry is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Replica == "" {
		host, _ := os.Hostname()
		cfg.Replica = fmt.Sprintf("%s:%d", host, os.Getpid())
	}
	if cfg.MaxFrameBytes <= 0 {
		cfg.MaxFrameBytes = DefaultMaxFrameBytes
	}
	if cfg.Grace <= 0 {
		cfg.Grace = DefaultGrace
	}
	if cfg.UploadTTL <= 0 {
		cfg.UploadTTL = DefaultUploadTTL
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	switch {
	case cfg.RepackBelow == 0:
		cfg.RepackBelow = DefaultRepackBelow
	case cfg.RepackBelow > 1:
		return nil, fmt.Errorf("maintenance: RepackBelow %g: want a fraction of at most 1 (negative: never repack)", cfg.RepackBelow)
	}
	if cfg.RepackGrace <= 0 {
		cfg.RepackGrace = DefaultRepackGrace
	}
	if cfg.RepackBytes <= 0 {
		cfg.RepackBytes = DefaultRepackBytes
	}
	return &Service{cfg: cfg}, nil
}

func (s *Service) crash(point string) {
	if s.cfg.Hooks != nil && s.cfg.Hooks.Crash != nil {
		s.cfg.Hooks.Crash(point)
	}
}

// locked runs fn under the maintenance lock and records the run.
func (s *Service) locked(ctx context.Context, tenant, kind string, dryRun bool, fn func(run *metadata.MaintenanceRun) (string, error)) (*metadata.MaintenanceRun, error) {
	release, ok, err := s.cfg.Catalog.TryLock(ctx, LockName+":"+tenant)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fault.Wrap(ErrBusy, fault.Aborted, "MAINTENANCE_RUNNING", "maintenance of your backups is running on another replica (or call); retry later")
	}
	defer release()
	run := &metadata.MaintenanceRun{TenantID: tenant, ID: "run-" + uuid.NewString(), Kind: kind, Replica: s.cfg.Replica,
		StartedAt: s.cfg.Now().UTC(), DryRun: dryRun, Outcome: "running"}
	if err := s.cfg.Catalog.EnsureTenant(ctx, tenant); err != nil {
		return nil, err
	}
	if err := s.cfg.Catalog.InsertMaintenanceRun(ctx, run); err != nil {
		return nil, err
	}
	msg, ferr := fn(run)
	outcome := "ok"
	if ferr != nil {
		outcome, msg = "failed", s.runMessage(ctx, run.ID, ferr)
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := s.cfg.Catalog.FinishMaintenanceRun(dctx, tenant, run.ID, outcome, msg, s.cfg.Now().UTC()); err != nil {
		s.cfg.Logger.ErrorContext(ctx, "recording maintenance run", "run", run.ID, "err", err)
	}
	run.Outcome, run.Message = outcome, msg
	s.cfg.Logger.InfoContext(ctx, "maintenance run", "tenant", tenant, "kind", kind, "run", run.ID, "dry_run", dryRun, "outcome", outcome, "message", msg)
	return run, ferr
}

// runMessage is what a failed run's record says: the stable reason and our
// own message — never an error's text from S3, the network or the database,
// which the tenant reads back with ListMaintenanceRuns; that goes to the log.
func (s *Service) runMessage(ctx context.Context, runID string, err error) string {
	s.cfg.Logger.WarnContext(ctx, "maintenance run failed", "run", runID, "err", err)
	var fe *fault.Error
	switch {
	case errors.Is(err, metadata.ErrUnavailable):
		return "CATALOG_UNAVAILABLE: the catalog database was unavailable; the run is retried"
	case errors.As(err, &fe):
		return fe.Reason + ": " + fe.Msg
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return "CANCELLED: the run was interrupted"
	}
	return "INTERNAL: the run failed; the server log has the details (run " + runID + ")"
}

// Runs lists a tenant's maintenance runs.
func (s *Service) Runs(ctx context.Context, tenant string, pageSize int, token string) ([]*metadata.MaintenanceRun, string, error) {
	if pageSize < 0 || pageSize > 1000 {
		return nil, "", fault.Invalid(fault.Violation{Field: "page_size", Description: "must be between 0 and 1000"})
	}
	list, next, err := s.cfg.Catalog.ListMaintenanceRuns(ctx, tenant, pageSize, token)
	if errors.Is(err, metadata.ErrInvalid) {
		return nil, "", fault.Invalid(fault.Violation{Field: "page_token", Description: "not a token from a previous response"})
	}
	return list, next, err
}
