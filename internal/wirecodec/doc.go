// Package wirecodec is backupd's gRPC codec, and the client library's for
// ReadRecords and ReadFile: "proto" as grpc-go's own, except that the upload
// requests (UploadRecordsRequest, UploadFileRequest) the server receives and
// the ReadRecordsResponse and ReadFileResponse a client receives are
// unmarshalled without copying their data bytes. The data field (a response's CSV data or its frames' data)
// aliases the received message's buffer, which the codec keeps until Release
// (docs/FORMAT.md §4.1–4.2): a 1 MiB data message costs no fresh 1 MiB slice,
// so the garbage of an upload or a restore no longer grows with its size.
//
// It is wired with grpc.ForceServerCodecV2 in internal/app and with
// grpc.ForceCodecV2 on the client library's ReadRecords and ReadFile calls, never
// registered with encoding.RegisterCodecV2 (that would replace "proto" for
// every gRPC user in the process).
//
// wirecodec imports only the generated API package (proto/...), gRPC,
// protobuf and the standard library.
package wirecodec
