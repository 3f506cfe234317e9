package client

import (
	"crypto/sha256"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	pb "backupstore/proto/backupstore/v1"
)

// BenchmarkFrameReader decodes and checks a 64 MiB chunk of CSV from its
// stored frames (1 MiB of input each, as ingest cuts them), with no network:
// the client's share of a passthrough restore.
func BenchmarkFrameReader(b *testing.B) {
	var sb strings.Builder
	sb.WriteString("Id,Name,Note\n")
	for i := 0; sb.Len() < 64<<20; i++ {
		fmt.Fprintf(&sb, "001%012dAAA,Name %d,\"a note about record %d, with a comma\",%d\n", i, i, i*7, i*13)
	}
	csv := []byte(sb.String())
	enc, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderCRC(true))
	var data []byte
	var stored, input []uint32
	for off := 0; off < len(csv); off += 1 << 20 {
		end := min(off+1<<20, len(csv))
		f := enc.EncodeAll(csv[off:end], nil)
		data = append(data, f...)
		stored = append(stored, uint32(len(f)))
		input = append(input, uint32(end-off))
	}
	sum := sha256.Sum256(csv)
	b.SetBytes(int64(len(csv)))
	b.ReportAllocs()
	for b.Loop() {
		fr, err := newFrameReader(io.Discard, DefaultMaxFrameBytes)
		if err != nil {
			b.Fatal(err)
		}
		fr.start(&pb.ReadRecordsStart{Encoding: pb.ContentEncoding_CONTENT_ENCODING_ZSTD, LineEnding: []byte("\n")})
		fr.chunk(&pb.ChunkStart{BytesIn: int64(len(csv)), StoredSize: int64(len(data)), Sha256: sum[:], FrameCount: int32(len(stored))})
		var off uint32
		for i := 0; i < len(stored); i += 4 {
			j := min(i+4, len(stored))
			var n uint32
			for _, s := range stored[i:j] {
				n += s
			}
			if err := fr.batch(&pb.FrameBatch{StoredLen: stored[i:j], InputLen: input[i:j], Data: data[off : off+n]}); err != nil {
				b.Fatal(err)
			}
			off += n
		}
		if _, err := fr.finish(); err != nil {
			b.Fatal(err)
		}
	}
}
