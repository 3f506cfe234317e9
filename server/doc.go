// Package server holds the gRPC handlers: one file per service. A handler
// validates the request's shape, takes the tenant from the context (set by
// the auth interceptor), calls the domain packages and maps their errors to
// status codes in exactly one place (errors.go). Handlers stay thin.
//
// server may import the domain packages (registry, …), storage, metadata,
// secrets and fault; nothing below it imports server.
package server
