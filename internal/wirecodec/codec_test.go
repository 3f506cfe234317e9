package wirecodec

import (
	"bytes"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"unsafe"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/google/go-cmp/cmp"

	pb "backupstore/proto/backupstore/v1"
)

// countingPool is a BufferPool that counts what it hands out and gets back,
// and poisons what it gets back, so that a use after release shows.
type countingPool struct {
	mu       sync.Mutex
	gets     int
	puts     int
	returned []*[]byte
}

func (p *countingPool) Get(n int) *[]byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.gets++
	b := make([]byte, n, max(n, 2<<10)) // mem.NewBuffer pools only buffers of more than 1 KiB
	return &b
}

func (p *countingPool) Put(b *[]byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.puts++
	for i := range *b {
		(*b)[i] = 0xEE
	}
	p.returned = append(p.returned, b)
}

func (p *countingPool) counts() (gets, puts int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.gets, p.puts
}

// split cuts wire into buffers of at most n bytes from pool (n ≤ 0: one
// buffer), as the HTTP/2 transport hands a message over in frames.
func split(wire []byte, n int, pool mem.BufferPool) mem.BufferSlice {
	if n <= 0 {
		n = len(wire)
	}
	var s mem.BufferSlice
	for len(wire) > 0 {
		k := min(n, len(wire))
		b := pool.Get(k)
		copy(*b, wire[:k])
		s = append(s, mem.NewBuffer(b, pool))
		wire = wire[k:]
	}
	return s
}

func fill(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i*7+i/251)
	}
	return b
}

func mustMarshal(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// unknown is wire bytes of fields neither upload request knows.
func unknown() []byte {
	var b []byte
	b = protowire.AppendTag(b, 9, protowire.VarintType)
	b = protowire.AppendVarint(b, 12345)
	b = protowire.AppendTag(b, 10, protowire.BytesType)
	b = protowire.AppendBytes(b, fill(6000, 3))
	b = protowire.AppendTag(b, 11, protowire.Fixed32Type)
	b = protowire.AppendFixed32(b, 7)
	b = protowire.AppendTag(b, 2, protowire.VarintType) // data's number with another wire type: unknown to proto
	b = protowire.AppendVarint(b, 1)
	return b
}

func dataField(d []byte) []byte {
	b := protowire.AppendTag(nil, 2, protowire.BytesType)
	return protowire.AppendBytes(b, d)
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// respField is field num of a ReadRecordsResponse holding v (bytes).
func respField(num protowire.Number, v []byte) []byte {
	return protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), v)
}

func respData(d []byte) []byte { return respField(1, d) }

// respFrames is a ReadRecordsResponse's frames field: a FrameBatch of data.
func respFrames(t testing.TB, stored []uint32, data []byte) []byte {
	return respField(5, mustMarshal(t, &pb.FrameBatch{StoredLen: stored, InputLen: stored, Data: data}))
}

