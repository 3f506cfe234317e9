package layering

import (
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const module = "backupstore"

// pkg is what go list says of one package.
type pkg struct {
	ImportPath string
	Standard   bool
	Imports    []string // direct, not tests
	Deps       []string // transitive, not tests
}

// rule is one package's import rule as its doc comment states it.
type rule struct {
	pkg string // relative to the module
	// may lists the backupstore packages pkg may import directly; nil: any that no other rule
	// forbids. A "/..." suffix covers a tree.
	may []string
	// stdOnly: besides may, only the standard library, transitively.
	stdOnly bool
	// never lists backupstore packages pkg must not reach, even transitively.
	never []string
	doc   string // where the rule is written
}

// domain are the packages below the transport: they never import server, the generated API or
// a command (DESIGN.md "Dependencies point one way").
var domain = []string{"budget", "csvframes", "csvscan", "fault", "ingest", "maintenance", "metadata", "pack", "recindex",
	"registry", "restore", "retention", "secrets", "sfid", "storage"}

// serverSide are the packages a client of the API has no business importing.
var serverSide = []string{"server", "internal/app", "registry", "ingest", "restore", "maintenance", "retention",
	"storage", "metadata", "budget", "secrets"}

var rules = []rule{
	{pkg: "budget", may: []string{}, doc: "budget/budget.go: imports nothing from backupstore"},
	{pkg: "secrets", may: []string{}, doc: "secrets/secrets.go: imports nothing from backupstore"},
	{pkg: "fault", may: []string{}, doc: "fault/*.go: imports nothing from backupstore"},
	{pkg: "retention", may: []string{}, doc: "retention is pure: no clock, no I/O (retention/retention.go)"},
	{pkg: "sfid", may: []string{}, stdOnly: true, doc: "sfid/doc.go: a leaf, the standard library only"},
	{pkg: "recindex", may: []string{}, stdOnly: true, doc: "recindex/doc.go: a leaf, the standard library only"},
	{pkg: "pack", may: []string{}, stdOnly: true, doc: "pack/doc.go: a leaf, the standard library only"},
	{pkg: "csvscan", may: []string{"sfid"}, stdOnly: true, doc: "csvscan/doc.go: sfid and the standard library only"},
	{pkg: "csvframes", may: []string{"csvscan", "sfid"}, doc: "csvframes/csvframes.go: csvscan, zstd and the standard library only"},
	{pkg: "internal/bytesize", may: []string{}, stdOnly: true, doc: "internal/bytesize: the standard library only"},
	{pkg: "internal/testenv", may: []string{}, doc: "internal/testenv: no backupstore package"},
	{pkg: "internal/wirecodec", may: []string{"proto/..."}, doc: "internal/wirecodec/doc.go: only the generated API package"},
	{pkg: "metadata", may: []string{}, doc: "metadata/doc.go: no other backupstore package"},
	{pkg: "storage", may: []string{}, doc: "storage/doc.go: at the bottom, no other backupstore package"},
	{pkg: "registry", may: []string{"storage", "metadata", "secrets", "fault"}, never: []string{"server"},
		doc: "registry/doc.go: storage, metadata, secrets and fault; never server"},
	{pkg: "ingest", may: []string{"storage", "metadata", "registry", "budget", "csvscan", "recindex", "sfid", "fault", "pack"},
		never: []string{"server"}, doc: "ingest/doc.go"},
	{pkg: "restore", may: []string{"storage", "metadata", "registry", "recindex", "csvframes", "csvscan", "sfid", "budget", "fault"},
		never: []string{"server", "ingest"}, doc: "restore/restore.go"},
	// The doc names no sfid, which policy.go uses to normalise org ids: the doc is behind
	// (a leaf, like fault); see the report of issue 11.
	{pkg: "maintenance", may: []string{"storage", "metadata", "registry", "recindex", "retention", "fault", "sfid", "pack", "budget"},
		never: []string{"server", "ingest", "restore"}, doc: "maintenance/maintenance.go"},
	{pkg: "server", never: []string{"client", "internal/app", "internal/testenv"},
		doc: "server/doc.go: domain packages, storage, metadata, secrets, fault; nothing below it imports server"},
	{pkg: "client", never: serverSide, doc: "issue 11: client is a client like any other, no server-side package"},
	// The doc says "only the generated API package, gRPC, protobuf and the standard library";
	// the code also uses internal/bytesize (flag values) and csvscan, and now the client library.
	{pkg: "cmd/backupctl", may: []string{"proto/...", "client", "internal/bytesize", "csvscan"}, never: serverSide,
		doc: "cmd/backupctl/doc.go: a client like any other, never the server's packages"},
	// The doc says "through the API only" (proto, storage for its baselines, csvgen, recindex);
	// the code also imports internal/bytesize; internal/testenv's doc allows it testenv's
	// child-process helpers. The upload response header it reads is the API's
	// (pb.UploadHeader), not server's. -tags benchprofile wires the whole service and is not
	// checked here.
	{pkg: "cmd/backupbench", may: []string{"proto/...", "client", "csvframes", "csvscan", "sfid", "storage", "csvscan/csvgen", "recindex", "internal/bytesize", "internal/testenv"},
		doc: "cmd/backupbench/main.go: through the API only"},
}

// list runs go list over the whole module.
func list(t *testing.T) map[string]*pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-deps", "-json=ImportPath,Standard,Imports,Deps", "./...")
	cmd.Dir = filepath.Join("..", "..")
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("go list: %v\n%s", err, ee.Stderr)
		}
		t.Fatalf("go list: %v", err)
	}
	pkgs := map[string]*pkg{}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("go list output: %v", err)
		}
		pkgs[p.ImportPath] = &p
	}
	return pkgs
}

