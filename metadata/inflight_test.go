package metadata_test

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"testing"
	"time"

	"backupstore/metadata"
)

// waitLockWait waits until some transaction of the server is waiting for a lock: the reader under
// test has reached the row the open transaction holds (a condition, not a sleep for ordering).
func waitLockWait(t *testing.T, raw *sql.DB) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var n int
		if err := raw.QueryRow(`SELECT COUNT(*) FROM information_schema.innodb_trx t
 JOIN information_schema.processlist p ON p.id = t.trx_mysql_thread_id
 WHERE t.trx_state = 'LOCK WAIT' AND p.db = DATABASE()`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the reader never waited for the open transaction's lock; this database's sessions: %s", sessions(raw))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// sessions describes the test database's connections (state, running statement, InnoDB
// transaction state) for a failure message: what the reader was doing instead of waiting.
func sessions(raw *sql.DB) string {
	rows, err := raw.Query(`SELECT p.id, p.command, COALESCE(p.state, ''), COALESCE(LEFT(p.info, 80), ''), COALESCE(t.trx_state, 'no trx')
 FROM information_schema.processlist p LEFT JOIN information_schema.innodb_trx t ON t.trx_mysql_thread_id = p.id
 WHERE p.db = DATABASE()`)
	if err != nil {
		return err.Error()
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id int64
		var cmd, state, info, trx string
		if err := rows.Scan(&id, &cmd, &state, &info, &trx); err != nil {
			return err.Error()
		}
		out = append(out, fmt.Sprintf("[%d %s %q %q %s]", id, cmd, state, info, trx))
	}
	return strings.Join(out, " ")
}

// A commit still in flight on another connection (its OK not yet back) is waited for, not read
// past: SettledUpload and UnclaimedKeys see its outcome, so nothing is deleted that it makes
// referenced.
func TestMySQLSettledReadsWaitForInFlightCommit(t *testing.T) {
	ctx := t.Context()
	s, raw := openMySQL(t)
	b, _, err := s.CreateBackup(ctx, &metadata.Backup{TenantID: "t1", ID: "b1", OrgID: "00D000000000001AAA"})
	if err != nil {
		t.Fatal(err)
	}
	u := &metadata.Upload{TenantID: "t1", BackupID: b.ID, UploadID: "u1", Kind: metadata.KindFile,
		ObjectID: "o1", ObjectKey: "t1/files/o1", DeclaredSize: -1}
	if err := s.CreateUpload(ctx, u); err != nil {
		t.Fatal(err)
	}

	t.Run("SettledUpload", func(t *testing.T) {
		tx, err := raw.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec("UPDATE uploads SET state = 'COMMITTED' WHERE tenant_id = 't1' AND backup_id = 'b1' AND upload_id = 'u1'"); err != nil {
			t.Fatal(err)
		}
		got := make(chan *metadata.Upload, 1)
		go func() {
			cur, err := s.SettledUpload(context.Background(), "t1", "b1", "u1")
			if err != nil {
				t.Error(err)
			}
			got <- cur
		}()
		waitLockWait(t, raw)
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		if cur := <-got; cur == nil || cur.State != metadata.UploadCommitted {
			t.Fatalf("SettledUpload = %+v, want the in-flight commit's COMMITTED", cur)
		}
	})

	t.Run("UnclaimedKeys", func(t *testing.T) {
		tx, err := raw.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(`INSERT INTO objects (tenant_id, id, org_id, storage_id, backup_id, object_key, kind, size, sha256, etag, damaged, created_at)
 VALUES ('t1', 'o2', '00D000000000001AAA', NULL, 'b1', 't1/files/o2', 'file', 1, '', '', 0, 0)`); err != nil {
			t.Fatal(err)
		}
		got := make(chan []string, 1)
		go func() {
			keys, err := s.UnclaimedKeys(context.Background(), "t1", []string{"t1/files/o2", "t1/files/stray"})
			if err != nil {
				t.Error(err)
			}
			got <- keys
		}()
		waitLockWait(t, raw)
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		if keys := <-got; len(keys) != 1 || keys[0] != "t1/files/stray" {
			t.Fatalf("UnclaimedKeys = %v, want only the stray key (the other was being committed)", keys)
		}
	})
}