// wireCases are encodings of both upload requests: every field, unknown
// fields, empty data, and the oneof's "last one wins" with the data field
// before and after the others.
func wireCases(t testing.TB) map[string][]byte {
	big := fill(1<<20, 1)
	rh := mustMarshal(t, &pb.UploadRecordsRequest{Message: &pb.UploadRecordsRequest_Header{Header: &pb.RecordsHeader{
		BackupId: "bkp-1", Sobject: "Contact", Sequence: 3, UploadId: "u-1", WriteOffset: 9,
		References: []*pb.ReferenceField{{Field: "AccountId", Target: "Account"}, {Field: "OwnerId", Target: "User"}}}}})
	fh := mustMarshal(t, &pb.UploadFileRequest{Message: &pb.UploadFileRequest_Header{Header: &pb.FileHeader{
		BackupId: "bkp-1", ParentId: "001000000000001AAA", Path: "a/b.pdf", Name: "b.pdf", ContentType: "application/pdf",
		UploadId: "u-2", WriteOffset: 1 << 40, DeclaredSize: proto.Int64(0), DeclaredSha256: strings.Repeat("ab", 32)}}})
	fin := mustMarshal(t, &pb.UploadRecordsRequest{Message: &pb.UploadRecordsRequest_Finish{Finish: &pb.FinishWrite{}}})
	return map[string][]byte{
		"data 1 MiB":                  dataField(big),
		"data MinAlias":               dataField(fill(MinAlias, 2)),
		"data small":                  dataField(fill(100, 2)),
		"data empty":                  dataField(nil),
		"data empty, padded":          cat(dataField(nil), unknown()),
		"records header":              cat(rh, unknown()),
		"file header":                 cat(fh, unknown()),
		"finish":                      cat(fin, unknown()),
		"data then unknown":           cat(dataField(big), unknown()),
		"unknown then data":           cat(unknown(), dataField(big)),
		"data twice: last wins":       cat(dataField(fill(5000, 9)), dataField(big)),
		"data then empty data":        cat(dataField(big), dataField(nil)),
		"header then data":            cat(rh, dataField(big)),
		"data then header":            cat(dataField(big), rh),
		"data then file header":       cat(dataField(big), fh),
		"data then finish":            cat(dataField(big), fin),
		"header, data, header merged": cat(rh, dataField(big), rh, rh),
		"empty message, padded":       unknown(),
		// ReadRecordsResponse: data is field 1, frames field 5 (a FrameBatch, data field 3).
		"response data":                     respData(big),
		"response data then frames":         cat(respData(big), respFrames(t, []uint32{10}, fill(5000, 4))),
		"frames 1 MiB":                      respFrames(t, []uint32{1 << 19, 1 << 19}, big),
		"frames then data":                  cat(respFrames(t, []uint32{1 << 20}, big), respData(fill(5000, 6))),
		"frames twice: merged":              cat(respFrames(t, []uint32{7}, fill(5000, 7)), respFrames(t, []uint32{1 << 20}, big)),
		"frames, then frames without data":  cat(respFrames(t, []uint32{1 << 20}, big), respFrames(t, []uint32{3}, nil)),
		"frames with unknown fields inside": respField(5, cat(unknown(), mustMarshal(t, &pb.FrameBatch{StoredLen: []uint32{1 << 20}, Data: big}), unknown())),
		"frames with empty data":            respFrames(t, []uint32{1}, nil),
		"frames then summary":               cat(respFrames(t, []uint32{1 << 20}, big), mustMarshal(t, &pb.ReadRecordsResponse{Message: &pb.ReadRecordsResponse_Summary{Summary: &pb.ReadRecordsSummary{Records: 3}}})),
		"start then frames":                 cat(mustMarshal(t, &pb.ReadRecordsResponse{Message: &pb.ReadRecordsResponse_Start{Start: &pb.ReadRecordsStart{LineEnding: []byte("\r\n")}}}), respFrames(t, []uint32{1 << 20}, big)),
		// ReadFileResponse: info is field 1, data field 2 (as an upload's), summary field 3.
		"file info then data":                 cat(mustMarshal(t, &pb.ReadFileResponse{Message: &pb.ReadFileResponse_Info{Info: &pb.FileInfo{FileId: "f-1", Path: "a/b.pdf", Size: 1 << 20}}}), dataField(big)),
		"data then file summary":              cat(dataField(big), mustMarshal(t, &pb.ReadFileResponse{Message: &pb.ReadFileResponse_Summary{Summary: &pb.ReadFileSummary{Files: 1, Bytes: 1 << 20}}})),
		"frames holding data of another type": respField(5, cat(protowire.AppendVarint(protowire.AppendTag(nil, 3, protowire.VarintType), 5), mustMarshal(t, &pb.FrameBatch{Data: big}))),
	}
}

