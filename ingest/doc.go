// Package ingest is the write path of backups: it opens backups, streams
// record-set chunks (CSV, checked row by row, zstd-compressed in independent
// frames, indexed) and files (hashed, deduplicated) into the backup's bucket
// with multipart uploads whose every part is recorded in the catalog, resumes
// and fences uploads by generation, commits backups with a manifest, and
// aborts them.
//
// The crash-safe ordering follows DESIGN.md "Write protocol": a PENDING
// upload row exists before the first S3 call of a multipart upload; each part
// is recorded (number, ETag, CRC32C, offsets, hash state) after S3 has it;
// the object rows appear only in the transaction that commits the upload,
// after S3 completed it. A file or chunk small enough for one PUT is PUT
// first and recorded in one transaction after; garbage collection owns the
// rare orphan a crash leaves between the two.
//
// ingest imports storage, metadata, registry, budget, csvscan, recindex, sfid
// and fault; never server.
package ingest
