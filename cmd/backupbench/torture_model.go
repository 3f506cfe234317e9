package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"backupstore/csvscan/csvgen"
	pb "backupstore/proto/backupstore/v1"
)

// The model of the torture run: what clients were told succeeded. Every check compares the
// service's answers with it.

// backup states in the model.
const (
	mOpen      = iota
	mCommitted // CommitBackup answered OK
	mAborted   // AbortBackup answered OK
	mDeleted   // DeleteBackup answered OK
	mGone      // expired by retention (seen NOT_FOUND or DELETING), only for orgs with a policy
	mUnknown   // a commit or delete whose answer never came: it may or may not have happened
)

type mBackup struct {
	id, org   string
	retention bool // its org has a retention policy: it may expire once committed
	started   time.Time

	// rw: readers of its content hold R; DeleteBackup holds W, so that a read never races a
	// delete the model itself asked for.
	rw sync.RWMutex

	mu    sync.Mutex
	state int
	sets  map[string]*mSet
	files []*mFile
	// pending uploads deliberately left behind (abandoned backups)
	abandoned []string
}

type mSet struct {
	sobject string
	header  []byte
	refs    []*pb.ReferenceField
	chunks  []*mChunk // by sequence
}

type mChunk struct {
	seq      int
	uploadID string
	body     []byte   // what the client sent
	rows     [][]byte // each data row as it should come back (line ending included)
	ids      []string
	result   *pb.UploadResult
}

type mFile struct {
	uploadID, parent, path, name string
	body                         *fileBody
	result                       *pb.UploadResult
}

type fileBody struct {
	data []byte
	sum  string
}

func (b *mBackup) get() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.state
}

func (b *mBackup) set(s int) {
	b.mu.Lock()
	b.state = s
	b.mu.Unlock()
}

// wholeRecords is what ReadRecords of a whole set must return: the header once, then every
// chunk's rows in sequence order.
func (s *mSet) wholeRecords() []byte {
	var b bytes.Buffer
	b.Write(s.header)
	for _, c := range s.chunks {
		for _, r := range c.rows {
			b.Write(r)
		}
	}
	return b.Bytes()
}

// byID is what ReadRecords with ids must return: the header, then the rows of those ids in
// backup order; and which of the ids are not in the set.
func (s *mSet) byID(ids []string) ([]byte, []string) {
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
	}
	var b bytes.Buffer
	b.Write(s.header)
	found := map[string]bool{}
	for _, c := range s.chunks {
		for i, id := range c.ids {
			if want[id] {
				b.Write(c.rows[i])
				found[id] = true
			}
		}
	}
	var missing []string
	for _, id := range ids {
		if !found[id] {
			missing = append(missing, id)
		}
	}
	slices.Sort(missing)
	return b.Bytes(), slices.Compact(missing)
}

// model holds every backup the run created.
type model struct {
	mu      sync.Mutex
	backups []*mBackup
	// keepLast is, per org with a retention policy, the smallest keep_last ever set.
	keepLast map[string]int32
	bodies   []*fileBody
	idSeq    atomic.Int64
}

func newModel(rng *rand.Rand, partSize int64) *model {
	m := &model{keepLast: map[string]int32{}}
	// File bodies shared by every backup: tiny, small, about a part, and multi-part.
	for i := range 24 {
		var n int
		switch {
		case i < 8:
			n = 1 + rng.IntN(4096)
		case i < 16:
			n = 64<<10 + rng.IntN(1<<20)
		case i < 20:
			n = int(partSize) + rng.IntN(1<<20)
		default:
			n = 2*int(partSize) + rng.IntN(3<<20)
		}
		d := make([]byte, n)
		for j := 0; j < n; j += 8 {
			v := rng.Uint64()
			for k := 0; k < 8 && j+k < n; k++ {
				d[j+k] = byte(v >> (8 * k))
			}
		}
		sum := sha256.Sum256(d)
		m.bodies = append(m.bodies, &fileBody{data: d, sum: hex.EncodeToString(sum[:])})
	}
	return m
}

func (m *model) add(b *mBackup) {
	m.mu.Lock()
	m.backups = append(m.backups, b)
	m.mu.Unlock()
}

// pick returns a random backup in state s (nil if none).
func (m *model) pick(rng *rand.Rand, s int, filter func(*mBackup) bool) *mBackup {
	m.mu.Lock()
	defer m.mu.Unlock()
	var c []*mBackup
	for _, b := range m.backups {
		if b.get() == s && (filter == nil || filter(b)) {
			c = append(c, b)
		}
	}
	if len(c) == 0 {
		return nil
	}
	return c[rng.IntN(len(c))]
}

func (m *model) all() []*mBackup {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.backups)
}

func (m *model) newID(prefix string) string {
	return csvgen.ID(prefix, m.idSeq.Add(1))
}

