package backupstorev1

// Metadata keys of the API that the .proto files can only name in comments, kept beside the
// generated code so that the service and its clients spell them once (this file is written by
// hand; buf generate leaves it alone).
const (
	// UploadHeader is the response-header key with which UploadFile asks for a file's body:
	// the service sends "backupstore-upload: send-data" (UploadSendData) once it wants the
	// body; a deduplicated upload answers without it (see UploadFile in backup.proto).
	UploadHeader = "backupstore-upload"
	// UploadSendData is UploadHeader's value.
	UploadSendData = "send-data"
)
