package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/aws/smithy-go"
)

// MinPartSize is the smallest size of a multipart part other than the last (S3's limit).
const MinPartSize = 5 << 20

// MaxPartNumber is the highest multipart part number (S3's limit).
const MaxPartNumber = 10000

// MaxKeyLen is the longest key, storage prefix included, in bytes (S3's limit).
const MaxKeyLen = 1024

// ObjectInfo describes a stored object. Key is relative to the store's key prefix.
type ObjectInfo struct {
	Key  string
	Size int64
	// ETag is opaque: compare it only with ETags of the same store. On S3 it is the server's
	// (quoted) ETag; on Local see Local.
	ETag string
	// LastModified may be zero where the store cannot know it without another request
	// (S3 Put).
	LastModified time.Time
}

// CompletedPart names one uploaded part for CompleteMultipart: its number, the ETag UploadPart
// returned and the CRC32C (Castagnoli) of its bytes, which is required (S3 refuses to complete an
// upload created with CRC32C without each part's checksum).
type CompletedPart struct {
	Number int32
	ETag   string
	CRC32C uint32
}

// MultipartUpload is a multipart upload that was created and neither completed nor aborted.
type MultipartUpload struct {
	Key      string // relative to the store's prefix
	UploadID string
	// Initiated is when the upload was created, by the store's clock. S3-compatible servers
	// may report a later time (versitygw: the last part's upload); never an earlier one.
	Initiated time.Time
}

// Reader is the read side of a store. Implementations are safe for concurrent use.
type Reader interface {
	// Get returns length bytes of key from offset (length < 0: to the end; a range reaching
	// past the end is cut at the end; length 0: an empty body). It fails with ErrNotFound if
	// the object is missing and with ErrInvalidRange if offset > 0 and offset >= size. The
	// body reads through ctx: keep ctx alive until it is closed.
	Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error)
	// Head returns the object's size, ETag and modification time; ErrNotFound if missing.
	Head(ctx context.Context, key string) (ObjectInfo, error)
	// List calls fn for every object whose key starts with prefix ("" for all), in ascending
	// key order, keys relative to the store's prefix. prefix need not end at a "/". An error
	// from fn stops the listing and is returned as is.
	List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error
}

// Store is what the service needs from an object store. Implementations are safe for concurrent
// use; every method validates its keys (ErrInvalidKey).
type Store interface {
	Reader

	// Put writes the whole object from r, replacing any object at key. Either the complete
	// object becomes visible or, if r fails or ctx ends first, none does (a replaced object
	// stays as it was). r is read to EOF; it should return promptly once ctx is done.
	Put(ctx context.Context, key string, r io.Reader) (ObjectInfo, error)

	// CreateMultipart starts a resumable upload to key and returns its id. Nothing is visible
	// at key until CompleteMultipart.
	CreateMultipart(ctx context.Context, key string) (uploadID string, err error)

	// UploadPart stores part number (1..MaxPartNumber) of the upload from exactly size bytes of
	// r, whose CRC32C must be crc32c (ErrChecksumMismatch otherwise, and nothing is stored).
	// Uploading a number again replaces the earlier part (the later body wins). ErrNotFound if
	// the upload does not exist (never created, aborted or completed). Parts may be uploaded
	// concurrently.
	UploadPart(ctx context.Context, key, uploadID string, number int32, r io.Reader, size int64, crc32c uint32) (etag string, err error)

	// CompleteMultipart assembles the listed parts (any order; duplicates are an error) into
	// the object at key. ErrInvalidPart if a part is missing or its ETag or CRC32C does not
	// match what was uploaded; ErrPartTooSmall if a part other than the last is below
	// MinPartSize. Idempotent: completing an already completed upload again with the same
	// parts returns the same object as long as it is unchanged; otherwise ErrNotFound.
	CompleteMultipart(ctx context.Context, key, uploadID string, parts []CompletedPart) (ObjectInfo, error)

	// AbortMultipart discards the upload and its parts. Idempotent: an unknown, aborted or
	// completed upload is not an error (a completed object is never removed). A refusal by the
	// server (S3 AccessDenied: the policy lacks s3:AbortMultipartUpload) is an
	// *AbortDeniedError, which matches ErrAbortDenied.
	AbortMultipart(ctx context.Context, key, uploadID string) error

	// ListMultipart calls fn for every multipart upload in progress (created, neither
	// completed nor aborted) whose key starts with prefix ("" for all), in ascending key order
	// (uploads of one key in the store's order), keys relative to the store's prefix. S3:
	// ListMultipartUploads, paged; Local: its staged uploads. An upload created or ended
	// during the listing may or may not be reported. An error from fn stops the listing and
	// is returned as is.
	ListMultipart(ctx context.Context, prefix string, fn func(MultipartUpload) error) error

	// Delete removes the objects (S3: DeleteObjects, 1000 keys a call). Idempotent: missing
	// keys are not errors. Keys that could not be deleted are reported in a *DeleteError; the
	// other keys are still deleted.
	Delete(ctx context.Context, keys ...string) error
}

