package registry

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"backupstore/metadata"
)

// KeySpace is where one tenant's objects live on one storage: the S3
// service (its endpoint normalised, so "http://h:9000/", "HTTP://H:9000" and
// "http://h:9000" are one; every AWS endpoint, and none, is "aws", whose
// bucket names are global), the bucket, and the key prefix every key the
// service writes there starts with. Garbage collection lists a key space and
// deletes what the catalog does not know, so no two storages, of one tenant
// or of two, may claim key spaces that overlap.
type KeySpace struct{ Service, Bucket, Prefix string }

// KeySpaceOf is st's key space.
func KeySpaceOf(st *metadata.Storage) KeySpace {
	return KeySpace{Service: serviceKey(st.Endpoint), Bucket: st.Bucket, Prefix: keySpace(st.Prefix, st.TenantID)}
}

// Overlaps reports whether one of a and b holds keys of the other.
func (a KeySpace) Overlaps(b KeySpace) bool {
	return a.Service == b.Service && a.Bucket == b.Bucket &&
		(strings.HasPrefix(a.Prefix, b.Prefix) || strings.HasPrefix(b.Prefix, a.Prefix))
}

// serviceKey normalises an endpoint URL to the S3 service it names.
func serviceKey(endpoint string) string {
	if endpoint == "" {
		return "aws"
	}
	u, err := url.Parse(strings.TrimSpace(endpoint))
	if err != nil || u.Host == "" {
		return strings.ToLower(strings.TrimRight(endpoint, "/"))
	}
	host, port := strings.ToLower(strings.TrimSuffix(u.Hostname(), ".")), u.Port()
	if host == "amazonaws.com" || strings.HasSuffix(host, ".amazonaws.com") {
		return "aws"
	}
	switch {
	case port == "" && u.Scheme == "https", port == "443" && u.Scheme == "https":
		port = "443"
	case port == "" && u.Scheme == "http", port == "80" && u.Scheme == "http":
		port = "80"
	}
	return net.JoinHostPort(host, port)
}

var errFound = errors.New("found")

// claimLock serialises the last check of a key space with the insert of the
// storage that claims it, across replicas.
const claimLock = "backupstore_storage_claims"

// withClaimLock runs fn holding claimLock, waiting up to 10 s for it.
func (r *Registry) withClaimLock(ctx context.Context, fn func() error) error {
	for i := 0; ; i++ {
		release, ok, err := r.cfg.Catalog.TryLock(ctx, claimLock)
		if err != nil {
			return err
		}
		if ok {
			defer release()
			return fn()
		}
		if i == 200 {
			return fmt.Errorf("%w: storage registrations are busy", metadata.ErrUnavailable)
		}
		select {
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// claimed returns a storage of any tenant whose key space overlaps ks (nil
// if none). Registrations are rare: it reads every storage.
func (r *Registry) claimed(ctx context.Context, ks KeySpace) (*metadata.Storage, error) {
	var found *metadata.Storage
	err := r.cfg.Catalog.ForEachStorage(ctx, func(st *metadata.Storage) error {
		if KeySpaceOf(st).Overlaps(ks) {
			found = st
			return errFound
		}
		return nil
	})
	if found != nil {
		return found, nil
	}
	return nil, err
}

// NestedKeySpaces returns the key prefixes, relative to st's own prefix,
// of other storages' key spaces inside st's (registered before claims were
// checked across tenants): garbage collection of st must skip them.
func (r *Registry) NestedKeySpaces(ctx context.Context, st *metadata.Storage) ([]string, error) {
	mine := KeySpaceOf(st)
	var nested []string
	err := r.cfg.Catalog.ForEachStorage(ctx, func(o *metadata.Storage) error {
		theirs := KeySpaceOf(o)
		if o.ID != st.ID && theirs.Service == mine.Service && theirs.Bucket == mine.Bucket && strings.HasPrefix(theirs.Prefix, mine.Prefix) {
			rel := theirs.Prefix
			if st.Prefix != "" {
				rel = strings.TrimPrefix(rel, st.Prefix+"/")
			}
			nested = append(nested, rel)
		}
		return nil
	})
	return nested, err
}
