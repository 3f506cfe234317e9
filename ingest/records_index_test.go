package ingest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"backupstore/csvscan/csvgen"
	"backupstore/fault"
	"backupstore/recindex"
	"backupstore/storage"
)

// TestRecordsDuplicateID: an id repeated in a chunk is InvalidArgument DUPLICATE_ID naming
// the later row, whether the first one is still in the index's run in memory (refused at
// once, ids in order or not) or in a run already written out (found by the index's Finish,
// which used to reach the client as a bare error).
func TestRecordsDuplicateID(t *testing.T) {
	// recindex.MinRunBytes holds ~100 records per run.
	s, _ := testService(t, Config{IndexRunBytes: recindex.MinRunBytes})
	ctx := context.Background()
	b, _, err := s.CreateBackup(ctx, "t1", CreateInput{OrgID: "00D000000000001"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		ids      []int64 // rows 2.. hold these ids
		wantRow  int
		firstRow int
	}{
		{"in order, repeat of the last", []int64{1, 2, 3, 3, 4}, 5, 4},
		{"in order, then an earlier id", []int64{1, 2, 3, 4, 2, 5}, 6, 3},
		{"out of order", []int64{5, 1, 9, 3, 9}, 6, 4},
		{"in an earlier run", append(seq(1, 2000), 7), 2002, 8},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var in strings.Builder
			in.WriteString("Id,Name\n")
			for _, n := range tc.ids {
				fmt.Fprintf(&in, "%s,n%d\n", csvgen.ID("001", n), n)
			}
			_, err := s.UploadRecords(ctx, "t1", RecordsHeader{BackupID: b.ID, SObject: "Account", UploadID: uuid.NewString()},
				&chunks{data: []byte(in.String()), size: 1000})
			var fe *fault.Error
			if !errors.As(err, &fe) || fe.Kind != fault.InvalidArgument || fe.Reason != "DUPLICATE_ID" || len(fe.Violations) != 1 {
				t.Fatalf("err = %v, want InvalidArgument DUPLICATE_ID", err)
			}
			if got, want := fe.Violations[0].Field, fmt.Sprintf("row %d, column Id", tc.wantRow); got != want {
				t.Errorf("violation field %q, want %q", got, want)
			}
			if want := fmt.Sprintf("first at row %d", tc.firstRow); !strings.Contains(fe.Violations[0].Description, want) {
				t.Errorf("violation %q does not say %q", fe.Violations[0].Description, want)
			}
		})
	}
}

func seq(from, to int64) []int64 {
	var s []int64
	for n := from; n <= to; n++ {
		s = append(s, n)
	}
	return s
}

// failPut is a store whose Put of a key with the given suffix fails. With indexFirst set, that
// Put first waits until an index object was stored (or 10 s pass: the index is not being
// stored beside it), and indexSeen says whether it was.
type failPut struct {
	storage.Store
	suffix     string
	indexFirst bool
	stored     chan struct{} // closed by the first successful PUT of an index
	once       sync.Once
	indexSeen  bool
}

func (f *failPut) Put(ctx context.Context, key string, r io.Reader) (storage.ObjectInfo, error) {
	if strings.HasSuffix(key, f.suffix) {
		if f.indexFirst {
			select {
			case <-f.stored:
				f.indexSeen = true
			case <-time.After(10 * time.Second):
			}
		}
		return storage.ObjectInfo{}, errors.New("test: put refused")
	}
	info, err := f.Store.Put(ctx, key, r)
	if err == nil && strings.HasSuffix(key, ".idx") {
		f.once.Do(func() { close(f.stored) })
	}
	return info, err
}

// TestRecordsIndexStoredBesideData: the index is finished and PUT while the data object is
// completed; when either fails, the chunk fails (Unavailable, or DUPLICATE_ID when the index
// found a repeated id) and neither object is left in the store.
func TestRecordsIndexStoredBesideData(t *testing.T) {
	ctx := context.Background()
	var in strings.Builder
	in.WriteString("Id,Name\n")
	for n := range int64(3000) {
		fmt.Fprintf(&in, "%s,n%d\n", csvgen.ID("001", n), n)
	}
	dup := in.String() + csvgen.ID("001", 5) + ",again\n" // found by the index's Finish
	for _, tc := range []struct {
		name, suffix, input string
		slowData            bool // the data PUT fails only after the index is stored
		kind                fault.Kind
		reason              string
	}{
		{"index PUT fails", ".idx", in.String(), false, fault.Unavailable, ""},
		{"data PUT fails after the index is stored", ".csv.zst", in.String(), true, fault.Unavailable, ""},
		{"data PUT fails, duplicate id", ".csv.zst", dup, false, fault.InvalidArgument, "DUPLICATE_ID"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fp := &failPut{suffix: tc.suffix, indexFirst: tc.slowData, stored: make(chan struct{})}
			s, st := testService(t, Config{IndexRunBytes: recindex.MinRunBytes},
				func(st storage.Store) storage.Store { fp.Store = st; return fp })
			b, _, err := s.CreateBackup(ctx, "t1", CreateInput{OrgID: "00D000000000001"})
			if err != nil {
				t.Fatal(err)
			}
			_, err = s.UploadRecords(ctx, "t1", RecordsHeader{BackupID: b.ID, SObject: "Account", UploadID: uuid.NewString()},
				&chunks{data: []byte(tc.input), size: 1 << 20})
			var fe *fault.Error
			if !errors.As(err, &fe) || fe.Kind != tc.kind || (tc.reason != "" && fe.Reason != tc.reason) {
				t.Fatalf("err = %v, want %v %s", err, tc.kind, tc.reason)
			}
			var left []string
			if err := st.List(ctx, "", func(o storage.ObjectInfo) error { left = append(left, o.Key); return nil }); err != nil {
				t.Fatal(err)
			}
			if len(left) > 0 {
				t.Fatalf("objects left in the store: %v", left)
			}
			if tc.slowData && !fp.indexSeen {
				t.Fatal("the index was not stored while the data object was being stored")
			}
		})
	}
}