var (
	// ErrNotFound: the object (S3 NoSuchKey), the multipart upload (NoSuchUpload) or the
	// file is missing. A missing bucket is not ErrNotFound (see ErrorCode: NoSuchBucket),
	// except for Head: a HEAD answer has no body, so S3 cannot tell the two apart there.
	ErrNotFound = errors.New("storage: not found")
	// ErrAccessDenied: the server refused the request for what the storage is configured with
	// — its credentials, their permissions, the bucket or its region — so retrying will not
	// help until the storage is fixed (see RefusalCodes). The SDK's error stays wrapped beside
	// it: ErrorCode names the S3 code, and the log has the detail.
	ErrAccessDenied = errors.New("storage: access denied")
	// ErrAbortDenied: the server refused AbortMultipartUpload (see AbortDeniedError).
	ErrAbortDenied = errors.New("storage: abort of multipart upload denied")
	// ErrPartTooSmall: a part other than the last is below MinPartSize (S3 EntityTooSmall).
	ErrPartTooSmall = errors.New("storage: multipart part too small")
	// ErrChecksumMismatch: the bytes do not match the checksum given for them (S3 BadDigest).
	ErrChecksumMismatch = errors.New("storage: checksum mismatch")
	// ErrInvalidKey: the key (or list prefix) is not acceptable (see ValidateKey).
	ErrInvalidKey = errors.New("storage: invalid key")
	// ErrInvalidPart: CompleteMultipart names a part that was not uploaded, with a stale ETag
	// or a wrong CRC32C, or the part list is empty or repeats a number (S3 InvalidPart,
	// InvalidPartOrder).
	ErrInvalidPart = errors.New("storage: invalid multipart part")
	// ErrInvalidRange: Get's offset is at or past the end of a non-empty object.
	ErrInvalidRange = errors.New("storage: invalid range")
	// ErrUnavailable: the store could not be reached or answered with a server-side failure
	// (network error, timeout, HTTP 5xx, SlowDown) — worth retrying later.
	ErrUnavailable = errors.New("storage: unavailable")
	// ErrBadResponse: the server's answer does not fit the request — a ranged body longer or
	// shorter than the range asked (a server or proxy that ignores Range), a Content-Range for
	// other bytes, a listing that does not advance. The store, or something between, is
	// misbehaving; what it sent is not used.
	ErrBadResponse = errors.New("storage: response does not match the request")
)

// IsUnavailable reports whether err is a transient failure to reach the store
// (errors.Is(err, ErrUnavailable)). A cancelled or expired caller context is not.
func IsUnavailable(err error) bool { return errors.Is(err, ErrUnavailable) }

// RefusalCodes are the S3 error codes that are ErrAccessDenied: a refusal of the credentials
// (InvalidAccessKeyId, SignatureDoesNotMatch), of their permissions (AccessDenied; Forbidden is
// what a body-less HEAD 403 reports), of the account (AllAccessDisabled, AccountProblem), of
// the bucket (NoSuchBucket) or of its region (AuthorizationHeaderMalformed, PermanentRedirect).
// This is the one list: callers test errors.Is(err, ErrAccessDenied), never codes.
var RefusalCodes = []string{
	"AccessDenied", "Forbidden", "InvalidAccessKeyId", "SignatureDoesNotMatch",
	"AllAccessDisabled", "AccountProblem", "NoSuchBucket",
	"AuthorizationHeaderMalformed", "PermanentRedirect",
}

// ErrorCode returns the S3 error code carried by err (e.g. AccessDenied, NoSuchBucket,
// InvalidAccessKeyId, SignatureDoesNotMatch, AuthorizationHeaderMalformed), or "" if it carries
// none (network failures, Local errors). A *DeleteError answers with its first key's code.
func ErrorCode(err error) string {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode()
	}
	return ""
}

// AbortDeniedError reports that the server refused to abort a multipart upload, typically
// because the credentials lack s3:AbortMultipartUpload. The upload and its parts stay until a
// lifecycle rule (AbortIncompleteMultipartUpload) or someone with the right removes them.
type AbortDeniedError struct {
	Key      string // relative to the store's prefix
	UploadID string
	Err      error // the server's error (ErrorCode gives e.g. "AccessDenied")
}