// rel returns path relative to the module and whether it is one of the module's packages.
func rel(path string) (string, bool) {
	if path == module {
		return "", true
	}
	r, ok := strings.CutPrefix(path, module+"/")
	return r, ok
}

// match reports whether the module-relative path r is pattern or, for "x/...", in x's tree.
func match(r, pattern string) bool {
	if tree, ok := strings.CutSuffix(pattern, "/..."); ok {
		return r == tree || strings.HasPrefix(r, tree+"/")
	}
	return r == pattern
}

func matchAny(r string, patterns []string) bool {
	return slices.ContainsFunc(patterns, func(p string) bool { return match(r, p) })
}

// violations checks every package of the module against the rules and returns what breaks
// them, one line each.
func violations(pkgs map[string]*pkg) []string {
	var bad []string
	add := func(p *pkg, what, dep, why string) {
		r, _ := rel(p.ImportPath)
		bad = append(bad, r+" "+what+" "+dep+" ("+why+")")
	}
	for _, p := range pkgs {
		self, ours := rel(p.ImportPath)
		if !ours {
			continue
		}
		for _, d := range p.Deps {
			if r, ok := rel(d); ok && match(r, "cmd/...") {
				add(p, "depends on", r, "nothing imports a command")
			}
		}
		if matchAny(self, domain) {
			for _, d := range p.Deps {
				if r, ok := rel(d); ok && (matchAny(r, []string{"server", "proto/...", "cmd/...", "client", "internal/app"})) {
					add(p, "depends on", r, "a domain package never imports the transport, the API, a client or the wiring")
				}
			}
		}
		for _, ru := range rules {
			if self != ru.pkg {
				continue
			}
			for _, d := range p.Imports {
				r, ok := rel(d)
				switch {
				case ok && ru.may != nil && !matchAny(r, ru.may):
					add(p, "imports", r, ru.doc)
				case !ok && ru.stdOnly && pkgs[d] != nil && !pkgs[d].Standard:
					add(p, "imports", d, ru.doc)
				}
			}
			for _, d := range p.Deps {
				r, ok := rel(d)
				switch {
				case ok && matchAny(r, ru.never):
					add(p, "depends on", r, ru.doc)
				case !ok && ru.stdOnly && pkgs[d] != nil && !pkgs[d].Standard:
					add(p, "depends on", d, ru.doc)
				}
			}
		}
	}
	// internal/testenv is imported by tests, and by cmd/backupbench (internal/testenv/testenv.go).
	for _, p := range pkgs {
		if self, ours := rel(p.ImportPath); ours && self != "cmd/backupbench" && slices.Contains(p.Imports, module+"/internal/testenv") {
			add(p, "imports", "internal/testenv", "internal/testenv: imported by tests and cmd/backupbench only")
		}
	}
	// storage and metadata are adapters: neither knows the other (DESIGN.md).
	for _, pair := range [][2]string{{"storage", "metadata"}, {"metadata", "storage"}} {
		if p := pkgs[module+"/"+pair[0]]; p != nil && slices.Contains(p.Deps, module+"/"+pair[1]) {
			add(p, "depends on", pair[1], "the adapters never import each other")
		}
	}
	slices.Sort(bad)
	return slices.Compact(bad)
}

