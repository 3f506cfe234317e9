// Package pack writes and reads pack objects: many small file bodies stored
// back to back in one bucket object, followed by an authenticated index of
// them (docs/FORMAT.md §2.2–§2.3).
//
//	pack    := header(64) body* index trailer(88)
//	header  := "BSPACK01" u16 version=1 u16 flags=0 u32 0 [48]pack id (ASCII, NUL-padded)
//	entry   := [32]SHA-256 u64 offset u64 length u32 flags=0 u32 0            (56 bytes)
//	trailer := u64 index_offset u32 count u32 entry size=56 u64 pack_size
//	           u32 CRC32C(index) u32 0 [16]key id (ASCII, NUL-padded)
//	           [32]HMAC-SHA256 "BSPKEND1"
//
// Integers are little-endian. Bodies are dense from offset 64, in index
// order, so a body is one exact ranged GET. The HMAC (under a key the caller
// derives, see secrets.DeriveKey with purpose "pack-index") covers the tenant,
// the org, the header, the index and trailer[0:48], so a pack's index cannot
// be forged or moved to another org or tenant by whoever can write the bucket.
//
// Everything a Parse function reads is hostile: every length is checked
// against the object size and the Limits before anything is allocated.
//
// pack imports only the standard library.
package pack
