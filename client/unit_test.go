package client

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func writeFile(t *testing.T, name, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func acc(n int) string { return fmt.Sprintf("001%012dAAA", n) }

func TestPlanChunks(t *testing.T) {
	header := "Id,Description\n"
	rows := []string{
		acc(0) + ",short\n",
		acc(1) + ",\"" + strings.Repeat("long, \"\"quoted\"\"\n", 20) + "\"\n", // larger than the chunk size
		acc(2) + ",a\n",
		acc(3) + ",b\n",
		acc(4) + ",\"c\r\nd\"", // no terminator at the end
	}
	data := header + strings.Join(rows, "")
	file := filepath.Join(t.TempDir(), "Account.csv")
	writeFile(t, file, data)
	rs := &recordSet{name: "Account", local: file, size: int64(len(data))}
	if err := rs.plan(t.Context(), 80); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ch := range rs.chunks {
		got = append(got, data[ch.start:ch.end])
	}
	want := []string{rows[0], rows[1], rows[2] + rows[3], rows[4]}
	if rs.headerLen != int64(len(header)) || !slices.Equal(got, want) {
		t.Errorf("header %d, chunks %q\nwant %q", rs.headerLen, got, want)
	}

	// A header without rows is one chunk of just the header row.
	writeFile(t, file, "Id,Name")
	rs = &recordSet{name: "Account", local: file, size: 7}
	if err := rs.plan(t.Context(), 80); err != nil || len(rs.chunks) != 1 || rs.chunks[0] != (chunkRange{7, 7}) {
		t.Errorf("header only: %v, %v", rs.chunks, err)
	}
}

func TestRowCounter(t *testing.T) {
	for in, want := range map[string]int64{
		"Id,Name":                            0,
		"Id,Name\n":                          0,
		"Id,Name\r\na,b\r\n":                 1,
		"Id,Name\na,\"x\ny\"\nb,c":           2,
		"Id,D\na,\"he said \"\"\nhi\"\"\"\n": 1,
		"":                                   0,
		// Blank lines hold no record (a hand-edited Data Loader export).
		"Id,Name\r\na,b\r\n\r\n":  1,
		"Id,Name\n\na,b\n\nc,d":   2,
		"Id,Name\r\na,b\r\n\r":    1,
		"Id,Name\r\na,b\r":        1,
		"Id,Name\na,\"\n\n\"\n\n": 1,
	} {
		for split := range len(in) + 1 { // any message boundary
			c := &RowCounter{}
			c.Write([]byte(in[:split]))
			c.Write([]byte(in[split:]))
			if got := c.Records(); got != want {
				t.Errorf("%q split at %d: %d records, want %d", in, split, got, want)
			}
		}
	}
}

func TestIsLoopback(t *testing.T) {
	for target, loopback := range map[string]bool{
		"127.0.0.1:50051":             true,
		"localhost:50051":             true,
		"[::1]:50051":                 true,
		"dns:///localhost:50051":      true,
		"unix:///run/backupd.sock":    true,
		"backupd.internal:50051":      false,
		"10.0.0.7:50051":              false,
		"dns:///backupd.internal:443": false,
	} {
		if got := IsLoopback(target); got != loopback {
			t.Errorf("IsLoopback(%q) = %v, want %v", target, got, loopback)
		}
	}
}

// The upload ids BackupDir derives are what an interrupted run finds its
// uploads by: they must not change (these were made by backupctl's own
// version 5 UUIDs before this package used google/uuid).
func TestUploadIDsAreStable(t *testing.T) {
	if got, want := FileUploadID("bk-001", "sub/deep/big.bin"), "dbf9b5fc-714d-537d-82ff-cdbb1e474b67"; got != want {
		t.Errorf("FileUploadID = %s, want %s", got, want)
	}
	if got, want := RecordsUploadID("bk-001", "Contact", 1), "3c52335c-a2e9-505c-b68f-813d9dd96e89"; got != want {
		t.Errorf("RecordsUploadID = %s, want %s", got, want)
	}
}
