package restore

import (
	"container/list"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"backupstore/metadata"
	"backupstore/recindex"
	"backupstore/storage"
)

// indexCache keeps opened record indexes (their footers and blooms) by object id.
type indexCache struct {
	mu    sync.Mutex
	max   int
	ll    *list.List
	items map[string]*list.Element

	Reads, Bytes atomic.Int64 // S3 GETs and bytes for index objects
}

type indexEntry struct {
	id string
	r  *recindex.Reader
}

func newIndexCache(max int) *indexCache {
	return &indexCache{max: max, ll: list.New(), items: map[string]*list.Element{}}
}

// open returns the reader of an index object, from the cache or S3.
func (s *Service) openIndex(st storage.Reader, obj *metadata.Object) (*recindex.Reader, error) {
	c := s.idx
	c.mu.Lock()
	if e, ok := c.items[obj.ID]; ok {
		c.ll.MoveToFront(e)
		c.mu.Unlock()
		return e.Value.(*indexEntry).r, nil
	}
	c.mu.Unlock()
	// Readers are cached and shared by requests, so reads are tied to none
	// of them: each has its own timeout.
	ra := storage.NewDetachedReaderAt(st, obj.Key, time.Minute)
	ra.Reads, ra.Bytes = &c.Reads, &c.Bytes
	r, err := recindex.Open(s.blocks.ReaderAt(obj.Key, ra), obj.Size)
	if err != nil {
		return nil, fmt.Errorf("record index %s: %w", obj.Key, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[obj.ID]; ok {
		return e.Value.(*indexEntry).r, nil
	}
	c.items[obj.ID] = c.ll.PushFront(&indexEntry{id: obj.ID, r: r})
	for c.ll.Len() > c.max {
		e := c.ll.Back()
		c.ll.Remove(e)
		delete(c.items, e.Value.(*indexEntry).id)
	}
	return r, nil
}

// Stats reports S3 traffic for record indexes and frames, for benchmarks.
type Stats struct{ IndexGets, IndexBytes, FrameGets, FrameBytes, Sent int64 }

// Stats returns counters since the service started.
func (s *Service) Stats() Stats {
	return Stats{IndexGets: s.idx.Reads.Load(), IndexBytes: s.idx.Bytes.Load(), FrameGets: s.frameGets.Load(), FrameBytes: s.frameBytes.Load(), Sent: s.sent.Load()}
}

// DropCaches empties the index and block caches (cold-cache benchmarks).
func (s *Service) DropCaches() {
	s.idx.mu.Lock()
	s.idx.ll.Init()
	s.idx.items = map[string]*list.Element{}
	s.idx.mu.Unlock()
	s.blocks.Reset()
}
