package csvframes

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// encoded is a chunk cut into frames of frameSize input bytes, as ingest
// stores it.
type encoded struct {
	csv           []byte
	data          []byte
	stored, input []uint32
}

func encode(t testing.TB, csv []byte, frameSize int) encoded {
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderCRC(true))
	if err != nil {
		t.Fatal(err)
	}
	e := encoded{csv: csv}
	for off := 0; off < len(csv); off += frameSize {
		end := min(off+frameSize, len(csv))
		f := enc.EncodeAll(csv[off:end], nil)
		e.data = append(e.data, f...)
		e.stored = append(e.stored, uint32(len(f)))
		e.input = append(e.input, uint32(end-off))
	}
	return e
}

func (e encoded) chunk(seq int32, skip bool) Chunk {
	sum := sha256.Sum256(e.csv)
	return Chunk{Sequence: seq, BytesIn: int64(len(e.csv)), StoredSize: int64(len(e.data)), SHA256: sum[:], Frames: len(e.stored), SkipHeader: skip}
}

// feed sends e's frames in batches of per frames, each batch in its own
// buffer, counting the releases.
func (e encoded) feed(d *Decoder, per int, released *atomic.Int32) error {
	var off uint32
	for i := 0; i < len(e.stored); i += per {
		j := min(i+per, len(e.stored))
		var n uint32
		for _, s := range e.stored[i:j] {
			n += s
		}
		buf := bytes.Clone(e.data[off : off+n])
		off += n
		if err := d.Frames(e.stored[i:j], e.input[i:j], buf, func() { released.Add(1) }); err != nil {
			return err
		}
	}
	return nil
}

func rows(prefix string, n int, eol string) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "%s%012dAAA,Name %d,\"note, %d\"%s", prefix, i, i, i*7, eol)
	}
	return b.String()
}

// The decoder writes what the chunks hold, joined as the server's plain
// stream joins them, whatever the frame and batch sizes.
func TestDecoderJoinsChunks(t *testing.T) {
	chunks := []string{
		"Id,Name,Note\n" + rows("001", 3000, "\n") + "001999999999999AAA,last,x", // no final line ending
		"Id,Name,Note\n" + rows("002", 2000, "\n"),
		"Id,Name,Note\n", // header only
		"Id,Name,\"Note\nwith LF\"\n" + rows("003", 10, "\r\n") + "003999999999999AAA,cr,x\r", // quoted header, ends in a lone CR
		"Id,Name,Note\n" + rows("004", 5, "\n"),
	}
	want := chunks[0] + "\n" + strings.TrimPrefix(chunks[1], "Id,Name,Note\n") +
		strings.TrimPrefix(chunks[3], "Id,Name,\"Note\nwith LF\"\n") + "\n" + strings.TrimPrefix(chunks[4], "Id,Name,Note\n")
	for _, frameSize := range []int{7, 4 << 10, 1 << 20} {
		for _, per := range []int{1, 3, 1000} {
			var out bytes.Buffer
			d, err := NewDecoder(&out, []byte("\n"), Options{MaxFrameBytes: 1 << 20, Workers: 3, MaxInFlight: 64 << 10})
			if err != nil {
				t.Fatal(err)
			}
			var released atomic.Int32
			batches := 0
			for i, c := range chunks {
				e := encode(t, []byte(c), frameSize)
				if err := d.Chunk(e.chunk(int32(i), i > 0)); err != nil {
					t.Fatal(err)
				}
				if err := e.feed(d, per, &released); err != nil {
					t.Fatal(err)
				}
				batches += (len(e.stored) + per - 1) / per
			}
			n, err := d.Finish()
			if err != nil {
				t.Fatalf("frames of %d, %d per batch: %v", frameSize, per, err)
			}
			if out.String() != want || n != int64(len(want)) {
				t.Fatalf("frames of %d, %d per batch: %d bytes, want %d", frameSize, per, out.Len(), len(want))
			}
			if int(released.Load()) != batches {
				t.Errorf("%d of %d batches released", released.Load(), batches)
			}
		}
	}
}

