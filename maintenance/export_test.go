package maintenance

import (
	"context"

	"backupstore/metadata"
)

// FinishDeletion exposes the purge of a DELETING backup to the external tests,
// which play two maintenance runs that overlap.
func (s *Service) FinishDeletion(ctx context.Context, b *metadata.Backup) (Deleted, error) {
	return s.finishDeletion(ctx, b)
}
