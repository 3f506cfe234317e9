package recindex

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"math/rand/v2"
	"testing"
)

// fuzzSeed returns a small valid index (several runs, two reference fields) and its size.
func fuzzSeed(tb testing.TB, n int, opt Options) []byte {
	d := makeData(rand.New(rand.NewPCG(uint64(n), 7)), n)
	sp := &memSpool{}
	d.write(tb, sp, opt)
	return sp.b
}

// exercise runs every read path on an index that opened; errors are fine, panics are not.
func exercise(rd *Reader, data []byte) {
	probes := []string{sfID("003", 1), sfID("001", 2)}
	for i := 0; i+IDLen <= len(data) && len(probes) < 40; i += 1 + len(data)/32 {
		if id := string(data[i : i+IDLen]); ValidID(id) {
			probes = append(probes, id)
		}
	}
	_ = rd.ForEachRecord(func(id string, _ uint32) error {
		if len(probes) < 60 {
			probes = append(probes, id)
		}
		return nil
	})
	for _, f := range rd.RefFields() {
		_ = rd.ForEachRef(f, func(p, _ string) error {
			if len(probes) < 80 {
				probes = append(probes, p)
			}
			return nil
		})
	}
	for _, id := range probes {
		rd.MayContain(id)
		_, _, _ = rd.Lookup(id)
		for _, f := range rd.RefFields() {
			_, _ = rd.Children(f, id)
		}
	}
}

// FuzzOpen feeds arbitrary bytes to Open and, when they open, to every read path.
func FuzzOpen(f *testing.F) {
	seed := fuzzSeed(f, 80, Options{RunBytes: MinRunBytes, BlockSize: minBlockSize})
	f.Add(seed)
	f.Add(seed[:len(seed)-1])
	f.Add(seed[len(seed)-trailerLen:])
	f.Add([]byte(magic))
	f.Fuzz(func(t *testing.T, data []byte) {
		rd, err := Open(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			return
		}
		exercise(rd, data)
	})
}

// FuzzFooter fuzzes the footer parser and the block decoder behind a valid trailer: the
// object is data ‖ footer ‖ trailer with a correct checksum, so mutations reach the parser
// instead of stopping at the CRC. Blocks are given correct CRCs too when fixBlocks is set.
func FuzzFooter(f *testing.F) {
	seed := fuzzSeed(f, 80, Options{RunBytes: MinRunBytes, BlockSize: minBlockSize})
	flen := binary.LittleEndian.Uint64(seed[len(seed)-trailerLen+4:])
	split := len(seed) - trailerLen - int(flen)
	f.Add(seed[:split], seed[split:len(seed)-trailerLen], false)
	f.Add(seed[:split], seed[split:len(seed)-trailerLen], true)
	f.Add([]byte{}, []byte{0x80, 0x02, 10, 0, 0, 0, 0, 0}, false)
	f.Fuzz(func(t *testing.T, data, footer []byte, fixBlocks bool) {
		if len(data)+len(footer) > 1<<20 {
			return
		}
		obj := append(append(bytes.Clone(data), footer...), make([]byte, trailerLen)...)
		tr := obj[len(obj)-trailerLen:]
		binary.LittleEndian.PutUint32(tr[0:], formatVersion)
		binary.LittleEndian.PutUint64(tr[4:], uint64(len(footer)))
		binary.LittleEndian.PutUint32(tr[12:], footerCRC(footer, tr[:12]))
		copy(tr[16:], magic)
		if fixBlocks {
			// Re-checksum every block the footer names so that the block decoder sees the
			// mutated bytes.
			if fo, err := decodeFooter(footer, int64(len(data))); err == nil {
				for _, ru := range fo.runs {
					for _, s := range ru.sections {
						for i := 0; i < s.blocks(); i++ {
							b := obj[s.offs[i]:s.offs[i+1]]
							binary.LittleEndian.PutUint32(b[len(b)-4:], crc32.Checksum(b[:len(b)-4], castagnoli))
						}
					}
				}
			}
		}
		rd, err := Open(bytes.NewReader(obj), int64(len(obj)))
		if err != nil {
			return
		}
		exercise(rd, obj)
	})
}