// TestUnmarshalMatchesProto decodes every case with Codec, in one buffer
// and in many, into both request types, and compares with proto.Unmarshal:
// the same message, unknown fields included, data nil exactly when
// proto's is, and the same bytes when marshalled again.
func TestUnmarshalMatchesProto(t *testing.T) {
	for name, wire := range wireCases(t) {
		for _, msgs := range []struct {
			name      string
			want, got func() proto.Message
		}{
			{"records", func() proto.Message { return new(pb.UploadRecordsRequest) }, func() proto.Message { return new(pb.UploadRecordsRequest) }},
			{"file", func() proto.Message { return new(pb.UploadFileRequest) }, func() proto.Message { return new(pb.UploadFileRequest) }},
			{"read records", func() proto.Message { return new(pb.ReadRecordsResponse) }, func() proto.Message { return new(pb.ReadRecordsResponse) }},
			{"read file", func() proto.Message { return new(pb.ReadFileResponse) }, func() proto.Message { return new(pb.ReadFileResponse) }},
		} {
			for _, frame := range []int{0, 16 << 10, 1000, 1} {
				if frame == 1 && len(wire) > 64<<10 {
					continue
				}
				want := msgs.want()
				wantErr := proto.Unmarshal(wire, want)
				pool := &countingPool{}
				got := msgs.got()
				in := split(wire, frame, pool)
				err := Codec{Pool: pool}.Unmarshal(in, got)
				in.Free() // what grpc does once Unmarshal returns
				if (err != nil) != (wantErr != nil) {
					t.Fatalf("%s, %s, frames of %d: err %v, proto.Unmarshal's %v", name, msgs.name, frame, err, wantErr)
				}
				if err != nil {
					continue
				}
				if !proto.Equal(want, got) {
					// cmp.Diff is slow on MiBs of data: only to explain a failure.
					t.Errorf("%s, %s, frames of %d: (-proto +codec)\n%s", name, msgs.name, frame, cmp.Diff(want, got, protocmp.Transform()))
				}
				wd, gd := dataOf(want), dataOf(got)
				if (wd == nil) != (gd == nil) {
					t.Errorf("%s, %s: data nil %v, proto.Unmarshal's nil %v", name, msgs.name, gd == nil, wd == nil)
				}
				if a, b := mustMarshal(t, want), mustMarshal(t, got); !bytes.Equal(a, b) {
					t.Errorf("%s, %s: marshalled again, %d bytes differ from proto's %d", name, msgs.name, len(b), len(a))
				}
				Release(got)
				if gets, puts := pool.counts(); gets != puts {
					t.Errorf("%s, %s, frames of %d: %d buffers from the pool, %d back after Release", name, msgs.name, frame, gets, puts)
				}
			}
		}
	}
}

func dataOf(m proto.Message) []byte {
	switch m := m.(type) {
	case *pb.UploadRecordsRequest:
		return m.GetData()
	case *pb.UploadFileRequest:
		return m.GetData()
	case *pb.ReadRecordsResponse:
		if f := m.GetFrames(); f != nil {
			return f.GetData()
		}
		return m.GetData()
	case *pb.ReadFileResponse:
		return m.GetData()
	}
	return nil
}

