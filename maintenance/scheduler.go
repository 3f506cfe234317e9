package maintenance

import (
	"context"
	"errors"
)

// CleanupAll runs Cleanup for every tenant in the catalog, one after the
// other. Replicas share the maintenance lock: a tenant whose maintenance
// another replica (or call) is running is skipped until the next pass.
// Failures are logged, not returned: one tenant's broken bucket must not
// keep the others from their cleanup.
func (s *Service) CleanupAll(ctx context.Context) {
	log := s.cfg.Logger
	tenants, err := s.cfg.Catalog.ListTenants(ctx)
	if err != nil {
		log.ErrorContext(ctx, "scheduled cleanup: listing tenants", "err", err)
		return
	}
	for _, tenant := range tenants {
		if _, err := s.Cleanup(ctx, tenant, false); err != nil {
			if errors.Is(err, ErrBusy) {
				log.InfoContext(ctx, "scheduled cleanup skipped for a tenant: another replica is running its maintenance", "tenant", tenant)
				continue
			}
			log.ErrorContext(ctx, "scheduled cleanup failed", "tenant", tenant, "err", err)
		}
	}
}
