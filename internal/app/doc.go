// Package app assembles backupstore: it opens the catalog and builds the
// registry, the memory budget, ingest, restore, maintenance, authentication,
// the stream guard and connection limits, and the gRPC server, from one
// Config that holds each package's own Config. cmd/backupd runs it; tests
// and benchmarks run the same assembly with overrides (another catalog, a
// wrapped default store, testing hooks), so what they test is what ships.
//
// app is imported only by cmd/ and by tests; no library package imports it.
// It may import every backupstore package but cmd/.
package app
