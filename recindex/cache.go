package recindex

import (
	"container/list"
	"io"
	"sync"
)

// BlockCache is an LRU of byte ranges read from index objects, bounded in
// bytes and safe for concurrent use. A Reader reads each block with one ReadAt
// of exactly its offset and length, so lookups that land in a block already
// read cost no request. One cache may serve many objects (ReaderAt names each).
type BlockCache struct {
	mu    sync.Mutex
	max   int64
	size  int64
	ll    *list.List
	items map[blockKey]*list.Element
}

type blockKey struct {
	name string
	off  int64
	n    int
}

type blockEntry struct {
	k blockKey
	b []byte
}

// NewBlockCache returns a cache that holds at most maxBytes of blocks. Reads
// larger than maxBytes/8 (the footer of a huge index) are not kept.
func NewBlockCache(maxBytes int64) *BlockCache {
	return &BlockCache{max: maxBytes, ll: list.New(), items: map[blockKey]*list.Element{}}
}

// ReaderAt returns ra behind the cache: a read of a range already held is
// served from memory, a read that filled p whole is kept. name identifies
// the object (its key) among the others the cache serves.
func (c *BlockCache) ReaderAt(name string, ra io.ReaderAt) io.ReaderAt {
	return &cachedReaderAt{c: c, name: name, ra: ra}
}

// Reset empties the cache.
func (c *BlockCache) Reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ll.Init()
	c.items = map[blockKey]*list.Element{}
	c.size = 0
}

type cachedReaderAt struct {
	c    *BlockCache
	name string
	ra   io.ReaderAt
}

func (r *cachedReaderAt) ReadAt(p []byte, off int64) (int, error) {
	k := blockKey{name: r.name, off: off, n: len(p)}
	if b, ok := r.c.get(k); ok {
		return copy(p, b), nil
	}
	n, err := r.ra.ReadAt(p, off)
	if n == len(p) && (err == nil || err == io.EOF) {
		r.c.put(k, p)
		err = nil
	}
	return n, err
}

func (c *BlockCache) get(k blockKey) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[k]; ok {
		c.ll.MoveToFront(e)
		return e.Value.(*blockEntry).b, true
	}
	return nil, false
}

func (c *BlockCache) put(k blockKey, b []byte) {
	if int64(len(b)) > c.max/8 {
		return
	}
	cp := append([]byte(nil), b...)
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.items[k]; ok {
		return
	}
	c.items[k] = c.ll.PushFront(&blockEntry{k: k, b: cp})
	c.size += int64(len(cp))
	for c.size > c.max {
		e := c.ll.Back()
		be := e.Value.(*blockEntry)
		c.ll.Remove(e)
		delete(c.items, be.k)
		c.size -= int64(len(be.b))
	}
}
