package client

import (
	"context"
	"fmt"
	mrand "math/rand/v2"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// RetryPolicy bounds how often an upload or read is retried and how long to
// wait between attempts: Base·2^(n-1) before retry n, at most Max, jittered
// by up to -50%, and at least what a RetryInfo detail of the error asks for
// (capped at 5 minutes).
type RetryPolicy struct {
	Attempts  int // in all, the first one included
	Base, Max time.Duration
}

// DefaultRetry is the policy of a Client without WithRetry.
var DefaultRetry = RetryPolicy{Attempts: 5, Base: time.Second, Max: 30 * time.Second}

// Retryable reports whether the API allows retrying err unchanged:
// Unavailable, Aborted and ResourceExhausted (see storage.proto).
func Retryable(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.Aborted, codes.ResourceExhausted:
		return true
	}
	return false
}

// wait sleeps before retry number n (1 for the first retry).
func (p RetryPolicy) wait(ctx context.Context, n int, err error) error {
	d := p.Max
	if n-1 < 30 && p.Base<<(n-1) < p.Max {
		d = p.Base << (n - 1)
	}
	if d > 1 {
		d -= mrand.N(d / 2)
	}
	if st, ok := status.FromError(err); ok {
		for _, det := range st.Details() {
			if ri, ok := det.(*errdetails.RetryInfo); ok && ri.GetRetryDelay().AsDuration() > d {
				d = min(ri.GetRetryDelay().AsDuration(), 5*time.Minute)
			}
		}
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// do runs attempt, retrying it while again(err) allows, at most p.Attempts
// times in all; attempt is told its number, from 1.
func (p RetryPolicy) do(ctx context.Context, again func(error) bool, attempt func(n int) error) error {
	for n := 1; ; n++ {
		err := attempt(n)
		if err == nil {
			return nil
		}
		if !again(err) || n >= p.Attempts || ctx.Err() != nil {
			return err
		}
		if err := p.wait(ctx, n, err); err != nil {
			return err
		}
	}
}

// annotate prefixes err's message with what failed. A gRPC status keeps its
// code and details, so callers still classify it by code.
func annotate(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	prefix := fmt.Sprintf(format, args...)
	if st, ok := status.FromError(err); ok {
		p := st.Proto()
		p.Message = prefix + ": " + p.Message
		return status.FromProto(p).Err()
	}
	return fmt.Errorf("%s: %w", prefix, err)
}
