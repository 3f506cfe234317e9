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
//   - ReadRecords, ReadRecordsTo and RestoreDir ask for the stored zstd
//     frames of whole reads (passthrough) and decode and check them here:
//     a quarter of the bytes on the wire, every byte still checked.
//   - ReadRecords and the List iterators (Backups, Uploads, Storages,
//     MaintenanceRuns) follow streams and pages.
//
// Everything else is the generated API: Backup, Restore, Storage and
// Maintenance return the raw stubs on the same connection.
//
// client imports only the generated API package (backupstore/proto/...),
// gRPC, protobuf, github.com/google/uuid, the standard library and
// backupstore/csvscan with its id helper backupstore/sfid (leaf packages of
// the standard library only, so that a worker rejects a record set exactly as
// the service would, before sending it), and backupstore/csvframes with
// github.com/klauspost/compress/zstd (the decoder and checker of the stored
// frames a passthrough read receives, shared with the server's own plain
// reads), and backupstore/internal/wirecodec (the "proto" codec that lets a
// ReadRecords message's data alias its received buffer, released once
// written or decoded; it imports only the API package). It never imports the
// server's packages: it is a client like any other. TestImportsOnlyTheAPI
// keeps it so.
//
// # Stability
//
// The exported API is stable for as long as the service's v1 API is: Dial
// and its Options, the Client methods, the option and result structs and
// the errors keep their names and meaning. Fields may be added to the
// structs (use field names in composite literals), and methods, options and
// callbacks may be added. A change that breaks callers would come as a new
// package path (client/v2). Not part of the contract, and free to change:
// DefaultRetry's numbers, the wording of error messages (classify errors with
// errors.Is/As and status.Code, never by text) and the order of progress
// callbacks beyond what their comments promise. BackupDir's idempotency keys
// and upload ids (RecordsUploadID, FileUploadID) change only with the
// package path: a change would make every interrupted run start over.
package client
