// Package client is the Go library for backup workers and restore jobs of
// backupstore: it dials the service and speaks its worker protocol, so that
// a worker does not have to.
//
// What it does for you:
//   - Dial applies the transport rules of the service: TLS or mutual TLS, a
//     bearer token on every call, and never a token in plaintext to an
//     address off loopback unless WithInsecure says a proxy on the way
//     terminates TLS.
//   - UploadRecords and UploadFile run one upload each: retries with
//     exponential backoff on the codes the API documents as retryable
//     (Unavailable, Aborted, ResourceExhausted) and on nothing else, a
//     file resumed at the service's committed size, a record chunk restarted
//     from 0 under the same upload id, the declared SHA-256 and the
//     send-data handshake (a body the service already stores is not sent).
//   - BackupDir backs up a whole export directory (the layout `backupctl
//     backup run` reads): layout checks, record sets cut at row boundaries
//     into chunks, files hashed first, concurrent uploads, resume of an
//     interrupted run, commit. RestoreDir writes a committed backup back as
//     such a directory, every byte checked.
//   - ReadRecords and the List iterators (Backups, Uploads, Storages,
//     MaintenanceRuns) follow streams and pages.
//
// Everything else is the generated API: Backup, Restore, Storage and
// Maintenance return the raw stubs on the same connection.
//
// client imports only the generated API package (backupstore/proto/...),
// gRPC, protobuf, github.com/google/uuid, the standard library and
// backupstore/csvscan (a leaf package of the standard library only, so that a
// worker rejects a record set exactly as the service would, before sending
// it). It never imports the server's packages: it is a client like any
// other.
//
// # Stability
//
// The exported API of this package follows semantic versioning with the
// v1 API: Dial and its Options, the Client methods and the option and
// result structs keep their names and meaning; fields may be added to the
// structs (use field names in composite literals), and new methods and
// options may appear. What may change without notice: the default retry
// policy's numbers, the wording of error messages (classify errors with
// errors.Is/As and status.Code, never by text), the order of progress
// callbacks beyond what their comments promise, and the derivation of
// BackupDir's idempotency keys and upload ids across major versions only
// (a change would make an interrupted run start over, so it is treated as
// breaking).
package client
