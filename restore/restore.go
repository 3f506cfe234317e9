// Package restore is the read path: what a committed backup holds, which
// backup covers a point in time, record sets whole or by id (through the
// record index and one ranged GET per frame), files whole or ranged, and
// parent-first restore plans. Every byte is verified on the way out: a
// checksum mismatch or an undecodable frame is DataLoss naming the object,
// and flags the object and its backup damaged; S3 or network failures are
// Unavailable.
//
// restore imports storage, metadata, registry, recindex, csvframes, csvscan, sfid,
// budget and fault; never server or ingest.
package restore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/zstd"

	"backupstore/budget"
	"backupstore/fault"
	"backupstore/metadata"
	"backupstore/recindex"
	"backupstore/registry"
	"backupstore/sfid"
	"backupstore/storage"
)

// Config configures the restore Service.
type Config struct {
	Catalog *metadata.Store
	// Registry resolves the store a backup lives on (StoreFor), the
	// service-managed default storage included.
	Registry *registry.Registry
	Budget   *budget.Budget
	Logger   *slog.Logger
	// IndexCache is how many opened record indexes (footers, blooms) are kept. Default 256.
	IndexCache int
	// BlockCacheBytes bounds the cache of index blocks. Default DefaultBlockCacheBytes.
	BlockCacheBytes int64
	// MessageSize is the data bytes per streamed message. Default 1 MiB.
	MessageSize int
	// MaxDepth caps PlanRestore's child levels. Default 5.
	MaxDepth int
	// MaxPlanIDs caps the record and file ids one PlanRestore may hold (and
	// answer); a plan that would hold more is refused with what to narrow.
	// Default DefaultMaxPlanIDs.
	MaxPlanIDs int
	// MaxFrameBytes bounds what one stored zstd frame may decode to and the
	// window a decoder may hold for it: the most input ingest puts in one
	// frame, its FrameSize + MaxRowBytes (default DefaultMaxFrameBytes, 9 MiB).
	// A frame read back from the bucket that asks for more is damage,
	// refused before anything is allocated for it.
	MaxFrameBytes int
	// DecodeWorkers decode the frames of one plain whole read at once.
	// Default 2.
	DecodeWorkers int
}

// DefaultBlockCacheBytes is Config.BlockCacheBytes' default.
const DefaultBlockCacheBytes = 32 << 20

// DefaultMaxFrameBytes is Config.MaxFrameBytes' default: ingest's default
// FrameSize (1 MiB) plus its default MaxRowBytes (8 MiB).
const DefaultMaxFrameBytes = 9 << 20

// Service is the restore domain service. Safe for concurrent use.
type Service struct {
	cfg    Config
	idx    *indexCache
	blocks *recindex.BlockCache
	frames *zstd.Decoder // DecodeAll of one frame, bounded by MaxFrameBytes

	frameGets, frameBytes atomic.Int64
	sent                  atomic.Int64 // bytes handed to gRPC streams
	batches               sync.Pool    // *[]byte of MessageSize: frame batches of plain whole reads
}

// New returns a Service.
func New(cfg Config) (*Service, error) {
	switch {
	case cfg.Catalog == nil:
		return nil, errors.New("restore: Catalog is required")
	case cfg.Registry == nil:
		return nil, errors.New("restore: Registry is required")
	case cfg.Budget == nil:
		return nil, errors.New("restore: Budget is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.IndexCache <= 0 {
		cfg.IndexCache = 256
	}
	if cfg.BlockCacheBytes <= 0 {
		cfg.BlockCacheBytes = DefaultBlockCacheBytes
	}
	if cfg.MessageSize <= 0 {
		cfg.MessageSize = 1 << 20
	}
	if cfg.MaxDepth <= 0 {
		cfg.MaxDepth = 5
	}
	if cfg.MaxPlanIDs <= 0 {
		cfg.MaxPlanIDs = DefaultMaxPlanIDs
	}
	if cfg.MaxFrameBytes <= 0 {
		cfg.MaxFrameBytes = DefaultMaxFrameBytes
	}
	if cfg.DecodeWorkers <= 0 {
		cfg.DecodeWorkers = 2
	}
	limit := uint64(max(cfg.MaxFrameBytes, zstd.MinWindowSize))
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxWindow(limit), zstd.WithDecoderMaxMemory(limit))
	if err != nil {
		return nil, err
	}
	return &Service{cfg: cfg, idx: newIndexCache(cfg.IndexCache), blocks: recindex.NewBlockCache(cfg.BlockCacheBytes), frames: dec}, nil
}

