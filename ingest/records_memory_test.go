package ingest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/klauspost/compress/zstd"

	"backupstore/budget"
	"backupstore/csvscan"
	"backupstore/fault"
	"backupstore/metadata"
	"backupstore/registry"
	"backupstore/secrets"
	"backupstore/storage"
)

// testService is an ingest Service on an embedded SQLite catalog and a local
// directory store (seen by the service through wrap, if given).
func testService(t *testing.T, cfg Config, wrap ...func(storage.Store) storage.Store) (*Service, storage.Store) {
	t.Helper()
	ctx := context.Background()
	cat, err := metadata.Open(ctx, "sqlite", filepath.Join(t.TempDir(), "catalog.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cat.Close() })
	key := make([]byte, 32)
	rand.Read(key)
	ring, _ := secrets.NewKeyring(key)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	local, err := storage.NewLocal(storage.LocalConfig{Root: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	var svc storage.Store = local
	for _, w := range wrap {
		svc = w(svc)
	}
	reg, err := registry.New(registry.Config{Catalog: cat, Keyring: ring, Logger: log, ServiceStore: svc, AllowEndpoints: "127.0.0.1/32"})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Catalog, cfg.Registry, cfg.Logger, cfg.SpoolDir = cat, reg, log, t.TempDir()
	if cfg.Budget == nil {
		cfg.Budget = budget.New(1 << 30)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s, local
}

// chunks is a Source of fixed-size messages.
type chunks struct {
	data []byte
	size int
}

func (c *chunks) Next() ([]byte, bool, error) {
	if len(c.data) == 0 {
		return nil, true, nil
	}
	n := min(c.size, len(c.data))
	p := c.data[:n]
	c.data = c.data[n:]
	return p, false, nil
}

func letters(n int) []byte {
	const abc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	b := make([]byte, n)
	rand.Read(b)
	for i := range b {
		b[i] = abc[b[i]&63]
	}
	return b
}

func recID(n int) string { return fmt.Sprintf("001%012d", n) }

// decodeChunk reads a stored chunk object back to its input bytes.
func decodeChunk(t *testing.T, st storage.Store, key string) []byte {
	t.Helper()
	rc, err := st.Get(context.Background(), key, 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	dec, err := zstd.NewReader(rc)
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	got, err := io.ReadAll(dec)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// TestRecordsMemoryWithinReservation feeds rows near --max-row-bytes (and, in
// the second case, a header row larger than a frame) and checks that the
// buffer capacity the stream holds never exceeds what it reserved from the
// budget, and that the chunk is still stored byte for byte. Before the
// reservation was sized by recMem, frame buffers grew to the row size each
// (seven of them) and part buffers past their size.
func TestRecordsMemoryWithinReservation(t *testing.T) {
	const maxRow = 1 << 20
	cfg := Config{FrameSize: 64 << 10, PartSize: 5 << 20, CompressWorkers: 2, IndexRunBytes: 1 << 20,
		Limits: csvscan.Limits{MaxRowBytes: maxRow, MaxFieldBytes: maxRow}}
	wide := strings.Repeat(",", 7000) // the second case's rows: 7001 empty columns, then Body
	var cols strings.Builder
	cols.WriteString("Id")
	for i := range 7000 {
		fmt.Fprintf(&cols, ",Column_%05d", i)
	}
	for _, tc := range []struct {
		name, header, pad string
	}{
		{"big rows", "Id,Body\r\n", ""},
		{"header larger than a frame", cols.String() + ",Body\r\n", wide},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, st := testService(t, cfg)
			var peak, reserved int64
			testHookRecordsMemory = func(p, r int64) { peak, reserved = p, r }
			defer func() { testHookRecordsMemory = nil }()
			var in bytes.Buffer
			in.WriteString(tc.header)
			for i := range 24 {
				size := maxRow - 64 - len(tc.pad) // near the limit
				if i%3 == 1 {
					size = 100 // small rows between: frames fill, then must be cut before a big one
				}
				fmt.Fprintf(&in, "%s%s,%s\r\n", recID(i), tc.pad, letters(size))
			}
			ctx := context.Background()
			b, _, err := s.CreateBackup(ctx, "t1", CreateInput{OrgID: "00D000000000001"})
			if err != nil {
				t.Fatal(err)
			}
			res, err := s.UploadRecords(ctx, "t1", RecordsHeader{BackupID: b.ID, SObject: "Account", UploadID: uuid.NewString()},
				&chunks{data: in.Bytes(), size: 48 << 10})
			if err != nil {
				t.Fatal(err)
			}
			if res.Records != 24 {
				t.Fatalf("%d records, want 24", res.Records)
			}
			if got := decodeChunk(t, st, res.DataKey); !bytes.Equal(got, in.Bytes()) {
				t.Fatalf("stored chunk differs from the input (%d bytes, want %d)", len(got), in.Len())
			}
			if reserved != s.StreamReservation() {
				t.Fatalf("reserved %d, StreamReservation %d", reserved, s.StreamReservation())
			}
			t.Logf("peak buffers %d bytes of %d reserved", peak, reserved)
			if peak > reserved {
				t.Fatalf("the stream held %d bytes of buffers, more than the %d it reserved", peak, reserved)
			}
			// The rows are near the limit: the oversized slot and part growth were used.
			if base := int64(newRecMem(&s.cfg).frames) * int64(cfg.FrameSize); peak < base+maxRow {
				t.Fatalf("peak %d: the test did not make the stream hold a big row", peak)
			}
		})
	}
}

// TestRecordsHeaderWithLineBreakRefused: a quoted header column holding a
// line break is refused, naming the column.
func TestRecordsHeaderWithLineBreakRefused(t *testing.T) {
	s, _ := testService(t, Config{})
	ctx := context.Background()
	b, _, err := s.CreateBackup(ctx, "t1", CreateInput{OrgID: "00D000000000001"})
	if err != nil {
		t.Fatal(err)
	}
	in := "Id,\"Na\nme\"\n" + recID(1) + ",a\n"
	_, err = s.UploadRecords(ctx, "t1", RecordsHeader{BackupID: b.ID, SObject: "Account", UploadID: uuid.NewString()},
		&chunks{data: []byte(in), size: 5})
	var fe *fault.Error
	if !errors.As(err, &fe) || fe.Kind != fault.InvalidArgument || fe.Reason != csvscan.BadHeader ||
		len(fe.Violations) != 1 || fe.Violations[0].Field != "row 1, column Na\nme" {
		t.Fatalf("err = %#v, want InvalidArgument BAD_HEADER naming the column", err)
	}
}
