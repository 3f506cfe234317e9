// Package storage is backupstore's object-store adapter: the small Store interface the service
// writes backups through, an S3 implementation on aws-sdk-go-v2 (for AWS and S3-compatible
// servers) and a local-directory implementation (the embedded default), both held to one
// conformance suite in storage/storagetest.
//
// Callers pass keys relative to the storage's key prefix; the stores apply the prefix and
// validate keys (ValidateKey). SDK and filesystem errors are translated at the boundary into
// this package's sentinels (ErrNotFound, ErrAccessDenied, ErrAbortDenied, ErrPartTooSmall, ErrChecksumMismatch,
// ErrInvalidKey, ErrInvalidPart, ErrInvalidRange, ErrUnavailable), to be classified with
// errors.Is/As; ErrorCode exposes the S3 error code for reports.
//
// storage sits at the bottom of the dependency graph: it must not import metadata, server or
// any other backupstore package.
package storage
