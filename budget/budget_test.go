package budget

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestAcquireReleaseNeverExceeds(t *testing.T) {
	b := New(100)
	var inUse, maxSeen atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func(n int64) {
			defer wg.Done()
			if err := b.Acquire(context.Background(), n); err != nil {
				t.Error(err)
				return
			}
			v := inUse.Add(n)
			for {
				m := maxSeen.Load()
				if v <= m || maxSeen.CompareAndSwap(m, v) {
					break
				}
			}
			time.Sleep(time.Millisecond)
			inUse.Add(-n)
			b.Release(n)
		}(int64(10 + i%40))
	}
	wg.Wait()
	if maxSeen.Load() > 100 || b.Peak() > 100 {
		t.Fatalf("in use reached %d (peak %d), budget 100", maxSeen.Load(), b.Peak())
	}
	if b.Used() != 0 {
		t.Fatalf("used %d after all released", b.Used())
	}
}

func TestTooLargeAndCancel(t *testing.T) {
	b := New(10)
	if err := b.Acquire(context.Background(), 11); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("want ErrTooLarge, got %v", err)
	}
	if err := b.Acquire(context.Background(), 8); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := b.Acquire(ctx, 5); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want deadline, got %v", err)
	}
	// The cancelled waiter must not block a small one that fits.
	if !b.TryAcquire(2) {
		t.Fatal("queue blocked by a cancelled waiter")
	}
	b.Release(10)
	if b.Used() != 0 {
		t.Fatal(b.Used())
	}
}

func TestFIFONoStarvation(t *testing.T) {
	b := New(10)
	b.Acquire(context.Background(), 6)
	got := make(chan struct{})
	go func() { b.Acquire(context.Background(), 10); close(got) }()
	time.Sleep(10 * time.Millisecond)
	if b.TryAcquire(1) {
		t.Fatal("small request overtook a queued large one")
	}
	b.Release(6)
	select {
	case <-got:
	case <-time.After(time.Second):
		t.Fatal("large waiter never granted")
	}
}
