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

// Unmarshal decodes data into v. For *pb.UploadRecordsRequest and
// *pb.UploadFileRequest of at least MinAlias bytes, the data field aliases
// the received bytes, valid until Release(v) (or until v is unreachable, when
// the buffer is left to the garbage collector rather than reused). Every
// other message and field is decoded exactly as the "proto" codec does.
func (c Codec) Unmarshal(data mem.BufferSlice, v any) error {
	if data.Len() >= MinAlias {
		switch m := v.(type) {
		case *pb.UploadRecordsRequest:
			return unmarshalAliased(c.pool(), data, m, 2, setRecordsData)
		case *pb.UploadFileRequest:
			return unmarshalAliased(c.pool(), data, m, 2, setFileData)
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

// dataMessage is an upload request whose data field Codec aliases.
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
	var alias []byte // the last data field, if it was not empty
	rest := 0        // start of the fields not yet handed to proto
	merge := func(end int) error {
		if end == rest {
			return nil
		}
		return proto.UnmarshalOptions{Merge: true}.Unmarshal(b[rest:end], m)
	}
	for i := 0; i < len(b); {
		num, typ, n := protowire.ConsumeTag(b[i:])
		if n < 0 {
			buf.Free()
			return fmt.Errorf("wirecodec: %T: %w", m, protowire.ParseError(n))
		}
		if num != field || typ != protowire.BytesType {
			k := protowire.ConsumeFieldValue(num, typ, b[i+n:])
			if k < 0 {
				buf.Free()
				return fmt.Errorf("wirecodec: %T: %w", m, protowire.ParseError(k))
			}
			i += n + k
			continue
		}
		v, k := protowire.ConsumeBytes(b[i+n:])
		if k < 0 {
			buf.Free()
			return fmt.Errorf("wirecodec: %T: %w", m, protowire.ParseError(k))
		}
		if err := merge(i); err != nil {
			buf.Free()
			return err
		}
		i += n + k
		rest = i
		if len(v) == 0 {
			alias = nil
			set(m, empty)
			continue
		}
		alias = v[:len(v):len(v)] // an append must not write over what follows
		set(m, alias)
	}
	if err := merge(len(b)); err != nil {
		buf.Free()
		return err
	}
	if d := m.GetData(); alias == nil || len(d) == 0 || unsafe.SliceData(d) != unsafe.SliceData(alias) {
		// No data, or a later field replaced it: nothing refers to buf.
		buf.Free()
		return nil
	}
	hold(m, buf, set)
	aliased.Add(1)
	return nil
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
	var key any
	switch m := msg.(type) {
	case *pb.UploadRecordsRequest:
		if m == nil {
			return
		}
		key = weak.Make(m)
	case *pb.UploadFileRequest:
		if m == nil {
			return
		}
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
