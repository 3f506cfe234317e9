// Package layering holds no code, only a test: TestLayering reads the import graph with
// `go list -deps -json ./...` and fails when a package imports what its doc comment forbids,
// so the rules written in each package's doc.go check themselves (as cockroachdb's
// TestNoLinkForbidden does). A rule changes in the package's doc comment and in the table of
// layering_test.go together.
//
// layering imports nothing.
package layering