// TestLayering fails when a package imports what its doc comment forbids.
func TestLayering(t *testing.T) {
	pkgs := list(t)
	for _, ru := range rules {
		if pkgs[module+"/"+ru.pkg] == nil && ru.pkg != "client" && ru.pkg != "internal/app" {
			t.Errorf("rule for %s: no such package (renamed? update the rule with its doc)", ru.pkg)
		}
	}
	for _, v := range violations(pkgs) {
		t.Error(v)
	}
}

// The check itself finds what it is for: a fabricated graph that breaks each kind of rule.
func TestLayeringFindsViolations(t *testing.T) {
	m := func(r string) string { return module + "/" + r }
	pkgs := map[string]*pkg{
		m("storage"):          {ImportPath: m("storage"), Imports: []string{m("metadata")}, Deps: []string{m("metadata")}},
		m("metadata"):         {ImportPath: m("metadata")},
		m("ingest"):           {ImportPath: m("ingest"), Imports: []string{m("server")}, Deps: []string{m("server"), m("proto/backupstore/v1")}},
		m("server"):           {ImportPath: m("server"), Imports: []string{m("cmd/backupd")}, Deps: []string{m("cmd/backupd")}},
		m("cmd/backupd"):      {ImportPath: m("cmd/backupd")},
		m("sfid"):             {ImportPath: m("sfid"), Imports: []string{"github.com/x/y"}, Deps: []string{"github.com/x/y"}},
		"github.com/x/y":      {ImportPath: "github.com/x/y"},
		m("client"):           {ImportPath: m("client"), Deps: []string{m("registry")}},
		m("registry"):         {ImportPath: m("registry")},
		m("internal/testenv"): {ImportPath: m("internal/testenv"), Imports: []string{m("sfid")}, Deps: []string{m("sfid")}},
		m("retention"):        {ImportPath: m("retention"), Imports: []string{m("internal/testenv")}, Deps: []string{m("internal/testenv")}},
	}
	got := violations(pkgs)
	for _, want := range []string{
		"storage imports metadata",
		"storage depends on metadata (the adapters never import each other)",
		"ingest imports server",
		"ingest depends on proto/backupstore/v1 (a domain package",
		"server depends on cmd/backupd (nothing imports a command)",
		"sfid imports github.com/x/y",
		"client depends on registry",
		"internal/testenv imports sfid",
		"retention imports internal/testenv (internal/testenv: imported by tests",
	} {
		if !slices.ContainsFunc(got, func(v string) bool { return strings.HasPrefix(v, want) }) {
			t.Errorf("no violation %q in:\n%s", want, strings.Join(got, "\n"))
		}
	}
	if slices.ContainsFunc(got, func(v string) bool { return strings.HasPrefix(v, "metadata ") || strings.HasPrefix(v, "registry ") }) {
		t.Errorf("violations of packages that break no rule:\n%s", strings.Join(got, "\n"))
	}
}
