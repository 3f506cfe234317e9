package ingest

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"testing"
)

// gathered is how many keys, and callers, wait in scope's next batch.
func (c *coalescer[S, K, V]) gathered(scope S) (keys, callers int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if sc := c.scopes[scope]; sc != nil && sc.next != nil {
		return len(sc.next.keys), sc.next.callers
	}
	return 0, 0
}

// waitFor spins (yielding, no sleep) until cond holds: the test's own
// goroutines make it hold, so it does not depend on timing.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for range 10_000_000 {
		if cond() {
			return
		}
		runtime.Gosched()
	}
	t.Fatalf("never: %s", what)
}

// A lookup parked in the catalog: the keys asked for meanwhile become one
// batch that starts when it ends; none of them is answered by the parked
// query (which began before they asked: it could miss a row they expect),
// another tenant's lookup runs meanwhile, and each caller gets its own copy.
func TestCoalescerBatchesWhileARunIsParked(t *testing.T) {
	var (
		mu      sync.Mutex
		rows    = map[string]int{"k0": 0}
		batches [][]string
		park    = make(chan struct{})
		parked  = make(chan struct{})
	)
	c := newCoalescer(func(ctx context.Context, tenant string, keys []string) (map[string]*int, error) {
		mu.Lock()
		batches = append(batches, slices.Clone(keys))
		n := len(batches)
		snapshot := map[string]*int{}
		for _, k := range keys {
			if v, ok := rows[k]; ok {
				snapshot[k] = &v
			}
		}
		mu.Unlock()
		if tenant == "A" && n == 1 {
			close(parked)
			<-park
		}
		return snapshot, nil
	}).cloning(func(p *int) *int { v := *p; return &v })

	ctx := t.Context()
	first := make(chan error, 1)
	go func() {
		v, ok, err := c.get(ctx, "A", "k0")
		if err == nil && (!ok || *v != 0) {
			err = fmt.Errorf("k0 = %v, %v", v, ok)
		}
		first <- err
	}()
	<-parked
	// Rows committed after the parked query began, then asked for.
	mu.Lock()
	for i := 1; i <= 50; i++ {
		rows[fmt.Sprintf("k%d", i)] = i
	}
	mu.Unlock()
	type got struct {
		key string
		v   *int
		ok  bool
		err error
	}
	results := make(chan got, 100)
	for i := 1; i <= 50; i++ {
		for range 2 { // each key twice: one lookup, two copies
			go func() {
				k := fmt.Sprintf("k%d", i)
				v, ok, err := c.get(ctx, "A", k)
				results <- got{k, v, ok, err}
			}()
		}
	}
	waitFor(t, "100 callers of 50 keys gathered behind the parked batch", func() bool {
		keys, callers := c.gathered("A")
		return keys == 50 && callers == 100
	})

	// Tenant B is not behind A's parked query.
	if v, ok, err := c.get(ctx, "B", "k0"); err != nil || !ok || *v != 0 {
		t.Fatalf("tenant B while A is parked: %v, %v, %v", v, ok, err)
	}
	// A caller that gives up stops waiting; the batch goes on for the rest.
	gone, cancel := context.WithCancel(ctx)
	cancel()
	if _, _, err := c.get(gone, "A", "k1"); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled caller: %v", err)
	}

	close(park)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	seen := map[string]*int{}
	for range 100 {
		r := <-results
		want := 0
		fmt.Sscanf(r.key, "k%d", &want)
		if r.err != nil || !r.ok || *r.v != want {
			t.Fatalf("%s = %v, %v, %v; want %d (a row committed before the call)", r.key, r.v, r.ok, r.err, want)
		}
		if p := seen[r.key]; p == r.v {
			t.Fatalf("two callers of %s share one value", r.key)
		}
		seen[r.key] = r.v
	}
	mu.Lock()
	defer mu.Unlock()
	if len(batches) != 3 || len(batches[2]) != 50 {
		t.Fatalf("batches = %d (%v); want A's parked one, B's, then one of the 50 keys", len(batches), batches)
	}
	// The last batch retires its scope after answering: wait for it.
	waitFor(t, "every scope retired", func() bool { c.mu.Lock(); defer c.mu.Unlock(); return len(c.scopes) == 0 })
}

// A failed lookup fails every caller of its batch, and the next call runs
// a fresh one.
func TestCoalescerErrorReachesTheBatch(t *testing.T) {
	fail := errors.New("catalog down")
	calls := 0
	c := newCoalescer(func(ctx context.Context, _ string, keys []string) (map[string]int, error) {
		calls++
		if calls == 1 {
			return nil, fail
		}
		return map[string]int{"a": 1}, nil
	})
	if _, _, err := c.get(t.Context(), "A", "a"); !errors.Is(err, fail) {
		t.Fatalf("first lookup: %v", err)
	}
	if v, ok, err := c.get(t.Context(), "A", "a"); err != nil || !ok || v != 1 {
		t.Fatalf("second lookup: %v %v %v", v, ok, err)
	}
	if _, ok, err := c.get(t.Context(), "A", "missing"); err != nil || ok {
		t.Fatalf("missing key: %v %v", ok, err)
	}
}
