package wirecodec

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"
	"weak"

	"google.golang.org/grpc/encoding"
	protocodec "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	pb "backupstore/proto/backupstore/v1"
)

// MinAlias is the smallest received message whose data is aliased; a
// smaller one is unmarshalled by the "proto" codec, which copies: below a
// few KiB a copy costs less than keeping the buffer.
const MinAlias = 4 << 10

// NewPool returns the buffer pool backupd gives gRPC (experimental.BufferPool)
// and Codec: grpc-go's default tiers (256 B, 4 KiB, 16 KiB, 32 KiB, 1 MiB)
// plus tiers that fit a 1 MiB data message with its framing and the
// largest message the server accepts (4 MiB + 64 KiB), which would
// otherwise come from the pool's fallback (one sync.Pool that allocates
// anew whenever the buffer it pulls is too small).
func NewPool() mem.BufferPool {
	return mem.NewTieredBufferPool(1<<8, 1<<12, 1<<14, 1<<15, 1<<20, 1<<20+64<<10, 4<<20+64<<10)
}

var defaultPool = NewPool()

// protoV2 is grpc-go's registered "proto" codec, for everything Codec does
// not unmarshal itself.
var protoV2 = encoding.GetCodecV2(protocodec.Name)

// Codec is an encoding.CodecV2 named "proto". Its zero value is ready to use.
// Safe for concurrent use.
type Codec struct {
	// Pool is where a message received in several buffers (a 1 MiB data
	// message arrives as ~64 HTTP/2 frames) is gathered before its data is
	// aliased. nil: a pool from NewPool shared by every Codec.
	Pool mem.BufferPool
}

var _ encoding.CodecV2 = Codec{}

// Name is "proto": the codec speaks the same wire format to every client.
func (Codec) Name() string { return protocodec.Name }

// Marshal is the "proto" codec's (it writes into pooled buffers already).
func (Codec) Marshal(v any) (mem.BufferSlice, error) { return protoV2.Marshal(v) }

// Unmarshal decodes data into v. For *pb.UploadRecordsRequest,
// *pb.UploadFileRequest, *pb.ReadRecordsResponse and *pb.ReadFileResponse of
// at least MinAlias bytes, the data field (a ReadRecordsResponse's data or
// its frames' data)
// aliases the received bytes, valid until Release(v) (or until v is
// unreachable, when the buffer is left to the garbage collector rather than
// reused). Every other message and field is decoded exactly as the "proto"
// codec does.
func (c Codec) Unmarshal(data mem.BufferSlice, v any) error {
	if data.Len() >= MinAlias {
		switch m := v.(type) {
		case *pb.UploadRecordsRequest:
			return unmarshalAliased(c.pool(), data, m, 2, setRecordsData)
		case *pb.UploadFileRequest:
			return unmarshalAliased(c.pool(), data, m, 2, setFileData)
		case *pb.ReadRecordsResponse:
			return unmarshalReadRecords(c.pool(), data, m)
		case *pb.ReadFileResponse:
			return unmarshalAliased(c.pool(), data, m, 2, setReadFileData)
		}
	}
	return protoV2.Unmarshal(data, v)
}

func (c Codec) pool() mem.BufferPool {
	if c.Pool != nil {
		return c.Pool
	}
	return defaultPool
}

// setRecordsData sets m's data; nil clears it if data is what m holds.
func setRecordsData(m *pb.UploadRecordsRequest, b []byte) {
	if b == nil {
		if _, ok := m.Message.(*pb.UploadRecordsRequest_Data); ok {
			m.Message = nil
		}
		return
	}
	m.Message = &pb.UploadRecordsRequest_Data{Data: b}
}

func setFileData(m *pb.UploadFileRequest, b []byte) {
	if b == nil {
		if _, ok := m.Message.(*pb.UploadFileRequest_Data); ok {
			m.Message = nil
		}
		return
	}
	m.Message = &pb.UploadFileRequest_Data{Data: b}
}

