package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"backupstore/fault"
	"backupstore/metadata"
)

// TestToStatusCatalogUnavailableWins: a catalog that could not be reached is
// answered Unavailable even when domain code wrapped it in its own verdict
// (found by the torture run: AbortBackup answered FailedPrecondition for a
// dropped MariaDB connection, and the worker gave up instead of retrying).
func TestToStatusCatalogUnavailableWins(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	down := fmt.Errorf("SetBackupStatus: %w", metadata.ErrUnavailable)
	for name, tc := range map[string]struct {
		err    error
		code   codes.Code
		reason string
	}{
		"bare":                                  {down, codes.Unavailable, "CATALOG_UNAVAILABLE"},
		"wrapped in a fault":                    {fault.Wrap(down, fault.FailedPrecondition, "BACKUP_NOT_OPEN", "changed"), codes.Unavailable, "CATALOG_UNAVAILABLE"},
		"an Unavailable fault keeps its reason": {fault.Wrap(down, fault.Unavailable, "COMMIT_OUTCOME_UNKNOWN", "unknown"), codes.Unavailable, "COMMIT_OUTCOME_UNKNOWN"},
		"a fault on its own":                    {fault.New(fault.FailedPrecondition, "BACKUP_NOT_OPEN", "is COMMITTED"), codes.FailedPrecondition, "BACKUP_NOT_OPEN"},
		"a conflict":                            {fmt.Errorf("x: %w", metadata.ErrConflict), codes.AlreadyExists, "ALREADY_EXISTS"},
		"anything else":                         {errors.New("boom"), codes.Internal, "INTERNAL"},
	} {
		t.Run(name, func(t *testing.T) {
			st, _ := status.FromError(toStatus(context.Background(), log, tc.err))
			if st.Code() != tc.code {
				t.Fatalf("code %v, want %v (%s)", st.Code(), tc.code, st.Message())
			}
			var reason string
			for _, d := range st.Details() {
				if ei, ok := d.(*errdetails.ErrorInfo); ok {
					reason = ei.Reason
				}
			}
			if reason != tc.reason {
				t.Fatalf("reason %q, want %q", reason, tc.reason)
			}
		})
	}
}