// TestDataAliasedUntilRelease checks the point of the codec: the data is
// the received buffer's bytes, not a copy; it stays intact after grpc frees
// its buffers and until Release; Release clears the field and gives the
// buffer back to the pool once.
func TestDataAliasedUntilRelease(t *testing.T) {
	want := fill(1<<20, 5)
	wire := dataField(want)
	type cases = []struct {
		name  string
		frame int
	}
	// Data is field 2 of an upload request and of a ReadFileResponse.
	for _, mk := range []func() proto.Message{
		func() proto.Message { return new(pb.UploadRecordsRequest) },
		func() proto.Message { return new(pb.UploadFileRequest) },
		func() proto.Message { return new(pb.ReadFileResponse) },
	} {
		for _, tc := range (cases{{"one buffer", 0}, {"16 KiB frames", 16 << 10}, {"uneven frames", 7777}}) {
			t.Run(fmt.Sprintf("%T/%s", mk(), tc.name), func(t *testing.T) {
				transport := &countingPool{} // the transport's frames
				gather := &countingPool{}    // the codec's pool
				in := split(wire, tc.frame, transport)
				held, aliased := Held(), Aliased()
				m := mk()
				if err := (Codec{Pool: gather}).Unmarshal(in, m); err != nil {
					t.Fatal(err)
				}
				in.Free()
				got := dataOf(m)
				if !bytes.Equal(got, want) {
					t.Fatal("data differs from what was sent")
				}
				if Held() != held+1 || Aliased() != aliased+1 {
					t.Fatalf("Held() = %d, Aliased() = %d, want %d, %d", Held(), Aliased(), held+1, aliased+1)
				}
				var owner *countingPool // whose buffer data aliases
				if len(in) == 1 {
					owner = transport // one buffer: aliased as it is, no copy at all
					if _, puts := transport.counts(); puts != 0 {
						t.Fatalf("the transport's buffer went back to its pool (%d) while data aliases it", puts)
					}
					if g, _ := gather.counts(); g != 0 {
						t.Errorf("one buffer was gathered (%d Gets): want it aliased", g)
					}
				} else {
					owner = gather
					if g, p := transport.counts(); g != p {
						t.Errorf("transport buffers: %d out, %d back; want all back once Unmarshal returned", g, p)
					}
					if g, p := gather.counts(); g != 1 || p != 0 {
						t.Fatalf("codec pool: %d Gets, %d Puts; want 1 buffer, kept", g, p)
					}
				}
				if cap(got) != len(got) {
					t.Errorf("cap(data) = %d > len %d: an append would write into the buffer", cap(got), len(got))
				}
				runtime.GC() // m is live: its buffer must survive a collection
				if !bytes.Equal(got, want) {
					t.Fatal("data changed before Release")
				}
				_, before := owner.counts()
				Release(m)
				if dataOf(m) != nil || m.ProtoReflect().WhichOneof(m.ProtoReflect().Descriptor().Oneofs().Get(0)) != nil {
					t.Error("Release left the data field set")
				}
				if _, after := owner.counts(); after != before+1 {
					t.Fatalf("Release returned %d buffers to the pool, want 1", after-before)
				}
				if r := owner.returned[len(owner.returned)-1]; unsafe.SliceData(*r) != unsafe.SliceData(got) && !inside(got, *r) {
					t.Error("the buffer returned is not the one data aliased")
				}
				if Held() != held {
					t.Errorf("Held() = %d after Release, want %d", Held(), held)
				}
				Release(m) // twice: nothing more
				if _, again := owner.counts(); again != before+1 {
					t.Errorf("a second Release returned another buffer")
				}
			})
		}
	}
}

// TestReadRecordsResponseAliased: a ReadRecordsResponse's frames data and its
// CSV data alias the received buffer until Release, which clears them and
// gives the buffer back once; the other fields are proto's.
func TestReadRecordsResponseAliased(t *testing.T) {
	big := fill(1<<20, 8)
	for _, tc := range []struct {
		name string
		wire []byte
		data func(*pb.ReadRecordsResponse) []byte
	}{
		{"frames", respFrames(t, []uint32{1 << 19, 1 << 19}, big), func(m *pb.ReadRecordsResponse) []byte { return m.GetFrames().GetData() }},
		{"data", respData(big), (*pb.ReadRecordsResponse).GetData},
	} {
		t.Run(tc.name, func(t *testing.T) {
			transport, gather := &countingPool{}, &countingPool{}
			in := split(tc.wire, 16<<10, transport)
			held := Held()
			m := new(pb.ReadRecordsResponse)
			if err := (Codec{Pool: gather}).Unmarshal(in, m); err != nil {
				t.Fatal(err)
			}
			in.Free()
			got := tc.data(m)
			if !bytes.Equal(got, big) || Held() != held+1 {
				t.Fatalf("data equal %v, Held() %d; want the data sent, held once (%d)", bytes.Equal(got, big), Held(), held+1)
			}
			if g, p := gather.counts(); g != 1 || p != 0 {
				t.Fatalf("codec pool: %d Gets, %d Puts; want 1 buffer, kept", g, p)
			}
			if tc.name == "frames" && !slices.Equal(m.GetFrames().GetStoredLen(), []uint32{1 << 19, 1 << 19}) {
				t.Errorf("stored_len = %v", m.GetFrames().GetStoredLen())
			}
			runtime.GC()
			if !bytes.Equal(got, big) {
				t.Fatal("data changed before Release")
			}
			Release(m)
			if tc.data(m) != nil {
				t.Error("Release left the data set")
			}
			if _, p := gather.counts(); p != 1 || Held() != held || !inside(got, *gather.returned[0]) {
				t.Fatalf("after Release: %d buffers back, Held() %d; want 1 (the one data aliased), %d", p, Held(), held)
			}
		})
	}
}