func setReadFileData(m *pb.ReadFileResponse, b []byte) {
	if b == nil {
		if _, ok := m.Message.(*pb.ReadFileResponse_Data); ok {
			m.Message = nil
		}
		return
	}
	m.Message = &pb.ReadFileResponse_Data{Data: b}
}

// dataMessage is a message whose data field Codec aliases.
type dataMessage[T any] interface {
	*T
	proto.Message
	GetData() []byte
}

// empty is the data of an empty data field: non-nil, as proto.Unmarshal
// leaves it, and not in the received buffer.
var empty = []byte{}

// unmarshalAliased decodes the wire bytes in data into m, setting the data
// field (number field, bytes) to a sub-slice of the received buffer and
// handing every other field, in order, to proto.Unmarshal with Merge: oneof,
// merge and unknown-field semantics are proto's, and the result equals
// proto.Unmarshal's (FuzzUnmarshal checks it).
func unmarshalAliased[T any, M dataMessage[T]](pool mem.BufferPool, data mem.BufferSlice, m M, field protowire.Number, set func(M, []byte)) error {
	buf := data.MaterializeToBuffer(pool)
	b := buf.ReadOnlyData()
	proto.Reset(m)
	err := aliasFields(b, m, func(n protowire.Number) bool { return n == field }, func(_ protowire.Number, v []byte) error {
		set(m, nonNil(v))
		return nil
	})
	if err != nil {
		buf.Free()
		return fmt.Errorf("wirecodec: %T: %w", m, err)
	}
	if !within(m.GetData(), b) {
		// No data, or a later field replaced it: nothing refers to buf.
		buf.Free()
		return nil
	}
	hold(m, buf, set)
	aliased.Add(1)
	return nil
}

// unmarshalReadRecords is unmarshalAliased for a ReadRecordsResponse: its
// data (field 1) and the data of its frames (field 5, a FrameBatch whose
// data is field 3) alias the received buffer. A frames field is decoded into
// the FrameBatch the message already holds, if any, as proto merges a
// message field that appears twice.
func unmarshalReadRecords(pool mem.BufferPool, data mem.BufferSlice, m *pb.ReadRecordsResponse) error {
	buf := data.MaterializeToBuffer(pool)
	b := buf.ReadOnlyData()
	proto.Reset(m)
	err := aliasFields(b, m, func(n protowire.Number) bool { return n == 1 || n == 5 }, func(n protowire.Number, v []byte) error {
		if n == 1 {
			m.Message = &pb.ReadRecordsResponse_Data{Data: nonNil(v)}
			return nil
		}
		fb := m.GetFrames()
		if fb == nil {
			fb = new(pb.FrameBatch)
		}
		m.Message = &pb.ReadRecordsResponse_Frames{Frames: fb}
		return aliasFields(v, fb, func(n protowire.Number) bool { return n == 3 }, func(_ protowire.Number, d []byte) error {
			fb.Data = nonNil(d)
			return nil
		})
	})
	if err != nil {
		buf.Free()
		return fmt.Errorf("wirecodec: %T: %w", m, err)
	}
	if !within(m.GetData(), b) && !within(m.GetFrames().GetData(), b) {
		buf.Free()
		return nil
	}
	hold(m, buf, clearReadRecordsData)
	aliased.Add(1)
	return nil
}

// clearReadRecordsData clears the aliased field of m (b is always nil: see hold).
func clearReadRecordsData(m *pb.ReadRecordsResponse, _ []byte) {
	switch x := m.Message.(type) {
	case *pb.ReadRecordsResponse_Data:
		m.Message = nil
	case *pb.ReadRecordsResponse_Frames:
		x.Frames.Data = nil
	}
}

