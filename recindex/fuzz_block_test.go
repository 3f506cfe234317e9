package recindex

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"testing"
)

// blockSeed encodes a valid block of n keys of keyLen bytes (with frame and row values when
// hasVal), as the writer does.
func blockSeed(n, keyLen int, hasVal bool) []byte {
	bw := blockWriter{keyLen: keyLen, limit: 1 << 20}
	for i := range n {
		key := []byte(fmt.Sprintf("%0*d", keyLen, i*7))
		var val []byte
		if hasVal {
			val = binary.AppendUvarint(val, uint64(i/3))
			val = binary.AppendUvarint(val, uint64(i*11))
		}
		bw.add(key, val)
	}
	return bw.finish()
}

// FuzzBlock feeds one index block, read back from a bucket, to the block decoder: the CRC is
// recomputed over the mutated bytes so that they reach the parser, the iterator and seekGE.
// Errors are expected; a panic, an out-of-range read or keys out of the block's bounds are not.
func FuzzBlock(f *testing.F) {
	for _, kl := range []int{IDLen, refKeyLen} {
		for _, hv := range []bool{false, true} {
			b := blockSeed(40, kl, hv)
			f.Add(b[:len(b)-4], kl == refKeyLen, hv, []byte("0000000000000000140"))
		}
	}
	f.Add([]byte{0, 0, 0, 0, 1, 0, 0, 0}, false, true, []byte{})
	f.Fuzz(func(t *testing.T, body []byte, refKeys, hasVal bool, prefix []byte) {
		if len(body) > 1<<20 {
			return
		}
		keyLen := IDLen
		if refKeys {
			keyLen = refKeyLen
		}
		if len(prefix) > keyLen {
			prefix = prefix[:keyLen]
		}
		b := binary.LittleEndian.AppendUint32(append([]byte(nil), body...), crc32.Checksum(body, castagnoli))
		it, err := parseBlock(b, keyLen, hasVal)
		if err != nil {
			return
		}
		for n := 0; ; n++ {
			ok, err := it.next()
			if !ok || err != nil {
				break
			}
			if len(it.curKey()) != keyLen {
				t.Fatalf("key of %d bytes, want %d", len(it.curKey()), keyLen)
			}
			if n > len(b) {
				t.Fatalf("more entries (%d) than bytes in the block", n)
			}
		}
		if ok, err := it.seekGE(prefix); ok && err == nil {
			if got := it.curKey()[:len(prefix)]; string(got) < string(prefix) {
				t.Fatalf("seekGE(%q) stopped at %q", prefix, got)
			}
		}
	})
}
