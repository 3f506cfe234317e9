package ingest

import (
	"context"
	"sync"

	"backupstore/metadata"
)

// DefaultCatalogShare is Config.CatalogShare's default: a quarter of a MySQL
// catalog's connections per process.
const DefaultCatalogShare = metadata.MaxOpenConns / 4

// tenantGate bounds how many catalog calls of the upload path one tenant
// has in flight at once (Config.CatalogShare). The catalog's connections
// are shared by every tenant and handed out first come, first served; a
// tenant with many streams, each with a window of files in flight, could
// otherwise hold all of them and queue everyone else's calls behind its own.
// A call past the share waits (for its context) until one of the tenant's
// own ends: never for another tenant's. A slot is held only for the call,
// which waits for nothing in this process, so holders cannot deadlock.
type tenantGate struct {
	max  int
	wait func(tenant string) // test hook: a call waits for a slot

	mu   sync.Mutex
	held map[string]int
	wake map[string]chan struct{} // closed when a slot of the tenant frees
}

func newTenantGate(max int, wait func(string)) *tenantGate {
	return &tenantGate{max: max, wait: wait, held: map[string]int{}, wake: map[string]chan struct{}{}}
}

// enter takes one of the tenant's slots, waiting for ctx; release gives it
// back (call it once).
func (g *tenantGate) enter(ctx context.Context, tenant string) (release func(), err error) {
	for {
		g.mu.Lock()
		if g.held[tenant] < g.max {
			g.held[tenant]++
			g.mu.Unlock()
			return func() { g.leave(tenant) }, nil
		}
		ch := g.wake[tenant]
		if ch == nil {
			ch = make(chan struct{})
			g.wake[tenant] = ch
		}
		g.mu.Unlock()
		if g.wait != nil {
			g.wait(tenant)
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func (g *tenantGate) leave(tenant string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.held[tenant]--; g.held[tenant] <= 0 {
		delete(g.held, tenant)
	}
	if ch := g.wake[tenant]; ch != nil {
		close(ch)
		delete(g.wake, tenant)
	}
}

// DefaultFilesInFlight is Config.FilesInFlight's default.
const DefaultFilesInFlight = 4096

// EnterFile takes one of the tenant's Config.FilesInFlight slots for a file
// an UploadFiles stream read ahead of its answer, waiting for ctx: each
// costs memory (a goroutine, its header and rows) whatever its body's size,
// and 64 streams of 1,024-file windows of 512-byte bodies (65,536 files
// waiting) took backupd to 766 MiB on a 512 MiB budget. release gives the
// slot back once the file is answered.
func (s *Service) EnterFile(ctx context.Context, tenant string) (release func(), err error) {
	return s.files.enter(ctx, tenant)
}

// inCatalog runs fn, a catalog call of the upload path, in one of the
// tenant's slots.
func (s *Service) inCatalog(ctx context.Context, tenant string, fn func() error) error {
	release, err := s.gate.enter(ctx, tenant)
	if err != nil {
		return err
	}
	defer release()
	return fn()
}
