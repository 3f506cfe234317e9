// Package recindex builds and reads the record index object ("….idx") written beside each
// record-set chunk: sorted record id → frame (and row), and per declared reference field
// sorted parent id → child id. It is the only per-record structure of the service; the catalog
// holds one row per index object, never one per record.
//
// # Building
//
// A Writer accumulates entries in memory up to Options.RunBytes, then sorts them and appends
// them to a Spool (a temp file) as a run. Finish appends the footer; the spool then holds the
// whole object, which the caller uploads. Memory is bounded by:
//
//   - RunBytes: the run's entries (32 bytes a record, 40 a reference) and the hash table that
//     catches duplicate ids within the run (8 bytes a record);
//   - one block being encoded and a 128 KiB write buffer;
//   - the bloom filters of finished runs: BloomBitsPerKey/8 bytes per id and per distinct
//     parent of a run — 1.25 bytes at the default 10 bits, ≈4.4 MB for the ids of a
//     3.5M-row chunk. They are the bits the footer needs, and what lookups need anyway;
//   - the runs' block indexes (first key + offset: 26–44 bytes per block, ≈0.2% of the object);
//   - at Finish, instead of the run buffers, read-ahead for the duplicate check: RunBytes
//     shared by the runs being merged, but at least one block per run.
//
// Duplicate ids within a run are refused at once by AddRecord. Duplicates across runs are found
// exactly at Finish by a streaming merge over the record sections, limited to the key ranges
// where two or more runs overlap (an export in id order has almost none and costs almost
// nothing). Per-run bloom filters are not used for this: their false positives add up with the
// number of runs (35 runs at 1% flag about a third of the ids of the last runs as suspects, each
// needing a block read to clear), and probing them on every add costs a cache miss per run per
// id. The merge is sequential, needs no suspect set, and re-reads and CRC-checks every record
// block it covers before the object is uploaded.
//
// # Object format (version 1)
//
// All integers are little-endian; uvarint/varint are encoding/binary's.
//
//	object  := run* footer trailer
//	run     := section(records) section(ref field 0) … section(ref field n-1)
//	section := block*                        (sorted, contiguous)
//	block   := entry* restart[r] r crc       (r, restart: uint32; crc: CRC32C of all before it)
//	entry   := shared:uint8 key[shared:] value
//
// Keys are fixed length: 18 bytes (record id) in record sections, 36 bytes (parent id ‖ child
// id) in reference sections. shared is the length of the prefix shared with the previous key of
// the block; it is 0 every 16th entry (a restart point, listed in restart[] for binary search).
// Record values are uvarint(frame) uvarint(row); reference entries have no value. A block is at
// most the writer's BlockSize bytes and decodes on its own.
//
//	footer  := uvarint(blockSize) uvarint(bloomBitsPerKey)
//	           uvarint(nFields) (uvarint(len) name)*
//	           uvarint(nFrames) (varint ×6: StoredOffset StoredLen InputOffset InputLen Rows FirstRow)*
//	           uvarint(records) uvarint(refs)
//	           uvarint(nRuns) (sectiondesc × (1+nFields))*
//	           bloom bits, in the order of the section descriptors
//	sectiondesc := uvarint(entries) uvarint(offset of first block) uvarint(nBlocks)
//	           (uvarint(block len) uint8(shared) firstKey[shared:])*   first keys prefix-coded
//	           [uint8(shared) lastKey[shared:]]                          if nBlocks > 0
//	           uint8(k) uvarint(bloom bytes)
//	trailer := uint32(version) uint64(footer len) uint32(crc) "BSRECIDX"   (24 bytes)
//
// The trailer's crc is CRC32C of the footer followed by the trailer's first 12 bytes. Bloom
// filters are cache-line blocked (512-bit blocks, k probes within one block) over a fixed
// 64-bit hash of the 18-byte id (record sections) or parent id (reference sections). A reader
// fetches the tail once (64 KiB, plus one read if the footer is larger) and keeps the footer;
// a lookup then reads at most one block per run whose key range and bloom filter admit the id,
// with one ReadAt of exactly that block's bytes (so a cache keyed by offset and length works).
//
// recindex is a leaf: it uses only the standard library and must not import storage, metadata,
// server or any other backupstore package.
package recindex