// genChunk makes one record-set chunk: a header row, rows with quoted fields (commas, quotes,
// embedded line breaks), and, in a chunk that is not the set's last, sometimes a last row
// without a line ending (issue 9 item 4: restore must keep the row boundary).
func (m *model) genChunk(rng *rand.Rand, set *mSet, seq int, rows int, parents []string, eol string, notLast bool) *mChunk {
	c := &mChunk{seq: seq}
	var body bytes.Buffer
	body.Write(set.header)
	for i := range rows {
		id := m.newID(prefixOf(set.sobject))
		var r bytes.Buffer
		r.WriteString(id)
		r.WriteByte(',')
		switch rng.IntN(6) {
		case 0:
			fmt.Fprintf(&r, "\"Name, with comma %d\"", rng.IntN(1000))
		case 1:
			fmt.Fprintf(&r, "\"Line one%sline \"\"two\"\" %d\"", eol, rng.IntN(1000))
		default:
			fmt.Fprintf(&r, "Name %d", rng.Int64())
		}
		r.WriteByte(',')
		if len(set.refs) > 0 {
			if len(parents) > 0 && rng.IntN(5) > 0 {
				r.WriteString(parents[rng.IntN(len(parents))])
			}
			r.WriteByte(',')
		}
		fmt.Fprintf(&r, "%d.%02d", rng.IntN(100000), rng.IntN(100))
		line := r.Bytes()
		last := i == rows-1
		if last && notLast && rng.IntN(6) == 0 {
			// no line ending after the last row: the stored chunk must still restore with a row
			// boundary before the next chunk's first row
			body.Write(line)
			line = append(line, eol...)
		} else {
			line = append(line, eol...)
			body.Write(line)
		}
		c.rows = append(c.rows, bytes.Clone(line))
		c.ids = append(c.ids, id)
	}
	c.body = body.Bytes()
	return c
}

func prefixOf(sobject string) string {
	switch sobject {
	case "Account":
		return "001"
	case "Contact":
		return "003"
	}
	return "a00"
}

// opLog keeps the last operations of every client, so that a violation can be shown with what
// led to it.
type opLog struct {
	mu    sync.Mutex
	start time.Time
	ring  []string
	next  int
	full  bool
}

func newOpLog(n int) *opLog { return &opLog{start: time.Now(), ring: make([]string, n)} }

func (l *opLog) add(format string, args ...any) {
	s := fmt.Sprintf("%8.3fs ", time.Since(l.start).Seconds()) + fmt.Sprintf(format, args...)
	l.mu.Lock()
	l.ring[l.next] = s
	l.next = (l.next + 1) % len(l.ring)
	if l.next == 0 {
		l.full = true
	}
	l.mu.Unlock()
}

func (l *opLog) last(n int) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var all []string
	if l.full {
		all = append(all, l.ring[l.next:]...)
	}
	all = append(all, l.ring[:l.next]...)
	if len(all) > n {
		all = all[len(all)-n:]
	}
	return all
}

// violation is an invariant the service broke.
type violation struct {
	At     time.Duration
	Check  string // which invariant
	Item   string // the issue-9 item it looks like, or "new"
	Detail string
	Ops    []string // the operations before it
}

type violations struct {
	mu   sync.Mutex
	list []violation
	log  *opLog
	file string // where each violation and its operations are appended
	seed uint64
}

func (v *violations) add(check, item, format string, args ...any) {
	vi := violation{At: time.Since(v.log.start).Round(time.Millisecond), Check: check, Item: item,
		Detail: fmt.Sprintf(format, args...), Ops: v.log.last(60)}
	v.log.add("VIOLATION %s: %s", check, vi.Detail)
	v.mu.Lock()
	v.list = append(v.list, vi)
	v.mu.Unlock()
	if v.file != "" {
		var b strings.Builder
		fmt.Fprintf(&b, "=== violation at %s (seed %d): %s [%s]\n%s\n--- last operations:\n", vi.At, v.seed, check, item, vi.Detail)
		for _, o := range vi.Ops {
			b.WriteString("  " + o + "\n")
		}
		if f, err := os.OpenFile(v.file, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644); err == nil {
			_, _ = f.WriteString(b.String())
			f.Close()
		}
	}
}

func (v *violations) snapshot() []violation {
	v.mu.Lock()
	defer v.mu.Unlock()
	return slices.Clone(v.list)
}

func shortID(s string) string {
	if len(s) > 8 {
		return s[:8]
	}
	return s
}

// firstDiff describes where two byte strings first differ.
func firstDiff(want, got []byte) string {
	n := min(len(want), len(got))
	i := 0
	for i < n && want[i] == got[i] {
		i++
	}
	lo := max(0, i-40)
	return fmt.Sprintf("want %d bytes, got %d; first difference at %d: want %q, got %q", len(want), len(got), i,
		want[lo:min(len(want), i+40)], got[lo:min(len(got), i+40)])
}
