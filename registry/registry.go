package registry

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/google/uuid"

	"backupstore/fault"
	"backupstore/metadata"
	"backupstore/secrets"
	"backupstore/storage"
)

// Storage statuses kept in the catalog.
const (
	StatusAvailable   = "AVAILABLE"
	StatusUnavailable = "UNAVAILABLE"
)

// Config configures a Registry. Zero values take the defaults in withDefaults.
type Config struct {
	Catalog *metadata.Store
	Keyring *secrets.Keyring
	Logger  *slog.Logger
	// ServiceStore is the operator's service-managed default storage, for
	// tenants without a storage of their own: where backups with no storage
	// id live (StoreFor ""). Required.
	ServiceStore storage.Store
	// FailureThreshold is how many validations in a row must fail before a
	// storage is marked unavailable (one network blip is not enough).
	// Default DefaultFailureThreshold.
	FailureThreshold int
	// StepTimeout bounds each probed API call. Default DefaultStepTimeout.
	StepTimeout time.Duration
	// DialTimeout bounds connecting to an endpoint. Default 5s.
	DialTimeout time.Duration
	// HTTPClient, if set, is used by every S3 client (tests record requests with it).
	// It bypasses the endpoint policy at connect time (registration still checks it).
	HTTPClient *http.Client
	// AllowEndpoints opens non-public addresses to tenant storages, in
	// --allow-endpoints syntax (ParseEndpointPolicy): comma-separated CIDRs,
	// addresses and host names. Empty: public addresses only.
	AllowEndpoints string
	// LookupIP, if set, resolves endpoint host names instead of the system
	// resolver (tests stub it).
	LookupIP func(ctx context.Context, host string) ([]netip.Addr, error)
}

// Defaults of Config.
const (
	DefaultFailureThreshold = 3
	DefaultStepTimeout      = 10 * time.Second
)