// aliasFields decodes the wire bytes b into m, merging into what m holds:
// each bytes-typed field that wants accepts is handed to take with its value,
// a sub-slice of b capped at its length (so that an append cannot write over
// what follows); every other field goes, in order, to proto.Unmarshal with
// Merge.
func aliasFields(b []byte, m proto.Message, wants func(protowire.Number) bool, take func(protowire.Number, []byte) error) error {
	rest := 0 // start of the fields not yet handed to proto
	merge := func(end int) error {
		if end == rest {
			return nil
		}
		return proto.UnmarshalOptions{Merge: true}.Unmarshal(b[rest:end], m)
	}
	for i := 0; i < len(b); {
		num, typ, n := protowire.ConsumeTag(b[i:])
		if n < 0 {
			return protowire.ParseError(n)
		}
		if typ != protowire.BytesType || !wants(num) {
			k := protowire.ConsumeFieldValue(num, typ, b[i+n:])
			if k < 0 {
				return protowire.ParseError(k)
			}
			i += n + k
			continue
		}
		v, k := protowire.ConsumeBytes(b[i+n:])
		if k < 0 {
			return protowire.ParseError(k)
		}
		if err := merge(i); err != nil {
			return err
		}
		i += n + k
		rest = i
		if err := take(num, v[:len(v):len(v)]); err != nil {
			return err
		}
	}
	return merge(len(b))
}

// nonNil is v, or empty for an empty field (proto leaves it non-nil).
func nonNil(v []byte) []byte {
	if len(v) == 0 {
		return empty
	}
	return v
}

// within reports whether d is a non-empty slice of b's memory.
func within(d, b []byte) bool {
	if len(d) == 0 || len(b) == 0 {
		return false
	}
	p, lo := uintptr(unsafe.Pointer(unsafe.SliceData(d))), uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	return p >= lo && p < lo+uintptr(len(b))
}

// held is a received buffer that a message's data aliases.
type held struct {
	buf     mem.Buffer
	clear   func() // clears the message's data field
	cleanup runtime.Cleanup
}

// holds maps weak.Pointer[T] of a message to the *held buffer its data
// aliases. The key is weak so that a message nobody releases (a stream
// that ended between two receives) does not stay here: its cleanup drops
// the entry, leaving the buffer to the garbage collector.
var holds sync.Map

func hold[T any, M dataMessage[T]](m M, buf mem.Buffer, set func(M, []byte)) {
	key := weak.Make((*T)(m))
	h := &held{buf: buf}
	h.clear = func() {
		if p := key.Value(); p != nil {
			set(M(p), nil)
		}
	}
	h.cleanup = runtime.AddCleanup((*T)(m), func(k weak.Pointer[T]) { holds.CompareAndDelete(k, h) }, key)
	if old, ok := holds.Swap(key, h); ok {
		// m was unmarshalled into again before it was released: its old
		// data may still be in use, so its buffer is not reused.
		old.(*held).cleanup.Stop()
	}
}

// Release ends the life of msg's aliased data: it clears msg's data field and
// returns the buffer to its pool. msg's data, and any slice of it, must not be
// used afterwards. Release of a message that holds no buffer (another type,
// a small message, already released, nil) does nothing. Not safe for
// concurrent use with other uses of msg.
func Release(msg any) {
	// weak.Make of a nil message is the zero Pointer, which holds never has.
	var key any
	switch m := msg.(type) {
	case *pb.UploadRecordsRequest:
		key = weak.Make(m)
	case *pb.UploadFileRequest:
		key = weak.Make(m)
	case *pb.ReadRecordsResponse:
		key = weak.Make(m)
	case *pb.ReadFileResponse:
		key = weak.Make(m)
	default:
		return
	}
	v, ok := holds.LoadAndDelete(key)
	if !ok {
		return
	}
	h := v.(*held)
	h.cleanup.Stop()
	h.clear()
	h.buf.Free()
}

var aliased atomic.Int64

// Aliased returns how many messages Unmarshal has decoded without copying
// their data, since the process started (for tests and diagnostics).
func Aliased() int64 { return aliased.Load() }

// Held returns how many received buffers messages hold now (for tests and
// diagnostics).
func Held() int {
	n := 0
	holds.Range(func(any, any) bool { n++; return true })
	return n
}
