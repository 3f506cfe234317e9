// Package fault is the vocabulary domain packages use to say what went wrong
// in terms a caller can act on: a kind (mapped to a gRPC code in exactly one
// place, server/errors.go), a stable machine-readable reason, the offending
// request fields, and an optional structured detail.
//
// fault imports nothing from backupstore; anything may import it.
package fault

import (
	"errors"
	"fmt"
	"runtime/debug"
	"time"
)

// Kind says which class of failure an Error is. The server maps each to one gRPC code.
type Kind int

// Kinds, named after the gRPC codes they map to.
const (
	Internal Kind = iota
	InvalidArgument
	NotFound
	AlreadyExists
	FailedPrecondition
	Unavailable
	Aborted
	OutOfRange
	ResourceExhausted
	DataLoss
	Unauthenticated
	PermissionDenied
)

// Violation names a request field that is wrong and why.
type Violation struct {
	Field       string
	Description string
}

// Error is a domain error. Msg must be safe to show the caller: it never
// contains secrets or another tenant's data.
type Error struct {
	Kind       Kind
	Reason     string // stable, UPPER_SNAKE; e.g. STORAGE_NAME_TAKEN
	Msg        string
	Violations []Violation
	Detail     any   // optional structured detail the server knows how to encode
	Err        error // optional cause, for errors.Is/As and server logs (not sent)
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Msg + ": " + e.Err.Error()
	}
	return e.Msg
}

func (e *Error) Unwrap() error { return e.Err }

// New returns an Error of kind with reason and a formatted message.
func New(kind Kind, reason, format string, args ...any) *Error {
	return &Error{Kind: kind, Reason: reason, Msg: fmt.Sprintf(format, args...)}
}

// Wrap is New with a cause kept for errors.Is/As; the cause's text is not
// shown to the caller.
func Wrap(err error, kind Kind, reason, format string, args ...any) *Error {
	e := New(kind, reason, format, args...)
	e.Err = err
	return e
}

// Invalid returns an InvalidArgument error for the given violations. The
// message lists them all so a person sees every problem at once.
func Invalid(vs ...Violation) *Error {
	msg := "invalid request"
	for i, v := range vs {
		sep := "; "
		if i == 0 {
			sep = ": "
		}
		msg += sep + v.Field + ": " + v.Description
	}
	return &Error{Kind: InvalidArgument, Reason: "INVALID_ARGUMENT", Msg: msg, Violations: vs}
}

// RetryDelay, as an Error's Detail, is how long the caller should wait before
// retrying (the server sends it as a google.rpc.RetryInfo).
type RetryDelay time.Duration

// As returns the *Error in err's chain, if any.
func As(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}

// Catch runs fn and returns its error, or, if fn panics, an Internal error
// (reason PANIC) that carries the panic value and stack for the log. The
// server's recovery interceptor covers handler goroutines only: every
// goroutine a request starts (part uploads, compress and verify workers,
// catalog walks) runs its body through Catch, so that one bug — say, in a
// decoder fed hostile bytes from a tenant's bucket — fails that request
// instead of the process and every tenant's calls with it.
func Catch(fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &Error{Kind: Internal, Reason: "PANIC", Msg: "internal error",
				Err: fmt.Errorf("panic: %v\n%s", r, debug.Stack())}
		}
	}()
	return fn()
}