func (e *AbortDeniedError) Error() string {
	return fmt.Sprintf("s3.AbortMultipartUpload %q upload %s: denied: %v", e.Key, e.UploadID, e.Err)
}

func (e *AbortDeniedError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrAbortDenied) true.
func (e *AbortDeniedError) Is(target error) bool { return target == ErrAbortDenied }

// DeleteObjectError is one key DeleteObjects reported as not deleted. It is a smithy.APIError,
// so ErrorCode returns its Code.
type DeleteObjectError struct {
	Key     string // relative to the store's prefix
	Code    string // S3 error code, e.g. AccessDenied
	Message string
}

func (e *DeleteObjectError) Error() string {
	return fmt.Sprintf("delete %q: %s: %s", e.Key, e.Code, e.Message)
}

// ErrorCode implements smithy.APIError.
func (e *DeleteObjectError) ErrorCode() string { return e.Code }

// ErrorMessage implements smithy.APIError.
func (e *DeleteObjectError) ErrorMessage() string { return e.Message }

// ErrorFault implements smithy.APIError.
func (e *DeleteObjectError) ErrorFault() smithy.ErrorFault { return smithy.FaultUnknown }

// Is makes errors.Is(err, ErrAccessDenied) true for a key refused with one of RefusalCodes.
func (e *DeleteObjectError) Is(target error) bool {
	return target == ErrAccessDenied && slices.Contains(RefusalCodes, e.Code)
}

// DeleteError lists the keys a Delete could not remove. Every other key was deleted.
type DeleteError struct {
	Keys []*DeleteObjectError
}

func (e *DeleteError) Error() string {
	if len(e.Keys) == 1 {
		return "s3.DeleteObjects: " + e.Keys[0].Error()
	}
	return fmt.Sprintf("s3.DeleteObjects: %d keys not deleted, first: %v", len(e.Keys), e.Keys[0])
}

// Unwrap returns the per-key errors, so errors.As and ErrorCode see the first one.
func (e *DeleteError) Unwrap() []error {
	errs := make([]error, len(e.Keys))
	for i, k := range e.Keys {
		errs[i] = k
	}
	return errs
}

// ValidateKey reports (ErrInvalidKey) whether key is unusable as an object key: empty, longer
// than MaxKeyLen, not UTF-8, containing control characters, starting or ending with "/", or
// with an empty, "." or ".." path element. Keys are the same on every store: what S3 would
// accept but a directory tree could not represent is refused everywhere.
func ValidateKey(key string) error {
	if key == "" {
		return fmt.Errorf("%w: empty", ErrInvalidKey)
	}
	if err := validatePath(key, false); err != nil {
		return err
	}
	for elem := range strings.SplitSeq(key, "/") {
		if err := validateElem(key, elem); err != nil {
			return err
		}
	}
	return nil
}

// validatePrefix checks a List prefix: "" or the start of a valid key (it may end with "/";
// its last, partial element may be anything a key element may start with).
func validatePrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	if err := validatePath(prefix, true); err != nil {
		return err
	}
	i := strings.LastIndexByte(prefix, '/')
	if i < 0 {
		return nil
	}
	for elem := range strings.SplitSeq(prefix[:i], "/") {
		if err := validateElem(prefix, elem); err != nil {
			return err
		}
	}
	return nil
}

func validatePath(s string, trailingSlash bool) error {
	switch {
	case len(s) > MaxKeyLen:
		return fmt.Errorf("%w: longer than %d bytes", ErrInvalidKey, MaxKeyLen)
	case !utf8.ValidString(s):
		return fmt.Errorf("%w: not UTF-8", ErrInvalidKey)
	case strings.HasPrefix(s, "/"):
		return fmt.Errorf("%w: %q starts with /", ErrInvalidKey, s)
	case !trailingSlash && strings.HasSuffix(s, "/"):
		return fmt.Errorf("%w: %q ends with /", ErrInvalidKey, s)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("%w: %q contains a control character", ErrInvalidKey, s)
		}
	}
	return nil
}

func validateElem(key, elem string) error {
	switch elem {
	case "":
		return fmt.Errorf("%w: %q has an empty path element", ErrInvalidKey, key)
	case ".", "..":
		return fmt.Errorf("%w: %q has a %q path element", ErrInvalidKey, key, elem)
	}
	return nil
}

// opError names the operation that failed, and carries an optional sentinel (kind) beside the
// underlying error so both errors.Is(err, kind) and errors.As(err, &smithy.APIError) work.
type opError struct {
	op   string
	kind error // may be nil
	err  error
}

func (e *opError) Error() string { return e.op + ": " + e.err.Error() }

func (e *opError) Unwrap() []error {
	if e.kind == nil {
		return []error{e.err}
	}
	return []error{e.kind, e.err}
}
