package registry

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"net"
	"strings"
	"time"

	"backupstore/storage"
)

// Outcome of one probe.
type Outcome string

// Outcomes.
const (
	OK      Outcome = "OK"
	Warning Outcome = "WARNING"
	Failed  Outcome = "FAILED"
	Skipped Outcome = "SKIPPED"
)

// Probe is one line of a validation report.
type Probe struct {
	API     string  `json:"api"`
	Outcome Outcome `json:"outcome"`
	Code    string  `json:"code,omitempty"`
	Hint    string  `json:"hint,omitempty"`
}

// Report is the result of probing a storage's credentials, API by API.
type Report struct {
	OK          bool      `json:"ok"`
	Probes      []Probe   `json:"probes"`
	At          time.Time `json:"at"`
	AbortDenied bool      `json:"abort_denied"`
	// Unreachable is set when the endpoint did not answer at all.
	Unreachable bool `json:"unreachable,omitempty"`
}

// Summary is a one-line account of the report for status messages and logs.
func (r *Report) Summary() string {
	var failed, warned []string
	for _, p := range r.Probes {
		switch p.Outcome {
		case Failed:
			failed = append(failed, p.API+" ("+p.Code+")")
		case Warning:
			warned = append(warned, p.API+" ("+p.Code+")")
		}
	}
	s := fmt.Sprintf("%d probes passed", len(r.Probes)-len(failed)-len(warned))
	if r.Unreachable {
		s = "endpoint unreachable"
	}
	if len(failed) > 0 {
		s = "failed: " + strings.Join(failed, ", ")
	}
	if len(warned) > 0 {
		s += "; warning: " + strings.Join(warned, ", ")
	}
	return s
}

// Lines renders the report one API per line, for error messages.
func (r *Report) Lines() string {
	var b strings.Builder
	for _, p := range r.Probes {
		fmt.Fprintf(&b, "\n  %-24s %-7s", p.API, p.Outcome)
		if p.Code != "" {
			b.WriteString(" " + p.Code)
		}
		if p.Hint != "" {
			b.WriteString(": " + p.Hint)
		}
	}
	return b.String()
}

// target is what probing needs of an S3 store; *storage.S3 satisfies it.
type target interface {
	BucketLocation(ctx context.Context) (string, error)
	List(ctx context.Context, prefix string, fn func(storage.ObjectInfo) error) error
	Put(ctx context.Context, key string, r io.Reader) (storage.ObjectInfo, error)
	Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error)
	DeleteObject(ctx context.Context, key string) error
	CreateMultipart(ctx context.Context, key string) (string, error)
	UploadPart(ctx context.Context, key, uploadID string, number int32, r io.Reader, size int64, crc32c uint32) (string, error)
	CompleteMultipart(ctx context.Context, key, uploadID string, parts []storage.CompletedPart) (storage.ObjectInfo, error)
	AbortMultipart(ctx context.Context, key, uploadID string) error
}

var _ target = (*storage.S3)(nil)

// probeDir holds the probe objects, relative to the storage's prefix.
const probeDir = ".backupstore-probe/"

var errStopList = errors.New("stop")

