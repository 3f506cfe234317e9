package server_test

import (
	"context"
	"os"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "backupstore/proto/backupstore/v1"
)

// A tenant that reads a damaged object over and over (its own bucket holds
// a corrupt chunk) gets DataLoss every time, but only the first read writes
// the damage flags: later reads must not turn into catalog writes. A SQLite
// trigger refuses any further write of the flags, so a second write would
// show as a logged failure to flag.
func TestRepeatedReadsOfDamagedObjectWriteFlagsOnce(t *testing.T) {
	e := newEnv(t, "sqlite")
	b, data, orig := e.storedAccounts(t, 200, func(int) string { return "name" })
	corrupt := append([]byte(nil), orig...)
	corrupt[len(corrupt)/2] ^= 0xff
	if err := os.WriteFile(data, corrupt, 0o600); err != nil {
		t.Fatal(err)
	}
	read := func() {
		t.Helper()
		_, _, err := e.readRecords(t, as(tokenA), &pb.ReadRecordsRequest{BackupId: b.Id, Sobject: "Account"})
		if status.Code(err) != codes.DataLoss {
			t.Fatalf("read of a corrupt chunk: %v, want DataLoss", err)
		}
	}
	read()
	var objects, backups int
	if err := e.db.QueryRow("SELECT COUNT(*) FROM objects WHERE damaged").Scan(&objects); err != nil {
		t.Fatal(err)
	}
	if err := e.db.QueryRow("SELECT COUNT(*) FROM backups WHERE damaged").Scan(&backups); err != nil {
		t.Fatal(err)
	}
	if objects != 1 || backups != 1 {
		t.Fatalf("after the first read %d objects and %d backups are flagged damaged, want 1 and 1", objects, backups)
	}
	for _, table := range []string{"objects", "backups"} {
		if _, err := e.db.ExecContext(context.Background(), "CREATE TRIGGER no_second_flag_"+table+" BEFORE UPDATE OF damaged ON "+table+
			" BEGIN SELECT RAISE(ABORT, 'damage flag written again'); END"); err != nil {
			t.Fatal(err)
		}
	}
	for range 3 {
		read()
	}
	if logs := e.logs.String(); strings.Contains(logs, "flagging object damaged") || strings.Contains(logs, "flagging backup damaged") {
		t.Fatalf("a read of an object already flagged damaged wrote the flags again:\n%s", logs)
	}
}
