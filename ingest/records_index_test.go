package ingest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/uuid"

	"backupstore/csvscan/csvgen"
	"backupstore/fault"
	"backupstore/recindex"
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
