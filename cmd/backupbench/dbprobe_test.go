package main

import (
	"context"
	"database/sql"
	"strings"
	"testing"
	"time"

	"backupstore/internal/testenv"
)

// A probe splits MariaDB's CPU by thread: threads serving a connection at either end count as
// statements, the rest as background; a thread that started meanwhile counts from zero.
func TestDBProbeSince(t *testing.T) {
	t0 := time.Unix(1000, 0)
	before := dbProbeSnap{at: t0, tasks: map[int]float64{1: 10, 2: 5, 3: 1}, conns: map[int]bool{1: true},
		status: map[string]float64{"Handler_read_key": 100, "Innodb_buffer_pool_reads": 7, "Innodb_history_list_length": 4}}
	after := dbProbeSnap{at: t0.Add(1500 * time.Millisecond), tasks: map[int]float64{1: 11.5, 2: 5.25, 3: 1, 4: 0.5}, conns: map[int]bool{4: true},
		status: map[string]float64{"Handler_read_key": 150, "Innodb_buffer_pool_reads": 9, "Innodb_history_list_length": 40}}
	got := after.since(before, 10)
	for _, want := range []string{"MariaDB in 1.5s: connections 2.00 CPU-s, background 0.25", "per call: read_key 5,", "page_reads 0.2,", "history 4→40"} {
		if !strings.Contains(got, want) {
			t.Errorf("since = %q\nwant it to contain %q", got, want)
		}
	}
	if got := after.since(before, 0); !strings.Contains(got, "counters: read_key 50,") {
		t.Errorf("since without calls = %q, want totals", got)
	}
}

// statFileCPU reads this process's own stat file (utime+stime past the parenthesised name).
func TestStatFileCPU(t *testing.T) {
	deadline := time.Now().Add(50 * time.Millisecond)
	for x := 0; time.Now().Before(deadline); x++ {
		_ = x * x
	}
	if got := statFileCPU("/proc/self/stat"); got <= 0 {
		t.Errorf("statFileCPU(/proc/self/stat) = %v, want > 0 after spinning", got)
	}
	if got := statFileCPU("/proc/self/no-such-file"); got != 0 {
		t.Errorf("statFileCPU of a missing file = %v, want 0", got)
	}
}

// The scale benchmark warns when the buffer pool was grown by SET GLOBAL. The test server's
// pool comes from its startup (this test does not change a global of the shared server), so
// the origin query must work against it and name a startup origin, and only SQL warns.
func TestPoolSizeOrigin(t *testing.T) {
	db, err := sql.Open("mysql", testenv.MySQLDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	origin, err := poolSizeOrigin(context.Background(), db)
	if err != nil {
		t.Fatalf("poolSizeOrigin: %v", err)
	}
	switch origin {
	case "COMPILE-TIME", "CONFIG", "COMMAND-LINE", "AUTO", "ENVIRONMENT":
		if note := poolResizedNote(origin); note != "" {
			t.Errorf("poolResizedNote(%q) = %q, want none", origin, note)
		}
	case "SQL":
		t.Logf("the test server's pool was set by SET GLOBAL: the benchmarks would warn")
	default:
		t.Errorf("poolSizeOrigin = %q, want one of MariaDB's GLOBAL_VALUE_ORIGIN values", origin)
	}
	if note := poolResizedNote("SQL"); !strings.Contains(note, "SET GLOBAL") {
		t.Errorf("poolResizedNote(SQL) = %q, want a warning naming SET GLOBAL", note)
	}
}
