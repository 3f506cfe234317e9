// Package wirecodec is backupd's gRPC codec: "proto" as grpc-go's own, except
// that the server-side upload requests (UploadRecordsRequest,
// UploadFileRequest) are unmarshalled without copying their data bytes. The
// data field aliases the received message's buffer, which the codec keeps
// until Release (docs/FORMAT.md §4.1–4.2): a 1 MiB data message costs no
// fresh 1 MiB slice, so the garbage of an upload no longer grows with its
// size.
//
// It is wired with grpc.ForceServerCodecV2 in internal/app, never registered
// with encoding.RegisterCodecV2 (that would replace "proto" for every gRPC user
// in the process).
//
// wirecodec imports only the generated API package (proto/...), gRPC,
// protobuf and the standard library.
package wirecodec
