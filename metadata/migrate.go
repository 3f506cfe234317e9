package metadata

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
)

//go:embed migrations
var migrationFS embed.FS

// step is one migration step: a single DDL statement.
type step struct {
	version int64
	name    string // file name without .sql, e.g. "0002_storages"
	sql     string
}

// loadSteps reads migrations/<dialect>/NNNN_name.sql in version order. It rejects gaps, duplicate
// versions and files holding more than one statement (MySQL commits each DDL statement on its
// own, so a step of two statements could half-apply and not be re-runnable).
func loadSteps(fsys fs.FS, dialect string) ([]step, error) {
	dir := path.Join("migrations", dialect)
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, err
	}
	var steps []step
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".sql")
		if !ok || e.IsDir() {
			continue
		}
		num, _, ok := strings.Cut(name, "_")
		v, err := strconv.ParseInt(num, 10, 64)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("%s/%s: name must be NNNN_description.sql", dir, e.Name())
		}
		b, err := fs.ReadFile(fsys, path.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		stmt, err := oneStatement(string(b))
		if err != nil {
			return nil, fmt.Errorf("%s/%s: %w", dir, e.Name(), err)
		}
		steps = append(steps, step{version: v, name: name, sql: stmt})
	}
	sort.Slice(steps, func(i, j int) bool { return steps[i].version < steps[j].version })
	for i, s := range steps {
		if s.version != int64(i+1) {
			return nil, fmt.Errorf("%s: step %s: versions must run 1, 2, 3… without gaps or repeats", dir, s.name)
		}
	}
	return steps, nil
}

// oneStatement drops "--" comment lines and a trailing semicolon, and fails unless exactly one
// statement remains. (Our DDL has no string literals holding semicolons.)
func oneStatement(text string) (string, error) {
	var lines []string
	for _, l := range strings.Split(text, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "--") {
			lines = append(lines, l)
		}
	}
	stmt := strings.TrimSpace(strings.Join(lines, "\n"))
	stmt = strings.TrimSpace(strings.TrimSuffix(stmt, ";"))
	switch {
	case stmt == "":
		return "", errors.New("no statement")
	case strings.Contains(stmt, ";"):
		return "", errors.New("more than one statement (one DDL statement per step)")
	}
	return stmt, nil
}

// migrate applies every step not yet recorded in schema_migrations, in order, on one connection
// while holding the dialect's migration lock. Each step's version is recorded right after the step
// succeeds — in the same transaction where DDL is transactional (SQLite); right after it where the
// DDL commits on its own (MySQL). A crash between the two leaves a step applied but unrecorded;
// the next start re-runs it, and steps are written to be re-runnable (IF NOT EXISTS, or an
// "already exists" error the dialect recognises).
func migrate(ctx context.Context, db *sql.DB, d dialect) error {
	steps, err := loadSteps(migrationFS, d.name())
	if err != nil {
		return fmt.Errorf("metadata.migrate: %w", err)
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("metadata.migrate: %w", err)
	}
	defer conn.Close()
	unlock, err := d.lockMigrations(ctx, conn)
	if err != nil {
		return fmt.Errorf("metadata.migrate: %w", err)
	}
	defer unlock()
	if _, err := conn.ExecContext(ctx, d.migrationsTable()); err != nil {
		return fmt.Errorf("metadata.migrate: schema_migrations: %w", err)
	}
	for _, s := range steps {
		if err := applyStep(ctx, conn, d, s); err != nil {
			return fmt.Errorf("metadata.migrate: step %s: %w", s.name, err)
		}
	}
	return nil
}

func applyStep(ctx context.Context, conn *sql.Conn, d dialect, s step) error {
	const (
		applied = "SELECT COUNT(*) FROM schema_migrations WHERE version = ?"
		record  = "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)"
	)
	if d.transactionalDDL() {
		tx, err := conn.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		var n int
		if err := tx.QueryRowContext(ctx, applied, s.version).Scan(&n); err != nil || n > 0 {
			return err
		}
		if _, err := tx.ExecContext(ctx, s.sql); err != nil && !d.alreadyApplied(err) {
			return err
		}
		if _, err := tx.ExecContext(ctx, record, s.version, s.name, now().UnixMicro()); err != nil {
			return err
		}
		return tx.Commit()
	}
	var n int
	if err := conn.QueryRowContext(ctx, applied, s.version).Scan(&n); err != nil || n > 0 {
		return err
	}
	if _, err := conn.ExecContext(ctx, s.sql); err != nil && !d.alreadyApplied(err) {
		return err
	}
	_, err := conn.ExecContext(ctx, record, s.version, s.name, now().UnixMicro())
	return err
}