// Content that does not check out is a ChunkError naming the chunk, and the
// chunk's last piece is never written; a stream that breaks the protocol is
// ErrMalformed.
func TestDecoderRefuses(t *testing.T) {
	csv := []byte("Id,Name\n" + rows("001", 2000, "\n"))
	e := encode(t, csv, 4<<10)
	run := func(c Chunk, mutate func(e *encoded)) (string, error) {
		e := encode(t, csv, 4<<10)
		if mutate != nil {
			mutate(&e)
		}
		var out bytes.Buffer
		d, err := NewDecoder(&out, []byte("\n"), Options{MaxFrameBytes: 1 << 20})
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		if err := d.Chunk(c); err != nil {
			return out.String(), err
		}
		var released atomic.Int32
		if err := e.feed(d, 2, &released); err != nil {
			return out.String(), err
		}
		_, err = d.Finish()
		return out.String(), err
	}
	good := e.chunk(4, false)
	badSum := good
	badSum.SHA256 = bytes.Repeat([]byte{1}, 32)
	fewer := good
	fewer.Frames--
	for name, tc := range map[string]struct {
		c      Chunk
		mutate func(e *encoded)
	}{
		"wrong SHA-256":          {badSum, nil},
		"more frames than said":  {fewer, nil},
		"a flipped byte":         {good, func(e *encoded) { e.data[len(e.data)/2] ^= 1 }},
		"input length too small": {good, func(e *encoded) { e.input[3]-- }},
		"frames swapped": {good, func(e *encoded) {
			a, b := e.data[:e.stored[0]], e.data[e.stored[0]:e.stored[0]+e.stored[1]]
			e.data = append(append(append([]byte{}, b...), a...), e.data[e.stored[0]+e.stored[1]:]...)
			e.stored[0], e.stored[1] = e.stored[1], e.stored[0]
			e.input[0], e.input[1] = e.input[1], e.input[0]
		}},
	} {
		out, err := run(tc.c, tc.mutate)
		var ce *ChunkError
		if !errors.As(err, &ce) || ce.Sequence != 4 {
			t.Errorf("%s: %v, want a ChunkError of chunk 4", name, err)
		}
		if len(out) >= len(csv) {
			t.Errorf("%s: the whole chunk was written (%d bytes) before it checked out", name, len(out))
		}
	}
	for name, tc := range map[string]struct {
		c      Chunk
		mutate func(e *encoded)
	}{
		"a short SHA-256":        {Chunk{SHA256: []byte{1}}, nil},
		"a frame over the bound": {good, func(e *encoded) { e.input[0] = 2 << 20 }},
	} {
		if _, err := run(tc.c, tc.mutate); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
	d, err := NewDecoder(io.Discard, []byte("\n"), Options{MaxFrameBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.Frames([]uint32{5}, []uint32{5}, make([]byte, 4), nil); !errors.Is(err, ErrMalformed) {
		t.Errorf("lengths that do not add up: %v", err)
	}
	if _, err := NewDecoder(io.Discard, []byte("\r"), Options{MaxFrameBytes: 1 << 20}); !errors.Is(err, ErrMalformed) {
		t.Errorf("a CR line ending: %v", err)
	}
}

// A frame larger than MaxInFlight goes alone: no deadlock, whatever is held.
func TestDecoderFrameLargerThanInFlight(t *testing.T) {
	csv := []byte("Id,Name\n" + rows("001", 20000, "\n"))
	e := encode(t, csv, 256<<10)
	d, err := NewDecoder(io.Discard, []byte("\n"), Options{MaxFrameBytes: 1 << 20, MaxInFlight: 1 << 10})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Chunk(e.chunk(0, false)); err != nil {
		t.Fatal(err)
	}
	var released atomic.Int32
	if err := e.feed(d, 3, &released); err != nil {
		t.Fatal(err)
	}
	if n, err := d.Finish(); err != nil || n != int64(len(csv)) {
		t.Fatalf("%d %v", n, err)
	}
}

// BenchmarkDecoder decodes and checks a 64 MiB chunk from frames of 1 MiB
// of input (ingest's default): what a passthrough restore costs the client.
func BenchmarkDecoder(b *testing.B) {
	var sb strings.Builder
	sb.WriteString("Id,Name,Note\n")
	for i := 0; sb.Len() < 64<<20; i++ {
		fmt.Fprintf(&sb, "001%012dAAA,Name %d,\"a note about record %d, with a comma\",%d\n", i, i, i*7, i*13)
	}
	e := encode(b, []byte(sb.String()), 1<<20)
	b.SetBytes(int64(len(e.csv)))
	b.ReportAllocs()
	for b.Loop() {
		d, err := NewDecoder(io.Discard, []byte("\n"), Options{MaxFrameBytes: 16 << 20})
		if err != nil {
			b.Fatal(err)
		}
		d.Chunk(e.chunk(0, false))
		var released atomic.Int32
		if err := e.feed(d, 4, &released); err != nil {
			b.Fatal(err)
		}
		if _, err := d.Finish(); err != nil {
			b.Fatal(err)
		}
	}
}

// A bomb (a frame without a declared size that decodes to 200 MiB, 1 MiB
// window) claiming 1,000 bytes: refused as a ChunkError after decoding at
// most one byte more than claimed, whatever it would grow to.
func TestDecoderBomb(t *testing.T) {
	bomb := []byte{0x28, 0xb5, 0x2f, 0xfd, 0x00, byte((20 - 10) << 3)}
	for n := 200 << 20; n > 0; {
		size := min(n, 128<<10)
		n -= size
		last := 0
		if n == 0 {
			last = 1
		}
		h := uint32(size)<<3 | 1<<1 | uint32(last) // RLE block
		bomb = append(bomb, byte(h), byte(h>>8), byte(h>>16), 'a')
	}
	d, err := NewDecoder(io.Discard, []byte("\n"), Options{MaxFrameBytes: 16 << 20, Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	sum := sha256.Sum256(nil)
	if err := d.Chunk(Chunk{BytesIn: 1000, StoredSize: int64(len(bomb)), SHA256: sum[:], Frames: 1}); err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	if err := d.Frames([]uint32{uint32(len(bomb))}, []uint32{1000}, bomb, nil); err != nil {
		t.Fatal(err)
	}
	_, err = d.Finish()
	runtime.ReadMemStats(&after)
	var ce *ChunkError
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "more than the index's 1000") {
		t.Fatalf("bomb: %v, want a ChunkError (more than the index's 1000 bytes)", err)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 4<<20 {
		t.Errorf("decoding the bomb allocated %d MiB", grew>>20)
	}
}