func (c *Config) withDefaults() {
	if c.FailureThreshold <= 0 {
		c.FailureThreshold = DefaultFailureThreshold
	}
	if c.StepTimeout <= 0 {
		c.StepTimeout = DefaultStepTimeout
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = 5 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Registry manages customer storages. It is safe for concurrent use.
type Registry struct {
	cfg       Config
	endpoints *EndpointPolicy

	mu      sync.Mutex
	clients map[string]cachedClient // storage id → client

	now           func() time.Time // time.Now; tests move it
	beforeRecheck func(id string)  // tests park the one recheck here
}

type cachedClient struct {
	fingerprint string
	s3          *storage.S3
	st          metadata.Storage // the row the fingerprint was taken from
	checked     time.Time        // when the row was last read from the catalog
	rechecking  bool             // a caller is reading the row again
}

// clientRecheck is how long Client trusts a cached client without reading
// the storage row again: credentials rotated on another replica are picked
// up within it (on this replica at once).
const clientRecheck = 5 * time.Second

// New returns a Registry.
func New(cfg Config) (*Registry, error) {
	if cfg.Catalog == nil {
		return nil, errors.New("registry: Catalog is required")
	}
	if cfg.Keyring == nil {
		return nil, errors.New("registry: Keyring is required")
	}
	if cfg.ServiceStore == nil {
		return nil, errors.New("registry: ServiceStore is required")
	}
	cfg.withDefaults()
	endpoints, err := ParseEndpointPolicy(cfg.AllowEndpoints)
	if err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	if cfg.LookupIP != nil {
		endpoints = endpoints.withLookup(cfg.LookupIP)
	}
	return &Registry{cfg: cfg, endpoints: endpoints, clients: map[string]cachedClient{}, now: time.Now}, nil
}

// RegisterInput is a storage registration as the customer gives it.
type RegisterInput struct {
	Name, Region, Bucket, AccessKeyID string
	SecretAccessKey                   secrets.Secret
	Endpoint                          string
	PathStyle                         bool
	Prefix, KMSKeyID                  string
	MakeDefault                       bool
}

func (in *RegisterInput) check() error {
	return collect(checkName(in.Name), checkRegion(in.Region), checkBucket(in.Bucket),
		checkAccessKeyID("access_key_id", in.AccessKeyID), checkSecret("secret_access_key", in.SecretAccessKey.Reveal()),
		checkEndpoint(in.Endpoint), checkPrefix(in.Prefix), checkKMS(in.KMSKeyID))
}

// Register validates the fields, probes the credentials and, only if every
// required probe passed, seals the secret and saves the storage.
func (r *Registry) Register(ctx context.Context, tenant string, in RegisterInput) (*metadata.Storage, *Report, error) {
	if err := in.check(); err != nil {
		return nil, nil, err
	}
	if _, err := r.cfg.Catalog.GetStorageByName(ctx, tenant, in.Name); err == nil {
		return nil, nil, nameTaken(in.Name)
	} else if !errors.Is(err, metadata.ErrNotFound) {
		return nil, nil, err
	}
	if err := r.checkOverlap(ctx, tenant, &in); err != nil {
		return nil, nil, err
	}
	st := &metadata.Storage{
		ID: "stg-" + uuid.NewString(), TenantID: tenant, Name: in.Name, Region: in.Region, Bucket: in.Bucket,
		AccessKeyID: in.AccessKeyID, Endpoint: in.Endpoint, PathStyle: in.PathStyle, Prefix: in.Prefix, KMSKeyID: in.KMSKeyID,
	}
	rep, s3, err := r.probe(ctx, st, in.SecretAccessKey)
	if err != nil {
		return nil, rep, err
	}
	ct, keyID, err := r.cfg.Keyring.Seal(in.SecretAccessKey, aad(tenant, st.ID))
	if err != nil {
		return nil, rep, err
	}
	st.SecretCiphertext, st.SecretKeyID = ct, keyID
	applyReport(st, rep, r.cfg.FailureThreshold)
	if err := r.cfg.Catalog.EnsureTenant(ctx, tenant); err != nil {
		return nil, rep, err
	}
	// Checked again under the claim lock: a registration that overlaps and
	// was probed at the same time must not be saved beside this one.
	err = r.withClaimLock(ctx, func() error {
		if err := r.checkOverlap(ctx, tenant, &in); err != nil {
			return err
		}
		return r.cfg.Catalog.CreateStorage(ctx, st)
	})
	if err != nil {
		if errors.Is(err, metadata.ErrConflict) {
			return nil, rep, nameTaken(in.Name)
		}
		return nil, rep, err
	}
	r.remember(st, s3)
	if in.MakeDefault {
		if err := r.cfg.Catalog.SetDefaultStorage(ctx, tenant, st.ID); err != nil {
			return nil, rep, err
		}
		st.IsDefault = true
	}
	r.cfg.Logger.InfoContext(ctx, "storage registered", "tenant", tenant, "storage", st.ID, "name", st.Name,
		"bucket", st.Bucket, "region", st.Region, "abort_denied", rep.AbortDenied)
	return st, rep, nil
}

// keySpace is where a storage's objects of a tenant live: every key the
// service writes there starts with it, and garbage collection lists it.
func keySpace(prefix, tenant string) string {
	if prefix == "" {
		return tenant + "/"
	}
	return prefix + "/" + tenant + "/"
}

// checkOverlap refuses a storage whose key space overlaps one already
// claimed, by this tenant or any other, on the same bucket of the same S3
// service: garbage collection of either would take the other's objects for
// strays. Another tenant is never named.
func (r *Registry) checkOverlap(ctx context.Context, tenant string, in *RegisterInput) error {
	ks := KeySpaceOf(&metadata.Storage{TenantID: tenant, Endpoint: in.Endpoint, Bucket: in.Bucket, Prefix: in.Prefix})
	st, err := r.claimed(ctx, ks)
	switch {
	case err != nil:
		return err
	case st == nil:
		return nil
	case st.TenantID == tenant:
		return fault.New(fault.AlreadyExists, "STORAGE_OVERLAPS",
			"storage %s (%s) already uses bucket %s with prefix %q, which overlaps %q; use another prefix, or rotate that storage's credentials instead", st.ID, st.Name, st.Bucket, st.Prefix, in.Prefix)
	}
	return fault.New(fault.AlreadyExists, "STORAGE_OVERLAPS",
		"bucket %s with prefix %q overlaps keys another account of this service uses; use another bucket or prefix", in.Bucket, in.Prefix)
}

// probe builds a client for st with secret and runs the checks. It returns a
// fault error when the endpoint is unreachable (Unavailable) or a required
// probe failed (FailedPrecondition, with the report as detail).
//
// An endpoint the policy refuses (checked here before anything is sent, and
// again by every connection) fails the first probe with EndpointNotAllowed and
// answers InvalidArgument ENDPOINT_NOT_ALLOWED: the tenant must change the
// endpoint, or the operator the policy. Not PermissionDenied: the caller is
// authorised to register storages; the value it gave is what is refused, and
// PermissionDenied would read as a token or identity problem.
func (r *Registry) probe(ctx context.Context, st *metadata.Storage, secret secrets.Secret) (*Report, *storage.S3, error) {
	log := r.cfg.Logger.With("tenant", st.TenantID, "storage", st.ID)
	var t target
	var s3 *storage.S3
	refused := r.endpoints.checkEndpoint(ctx, st.Endpoint)
	if refused != nil {
		t = refusedTarget{refused}
	} else {
		var err error
		if s3, err = r.newClient(st, secret); err != nil {
			return nil, nil, fault.Wrap(err, fault.InvalidArgument, "INVALID_ARGUMENT", "cannot build an S3 client for this storage")
		}
		t = s3
	}
	rep := probe(ctx, t, st.Region, st.Bucket, st.KMSKeyID != "", r.cfg.StepTimeout, log)
	if err := ctx.Err(); err != nil {
		return rep, nil, err
	}
	if len(rep.Probes) > 0 && rep.Probes[0].Code == codeEndpointNotAllowed {
		msg := "it resolves only to addresses this service does not connect to; ask the operator of this backupstore service to add it to --allow-endpoints if it is your on-premises S3 service"
		var cause error = errEndpointRefusedAtDial
		if refused != nil {
			msg, cause = refused.message(), refused
		}
		return rep, nil, &fault.Error{Kind: fault.InvalidArgument, Reason: "ENDPOINT_NOT_ALLOWED", Err: cause,
			Msg:        "endpoint " + endpointName(st) + " is not allowed: " + msg,
			Violations: []fault.Violation{{Field: "endpoint", Description: "not allowed by this service's endpoint policy (--allow-endpoints)"}}}
	}
	if rep.Unreachable && len(rep.Probes) > 0 && rep.Probes[0].Code == "Unreachable" {
		return rep, nil, &fault.Error{Kind: fault.Unavailable, Reason: "STORAGE_UNREACHABLE", Detail: rep,
			Msg: fmt.Sprintf("S3 endpoint %s did not answer within %s; check the endpoint, region and network", endpointName(st), r.cfg.StepTimeout)}
	}
	if !rep.OK {
		return rep, nil, &fault.Error{Kind: fault.FailedPrecondition, Reason: "STORAGE_VALIDATION_FAILED", Detail: rep,
			Msg: "the credentials cannot do what backupstore needs on bucket " + st.Bucket + ":" + rep.Lines()}
	}
	return rep, s3, nil
}

func endpointName(st *metadata.Storage) string {
	if st.Endpoint != "" {
		return st.Endpoint
	}
	return "s3." + st.Region + ".amazonaws.com"
}

func (r *Registry) newClient(st *metadata.Storage, secret secrets.Secret) (*storage.S3, error) {
	return storage.NewS3(storage.S3Config{
		Region: st.Region, Bucket: st.Bucket, AccessKeyID: st.AccessKeyID, SecretAccessKey: secret.Reveal(),
		Endpoint: st.Endpoint, PathStyle: st.PathStyle, Prefix: st.Prefix, KMSKeyID: st.KMSKeyID,
		DialTimeout: r.cfg.DialTimeout, HTTPClient: cmp.Or(r.cfg.HTTPClient, r.endpoints.httpClient(r.cfg.DialTimeout, storage.DefaultResponseTimeout)),
	})
}

// Get returns a tenant's storage.
func (r *Registry) Get(ctx context.Context, tenant, id string) (*metadata.Storage, error) {
	if err := collect(checkID(id)); err != nil {
		return nil, err
	}
	st, err := r.cfg.Catalog.GetStorage(ctx, tenant, id)
	return st, notFound(err, id)
}

// List pages through a tenant's storages.
func (r *Registry) List(ctx context.Context, tenant string, pageSize int, pageToken string) ([]*metadata.Storage, string, error) {
	if pageSize < 0 || pageSize > 1000 {
		return nil, "", fault.Invalid(fault.Violation{Field: "page_size", Description: "must be between 0 and 1000"})
	}
	list, next, err := r.cfg.Catalog.ListStorages(ctx, tenant, pageSize, pageToken)
	if errors.Is(err, metadata.ErrInvalid) {
		return nil, "", fault.Invalid(fault.Violation{Field: "page_token", Description: "not a token from a previous response"})
	}
	return list, next, err
}

// Validate re-probes a storage with its stored credentials and records the
// outcome. A failing probe is not an error: the report says what failed.
func (r *Registry) Validate(ctx context.Context, tenant, id string) (*metadata.Storage, *Report, error) {
	st, err := r.Get(ctx, tenant, id)
	if err != nil {
		return nil, nil, err
	}
	rep, err := r.revalidate(ctx, st)
	return st, rep, err
}

func (r *Registry) revalidate(ctx context.Context, st *metadata.Storage) (*Report, error) {
	secret, err := r.cfg.Keyring.Open(st.SecretCiphertext, st.SecretKeyID, aad(st.TenantID, st.ID))
	if err != nil {
		return nil, fault.Wrap(err, fault.FailedPrecondition, "SECRET_UNREADABLE",
			"the stored secret of storage %s cannot be decrypted with this server's master keys; rotate its credentials", st.ID)
	}
	rep, s3, perr := r.probe(ctx, st, secret)
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if rep == nil { // client could not be built
		return nil, perr
	}
	prev := st.Status
	applyReport(st, rep, r.cfg.FailureThreshold)
	if err := r.cfg.Catalog.UpdateStorageValidation(ctx, st.TenantID, st.ID, validationOf(st)); err != nil {
		return rep, err
	}
	if s3 != nil {
		r.remember(st, s3)
	}
	if prev != st.Status {
		r.cfg.Logger.WarnContext(ctx, "storage status changed", "tenant", st.TenantID, "storage", st.ID,
			"from", prev, "to", st.Status, "message", st.StatusMessage)
	}
	return rep, nil
}

// RotateCredentials validates new credentials as Register does and only then
// replaces the stored ones and the cached client.
func (r *Registry) RotateCredentials(ctx context.Context, tenant, id, accessKeyID string, secret secrets.Secret) (*metadata.Storage, *Report, error) {
	if err := collect(checkID(id), checkAccessKeyID("access_key_id", accessKeyID), checkSecret("secret_access_key", secret.Reveal())); err != nil {
		return nil, nil, err
	}
	st, err := r.Get(ctx, tenant, id)
	if err != nil {
		return nil, nil, err
	}
	cand := *st
	cand.AccessKeyID = accessKeyID
	rep, s3, err := r.probe(ctx, &cand, secret)
	if err != nil {
		return nil, rep, err
	}
	ct, keyID, err := r.cfg.Keyring.Seal(secret, aad(tenant, id))
	if err != nil {
		return nil, rep, err
	}
	if err := r.cfg.Catalog.UpdateStorageCredentials(ctx, tenant, id, accessKeyID, ct, keyID); err != nil {
		return nil, rep, notFound(err, id)
	}
	cand.SecretCiphertext, cand.SecretKeyID = ct, keyID
	applyReport(&cand, rep, r.cfg.FailureThreshold)
	if err := r.cfg.Catalog.UpdateStorageValidation(ctx, tenant, id, validationOf(&cand)); err != nil {
		return nil, rep, err
	}
	r.remember(&cand, s3)
	r.cfg.Logger.InfoContext(ctx, "storage credentials rotated", "tenant", tenant, "storage", id, "access_key_id", accessKeyID)
	out, err := r.cfg.Catalog.GetStorage(ctx, tenant, id)
	return out, rep, notFound(err, id)
}

// SetDefault makes id the tenant's only default storage.
func (r *Registry) SetDefault(ctx context.Context, tenant, id string) (*metadata.Storage, error) {
	if err := collect(checkID(id)); err != nil {
		return nil, err
	}
	if err := r.cfg.Catalog.SetDefaultStorage(ctx, tenant, id); err != nil {
		return nil, notFound(err, id)
	}
	return r.Get(ctx, tenant, id)
}

// Delete removes a storage that no backup references.
func (r *Registry) Delete(ctx context.Context, tenant, id string) error {
	if err := collect(checkID(id)); err != nil {
		return err
	}
	err := r.cfg.Catalog.DeleteStorage(ctx, tenant, id)
	if errors.Is(err, metadata.ErrReferenced) {
		return fault.Wrap(err, fault.FailedPrecondition, "STORAGE_IN_USE",
			"storage %s is referenced by backups; delete or expire those backups first", id)
	}
	if err != nil {
		return notFound(err, id)
	}
	r.mu.Lock()
	delete(r.clients, id)
	r.mu.Unlock()
	return nil
}

// PolicyFor returns the IAM policy for a registered storage or for a bucket.
func (r *Registry) PolicyFor(ctx context.Context, tenant, storageID string, req PolicyRequest) (*Policy, error) {
	if storageID != "" {
		st, err := r.Get(ctx, tenant, storageID)
		if err != nil {
			return nil, err
		}
		req.Bucket, req.Prefix = st.Bucket, st.Prefix
		if req.KMSKeyARN == "" && len(st.KMSKeyID) > 4 && st.KMSKeyID[:4] == "arn:" {
			req.KMSKeyARN = st.KMSKeyID
		}
	}
	return IAMPolicy(req)
}

// Client returns the cached S3 client of a tenant's storage, building a new
// one when the stored credentials changed (here or on another replica).
//
// Once the cached row is clientRecheck old, one caller reads it again and the
// others go on with the cached client meanwhile: every upload in flight
// re-reading the row at the same instant was a herd of catalog queries
// every clientRecheck (a storages SELECT in 17 % of the samples of running
// statements during a 1,000,000-file upload).
func (r *Registry) Client(ctx context.Context, tenant, id string) (*storage.S3, *metadata.Storage, error) {
	r.mu.Lock()
	c, ok := r.clients[id]
	ok = ok && c.st.TenantID == tenant
	use := ok && (r.now().Sub(c.checked) < clientRecheck || c.rechecking)
	if ok && !use {
		c.rechecking = true
		r.clients[id] = c
		defer func() {
			r.mu.Lock()
			if cc, ok := r.clients[id]; ok {
				cc.rechecking = false
				r.clients[id] = cc
			}
			r.mu.Unlock()
		}()
	}
	r.mu.Unlock()
	if use {
		st := c.st
		return c.s3, &st, nil
	}
	if ok && r.beforeRecheck != nil {
		r.beforeRecheck(id)
	}
	st, err := r.Get(ctx, tenant, id)
	if err != nil {
		return nil, nil, err
	}
	fp := fingerprint(st)
	if ok && c.fingerprint == fp {
		r.remember(st, c.s3)
		return c.s3, st, nil
	}
	secret, err := r.cfg.Keyring.Open(st.SecretCiphertext, st.SecretKeyID, aad(tenant, id))
	if err != nil {
		return nil, nil, fault.Wrap(err, fault.FailedPrecondition, "SECRET_UNREADABLE",
			"the stored secret of storage %s cannot be decrypted with this server's master keys; rotate its credentials", id)
	}
	s3, err := r.newClient(st, secret)
	if err != nil {
		return nil, nil, err
	}
	r.remember(st, s3)
	return s3, st, nil
}

// StoreFor returns the store a backup of tenant on storageID lives on: the
// tenant's registered storage (its cached client), or the service-managed
// default storage for "". A backup stays on the storage it was written to,
// whatever the tenant's default becomes, so every read and write of a backup
// resolves its store here, from the backup's own storage id.
func (r *Registry) StoreFor(ctx context.Context, tenant, storageID string) (storage.Store, error) {
	if storageID == "" {
		return r.cfg.ServiceStore, nil
	}
	c, _, err := r.Client(ctx, tenant, storageID)
	if err != nil {
		return nil, err // not c: a nil *storage.S3 in a Store would not be nil
	}
	return c, nil
}

// remember caches s3 for st unless a client for the same credentials is
// already cached (clients are long-lived: their connection pools are reused).
func (r *Registry) remember(st *metadata.Storage, s3 *storage.S3) {
	fp := fingerprint(st)
	r.mu.Lock()
	if c, ok := r.clients[st.ID]; ok && c.fingerprint == fp {
		s3 = c.s3 // keep the long-lived client
	}
	r.clients[st.ID] = cachedClient{fingerprint: fp, s3: s3, st: *st, checked: r.now()}
	r.mu.Unlock()
}

// RevalidateAll probes every storage of every tenant once, sequentially.
func (r *Registry) RevalidateAll(ctx context.Context) error {
	var list []*metadata.Storage
	if err := r.cfg.Catalog.ForEachStorage(ctx, func(st *metadata.Storage) error {
		list = append(list, st)
		return nil
	}); err != nil {
		return err
	}
	for _, st := range list {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if _, err := r.revalidate(ctx, st); err != nil {
			r.cfg.Logger.ErrorContext(ctx, "storage revalidation failed", "tenant", st.TenantID, "storage", st.ID, "err", err)
		}
	}
	return nil
}

// applyReport folds a validation into the storage's status: success resets
// the failure count; FailureThreshold failures in a row make it unavailable.
func applyReport(st *metadata.Storage, rep *Report, threshold int) {
	st.ValidatedAt = rep.At
	st.AbortDenied = rep.AbortDenied
	st.Report, _ = json.Marshal(rep)
	if rep.OK {
		st.ConsecutiveFailures = 0
		st.Status = StatusAvailable
		st.StatusMessage = rep.Summary()
		return
	}
	st.ConsecutiveFailures++
	if st.ConsecutiveFailures >= threshold {
		st.Status = StatusUnavailable
	} else if st.Status == "" {
		st.Status = StatusAvailable
	}
	st.StatusMessage = fmt.Sprintf("%s (%d failed validation(s) in a row; unavailable after %d)", rep.Summary(), st.ConsecutiveFailures, threshold)
}

func validationOf(st *metadata.Storage) metadata.Validation {
	return metadata.Validation{
		Status: st.Status, Message: st.StatusMessage, ValidatedAt: st.ValidatedAt,
		ConsecutiveFailures: st.ConsecutiveFailures, AbortDenied: st.AbortDenied, Report: st.Report,
	}
}

// ReportOf decodes the last report stored with a storage (nil if none).
func ReportOf(st *metadata.Storage) *Report {
	if len(st.Report) == 0 {
		return nil
	}
	var rep Report
	if json.Unmarshal(st.Report, &rep) != nil {
		return nil
	}
	return &rep
}

// aad binds a sealed secret to its row.
func aad(tenant, id string) []byte { return []byte("storage-secret\x00" + tenant + "\x00" + id) }

func fingerprint(st *metadata.Storage) string {
	h := sha256.New()
	for _, s := range []string{st.AccessKeyID, st.SecretKeyID, st.Endpoint, st.Region, st.Bucket, st.Prefix, st.KMSKeyID} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	h.Write(st.SecretCiphertext)
	if st.PathStyle {
		h.Write([]byte{1})
	}
	return hex.EncodeToString(h.Sum(nil))
}

func nameTaken(name string) error {
	return fault.New(fault.AlreadyExists, "STORAGE_NAME_TAKEN", "a storage named %q already exists; pick another name or rotate its credentials", name)
}

func notFound(err error, id string) error {
	if errors.Is(err, metadata.ErrNotFound) {
		return fault.Wrap(err, fault.NotFound, "STORAGE_NOT_FOUND", "storage %q not found", id)
	}
	return err
}