// inside reports whether a lies within b's memory.
func inside(a, b []byte) bool {
	if len(a) == 0 || len(b) == 0 {
		return false
	}
	pa, pb := uintptr(unsafe.Pointer(unsafe.SliceData(a))), uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	return pa >= pb && pa+uintptr(len(a)) <= pb+uintptr(cap(b))
}

// TestSmallAndOtherMessagesAreNotHeld: messages below MinAlias, without
// data, or of other types hold no buffer.
func TestSmallAndOtherMessagesAreNotHeld(t *testing.T) {
	held := Held()
	cases := []struct {
		wire []byte
		m    proto.Message
	}{
		{dataField(fill(MinAlias-10, 1)), new(pb.UploadRecordsRequest)},
		{cat(dataField(fill(MinAlias, 1)), mustMarshal(t, &pb.UploadFileRequest{Message: &pb.UploadFileRequest_Finish{Finish: &pb.FinishWrite{}}})), new(pb.UploadFileRequest)},
		{dataField(nil), new(pb.UploadFileRequest)},
		{mustMarshal(t, &pb.CreateBackupRequest{OrgId: strings.Repeat("a", MinAlias)}), new(pb.CreateBackupRequest)},
	}
	for i, c := range cases {
		pool := &countingPool{}
		in := split(c.wire, 1000, pool)
		if err := (Codec{Pool: pool}).Unmarshal(in, c.m); err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		in.Free()
		if g, p := pool.counts(); g != p {
			t.Errorf("case %d (%T): %d buffers out, %d back: want none kept", i, c.m, g, p)
		}
		want := c.m.ProtoReflect().New().Interface()
		if err := proto.Unmarshal(c.wire, want); err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(want, c.m) {
			t.Errorf("case %d: differs from proto.Unmarshal's", i)
		}
	}
	if Held() != held {
		t.Errorf("Held() = %d, want %d", Held(), held)
	}
	// Release of nil messages of every aliased type, and of nil, does nothing.
	Release((*pb.UploadRecordsRequest)(nil))
	Release((*pb.UploadFileRequest)(nil))
	Release((*pb.ReadRecordsResponse)(nil))
	Release((*pb.ReadFileResponse)(nil))
	Release(nil)
	if Held() != held {
		t.Errorf("Held() = %d after releasing nil messages, want %d", Held(), held)
	}
}

// TestUnreleasedMessageIsForgotten: a message nobody releases (a stream that
// ended between receives) leaves no entry behind once it is collected, and
// its buffer is not put back in the pool (its data may still be in use).
func TestUnreleasedMessageIsForgotten(t *testing.T) {
	held := Held()
	pool := &countingPool{}
	func() {
		in := split(dataField(fill(64<<10, 1)), 16<<10, pool)
		m := new(pb.UploadFileRequest)
		if err := (Codec{Pool: pool}).Unmarshal(in, m); err != nil {
			t.Fatal(err)
		}
		in.Free()
		if Held() != held+1 {
			t.Fatalf("Held() = %d, want %d", Held(), held+1)
		}
	}()
	// Cleanups run on their own goroutine after the collection that finds
	// the message unreachable.
	for i := 0; i < 100 && Held() != held; i++ {
		runtime.GC()
		runtime.Gosched()
	}
	if Held() != held {
		t.Fatalf("Held() = %d after the message was collected, want %d", Held(), held)
	}
	if g, p := pool.counts(); p != g-1 {
		t.Errorf("%d buffers out, %d back: want every frame back and the held buffer left to the GC", g, p)
	}
}

