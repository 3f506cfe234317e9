package ingest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"backupstore/budget"
	"backupstore/fault"
)

// growStep is the granularity a stream's reservation grows and shrinks by,
// so that buffer growth of a few KiB does not take the budget's lock each time.
const growStep = 256 << 10

// reservation is one stream's part of the memory budget, on its tenant's
// share. It starts with a base acquired (waiting, before the stream holds
// anything) and then follows what the stream's buffers actually hold: growth
// is taken only if free now — a stream never waits while it holds memory, so
// streams cannot deadlock each other — and fails the stream with
// ResourceExhausted otherwise (the upload stays PENDING, resumable).
type reservation struct {
	b      *budget.Budget
	tenant string
	fixed  int64 // memory the stream holds that is not accounted buffer by buffer (the index run)

	mu       sync.Mutex
	base     int64 // never released before the end
	reserved int64
}

func newReservation(b *budget.Budget, tenant string, fixed int64) *reservation {
	return &reservation{b: b, tenant: tenant, fixed: fixed}
}

// acquire takes the base, waiting for it (within the budget's bound).
func (r *reservation) acquire(ctx context.Context, base int64) error {
	if err := r.b.AcquireFor(ctx, r.tenant, base); err != nil {
		return budgetFault(err, r.b)
	}
	r.mu.Lock()
	r.base, r.reserved = base, base
	r.mu.Unlock()
	return nil
}

// adopt takes over n bytes charged to the tenant already, as the base.
func (r *reservation) adopt(n int64) {
	r.mu.Lock()
	r.base, r.reserved = n, n
	r.mu.Unlock()
}

// fit grows or shrinks the reservation to cover held bytes of buffers (plus
// the fixed part). Growing never waits: it takes a step's worth if free,
// else exactly what is needed, else fails.
func (r *reservation) fit(held int64) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	need := max(r.fixed+held, r.base)
	switch {
	case need > r.reserved:
		want := roundUp(need, growStep)
		if !r.b.TryAcquireFor(r.tenant, want-r.reserved) {
			want = need
			if !r.b.TryAcquireFor(r.tenant, want-r.reserved) {
				return growFault(r.b, r.tenant, want-r.reserved)
			}
		}
		r.reserved = want
	case r.reserved-need >= 2*growStep:
		want := max(roundUp(need, growStep), r.base)
		r.b.ReleaseFor(r.tenant, r.reserved-want)
		r.reserved = want
	}
	return nil
}

// release returns everything. It is idempotent.
func (r *reservation) release() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.reserved > 0 {
		r.b.ReleaseFor(r.tenant, r.reserved)
	}
	r.reserved, r.base = 0, 0
}

func roundUp(n, step int64) int64 { return (n + step - 1) / step * step }

// budgetFault answers a reservation the budget refused.
func budgetFault(err error, b *budget.Budget) error {
	var be *budget.BusyError
	switch {
	case errors.Is(err, budget.ErrTooLarge):
		return fault.Wrap(err, fault.ResourceExhausted, "MEMORY_BUDGET",
			"the upload needs more memory than one tenant may hold (%d MiB of the server's memory budget)", b.TenantShare()>>20)
	case errors.As(err, &be) && be.AtShare:
		e := fault.Wrap(err, fault.ResourceExhausted, "TENANT_MEMORY_SHARE",
			"this tenant's streams hold its whole share of the server's memory budget (%d MiB); finish or end some of them, or retry in %s",
			b.TenantShare()>>20, be.RetryAfter.Round(time.Second))
		e.Detail = fault.RetryDelay(be.RetryAfter)
		return e
	case be != nil:
		e := fault.Wrap(err, fault.ResourceExhausted, "MEMORY_BUDGET",
			"the server's memory budget is in use by other streams; retry in %s", be.RetryAfter.Round(time.Second))
		e.Detail = fault.RetryDelay(be.RetryAfter)
		return e
	}
	// The stream's context ended while it waited.
	e := fault.Wrap(err, fault.ResourceExhausted, "MEMORY_BUDGET", "the server's memory budget is in use by other streams; retry later")
	e.Detail = fault.RetryDelay(time.Second)
	return e
}

// growFault answers a stream whose buffers grew past what the budget has
// free: it is ended (never waiting while it holds memory) and may be retried.
func growFault(b *budget.Budget, tenant string, n int64) error {
	reason, whose := "MEMORY_BUDGET", "the server's memory budget"
	if b.UsedBy(tenant)+n > b.TenantShare() {
		reason, whose = "TENANT_MEMORY_SHARE", fmt.Sprintf("this tenant's share of the server's memory budget (%d MiB)", b.TenantShare()>>20)
	}
	e := fault.New(fault.ResourceExhausted, reason,
		"the stream's buffers needed %d more KiB and %s has none free; the upload stays PENDING: retry it in a few seconds", n>>10, whose)
	e.Detail = fault.RetryDelay(2 * time.Second)
	return e
}
