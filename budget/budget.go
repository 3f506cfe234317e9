// Package budget is the service-wide memory budget for buffered bytes. A
// stream reserves everything it may buffer (a whole part, its frames) in one
// Acquire before it reads more, so streams never deadlock holding half of
// what they need, and peak memory stays within the budget whatever the
// object sizes and stream counts.
//
// budget imports nothing from backupstore.
package budget

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// ErrTooLarge means a single request asks for more than the whole budget.
var ErrTooLarge = errors.New("budget: request exceeds the whole budget")

// Budget is a weighted semaphore over bytes, FIFO so a large reservation is
// not starved by a stream of small ones. Safe for concurrent use.
type Budget struct {
	mu      sync.Mutex
	size    int64
	used    int64
	peak    int64
	waiters []*waiter
}

type waiter struct {
	n     int64
	ready chan struct{}
}

// New returns a budget of size bytes.
func New(size int64) *Budget { return &Budget{size: size} }

// Size returns the total budget.
func (b *Budget) Size() int64 { return b.size }

// Used returns the bytes reserved now.
func (b *Budget) Used() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}

// Peak returns the most bytes ever reserved at once.
func (b *Budget) Peak() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.peak
}

// Acquire reserves n bytes, waiting until they are free or ctx ends.
func (b *Budget) Acquire(ctx context.Context, n int64) error {
	if n > b.size {
		return fmt.Errorf("%w: %d > %d bytes", ErrTooLarge, n, b.size)
	}
	b.mu.Lock()
	if len(b.waiters) == 0 && b.used+n <= b.size {
		b.take(n)
		b.mu.Unlock()
		return nil
	}
	w := &waiter{n: n, ready: make(chan struct{})}
	b.waiters = append(b.waiters, w)
	b.mu.Unlock()
	select {
	case <-w.ready:
		return nil
	case <-ctx.Done():
		b.mu.Lock()
		select {
		case <-w.ready: // granted meanwhile: give it back
			b.used -= n
			b.grant()
		default:
			for i, x := range b.waiters {
				if x == w {
					b.waiters = append(b.waiters[:i], b.waiters[i+1:]...)
					break
				}
			}
			b.grant() // we may have been blocking the queue's head
		}
		b.mu.Unlock()
		return ctx.Err()
	}
}

// TryAcquire reserves n bytes if they are free now.
func (b *Budget) TryAcquire(n int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.waiters) == 0 && b.used+n <= b.size {
		b.take(n)
		return true
	}
	return false
}

// Release returns n bytes.
func (b *Budget) Release(n int64) {
	b.mu.Lock()
	b.used -= n
	if b.used < 0 {
		b.mu.Unlock()
		panic("budget: released more than acquired")
	}
	b.grant()
	b.mu.Unlock()
}

func (b *Budget) take(n int64) {
	b.used += n
	if b.used > b.peak {
		b.peak = b.used
	}
}

// grant wakes waiters in order while they fit. Caller holds mu.
func (b *Budget) grant() {
	for len(b.waiters) > 0 {
		w := b.waiters[0]
		if b.used+w.n > b.size {
			return
		}
		b.take(w.n)
		b.waiters = b.waiters[1:]
		close(w.ready)
	}
}