// TestUnmarshalAgainIntoSameMessage: a message decoded into twice keeps one
// entry, and the first buffer is not reused (its data may still be read).
func TestUnmarshalAgainIntoSameMessage(t *testing.T) {
	held := Held()
	pool := &countingPool{}
	m := new(pb.UploadRecordsRequest)
	first := fill(32<<10, 1)
	for _, d := range [][]byte{first, fill(32<<10, 2)} {
		in := split(dataField(d), 0, pool)
		if err := (Codec{Pool: pool}).Unmarshal(in, m); err != nil {
			t.Fatal(err)
		}
		in.Free()
	}
	if Held() != held+1 {
		t.Fatalf("Held() = %d, want %d", Held(), held+1)
	}
	if _, p := pool.counts(); p != 0 {
		t.Errorf("%d buffers back before Release, want 0", p)
	}
	Release(m)
	if _, p := pool.counts(); p != 1 {
		t.Errorf("%d buffers back after Release, want 1 (the second)", p)
	}
}

func TestMalformed(t *testing.T) {
	good := dataField(fill(8<<10, 1))
	for name, wire := range map[string][]byte{
		"truncated data":        good[:len(good)-1],
		"truncated tag":         append(dataField(fill(8<<10, 1)), 0x80),
		"field 0":               append(dataField(fill(8<<10, 1)), 0x02, 0x00),
		"bad header submessage": cat(dataField(fill(8<<10, 1)), []byte{0x0a, 0x02, 0xff, 0xff}),
		"end group":             append(dataField(fill(8<<10, 1)), 0x0c),
	} {
		pool := &countingPool{}
		in := split(wire, 1000, pool)
		err := (Codec{Pool: pool}).Unmarshal(in, new(pb.UploadRecordsRequest))
		in.Free()
		if err == nil {
			t.Errorf("%s: no error", name)
		}
		if proto.Unmarshal(wire, new(pb.UploadRecordsRequest)) == nil {
			t.Errorf("%s: proto.Unmarshal accepts it: the case is wrong", name)
		}
		if g, p := pool.counts(); g != p {
			t.Errorf("%s: %d buffers out, %d back", name, g, p)
		}
	}
}

func TestMarshalIsProto(t *testing.T) {
	m := &pb.UploadRecordsRequest{Message: &pb.UploadRecordsRequest_Data{Data: fill(3<<20, 1)}}
	out, err := Codec{}.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Free()
	if !bytes.Equal(out.Materialize(), mustMarshal(t, m)) {
		t.Error("Marshal differs from proto.Marshal")
	}
	if (Codec{}).Name() != "proto" {
		t.Errorf("Name() = %q", Codec{}.Name())
	}
}

// FuzzUnmarshal: on any bytes, Codec and proto.Unmarshal agree on error and
// result, for both request types, in one buffer and in frames.
func FuzzUnmarshal(f *testing.F) {
	for _, w := range wireCases(f) {
		if len(w) < 64<<10 {
			f.Add(w, uint16(0))
		}
	}
	f.Add(cat(unknown(), dataField(fill(5000, 1)), unknown()), uint16(333))
	f.Fuzz(func(t *testing.T, wire []byte, frame uint16) {
		if len(wire) < MinAlias {
			wire = append(dataField(fill(MinAlias, 0)), wire...)
		}
		if frame != 0 {
			frame = 64 + frame%8192 // tiny frames cost a buffer per byte, not more coverage
		}
		for _, mk := range []func() proto.Message{
			func() proto.Message { return new(pb.UploadRecordsRequest) },
			func() proto.Message { return new(pb.UploadFileRequest) },
			func() proto.Message { return new(pb.ReadRecordsResponse) },
			func() proto.Message { return new(pb.ReadFileResponse) },
		} {
			want, got := mk(), mk()
			wantErr := proto.Unmarshal(wire, want)
			pool := &countingPool{}
			in := split(wire, int(frame), pool)
			err := Codec{Pool: pool}.Unmarshal(in, got)
			in.Free()
			if (err != nil) != (wantErr != nil) {
				t.Fatalf("%T: err %v, proto.Unmarshal's %v", got, err, wantErr)
			}
			if err == nil && !proto.Equal(want, got) {
				t.Fatalf("%T: differs from proto.Unmarshal's", got)
			}
			Release(got)
			if g, p := pool.counts(); g != p {
				t.Fatalf("%T: %d buffers out, %d back after Release", got, g, p)
			}
		}
	})
}
