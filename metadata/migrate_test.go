package metadata

import (
	"testing"
	"testing/fstest"

	"github.com/google/go-cmp/cmp"
)

// TestMigrationFiles checks the embedded steps: both dialects have the same numbered steps, each
// one statement.
func TestMigrationFiles(t *testing.T) {
	names := map[string][]string{}
	for _, d := range []dialect{mysqlDialect{}, sqliteDialect{}} {
		steps, err := loadSteps(migrationFS, d.name())
		if err != nil {
			t.Fatalf("%s: %v", d.name(), err)
		}
		for _, s := range steps {
			names[d.name()] = append(names[d.name()], s.name)
		}
	}
	if len(names["mysql"]) == 0 {
		t.Fatal("no migrations embedded")
	}
	if d := cmp.Diff(names["mysql"], names["sqlite"]); d != "" {
		t.Errorf("steps differ between dialects (-mysql +sqlite):\n%s", d)
	}
}

func TestLoadStepsRejects(t *testing.T) {
	for name, fsys := range map[string]fstest.MapFS{
		"two statements": {"migrations/x/0001_a.sql": {Data: []byte("CREATE TABLE a (x INT);\nCREATE TABLE b (x INT);")}},
		"gap":            {"migrations/x/0001_a.sql": {Data: []byte("CREATE TABLE a (x INT)")}, "migrations/x/0003_c.sql": {Data: []byte("CREATE TABLE c (x INT)")}},
		"repeat":         {"migrations/x/0001_a.sql": {Data: []byte("CREATE TABLE a (x INT)")}, "migrations/x/0001_b.sql": {Data: []byte("CREATE TABLE b (x INT)")}},
		"bad name":       {"migrations/x/first.sql": {Data: []byte("CREATE TABLE a (x INT)")}},
		"empty":          {"migrations/x/0001_a.sql": {Data: []byte("-- nothing; here\n")}},
	} {
		if _, err := loadSteps(fsys, "x"); err == nil {
			t.Errorf("%s: loadSteps succeeded", name)
		}
	}
	steps, err := loadSteps(fstest.MapFS{"migrations/x/0001_a.sql": {Data: []byte("-- a; comment\nCREATE TABLE a (x INT);\n")}}, "x")
	if err != nil || len(steps) != 1 || steps[0].sql != "CREATE TABLE a (x INT)" {
		t.Errorf("loadSteps = %+v, %v", steps, err)
	}
}
