package csvframes

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"testing"
)

// FuzzDecoder feeds a decoder a chunk and frame batches cut from arbitrary
// bytes (the sender is hostile: a server to the client, the bucket to the
// server): it must answer an error or the chunk's exact content, never
// panic, hang or write a chunk's last piece that did not check out.
func FuzzDecoder(f *testing.F) {
	e := encode(f, []byte("Id,Name\n001000000000001AAA,a\n001000000000002AAA,b\n"), 16)
	f.Add(e.data, uint16(len(e.stored)), uint16(16), true)
	f.Add(e.data[:len(e.data)-3], uint16(2), uint16(16), false)
	f.Add([]byte{0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x50, 0x09, 0x00, 0x00, 'a'}, uint16(1), uint16(100), false)
	f.Fuzz(func(t *testing.T, data []byte, frames, inputLen uint16, skip bool) {
		n := int(frames%8) + 1
		// Cut data into n frames of (nearly) equal length; each claims inputLen.
		var stored, input []uint32
		per := len(data) / n
		if per == 0 {
			return
		}
		for i := range n {
			s := per
			if i == n-1 {
				s = len(data) - per*(n-1)
			}
			stored = append(stored, uint32(s))
			input = append(input, uint32(inputLen))
		}
		data = data[:per*(n-1)+int(stored[n-1])]
		var want [32]byte
		binary.LittleEndian.PutUint64(want[:], uint64(len(data)))
		sum := sha256.Sum256(want[:])
		var out counter
		d, err := NewDecoder(&out, []byte("\n"), Options{MaxFrameBytes: 1 << 20, Workers: 2, MaxInFlight: 1 << 10})
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		if err := d.Chunk(Chunk{BytesIn: int64(n) * int64(inputLen), StoredSize: int64(len(data)), SHA256: sum[:], Frames: n, SkipHeader: skip}); err != nil {
			t.Fatal(err)
		}
		if err := d.Frames(stored, input, data, nil); err != nil {
			var ce *ChunkError
			if !errors.Is(err, ErrMalformed) && !errors.As(err, &ce) {
				t.Fatalf("Frames: %v", err)
			}
			return
		}
		if _, err := d.Finish(); err == nil {
			t.Fatalf("arbitrary frames checked out against an arbitrary SHA-256 (%d bytes written)", out.n)
		}
		// The last frame's bytes wait for the chunk's hash, which failed.
		if inputLen > 0 && out.n > int64(n-1)*int64(inputLen) {
			t.Fatalf("%d bytes written of a chunk that did not check out, more than all frames but the last (%d × %d)", out.n, n-1, inputLen)
		}
	})
}

type counter struct{ n int64 }

func (c *counter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }
