package client_test

import (
	"os/exec"
	"strings"
	"testing"
)

// The library is a client like any other: of this module it may use only
// the generated API, the stdlib-only CSV scanner (and its id helper), the
// frame decoder of passthrough reads (csvframes) and the API's aliasing codec
// (internal/wirecodec), never the server's packages (see doc.go).
func TestImportsOnlyTheAPI(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "backupstore/client").Output()
	if err != nil {
		t.Fatal(err)
	}
	allowed := func(p string) bool {
		return p == "backupstore/client" || p == "backupstore/csvscan" || p == "backupstore/sfid" || p == "backupstore/csvframes" ||
			p == "backupstore/internal/wirecodec" ||
			strings.HasPrefix(p, "backupstore/proto/")
	}
	for p := range strings.FieldsSeq(string(out)) {
		if strings.HasPrefix(p, "backupstore/") && !allowed(p) {
			t.Errorf("client depends on %s", p)
		}
	}
}
