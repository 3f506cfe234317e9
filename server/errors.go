package server

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"

	"backupstore/fault"
	"backupstore/metadata"
	"backupstore/registry"
	"backupstore/storage"
)

// errorDomain is the ErrorInfo domain of every error this service returns.
const errorDomain = "backupstore.v1"

var kindCodes = map[fault.Kind]codes.Code{
	fault.Internal:           codes.Internal,
	fault.InvalidArgument:    codes.InvalidArgument,
	fault.NotFound:           codes.NotFound,
	fault.AlreadyExists:      codes.AlreadyExists,
	fault.FailedPrecondition: codes.FailedPrecondition,
	fault.Unavailable:        codes.Unavailable,
	fault.Aborted:            codes.Aborted,
	fault.OutOfRange:         codes.OutOfRange,
	fault.ResourceExhausted:  codes.ResourceExhausted,
	fault.DataLoss:           codes.DataLoss,
	fault.Unauthenticated:    codes.Unauthenticated,
	fault.PermissionDenied:   codes.PermissionDenied,
}

// toStatus is the one place domain errors become gRPC statuses. Every status
// carries an ErrorInfo with a stable reason; field errors carry a BadRequest.
// Errors that are not fault errors are logged in full and answered with a
// message that reveals nothing internal.
func toStatus(ctx context.Context, log *slog.Logger, err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	var fe *fault.Error
	switch {
	case refused(err):
		// The store refused what the storage is configured with: retrying
		// will not help until the tenant fixes it. The code is one of
		// storage.RefusalCodes, never remote text; the rest goes to the log.
		log.WarnContext(ctx, "storage refused a request", "err", err)
		fe = fault.Wrap(err, fault.FailedPrecondition, "STORAGE_REJECTED",
			"S3 refused the request (%s); check the storage with ValidateStorage", storage.ErrorCode(err))
	case errors.As(err, &fe) && fe.Kind == fault.Unavailable:
		// Already a retry, with its own reason.
	case errors.Is(err, metadata.ErrUnavailable):
		// Before any domain wrapping: whatever the caller meant to answer, a
		// catalog it could not reach is worth a retry, not a verdict.
		fe = fault.New(fault.Unavailable, "CATALOG_UNAVAILABLE", "the catalog database is unavailable; retry")
	case errors.As(err, &fe):
	case errors.Is(err, context.Canceled):
		fe = fault.New(fault.Internal, "CANCELLED", "request cancelled")
		return detailed(codes.Canceled, fe)
	case errors.Is(err, context.DeadlineExceeded):
		fe = fault.New(fault.Internal, "DEADLINE_EXCEEDED", "deadline exceeded")
		return detailed(codes.DeadlineExceeded, fe)
	case errors.Is(err, metadata.ErrNotFound):
		fe = fault.New(fault.NotFound, "NOT_FOUND", "not found")
	case errors.Is(err, metadata.ErrConflict):
		fe = fault.New(fault.AlreadyExists, "ALREADY_EXISTS", "already exists")
	case errors.Is(err, metadata.ErrInvalid):
		fe = fault.New(fault.InvalidArgument, "INVALID_ARGUMENT", "invalid request: %s", strings.TrimPrefix(err.Error(), "metadata: "))
	case errors.Is(err, metadata.ErrStale):
		fe = fault.New(fault.Aborted, "STALE_GENERATION", "a newer stream owns this upload now")
	case errors.Is(err, metadata.ErrReferenced):
		fe = fault.New(fault.FailedPrecondition, "IN_USE", "still referenced")
	default:
		log.ErrorContext(ctx, "internal error", "err", err)
		fe = fault.New(fault.Internal, "INTERNAL", "internal error; the server log has the details")
	}
	if fe.Kind == fault.Internal || fe.Kind == fault.Unavailable {
		log.WarnContext(ctx, "request failed", "reason", fe.Reason, "err", err)
	}
	return detailed(kindCodes[fe.Kind], fe)
}

// refused reports whether err is an S3 refusal (storage.ErrAccessDenied) that
// no domain error answered more precisely than "the store failed": the one
// place a refusal becomes a status, wherever in the domain it surfaced.
func refused(err error) bool {
	if !errors.Is(err, storage.ErrAccessDenied) {
		return false
	}
	fe, ok := fault.As(err)
	return !ok || fe.Kind == fault.Unavailable || fe.Kind == fault.Internal
}

func detailed(code codes.Code, fe *fault.Error) error {
	st := status.New(code, fe.Msg)
	details := []protoadapt.MessageV1{&errdetails.ErrorInfo{Reason: fe.Reason, Domain: errorDomain}}
	if len(fe.Violations) > 0 {
		br := &errdetails.BadRequest{}
		for _, v := range fe.Violations {
			br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{Field: v.Field, Description: v.Description})
		}
		details = append(details, br)
	}
	if rep, ok := fe.Detail.(*registry.Report); ok && rep != nil {
		details = append(details, reportToProto(rep))
		pf := &errdetails.PreconditionFailure{}
		for _, p := range rep.Probes {
			if p.Outcome == registry.Failed {
				pf.Violations = append(pf.Violations, &errdetails.PreconditionFailure_Violation{Type: p.Code, Subject: p.API, Description: p.Hint})
			}
		}
		if len(pf.Violations) > 0 {
			details = append(details, pf)
		}
	}
	if d, ok := fe.Detail.(fault.RetryDelay); ok && d > 0 {
		details = append(details, &errdetails.RetryInfo{RetryDelay: durationpb.New(time.Duration(d))})
	}
	withDetails, err := st.WithDetails(details...)
	if err != nil {
		return st.Err()
	}
	return withDetails.Err()
}