// probe runs every API check against t. region is the region the customer
// named; kms says whether SSE-KMS is configured. Each step gets its own
// timeout so an endpoint that never answers costs a bounded time.
//
// The report names only known S3 error codes and this package's own codes and
// hints, never the endpoint's text (see explain); the endpoint's error, as it
// came, goes to log.
func probe(ctx context.Context, t target, region, bucket string, kms bool, stepTimeout time.Duration, log *slog.Logger) *Report {
	r := &Report{At: time.Now().UTC()}
	step := func(fn func(ctx context.Context) error) error {
		sctx, cancel := context.WithTimeout(ctx, stepTimeout)
		defer cancel()
		return fn(sctx)
	}
	add := func(api, action string, err error) bool {
		if err == nil {
			r.Probes = append(r.Probes, Probe{API: api, Outcome: OK})
			return true
		}
		code, hint := explain(err, action, bucket, region)
		log.InfoContext(ctx, "storage probe failed", "api", api, "code", code, "err", err)
		if code == "Unreachable" {
			r.Unreachable = true
		}
		r.Probes = append(r.Probes, Probe{API: api, Outcome: Failed, Code: code, Hint: hint})
		return false
	}
	skipRest := func(reason string, apis ...string) {
		for _, a := range apis {
			r.Probes = append(r.Probes, Probe{API: a, Outcome: Skipped, Hint: reason})
		}
	}
	apis := []string{"ListObjectsV2", "PutObject"}
	if kms {
		apis = append(apis, "kms:GenerateDataKey")
	}
	apis = append(apis, "GetObject")
	if kms {
		apis = append(apis, "kms:Decrypt")
	}
	apis = append(apis, "DeleteObject", "MultipartUpload", "AbortMultipartUpload")

	// 1. GetBucketLocation: the credentials, the bucket and the region.
	err := step(func(ctx context.Context) error {
		loc, err := t.BucketLocation(ctx)
		if err != nil {
			return err
		}
		if loc != region {
			return &regionMismatch{got: loc}
		}
		return nil
	})
	if !add("GetBucketLocation", "s3:GetBucketLocation", err) {
		if code := r.Probes[0].Code; code != "AccessDenied" {
			skipRest("not probed: "+code+" makes every other call fail the same way", apis...)
			r.finish()
			return r
		}
	}

	// 2. ListObjectsV2 (s3:ListBucket) under the probe prefix only.
	add("ListObjectsV2", "s3:ListBucket", step(func(ctx context.Context) error {
		err := t.List(ctx, probeDir, func(storage.ObjectInfo) error { return errStopList })
		if errors.Is(err, errStopList) {
			return nil
		}
		return err
	}))

	// 3. PutObject / GetObject / DeleteObject of a probe object.
	key := probeDir + randomName()
	body := []byte("backupstore probe " + key)
	putErr := step(func(ctx context.Context) error {
		_, err := t.Put(ctx, key, bytes.NewReader(body))
		return err
	})
	add("PutObject", "s3:PutObject", putErr)
	if kms {
		addKMS(r, "kms:GenerateDataKey", putErr)
	}
	if putErr != nil {
		skip := []string{"GetObject"}
		if kms {
			skip = append(skip, "kms:Decrypt")
		}
		skipRest("not probed: PutObject failed, nothing to read back", skip...)
		skipRest("not probed: PutObject failed, nothing to delete", "DeleteObject")
	} else {
		getErr := step(func(ctx context.Context) error {
			rc, err := t.Get(ctx, key, 0, -1)
			if err != nil {
				return err
			}
			got, err := io.ReadAll(io.LimitReader(rc, int64(len(body))+1))
			if cerr := rc.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
			if !bytes.Equal(got, body) {
				return errContentMismatch
			}
			return nil
		})
		add("GetObject", "s3:GetObject", getErr)
		if kms {
			addKMS(r, "kms:Decrypt", getErr)
		}
		add("DeleteObject", "s3:DeleteObject", step(func(ctx context.Context) error { return t.DeleteObject(ctx, key) }))
	}

	// 4. A tiny multipart upload: Create → UploadPart → Abort. Abort denied is a
	// warning (a capability), and the upload is then completed and deleted so
	// nothing is left behind.
	mkey := probeDir + randomName() + ".multipart"
	var uploadID, etag string
	mpErr := step(func(ctx context.Context) error {
		id, err := t.CreateMultipart(ctx, mkey)
		if err != nil {
			return err
		}
		uploadID = id
		etag, err = t.UploadPart(ctx, mkey, id, 1, bytes.NewReader(body), int64(len(body)), crc32.Checksum(body, castagnoli))
		return err
	})
	add("MultipartUpload", "s3:PutObject", mpErr)
	if uploadID == "" {
		skipRest("not probed: no multipart upload was created", "AbortMultipartUpload")
		r.finish()
		return r
	}
	abortErr := step(func(ctx context.Context) error { return t.AbortMultipart(ctx, mkey, uploadID) })
	switch {
	case abortErr == nil:
		r.Probes = append(r.Probes, Probe{API: "AbortMultipartUpload", Outcome: OK})
	case errors.Is(abortErr, storage.ErrAbortDenied):
		r.AbortDenied = true
		r.Probes = append(r.Probes, Probe{API: "AbortMultipartUpload", Outcome: Warning, Code: "AccessDenied",
			Hint: "s3:AbortMultipartUpload is not granted: failed uploads will leave orphaned parts (billed) until a lifecycle rule AbortIncompleteMultipartUpload removes them; grant it or add the rule (see backupctl storage policy)"})
		if mpErr == nil {
			// Clean up without Abort: complete the one-part upload, then delete it.
			_ = step(func(ctx context.Context) error {
				if _, err := t.CompleteMultipart(ctx, mkey, uploadID, []storage.CompletedPart{{Number: 1, ETag: etag, CRC32C: crc32.Checksum(body, castagnoli)}}); err != nil {
					return err
				}
				return t.DeleteObject(ctx, mkey)
			})
		}
	default:
		code, hint := explain(abortErr, "s3:AbortMultipartUpload", bucket, region)
		log.InfoContext(ctx, "storage probe failed", "api", "AbortMultipartUpload", "code", code, "err", abortErr)
		r.Probes = append(r.Probes, Probe{API: "AbortMultipartUpload", Outcome: Warning, Code: code, Hint: hint})
	}
	r.finish()
	return r
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func (r *Report) finish() {
	r.OK = true
	for _, p := range r.Probes {
		if p.Outcome == Failed || p.Outcome == Skipped {
			r.OK = false
		}
	}
}

// addKMS derives a KMS line from the S3 call that needed the key.
func addKMS(r *Report, api string, err error) {
	if err == nil {
		r.Probes = append(r.Probes, Probe{API: api, Outcome: OK})
		return
	}
	code := knownCode(storage.ErrorCode(err))
	if strings.Contains(strings.ToUpper(code), "KMS") {
		r.Probes = append(r.Probes, Probe{API: api, Outcome: Failed, Code: code,
			Hint: "the credentials may not use the KMS key for " + api + "; grant it on the key (see backupctl storage policy) and check the key is enabled and in the bucket's region"})
		return
	}
	r.Probes = append(r.Probes, Probe{API: api, Outcome: Skipped, Hint: "not probed: the S3 call failed for another reason"})
}

var errContentMismatch = errors.New("probe object read back with different content")

type regionMismatch struct{ got string }

func (e *regionMismatch) Error() string { return "bucket is in region " + e.got }

// explain turns an error into an error code and a hint a person can act on.
// The code is a known S3 error code (knownS3Codes) or one of this package's
// own; the hint is ours. Nothing the endpoint wrote reaches either: an
// endpoint can be anything that speaks HTTP, and its text (an internal
// service's error page, a host name, a secret) must not come back to the
// tenant.
func explain(err error, action, bucket, region string) (code, hint string) {
	var refused *EndpointRefusedError
	if errors.As(err, &refused) {
		return codeEndpointNotAllowed, "this service does not connect to this endpoint's addresses; ask its operator to add the endpoint to --allow-endpoints if it is your on-premises S3 service"
	}
	var rm *regionMismatch
	if errors.As(err, &rm) {
		if checkRegion(rm.got) != nil { // not a region code: the endpoint's own text
			return codeUnexpected, "GetBucketLocation answered with something that is not a region code; check that the endpoint is an S3 service"
		}
		return "RegionMismatch", fmt.Sprintf("the bucket is in %s, not %s: register it with region %s", rm.got, region, rm.got)
	}
	if errors.Is(err, errContentMismatch) {
		return "ContentMismatch", "the object read back differs from what was written; check for a proxy or gateway rewriting objects"
	}
	raw := storage.ErrorCode(err)
	code = knownCode(raw)
	switch code {
	case "":
		if isNetwork(err) {
			return "Unreachable", "the endpoint did not answer in time; check the endpoint URL, DNS and firewall"
		}
		return codeUnexpected, "the endpoint's answer to " + action + " is not an S3 response this service understands; check that the endpoint is an S3 service (the answer is in the server log)"
	case codeUnexpected:
		return code, "the endpoint refused " + action + " with an error that is not a known S3 error code; check that the endpoint is an S3 service (the answer is in the server log)"
	case "AccessDenied", "Forbidden":
		return code, fmt.Sprintf("grant %s on arn:aws:s3:::%s to these credentials (see backupctl storage policy)", action, bucketARN(bucket, action))
	case "InvalidAccessKeyId":
		return code, "the access key id is not known to this endpoint; check access_key_id (and the endpoint)"
	case "SignatureDoesNotMatch":
		return code, "the secret access key does not match the access key id; re-enter it"
	case "NoSuchBucket":
		return code, "the bucket does not exist at this endpoint; check its name (and the endpoint)"
	case "AuthorizationHeaderMalformed", "PermanentRedirect", "IllegalLocationConstraintException", "InvalidRegion":
		return code, "the bucket is not in region " + region + "; register it with the bucket's region code"
	case "ExpiredToken", "InvalidToken", "TokenRefreshRequired":
		return code, "the credentials have expired; register long-lived access keys"
	case "TemporaryRedirect", "Redirect", "MovedPermanently", "Found":
		return code, "the endpoint answered with a redirect, which this service does not follow; register the endpoint it redirects to (on AWS, the bucket's region)"
	}
	return code, "S3 refused " + action
}

// Codes of this package's own, beside the S3 error codes in knownS3Codes.
const (
	codeEndpointNotAllowed = "EndpointNotAllowed"
	codeUnexpected         = "UnexpectedResponse"
)

// errEndpointRefusedAtDial stands for a refusal that passed the registration
// check and was refused at connect time (the name resolves elsewhere now).
var errEndpointRefusedAtDial = errors.New("endpoint refused at connect time")

// knownS3Codes are the error codes a report may name: Amazon S3's documented
// error codes, the codes the SDK derives from a bare HTTP status (HEAD
// answers have no body), and the KMS codes S3 passes on. Any other code is
// the endpoint's own text and becomes UnexpectedResponse.
var knownS3Codes = func() map[string]bool {
	m := map[string]bool{}
	for _, c := range strings.Fields(`
		AccessDenied AccessControlListNotSupported AccountProblem AllAccessDisabled AmbiguousGrantByEmailAddress
		AuthorizationHeaderMalformed AuthorizationQueryParametersError BadDigest BadRequest BucketAlreadyExists
		BucketAlreadyOwnedByYou BucketNotEmpty ConditionalRequestConflict CredentialsNotSupported
		CrossLocationLoggingProhibited EntityTooLarge EntityTooSmall ExpiredToken IllegalLocationConstraintException
		IllegalVersioningConfigurationException IncompleteBody IncorrectNumberOfFilesInPostRequest InlineDataTooLarge
		InternalError InvalidAccessKeyId InvalidAccessPoint InvalidArgument InvalidBucketName InvalidBucketState
		InvalidDigest InvalidEncryptionAlgorithmError InvalidLocationConstraint InvalidObjectState InvalidPart
		InvalidPartOrder InvalidPayer InvalidPolicyDocument InvalidRange InvalidRegion InvalidRequest InvalidSecurity
		InvalidStorageClass InvalidToken InvalidURI KeyTooLongError MalformedACLError MalformedPOSTRequest
		MalformedXML MaxMessageLengthExceeded MetadataTooLarge MethodNotAllowed MissingContentLength
		MissingRequestBodyError MissingSecurityHeader NoSuchBucket NoSuchBucketPolicy NoSuchKey NoSuchUpload
		NoSuchVersion NotImplemented NotModified NotSignedUp OperationAborted PermanentRedirect PreconditionFailed
		Redirect RequestHeaderSectionTooLarge RequestIsNotMultiPartContent RequestTimeTooSkewed RequestTimeout
		RequestTorrentOfBucketError ServiceUnavailable SignatureDoesNotMatch SlowDown TemporaryRedirect
		TokenRefreshRequired TooManyBuckets UnexpectedContent UnresolvableGrantByEmailAddress
		UserKeyMustBeSpecified XAmzContentSHA256Mismatch
		Forbidden NotFound MovedPermanently Found
		KMS.AccessDeniedException KMS.DisabledException KMS.InvalidKeyUsageException KMS.KMSInvalidStateException
		KMS.KeyUnavailableException KMS.NotFoundException KMS.ThrottlingException KMS.UnrecognizedClientException`) {
		m[c] = true
	}
	return m
}()

// knownCode is code if it is a known S3 error code, "" for none, and
// UnexpectedResponse for anything else.
func knownCode(code string) string {
	if code == "" || knownS3Codes[code] {
		return code
	}
	return codeUnexpected
}

// refusedTarget stands for an endpoint the policy refused: every call fails
// with the refusal, so the report says so and nothing is sent.
type refusedTarget struct{ err error }

func (t refusedTarget) BucketLocation(context.Context) (string, error) { return "", t.err }
func (t refusedTarget) List(context.Context, string, func(storage.ObjectInfo) error) error {
	return t.err
}
func (t refusedTarget) Put(context.Context, string, io.Reader) (storage.ObjectInfo, error) {
	return storage.ObjectInfo{}, t.err
}
func (t refusedTarget) Get(context.Context, string, int64, int64) (io.ReadCloser, error) {
	return nil, t.err
}
func (t refusedTarget) DeleteObject(context.Context, string) error { return t.err }
func (t refusedTarget) CreateMultipart(context.Context, string) (string, error) {
	return "", t.err
}
func (t refusedTarget) UploadPart(context.Context, string, string, int32, io.Reader, int64, uint32) (string, error) {
	return "", t.err
}
func (t refusedTarget) CompleteMultipart(context.Context, string, string, []storage.CompletedPart) (storage.ObjectInfo, error) {
	return storage.ObjectInfo{}, t.err
}
func (t refusedTarget) AbortMultipart(context.Context, string, string) error { return t.err }

func bucketARN(bucket, action string) string {
	switch action {
	case "s3:GetBucketLocation", "s3:ListBucket":
		return bucket
	}
	return bucket + "/*"
}

func isNetwork(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	var oe *net.OpError
	return errors.As(err, &oe)
}

func randomName() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return time.Now().UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b)
}
