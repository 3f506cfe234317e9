package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"backupstore/fault"
	"backupstore/metadata"
	"backupstore/storage"
)

// TestToStatusPrecedence: a catalog that could not be reached is answered
// Unavailable even when domain code wrapped it in its own verdict (found by
// the torture run: AbortBackup answered FailedPrecondition for a dropped
// MariaDB connection, and the worker gave up instead of retrying). An S3
// refusal (storage.ErrAccessDenied) is FailedPrecondition STORAGE_REJECTED
// wherever the domain met it and however it wrapped it as a failed call,
// naming the S3 code but never the endpoint's text; a domain answer more
// precise than "the store failed" keeps its reason, and a store failure that
// is no refusal stays Unavailable.
func TestToStatusPrecedence(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	down := fmt.Errorf("SetBackupStatus: %w", metadata.ErrUnavailable)
	const remote = "text from the endpoint"
	denied := fmt.Errorf("s3.PutObject %q: %w", "k", &storage.DeleteObjectError{Key: "k", Code: "SignatureDoesNotMatch", Message: remote})
	failed := fmt.Errorf("s3.PutObject %q: %w", "k", &storage.DeleteObjectError{Key: "k", Code: "InternalError", Message: remote})
	for name, tc := range map[string]struct {
		err    error
		code   codes.Code
		reason string
		msgHas string
	}{
		"bare":                                  {down, codes.Unavailable, "CATALOG_UNAVAILABLE", ""},
		"wrapped in a fault":                    {fault.Wrap(down, fault.FailedPrecondition, "BACKUP_NOT_OPEN", "changed"), codes.Unavailable, "CATALOG_UNAVAILABLE", ""},
		"an Unavailable fault keeps its reason": {fault.Wrap(down, fault.Unavailable, "COMMIT_OUTCOME_UNKNOWN", "unknown"), codes.Unavailable, "COMMIT_OUTCOME_UNKNOWN", ""},
		"a fault on its own":                    {fault.New(fault.FailedPrecondition, "BACKUP_NOT_OPEN", "is COMMITTED"), codes.FailedPrecondition, "BACKUP_NOT_OPEN", ""},
		"a conflict":                            {fmt.Errorf("x: %w", metadata.ErrConflict), codes.AlreadyExists, "ALREADY_EXISTS", ""},
		"anything else":                         {errors.New("boom"), codes.Internal, "INTERNAL", ""},
		"a bare refusal":                        {denied, codes.FailedPrecondition, "STORAGE_REJECTED", "SignatureDoesNotMatch"},
		"a refusal as a failed call":            {fault.Wrap(denied, fault.Unavailable, "STORAGE_UNAVAILABLE", "S3 PutObject failed; retry"), codes.FailedPrecondition, "STORAGE_REJECTED", "SignatureDoesNotMatch"},
		"a precise answer to a refusal":         {fault.Wrap(denied, fault.FailedPrecondition, "DELETE_REFUSED", "refused"), codes.FailedPrecondition, "DELETE_REFUSED", ""},
		"a store failure that is no refusal":    {fault.Wrap(failed, fault.Unavailable, "STORAGE_UNAVAILABLE", "S3 PutObject failed; retry"), codes.Unavailable, "STORAGE_UNAVAILABLE", ""},
	} {
		t.Run(name, func(t *testing.T) {
			st, _ := status.FromError(toStatus(context.Background(), log, tc.err))
			if st.Code() != tc.code {
				t.Fatalf("code %v, want %v (%s)", st.Code(), tc.code, st.Message())
			}
			if reason := errorInfoReason(st); reason != tc.reason {
				t.Fatalf("reason %q, want %q", reason, tc.reason)
			}
			if !strings.Contains(st.Message(), tc.msgHas) || strings.Contains(st.Message(), remote) {
				t.Errorf("message %q: want it to name %q and never the endpoint's text", st.Message(), tc.msgHas)
			}
		})
	}
}

func errorInfoReason(st *status.Status) string {
	for _, d := range st.Details() {
		if ei, ok := d.(*errdetails.ErrorInfo); ok {
			return ei.Reason
		}
	}
	return ""
}
