// Package registry is the domain logic of customer storages: it checks a
// registration's fields, proves API by API that the credentials can do what
// the service will need (probe.go), seals the secret before the catalog sees
// it, caches one S3 client per storage (replaced when credentials rotate),
// resolves the store every backup lives on (StoreFor: a registered storage,
// or the operator's service-managed default for none),
// re-validates storages on an interval, and writes the least-privilege IAM
// policy a customer should attach (policy.go). Tenant storages' S3 clients
// connect only where the operator's endpoint policy allows (endpoints.go).
//
// registry sits between server and the adapters: it imports storage,
// metadata, secrets and fault (and the SDK's HTTP transport defaults), and
// never server.
package registry
