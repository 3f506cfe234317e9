package ingest

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/google/uuid"

	"backupstore/budget"
	"backupstore/restore"
)

// TestHeaderWithLineBreakStoredEarlierRestores: a record set whose header
// row has a quoted column name holding a line break (accepted before ingest
// refused them) restores whole and by id, with no false DataLoss and without
// flagging the backup damaged: the header is found by parsing it, not at its
// first LF.
func TestHeaderWithLineBreakStoredEarlierRestores(t *testing.T) {
	testAcceptHeaderLineBreaks = true
	defer func() { testAcceptHeaderLineBreaks = false }()
	s, _ := testService(t, Config{FrameSize: 4 << 10})
	ctx := context.Background()
	b, _, err := s.CreateBackup(ctx, "t1", CreateInput{OrgID: "00D000000000001"})
	if err != nil {
		t.Fatal(err)
	}
	header := "Id,\"Na\nme\",\"Sub\r\nject\"\r\n"
	row := func(i int) string {
		return fmt.Sprintf("%s,\"name %d\",subject of row %d with some words\r\n", recID(i), i, i)
	}
	var all strings.Builder
	all.WriteString(header)
	for seq := range 2 {
		var chunk strings.Builder
		chunk.WriteString(header)
		for i := seq * 200; i < (seq+1)*200; i++ {
			chunk.WriteString(row(i))
			all.WriteString(row(i))
		}
		if _, err := s.UploadRecords(ctx, "t1", RecordsHeader{BackupID: b.ID, SObject: "Account", Sequence: int32(seq), UploadID: uuid.NewString()},
			&chunks{data: []byte(chunk.String()), size: 1000}); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := s.CommitBackup(ctx, "t1", b.ID, false); err != nil {
		t.Fatal(err)
	}
	rst, err := restore.New(restore.Config{Catalog: s.cfg.Catalog, Registry: s.cfg.Registry, Budget: budget.New(64 << 20)})
	if err != nil {
		t.Fatal(err)
	}
	read := func(ids []string) ([]byte, *restore.Summary, error) {
		var out bytes.Buffer
		sum, err := rst.ReadRecords(ctx, "t1", restore.RecordsRead{BackupID: b.ID, SObject: "Account", IDs: ids}, func(p []byte) error { out.Write(p); return nil })
		return out.Bytes(), sum, err
	}
	got, sum, err := read(nil)
	if err != nil || string(got) != all.String() || sum.Records != 400 {
		t.Fatalf("whole read: %v, %d records, %d bytes (want %d)", err, sum.Records, len(got), all.Len())
	}
	// Rows in frame 0 of either chunk (after its header) and in later frames.
	got, sum, err = read([]string{recID(0), recID(150), recID(200), recID(399)})
	if want := header + row(0) + row(150) + row(200) + row(399); err != nil || string(got) != want || len(sum.Missing) != 0 {
		t.Fatalf("by id: %v, missing %v\n got %q\nwant %q", err, sum.Missing, got, want)
	}
	bk, err := s.cfg.Catalog.GetBackup(ctx, "t1", b.ID)
	if err != nil || bk.Damaged {
		t.Fatalf("backup flagged damaged: %v %v", bk, err)
	}
}
