package ingest

import (
	"context"
	"maps"
	"sync"

	"backupstore/fault"
	"backupstore/metadata"
)

// coalescer turns concurrent single-key catalog lookups into batched ones.
// The keys asked for in one scope while that scope's lookup runs are
// gathered and looked up together when it ends: 1,000 files in flight on an
// UploadFiles window cost a few queries, not 1,000. A caller never gets an
// answer from a query that began before its call (it joins only a batch
// that has not started), so a lookup sees every row committed before it was
// asked for, as a query of its own would.
//
// The scope separates tenants (it always holds the tenant id): one tenant's
// batch never waits for another's, and a tenant's flood of lookups becomes
// fewer queries, not a longer queue for the shared catalog connections.
type coalescer[S, K comparable, V any] struct {
	run   func(ctx context.Context, scope S, keys []K) (map[K]V, error)
	clone func(V) V // nil: values are not shared mutable state

	mu     sync.Mutex
	scopes map[S]*coalesceScope[K, V]
}

type coalesceScope[K comparable, V any] struct {
	next *coalesceBatch[K, V] // gathering keys; starts when the running one ends
}

type coalesceBatch[K comparable, V any] struct {
	keys    []K
	has     map[K]bool
	callers int
	done    chan struct{}
	out     map[K]V
	err     error
}

func newCoalescer[S, K comparable, V any](run func(ctx context.Context, scope S, keys []K) (map[K]V, error)) *coalescer[S, K, V] {
	return &coalescer[S, K, V]{run: run, scopes: map[S]*coalesceScope[K, V]{}}
}

func (c *coalescer[S, K, V]) cloning(clone func(V) V) *coalescer[S, K, V] {
	c.clone = clone
	return c
}

// get looks key up in scope: ok false when the lookup found nothing for it.
// The first caller of an idle scope starts the lookup; the batch that
// gathered meanwhile starts when it ends. Lookups run on goroutines of their
// own, detached from any one caller's cancellation; a caller whose context
// ends stops waiting at once.
func (c *coalescer[S, K, V]) get(ctx context.Context, scope S, key K) (v V, ok bool, err error) {
	c.mu.Lock()
	sc, running := c.scopes[scope]
	if !running {
		sc = &coalesceScope[K, V]{}
		c.scopes[scope] = sc
	}
	b := sc.next
	if !running || b == nil {
		b = &coalesceBatch[K, V]{has: map[K]bool{}, done: make(chan struct{})}
		if running {
			sc.next = b
		}
	}
	b.callers++
	if !b.has[key] {
		b.has[key] = true
		b.keys = append(b.keys, key)
	}
	c.mu.Unlock()
	if !running {
		go c.runBatch(context.WithoutCancel(ctx), scope, sc, b)
	}
	select {
	case <-b.done:
		v, ok = b.out[key]
		if ok && c.clone != nil {
			v = c.clone(v) // callers asking for one key may change what they get
		}
		return v, ok, b.err
	case <-ctx.Done():
		return v, false, ctx.Err()
	}
}

// runBatch runs b, then hands the scope to the batch gathered meanwhile (or
// retires the scope).
func (c *coalescer[S, K, V]) runBatch(ctx context.Context, scope S, sc *coalesceScope[K, V], b *coalesceBatch[K, V]) {
	qctx, cancel := detached(ctx)
	// On a goroutine of its own: a panic is every caller's error, not the
	// process's end.
	b.err = fault.Catch(func() (err error) {
		b.out, err = c.run(qctx, scope, b.keys)
		return err
	})
	cancel()
	close(b.done)
	c.mu.Lock()
	next := sc.next
	sc.next = nil
	if next == nil {
		delete(c.scopes, scope)
	}
	c.mu.Unlock()
	if next != nil {
		go c.runBatch(context.WithoutCancel(ctx), scope, sc, next)
	}
}

// lookups are the catalog reads every upload makes, coalesced.
type lookups struct {
	backups *coalescer[string, string, *metadata.Backup]    // tenant → backup id
	uploads *coalescer[[2]string, string, *metadata.Upload] // (tenant, backup) → upload id
	bodies  *coalescer[[3]string, string, storedBody]       // (tenant, org, storage) → SHA-256
}

// storedBody is what the dedup lookup found for a SHA-256: a packed body
// (blob), else a file object (obj), each as FindBlobs and FindFileObject
// choose them.
type storedBody struct {
	blob *metadata.Blob
	obj  *metadata.Object
}

// gated runs a batched lookup in one of the tenant's catalog slots.
func gated[K comparable, V any](enter func(context.Context, string) (func(), error), tenant string, ctx context.Context, run func() (map[K]V, error)) (map[K]V, error) {
	release, err := enter(ctx, tenant)
	if err != nil {
		return nil, err
	}
	defer release()
	return run()
}

func newLookups(cat *metadata.Store, packing bool, enter func(context.Context, string) (func(), error)) *lookups {
	return &lookups{
		backups: newCoalescer(func(ctx context.Context, tenant string, ids []string) (map[string]*metadata.Backup, error) {
			return gated(enter, tenant, ctx, func() (map[string]*metadata.Backup, error) { return cat.GetBackups(ctx, tenant, ids) })
		}).cloning(func(b *metadata.Backup) *metadata.Backup { c := *b; c.Labels = maps.Clone(b.Labels); return &c }),
		uploads: newCoalescer(func(ctx context.Context, s [2]string, ids []string) (map[string]*metadata.Upload, error) {
			return gated(enter, s[0], ctx, func() (map[string]*metadata.Upload, error) { return cat.GetUploads(ctx, s[0], s[1], ids) })
		}).cloning(func(u *metadata.Upload) *metadata.Upload { c := *u; return &c }),
		bodies: newCoalescer(func(ctx context.Context, s [3]string, keys []string) (map[string]storedBody, error) {
			return gated(enter, s[0], ctx, func() (map[string]storedBody, error) { return findBodies(ctx, cat, packing, s, keys) })
		}),
	}
}

// findBodies is the dedup lookup of keys (SHA-256s): packed bodies when
// packing is on, then file objects for the sums without one.
func findBodies(ctx context.Context, cat *metadata.Store, packing bool, s [3]string, keys []string) (map[string]storedBody, error) {
	sums := make([][]byte, len(keys))
	for i, k := range keys {
		sums[i] = []byte(k)
	}
	out := make(map[string]storedBody, len(keys))
	if packing {
		blobs, err := cat.FindBlobs(ctx, s[0], s[1], s[2], sums)
		if err != nil {
			return nil, err
		}
		rest := sums[:0]
		for _, sum := range sums {
			if bl := blobs[string(sum)]; bl != nil {
				out[string(sum)] = storedBody{blob: bl}
			} else {
				rest = append(rest, sum)
			}
		}
		sums = rest
	}
	if len(sums) == 0 {
		return out, nil
	}
	objs, err := cat.FindFileObjects(ctx, s[0], s[1], s[2], sums)
	if err != nil {
		return nil, err
	}
	for k, o := range objs {
		out[k] = storedBody{obj: o}
	}
	return out, nil
}