// readable returns a COMMITTED backup of the tenant and its store (registry.CommittedBackup).
func (s *Service) readable(ctx context.Context, tenant, id string) (*metadata.Backup, storage.Store, error) {
	if id == "" {
		return nil, nil, fault.Invalid(fault.Violation{Field: "backup_id", Description: "required"})
	}
	return s.cfg.Registry.CommittedBackup(ctx, tenant, id, "can be read")
}

// Find returns the latest COMMITTED backup of an org that started at or before at.
func (s *Service) Find(ctx context.Context, tenant, org string, at time.Time) (*metadata.Backup, error) {
	id, err := sfid.Normalize(org)
	if err != nil {
		return nil, fault.Invalid(fault.Violation{Field: "org_id", Description: "must be a Salesforce org id: 15 or 18 characters of A-Z, a-z, 0-9"})
	}
	if at.IsZero() {
		at = time.Now()
	}
	b, err := s.cfg.Catalog.FindBackup(ctx, tenant, id, at.UTC())
	if errors.Is(err, metadata.ErrNotFound) {
		return nil, fault.Wrap(err, fault.NotFound, "NO_BACKUP_AT_TIME", "org %s has no committed backup that started at or before %s", id, at.UTC().Format(time.RFC3339))
	}
	return b, err
}

// damaged flags an object and its backup damaged and returns DataLoss naming the key.
func (s *Service) damaged(ctx context.Context, b *metadata.Backup, obj *metadata.Object, format string, args ...any) error {
	// The damage is found whether or not the reader stays: the flags are
	// written even if the request ends meanwhile, within their own timeout.
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	// Flags already set are not written again: a tenant that reads a
	// damaged object over and over must not turn each read into catalog
	// writes. (The read itself still happens: a flag does not stop the
	// bytes from being served if they turn out intact.)
	if !obj.Damaged {
		if err := s.cfg.Catalog.SetObjectDamaged(dctx, b.TenantID, obj.ID); err != nil {
			s.cfg.Logger.ErrorContext(ctx, "flagging object damaged", "object", obj.ID, "err", err)
		}
	}
	if !b.Damaged {
		if err := s.cfg.Catalog.SetBackupDamaged(dctx, b.TenantID, b.ID); err != nil {
			s.cfg.Logger.ErrorContext(ctx, "flagging backup damaged", "backup", b.ID, "err", err)
		}
	}
	msg := fmt.Sprintf("object %s of backup %s: ", obj.Key, b.ID) + fmt.Sprintf(format, args...)
	s.cfg.Logger.ErrorContext(ctx, "data loss", "tenant", b.TenantID, "backup", b.ID, "key", obj.Key, "problem", msg)
	return fault.New(fault.DataLoss, "DATA_LOSS", "%s", msg)
}

// s3Fault maps an object-store error that is not about the content: a
// missing or short object is damage, anything else worth a retry.
func (s *Service) s3Fault(ctx context.Context, b *metadata.Backup, obj *metadata.Object, err error, op string) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	if errors.Is(err, storage.ErrNotFound) {
		return s.damaged(ctx, b, obj, "missing from the bucket")
	}
	if errors.Is(err, storage.ErrInvalidRange) {
		return s.damaged(ctx, b, obj, "shorter than the catalog says (%d bytes)", obj.Size)
	}
	// A refusal (storage.ErrAccessDenied) inside is answered FailedPrecondition
	// by the server's one mapping, whatever wraps it.
	return fault.Wrap(err, fault.Unavailable, "STORAGE_UNAVAILABLE", "S3 %s of %s failed; retry", op, obj.Key)
}

// budgetFault answers a read whose reservation the budget refused: the
// tenant at its share, the budget in use by others past the bound on
// waiting, or the read's context ended while it waited.
func budgetFault(err error) error {
	var be *budget.BusyError
	if errors.As(err, &be) && be.AtShare {
		e := fault.Wrap(err, fault.ResourceExhausted, "TENANT_MEMORY_SHARE",
			"this tenant's streams hold its whole share of the server's memory budget; finish some of them, or retry in %s", be.RetryAfter.Round(time.Second))
		e.Detail = fault.RetryDelay(be.RetryAfter)
		return e
	}
	delay := 2 * time.Second
	if be != nil {
		delay = be.RetryAfter
	}
	e := fault.Wrap(err, fault.ResourceExhausted, "MEMORY_BUDGET", "the server's memory budget is in use; retry in %s", delay.Round(time.Second))
	e.Detail = fault.RetryDelay(delay)
	return e
}
